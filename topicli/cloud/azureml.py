"""Azure ML: the online endpoint behind `topicli deploy`, the endpoint `topicli score azure` uses, and jobs.

**Code.** Azure runs `score.py` (and jobs run `python -m topicli`) from a code folder that
`stage_code` fills with the topicli package's own source: the exact code that wrote the
bundle, with nothing to build or publish. Third-party packages come from the environment:
a conda file on an Azure ML base image pinning every dependency of topicli (the inference
server among them) to the version installed here, torch from the CPU wheel index.

**Blue/green.** `deploy` registers the bundle as a model and the environment, creates the
endpoint (key auth) when missing, and creates a deployment named after the colour not in
use. The new deployment takes all traffic only after a smoke request sent to it alone
(`invoke(deployment_name=...)`) comes back as topicli results; then the old deployments are
deleted unless `keep_old`. A failed smoke request leaves traffic where it was.

`--dry-run` writes the YAML of the endpoint, deployment or job and loads it back with the
SDK's own loaders (`load_online_endpoint`, `load_online_deployment`, `load_job`), offline.
The azure-ai-ml imports sit inside the functions: they take a second, and most commands never
need them.
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import requires, version
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement

from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.serving.bundle import MANIFEST
from topicli.serving.client import Endpoint

PACKAGE_ROOT = Path(__file__).parents[1]
SCORING_SCRIPT = "topicli/serving/score.py"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
COLOURS = ("blue", "green")
SMOKE_POSTS = ["Morning espresso before the run", "Our puppy met the neighbours' cat"]


def ml_client(settings: Settings) -> Any:
    """An `MLClient` on the workspace in [azure] (written there by `topicli infra up`), signed in as you."""
    azure = settings.azure
    missing = [name for name in ("subscription_id", "resource_group", "workspace") if not getattr(azure, name)]
    if missing:
        raise TopicliError(f"[azure] {', '.join(missing)} not set; run `topicli infra up` or fill them in the config")
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(DefaultAzureCredential(), azure.subscription_id, azure.resource_group, azure.workspace)


def stage_code(folder: Path) -> Path:
    """Copy the topicli package's source (Python files and data, not caches) into `folder`/topicli."""
    target = folder / "topicli"
    shutil.copytree(PACKAGE_ROOT, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    return folder


def conda_environment() -> dict[str, Any]:
    """Conda spec of the Azure environment: every runtime dependency of topicli, pinned as installed here."""
    pins = []
    for line in requires("topicli") or []:
        requirement = Requirement(line)
        if requirement.marker is None:  # extras (dev) carry a marker
            pins.append(f"{requirement.name}=={version(requirement.name).split('+')[0]}")
    return {
        "name": "topicli",
        "channels": ["conda-forge"],
        "dependencies": ["python=3.11", "pip", {"pip": [f"--extra-index-url {TORCH_INDEX}", *sorted(pins)]}],
    }


def environment(settings: Settings, named: bool = True) -> Any:
    """The environment entity; jobs take it unnamed (anonymous), so they need nothing registered first."""
    from azure.ai.ml.entities import Environment

    return Environment(
        name=settings.azure.environment_name if named else None,
        image=settings.azure.base_image,
        conda_file=conda_environment(),
        description="topicli: serving and scale-out jobs",
    )


@dataclass(frozen=True)
class DeploymentPlan:
    """What `deploy` creates: the endpoint and one deployment (model, environment, code) of it."""

    endpoint: Any
    deployment: Any


def endpoint_entity(settings: Settings) -> Any:
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    return ManagedOnlineEndpoint(name=settings.azure.endpoint, auth_mode="key", description="topicli: topics for posts")


def deployment_plan(
    settings: Settings, bundle: Path, code: Path, name: str, model: Any = None, env: Any = None
) -> DeploymentPlan:
    """Endpoint (key auth) and deployment entities; model and environment default to local, unregistered ones."""
    from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineDeployment, Model, OnlineRequestSettings

    azure = settings.azure
    if not (Path(bundle) / MANIFEST).is_file():
        raise TopicliError(f"{bundle} is not a model bundle; `topicli run POSTS` writes one into its run folder")
    deployment = ManagedOnlineDeployment(
        name=name,
        endpoint_name=azure.endpoint,
        model=model or Model(path=str(Path(bundle).resolve()), name=azure.model_name, type="custom_model"),
        environment=env or environment(settings),
        code_configuration=CodeConfiguration(code=str(Path(code).resolve()), scoring_script=SCORING_SCRIPT),
        instance_type=azure.instance_type,
        instance_count=azure.instance_count,
        environment_variables={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        request_settings=OnlineRequestSettings(request_timeout_ms=int(settings.serving.timeout * 1000)),
    )
    return DeploymentPlan(endpoint_entity(settings), deployment)


def _plain(document: Any) -> Any:
    """The SDK's dumps are OrderedDicts; plain dicts for yaml.safe_dump."""
    return json.loads(json.dumps(document))


def write_deployment_yaml(plan: DeploymentPlan, folder: Path) -> tuple[Path, Path]:
    """`endpoint.yml` and `deployment.yml`, each loaded back by the SDK's own loader to validate it."""
    from azure.ai.ml import load_online_deployment, load_online_endpoint

    folder.mkdir(parents=True, exist_ok=True)
    endpoint_file, deployment_file = folder / "endpoint.yml", folder / "deployment.yml"
    # ManagedOnlineEndpoint.dump returns the document and writes nothing; deployments write their file.
    endpoint_file.write_text(yaml.safe_dump(_plain(plan.endpoint.dump())), encoding="utf-8")
    plan.deployment.dump(deployment_file)
    _validated(load_online_endpoint, endpoint_file)
    _validated(load_online_deployment, deployment_file)
    return endpoint_file, deployment_file


def _validated(loader: Callable[[Path], Any], path: Path) -> Any:
    from marshmallow.exceptions import ValidationError

    try:
        return loader(path)
    except ValidationError as error:
        raise TopicliError(f"{path} does not validate: {' '.join(str(error).split())[:300]}") from None


@dataclass(frozen=True)
class DeployResult:
    endpoint: str
    deployment: str
    model: str
    scoring_uri: str
    deleted: list[str]


def deploy(settings: Settings, bundle: Path, client: Any, keep_old: bool = False) -> DeployResult:
    """Register the bundle and environment, roll a new deployment out, move traffic after a smoke request."""
    from azure.ai.ml.entities import Model
    from azure.core.exceptions import ResourceNotFoundError

    azure = settings.azure
    if not (Path(bundle) / MANIFEST).is_file():
        raise TopicliError(f"{bundle} is not a model bundle; `topicli run POSTS` writes one into its run folder")
    model = client.models.create_or_update(
        Model(
            path=str(Path(bundle).resolve()), name=azure.model_name, type="custom_model", description="topicli bundle"
        )
    )
    env = client.environments.create_or_update(environment(settings))
    try:
        traffic = client.online_endpoints.get(azure.endpoint).traffic or {}
    except ResourceNotFoundError:
        client.online_endpoints.begin_create_or_update(endpoint_entity(settings)).result()
        traffic = {}
    serving = max(traffic, key=traffic.get) if traffic else ""
    name = next(colour for colour in COLOURS if colour != serving)
    with tempfile.TemporaryDirectory(prefix="topicli-code-") as code:
        plan = deployment_plan(settings, bundle, stage_code(Path(code)), name, model=model, env=env)
        client.online_deployments.begin_create_or_update(plan.deployment).result()
    _smoke(client, azure.endpoint, name)
    endpoint = client.online_endpoints.get(azure.endpoint)
    endpoint.traffic = {name: 100}
    endpoint = client.online_endpoints.begin_create_or_update(endpoint).result()
    deleted = []
    if not keep_old:
        for other in [d.name for d in client.online_deployments.list(endpoint_name=azure.endpoint) if d.name != name]:
            client.online_deployments.begin_delete(name=other, endpoint_name=azure.endpoint).result()
            deleted.append(other)
    return DeployResult(azure.endpoint, name, f"{model.name}:{model.version}", endpoint.scoring_uri, deleted)


def _smoke(client: Any, endpoint: str, deployment: str) -> None:
    """A request to the new deployment alone; it must answer with one topicli result per post."""
    with tempfile.TemporaryDirectory(prefix="topicli-smoke-") as folder:
        request = Path(folder) / "request.json"
        request.write_text(json.dumps({"data": SMOKE_POSTS}), encoding="utf-8")
        try:
            answer = client.online_endpoints.invoke(
                endpoint_name=endpoint, deployment_name=deployment, request_file=str(request)
            )
            results = json.loads(answer)["results"]
            ok = len(results) == len(SMOKE_POSTS) and all("topic" in r for r in results)
        except Exception as error:  # any failure of the new deployment: traffic must stay where it is
            ok, answer = False, f"{type(error).__name__}: {error}"
    if not ok:
        raise TopicliError(
            f"deployment {deployment} failed its smoke request ({str(answer)[:200]}); traffic stays on the old "
            f"deployment, and {deployment} is left for its logs: az ml online-deployment get-logs -n {deployment}"
        )


def azure_endpoint(settings: Settings, client: Any) -> Endpoint:
    """Scoring URL and primary key of the [azure] endpoint."""
    name = settings.azure.endpoint
    return Endpoint(client.online_endpoints.get(name).scoring_uri, client.online_endpoints.get_keys(name).primary_key)


# Settings that name local files: a job gets them as inputs, and the command points the setting at the input.
_PATH_SETTINGS = {("labelling", "topics"): "uri_file", ("classifier", "path"): "uri_folder"}


def command_job(
    settings: Settings, name: str, arguments: list[str], inputs: dict[str, Path], output: str, code: Path
) -> Any:
    """A command job running `topicli NAME ARGUMENTS` on the [azure] compute cluster, from code staged in `code`.

    `arguments` may refer to `${{inputs.X}}` for each of `inputs` (local files, uploaded as
    uri_file) and to `${{outputs.OUTPUT}}` (a folder). The job runs with these settings: the
    non-default ones travel as TOPICLI_* variables, and files named by settings as inputs.
    """
    from azure.ai.ml import Input, Output, command

    if not settings.azure.compute:
        raise TopicliError("[azure] compute is not set; run `topicli infra up` or name a compute cluster there")
    job_inputs = {key: Input(type="uri_file", path=str(Path(path).resolve())) for key, path in inputs.items()}
    prefix, variables = [], {"TOPICLI_ENCODER_CACHE_DIR": ".topicli-cache"}
    defaults = Settings()
    for section in ("input", "encoder", "classifier", "clustering", "labelling"):
        default = asdict(getattr(defaults, section))
        for key, value in asdict(getattr(settings, section)).items():
            kind = _PATH_SETTINGS.get((section, key))
            variable = f"TOPICLI_{section}_{key}".upper()
            if value == default[key]:
                continue
            if kind:  # a local file or folder: uploaded as an input, the setting pointed at where it lands
                job_inputs[f"{section}_{key}"] = Input(type=kind, path=str(Path(value).resolve()))
                prefix.append(f"{variable}=${{{{inputs.{section}_{key}}}}}")
            else:
                variables[variable] = str(value)
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


def dry_run_job(settings: Settings, name: str, arguments: list[str], inputs: dict[str, Path], output: str) -> Path:
    """Write `<[output] dir>/azureml/NAME-job.yml` (validated offline) with its code beside it."""
    folder = job_folder(settings)
    path = folder / f"{name}-job.yml"
    write_job_yaml(command_job(settings, name, arguments, inputs, output, folder / "code"), path)
    return path


def submit_job(
    settings: Settings, name: str, arguments: list[str], inputs: dict[str, Path], output: str, client: Any
) -> Any:
    """Submit the job to the workspace; the SDK uploads the staged code and the inputs."""
    with tempfile.TemporaryDirectory(prefix="topicli-job-code-") as code:
        return client.jobs.create_or_update(command_job(settings, name, arguments, inputs, output, Path(code)))


def train_job_arguments(data: list[Path], options: list[str]) -> tuple[list[str], dict[str, Path]]:
    """`train-classifier` arguments for a job: each data file an input, then the options as given."""
    inputs = {f"data_{i}": path for i, path in enumerate(data)}
    return [*(f"${{{{inputs.{key}}}}}" for key in inputs), *map(shlex.quote, options)], inputs
