"""The Azure ML scoring script: `init()` loads the model bundle, `run(raw)` gives posts their topics.

The same file runs under the Azure ML inference server here (`topicli deploy local`) and in
an Azure ML managed online deployment, where the code folder holds the topicli package.
`AZUREML_MODEL_DIR` is the model folder; Azure ML puts the registered bundle folder inside it,
so the bundle is looked for there and one level or more below. Request shapes and errors are
in `topicli.serving.protocol`; a bad request gets its 4xx status and an error object, and an
unexpected failure a 500 with one, so no input ends the process.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from topicli.errors import TopicliError
from topicli.serving.bundle import BundleModel, find_bundle
from topicli.serving.protocol import handle

try:
    from azureml_inference_server_http.api.aml_response import AMLResponse
except ImportError:  # older servers ship it under azureml.contrib.services
    try:
        from azureml.contrib.services.aml_response import AMLResponse
    except ImportError:  # no server around (in-process use): errors come back as plain objects
        AMLResponse = None

logger = logging.getLogger("topicli.serving.score")
model: BundleModel | None = None
REFUSED = "topicli refused the bundle: "  # starts the log line that says why; `deploy local` shows what follows


def init() -> None:
    """Load the bundle once per worker; version differences are logged, a bad bundle or a wrong encoder fails
    here, with the reason on one log line."""
    global model
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model_dir = os.environ.get("AZUREML_MODEL_DIR")
        if not model_dir:
            raise TopicliError("AZUREML_MODEL_DIR is not set; it names the folder that holds the bundle")
        folder = find_bundle(Path(model_dir))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = BundleModel.load(folder)
    except TopicliError as error:
        logger.error("%s%s", REFUSED, error)
        raise
    for warning in caught:
        logger.warning("%s", warning.message)
    logger.info("topicli bundle %s loaded from %s", model.bundle_id, folder)


def run(raw: str) -> Any:
    """Results for the posts of a request body, or an error object (with its 4xx/500 status when served)."""
    assert model is not None, "init() was not called"
    try:
        status, body = handle(model, raw)
    except Exception as error:
        logger.exception("scoring failed")
        status, body = 500, {"error": {"code": "internal", "message": f"{type(error).__name__}: {error}"}}
    if status != 200 and AMLResponse is not None:
        return AMLResponse(body, status, json_str=True)
    return body
