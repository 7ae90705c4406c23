"""The record of what `topicli deploy` last deployed, which `topicli score POSTS` sends posts to.

One small JSON file, `<[output] dir>/deployed.json`, beside the local server's own state
(`<[output] dir>/serve/`): the target (azure, local or triton), where it answers, and for Azure
the endpoint, the deployment, its model and the model served before it (what `deploy
--rollback` redeploys once the previous deployment is gone). It is replaced atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import atomic_path

RECORD_FILE = "deployed.json"
Target = Literal["azure", "local", "triton"]
TARGETS = ("azure", "local", "triton")


@dataclass(frozen=True)
class Deployed:
    target: Target
    url: str  # scoring URL (azure, local) or Triton's base URL
    endpoint: str = ""  # azure: the online endpoint
    deployment: str = ""  # azure: the deployment taking all traffic
    model: str = ""  # azure: name:version it serves
    previous_model: str = ""  # azure: name:version the deployment before it served


def record_path(settings: Settings) -> Path:
    return Path(settings.output.dir) / RECORD_FILE


def record(settings: Settings, deployed: Deployed) -> Path:
    """Keep `deployed` as the last deployment; the path written."""
    path = record_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(asdict(deployed), indent=2), encoding="utf-8")
    return path


def last(settings: Settings) -> Deployed | None:
    """What was last deployed, or None; a record that cannot be read is an error saying how to fix it."""
    path = record_path(settings)
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(Deployed)}
        deployed = Deployed(**{key: value for key, value in document.items() if key in known})
        if deployed.target not in TARGETS or not isinstance(deployed.url, str):
            raise ValueError(f"target {deployed.target!r}")
    except (ValueError, TypeError, UnicodeDecodeError) as error:
        raise TopicliError(
            f"{path} is not a record of a deployment ({error}); deploy again, or name the server: "
            "topicli score local|azure|endpoint URL|triton URL POSTS"
        ) from None
    return deployed
