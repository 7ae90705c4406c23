"""`topicli deploy triton`: the Triton model repository as an Azure ML managed online deployment.

The repository of `topicli export triton` is registered as a `triton_model` and served by a
managed online deployment of Azure's own Triton image (no image to build, no code, no
environment), on an endpoint of its own (`<[azure] endpoint>-triton`, key auth, TLS). It
moves through the same safe rollout as `topicli deploy` (`topicli.cloud.rollout`): smoke,
mirror, canary, all, each gated on health, with rollback. Requests speak KServe v2 to the
`topicli` ensemble at `<endpoint>/v2/models/topicli/infer`, with the endpoint key as a bearer
token; the smoke request targets the new deployment alone with the `azureml-model-deployment`
header.

**Nothing installed at start.** The tokenizer model (Triton's Python backend) needs the
`tokenizers` package, which Azure's Triton image lacks; the package installed here (one abi3
extension, any CPython from 3.9) is copied beside the model's `model.py`, as `export triton`
already does for the package encoders, so the deployment downloads nothing when it starts.
"""

from __future__ import annotations

import platform
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from topicli.cloud import azureml
from topicli.cloud.rollout import Rollout
from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.serving.client import KSERVE_V2, Endpoint
from topicli.serving.ensemble import ENSEMBLE

SUFFIX = "-triton"
TOKENIZER_MODEL = Path("tokenizer", "1")


def endpoint_name(settings: Settings) -> str:
    """The Triton endpoint: the [azure] endpoint's name (or the derived one) with -triton, 32 characters at most."""
    return azureml.endpoint_name(settings)[: 32 - len(SUFFIX)].rstrip("-") + SUFFIX


def inference_url(scoring_uri: str) -> str:
    """The ensemble's KServe v2 URL on an endpoint whose scoring URI is `scoring_uri`."""
    base = scoring_uri.rstrip("/").removesuffix("/score")
    return f"{base}/v2/models/{ENSEMBLE}/infer"


def vendor_tokenizers(repository: Path) -> Path | None:
    """Copy the installed `tokenizers` package beside the tokenizer model; its folder, or None without one."""
    target = Path(repository) / TOKENIZER_MODEL
    if not (target / "model.py").is_file():
        return None  # a package encoder's repository: its package is already beside its model
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise TopicliError(
            f"the tokenizers package here is built for {platform.system()} {platform.machine()}, and Azure's Triton "
            "runs on Linux x86-64; run `topicli deploy triton` from Linux x86-64 (or CI)"
        )
    import tokenizers

    source = Path(tokenizers.__file__).parent
    copied = target / "tokenizers"
    shutil.copytree(
        source, copied, ignore=shutil.ignore_patterns("__pycache__", "*.pyi", "py.typed"), dirs_exist_ok=True
    )
    return copied


def triton_model(settings: Settings, repository: Path) -> Any:
    from azure.ai.ml.entities import Model

    return Model(
        path=str(Path(repository).resolve()),
        name=f"{settings.azure.model_name}{SUFFIX}",
        type="triton_model",
        description="topicli: Triton model repository (tokenizer, encoder, assignment, ensemble)",
    )


def endpoint_entity(settings: Settings) -> Any:
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    return ManagedOnlineEndpoint(
        name=endpoint_name(settings), auth_mode="key", description="topicli: the Triton ensemble (KServe v2)"
    )


def deployment_entity(settings: Settings, name: str, model: Any, instances: int | None = None) -> Any:
    """A no-code Triton deployment: Azure's Triton image serves the registered repository."""
    from azure.ai.ml.entities import ManagedOnlineDeployment

    return ManagedOnlineDeployment(
        name=name, endpoint_name=endpoint_name(settings), model=model, **azureml.serving_shape(settings, instances)
    )


def dry_run(settings: Settings, repository: Path, folder: Path) -> tuple[Path, Path]:
    """`endpoint.yml` and `deployment.yml` of the Triton deployment, validated by the SDK's loaders."""
    vendor_tokenizers(repository)
    plan = azureml.DeploymentPlan(
        endpoint_entity(settings),
        deployment_entity(settings, azureml.COLOURS[0], triton_model(settings, repository)),
    )
    return azureml.write_deployment_yaml(plan, folder)


class TritonRollout(Rollout):
    """The safe rollout, for the Triton repository: `run(repository)` registers it as a triton_model."""

    protocol = KSERVE_V2

    def __init__(self, settings: Settings, client: Any, http: httpx.Client | None = None, **options: Any) -> None:
        self.http = http or httpx.Client(timeout=settings.serving.timeout)
        super().__init__(settings, client, **options)

    def endpoint_name(self) -> str:
        return endpoint_name(self.settings)

    def endpoint_entity(self) -> Any:
        return endpoint_entity(self.settings)

    def bundle_model(self, bundle: Path) -> Any:
        vendor_tokenizers(bundle)
        return triton_model(self.settings, bundle)

    @contextmanager
    def deployment(self, name: str, model: Any, bundle: Path | None, instances: int) -> Iterator[Any]:
        yield deployment_entity(self.settings, name, model, instances)

    def send_smoke(self, deployment: str, body: dict[str, Any]) -> str:
        endpoint = self.client.online_endpoints.get(self.endpoint)
        key = self.client.online_endpoints.get_keys(self.endpoint).primary_key
        headers = {"Authorization": f"Bearer {key}", "azureml-model-deployment": deployment}
        response = self.http.post(inference_url(endpoint.scoring_uri), json=body, headers=headers)
        if response.status_code != 200:
            raise TopicliError(f"HTTP {response.status_code}: {response.text[:200]}")
        return response.text


def scoring_endpoint(settings: Settings, client: Any, name: str) -> Endpoint:
    """Where `topicli score` sends posts for the Triton endpoint `name`: the ensemble's URL, with the key."""
    found = azureml.azure_endpoint(settings, client, name)
    return Endpoint(inference_url(found.url), found.key, protocol=KSERVE_V2)
