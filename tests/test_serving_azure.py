"""Azure ML: YAML validated by the SDK offline, blue/green against a fake of MLClient's operations, jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.ai.ml import load_job, load_online_deployment, load_online_endpoint
from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint
from azure.core.exceptions import ResourceNotFoundError
from typer.testing import CliRunner

from topicli.cli import app
from topicli.cloud import azureml as azure
from topicli.config import load_settings
from topicli.errors import TopicliError
from topicli.serving.bundle import BundleModel
from topicli.serving.protocol import handle

from .conftest import EXAMPLES
from .test_serving import run_examples

WORKSPACE = {
    "TOPICLI_AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "TOPICLI_AZURE_RESOURCE_GROUP": "rg",
    "TOPICLI_AZURE_WORKSPACE": "ws",
    "TOPICLI_AZURE_COMPUTE": "cpu-cluster",
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    return run_examples(tmp_path_factory.mktemp("azure-run"), cache_dir) / "bundle"


class Done:
    """What `begin_*` returns: a poller whose result is ready."""

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


class FakeMLClient:
    """Azure ML's operations, recorded; the entities passed in and out are the SDK's own.

    A deployment answers `invoke` with the real scoring code on its bundle, unless it is in `broken`.
    """

    def __init__(self, model: BundleModel, broken: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.endpoints: dict[str, ManagedOnlineEndpoint] = {}
        self.deployments: dict[str, ManagedOnlineDeployment] = {}
        self.scoring_model, self.broken = model, broken
        self.models = self.environments = self.online_endpoints = self.online_deployments = self

    def create_or_update(self, entity: Any) -> Any:  # models and environments
        self.calls.append(("register", type(entity).__name__, entity.name))
        entity.version = "7"
        return entity

    def get(self, name: str) -> ManagedOnlineEndpoint:
        if name not in self.endpoints:
            raise ResourceNotFoundError(f"endpoint {name} not found")
        return self.endpoints[name]

    def get_keys(self, name: str) -> Any:
        return type("Keys", (), {"primary_key": f"key-of-{name}"})()

    def begin_create_or_update(self, entity: Any) -> Done:
        if isinstance(entity, ManagedOnlineEndpoint):
            self.calls.append(("endpoint", entity.name, json.dumps(entity.traffic or {}, sort_keys=True)))
            # the service fills in the read-only scoring URI
            entity._scoring_uri = f"https://{entity.name}.westeurope.inference.ml.azure.com/score"
            self.endpoints[entity.name] = entity
        else:
            assert entity.code_configuration.scoring_script == "topicli/serving/score.py"
            assert (Path(entity.code_configuration.code) / "topicli" / "serving" / "bundle.py").is_file()
            self.calls.append(("deployment", entity.name, entity.model.name, entity.model.version))
            self.deployments[entity.name] = entity
        return Done(entity)

    def list(self, endpoint_name: str) -> list[ManagedOnlineDeployment]:
        return list(self.deployments.values())

    def invoke(self, endpoint_name: str, deployment_name: str, request_file: str) -> str:
        self.calls.append(("invoke", deployment_name))
        if deployment_name in self.broken:
            raise RuntimeError("upstream request timeout")
        status, body = handle(self.scoring_model, Path(request_file).read_bytes())
        assert status == 200
        return json.dumps(body)

    def begin_delete(self, name: str, endpoint_name: str) -> Done:
        self.calls.append(("delete", name))
        del self.deployments[name]
        return Done()


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch):
    for name, value in WORKSPACE.items():
        monkeypatch.setenv(name, value)
    return load_settings(None)


def test_blue_green_switches_traffic_after_the_smoke_request(bundle: Path, settings) -> None:
    client = FakeMLClient(BundleModel.load(bundle))
    first = azure.deploy(settings, bundle, client)
    assert (first.deployment, first.deleted, first.model) == ("blue", [], "topicli-bundle:7")
    assert client.calls == [
        ("register", "Model", "topicli-bundle"),
        ("register", "Environment", "topicli-serve"),
        ("endpoint", "topicli", "{}"),
        ("deployment", "blue", "topicli-bundle", "7"),
        ("invoke", "blue"),
        ("endpoint", "topicli", '{"blue": 100}'),
    ]
    assert client.endpoints["topicli"].auth_mode == "key"
    client.calls.clear()
    second = azure.deploy(settings, bundle, client)
    assert (second.deployment, second.deleted) == ("green", ["blue"])
    assert client.calls[2:] == [
        ("deployment", "green", "topicli-bundle", "7"),
        ("invoke", "green"),
        ("endpoint", "topicli", '{"green": 100}'),
        ("delete", "blue"),
    ]
    third = azure.deploy(settings, bundle, client, keep_old=True)
    assert (third.deployment, third.deleted, sorted(client.deployments)) == ("blue", [], ["blue", "green"])


def test_a_failed_smoke_request_leaves_traffic_alone(bundle: Path, settings) -> None:
    client = FakeMLClient(BundleModel.load(bundle), broken=frozenset({"green"}))
    azure.deploy(settings, bundle, client)
    client.calls.clear()
    with pytest.raises(TopicliError, match=r"deployment green failed its smoke request .*traffic stays"):
        azure.deploy(settings, bundle, client)
    assert client.calls[-1] == ("invoke", "green")
    assert client.endpoints["topicli"].traffic == {"blue": 100} and "blue" in client.deployments


def test_score_azure_takes_url_and_key_from_the_workspace(bundle: Path, settings) -> None:
    client = FakeMLClient(BundleModel.load(bundle))
    azure.deploy(settings, bundle, client)
    endpoint = azure.azure_endpoint(settings, client)
    assert endpoint.url.endswith("inference.ml.azure.com/score") and endpoint.key == "key-of-topicli"


def test_ml_client_needs_the_workspace_in_the_config() -> None:
    with pytest.raises(TopicliError, match="subscription_id, resource_group, workspace not set"):
        azure.ml_client(load_settings(None, environ={}))


def test_deploy_dry_run_writes_yaml_the_sdk_loads(bundle: Path, settings, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TOPICLI_AZURE_INSTANCE_TYPE", "Standard_F4s_v2")
    result = CliRunner().invoke(app, ["deploy", "--dry-run", "--bundle", str(bundle), "-o", str(tmp_path / "yml")])
    assert result.exit_code == 0, result.stderr
    endpoint = load_online_endpoint(tmp_path / "yml" / "endpoint.yml")
    deployment = load_online_deployment(tmp_path / "yml" / "deployment.yml")
    assert (endpoint.name, endpoint.auth_mode) == ("topicli", "key")
    assert (deployment.instance_type, deployment.instance_count) == ("Standard_F4s_v2", 1)
    assert Path(deployment.model.path) == bundle.resolve()
    code = Path(deployment.code_configuration.code)
    assert (code / deployment.code_configuration.scoring_script).is_file()
    assert (code / "topicli/serving/bundle.py").is_file()
    pins = deployment.environment.conda_file["dependencies"][-1]["pip"]
    assert "torch==2.13.0" in pins and "azureml-inference-server-http==1.5.1" in pins
    assert deployment.environment.image.startswith("mcr.microsoft.com/azureml/")


def test_cluster_and_train_jobs_dry_run(settings, isolated: Path) -> None:
    Path("topics.txt").write_text("Coffee\nDogs\n")
    result = CliRunner().invoke(
        app, ["cluster", str(EXAMPLES), "--on", "azureml", "--dry-run", "--topics", "topics.txt", "--eps", "0.3"]
    )
    assert result.exit_code == 0, result.stderr
    job = load_job("topicli-out/azureml/cluster-job.yml")
    assert job.compute == "cpu-cluster" and "python -m topicli cluster ${{inputs.posts}}" in job.command
    document = yaml.safe_load(Path("topicli-out/azureml/cluster-job.yml").read_text())
    assert document["inputs"]["posts"] == {"type": "uri_file", "path": str(EXAMPLES)}
    assert document["inputs"]["labelling_topics"]["path"] == str(isolated / "topics.txt")
    assert "TOPICLI_LABELLING_TOPICS=${{inputs.labelling_topics}}" in job.command
    assert document["environment_variables"]["TOPICLI_CLUSTERING_EPS"] == "0.3"
    result = CliRunner().invoke(
        app, ["train-classifier", "a.csv", "b.csv", "--drop-label", "oos", "--on", "azureml", "--dry-run"]
    )
    assert result.exit_code == 0, result.stderr
    job = load_job("topicli-out/azureml/train-classifier-job.yml")
    assert "${{inputs.data_0}} ${{inputs.data_1}}" in job.command and "--drop-label=oos" in job.command
    assert "-o ${{outputs.model}}" in job.command


def test_jobs_need_a_compute_cluster(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPICLI_AZURE_COMPUTE", "")
    result = CliRunner().invoke(app, ["cluster", str(EXAMPLES), "--on", "azureml", "--dry-run"])
    assert result.exit_code == 2 and "[azure] compute is not set" in result.stderr
    result = CliRunner().invoke(app, ["cluster", str(EXAMPLES), "--on", "kubernetes"])
    assert result.exit_code == 2 and "--on must be local or azureml" in result.stderr
