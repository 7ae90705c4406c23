"""The safe rollout of `topicli deploy` against a fake of MLClient's operations that can fail at every step.

The entities going in and out are the SDK's own (ManagedOnlineEndpoint with traffic and
mirror_traffic, ManagedOnlineDeployment, Model, Environment), and the failures are the SDK's
own exception types. A deployment answers `invoke` with the real scoring code on its bundle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from topicli.cli import app
from topicli.cloud import azureml, deployed
from topicli.cloud.rollout import Rollout
from topicli.config import load_settings
from topicli.errors import TopicliError
from topicli.serving.bundle import BundleModel
from topicli.serving.protocol import handle

from .conftest import sdk_error
from .test_serving import run_examples

if TYPE_CHECKING:  # the SDK is imported where the fake client builds or catches its types, not at collection
    from azure.ai.ml.entities import Environment, ManagedOnlineDeployment, ManagedOnlineEndpoint, Model

WORKSPACE = {
    "TOPICLI_AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "TOPICLI_AZURE_RESOURCE_GROUP": "rg",
    "TOPICLI_AZURE_WORKSPACE": "ws",
    "TOPICLI_AZURE_LOCATION": "westeurope",
    "TOPICLI_AZURE_COMPUTE": "cpu-cluster",
    "TOPICLI_DEPLOY_WATCH_SECONDS": "0",
}
ENDPOINT = "topicli-e2e"


class Done:
    """What `begin_*` returns: a poller whose result is ready, or that raises the service's failure."""

    def __init__(self, value: Any = None, error: Exception | None = None) -> None:
        self.value, self.error = value, error

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class FakeMLClient:
    """MLClient's operations, recorded in `calls`; `fail` maps a step to the SDK exception it raises there.

    Steps: model, environment, endpoint (create), deployment (create), provision (the poller's
    result), traffic:<stage> (the endpoint update that starts a stage), invoke:<deployment>#<n>
    (its n-th smoke request, from 1), state:<deployment> (reads back as Failed), delete.
    """

    def __init__(self, model: BundleModel, fail: dict[str, Exception] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.endpoints: dict[str, ManagedOnlineEndpoint] = {}
        self.deployments: dict[str, ManagedOnlineDeployment] = {}
        self.registered: dict[tuple[str, str], Model] = {}
        self.scoring_model, self.fail = model, dict(fail or {})
        self.invoked: dict[str, int] = {}
        self.models, self.environments = _Models(self), _Environments(self)
        self.online_endpoints, self.online_deployments = _Endpoints(self), _Deployments(self)

    def check(self, step: str) -> None:
        if step in self.fail:
            self.calls.append(("failed", step))
            raise self.fail.pop(step)


class _Models:
    def __init__(self, client: FakeMLClient) -> None:
        self.client = client

    def create_or_update(self, model: Model) -> Model:
        self.client.check("model")
        version = str(1 + sum(name == model.name for name, _ in self.client.registered))
        model.version = version
        self.client.registered[(model.name, version)] = model
        self.client.calls.append(("register", model.name, version))
        return model

    def get(self, name: str, version: str | None = None, label: str | None = None) -> Model:
        versions = [v for n, v in self.client.registered if n == name]
        chosen = max(versions, key=int, default=None) if label == "latest" else version
        if (name, chosen) not in self.client.registered:
            raise sdk_error(f"model {name}:{version or label} not found", "ResourceNotFoundError")
        return self.client.registered[(name, chosen)]


class _Environments:
    def __init__(self, client: FakeMLClient) -> None:
        self.client = client

    def create_or_update(self, environment: Environment) -> Environment:
        self.client.check("environment")
        assert environment.image == load_settings(None).azure.base_image
        environment.version = "1"
        return environment


class _Endpoints:
    def __init__(self, client: FakeMLClient) -> None:
        self.client = client

    def get(self, name: str) -> ManagedOnlineEndpoint:
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        if name not in self.client.endpoints:
            raise sdk_error(f"(ResourceNotFound) onlineEndpoints/{name} not found", "ResourceNotFoundError")
        stored = self.client.endpoints[name]
        # A fresh entity each time, as the service returns one.
        copy = ManagedOnlineEndpoint(name=stored.name, auth_mode=stored.auth_mode, traffic=dict(stored.traffic or {}))
        copy.mirror_traffic = dict(stored.mirror_traffic or {})
        copy._scoring_uri = stored.scoring_uri
        return copy

    def begin_create_or_update(self, endpoint: ManagedOnlineEndpoint) -> Done:
        traffic, mirror = dict(endpoint.traffic or {}), dict(endpoint.mirror_traffic or {})
        if endpoint.name not in self.client.endpoints:
            self.client.check("endpoint")
        else:
            stage = "mirror" if mirror else "all" if 100 in traffic.values() else "canary"
            self.client.check(f"traffic:{stage}")
        # What the service checks: shares sum to 100 (or nothing yet), only existing deployments, mirror ≤ 50 %
        # and never onto a deployment with live traffic.
        assert sum(traffic.values()) in (0, 100), traffic
        assert set(traffic) | set(mirror) <= set(self.client.deployments), (traffic, mirror)
        assert all(share <= 50 and not traffic.get(name) for name, share in mirror.items()), (traffic, mirror)
        self.client.calls.append(("traffic", json.dumps(traffic, sort_keys=True), json.dumps(mirror, sort_keys=True)))
        endpoint._scoring_uri = f"https://{endpoint.name}.westeurope.inference.ml.azure.com/score"
        self.client.endpoints[endpoint.name] = endpoint
        return Done(endpoint)

    def get_keys(self, name: str) -> Any:
        return type("Keys", (), {"primary_key": f"key-of-{name}"})()

    def invoke(self, endpoint_name: str, deployment_name: str, request_file: str) -> str:
        count = self.client.invoked[deployment_name] = self.client.invoked.get(deployment_name, 0) + 1
        self.client.calls.append(("invoke", deployment_name))
        self.client.check(f"invoke:{deployment_name}#{count}")
        status, body = handle(self.client.scoring_model, Path(request_file).read_bytes())
        assert status == 200
        return json.dumps(body)


class _Deployments:
    def __init__(self, client: FakeMLClient) -> None:
        self.client = client

    def begin_create_or_update(self, deployment: ManagedOnlineDeployment) -> Done:
        self.client.check("deployment")
        if deployment.model.type == "triton_model":  # no-code: Azure's Triton image, no code, no environment
            assert deployment.code_configuration is None and deployment.environment is None
        else:
            assert deployment.code_configuration.scoring_script == "topicli/serving/score.py"
            assert (Path(deployment.code_configuration.code) / "topicli" / "serving" / "bundle.py").is_file()
        self.client.calls.append(("deployment", deployment.name, f"{deployment.model.name}:{deployment.model.version}"))
        from azure.core.exceptions import HttpResponseError

        try:
            self.client.check("provision")
        except HttpResponseError as error:
            deployment._provisioning_state = "Failed"
            self.client.deployments[deployment.name] = deployment
            return Done(error=error)
        deployment._provisioning_state = "Succeeded"
        self.client.deployments[deployment.name] = deployment
        return Done(deployment)

    def get(self, name: str, endpoint_name: str) -> ManagedOnlineDeployment:
        deployment = self.client.deployments[name]
        if f"state:{name}" in self.client.fail:
            self.client.fail.pop(f"state:{name}")
            self.client.calls.append(("failed", f"state:{name}"))
            deployment._provisioning_state = "Failed"
        return deployment

    def list(self, endpoint_name: str) -> list[ManagedOnlineDeployment]:
        return list(self.client.deployments.values())

    def begin_delete(self, name: str, endpoint_name: str) -> Done:
        self.client.check("delete")
        self.client.calls.append(("delete", name))
        del self.client.deployments[name]
        return Done()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    return run_examples(tmp_path_factory.mktemp("rollout-run"), cache_dir) / "bundle"


@pytest.fixture(scope="module")
def scoring(bundle: Path) -> BundleModel:
    return BundleModel.load(bundle)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch):
    for name, value in {**WORKSPACE, "TOPICLI_AZURE_ENDPOINT": ENDPOINT}.items():
        monkeypatch.setenv(name, value)
    return load_settings(None)


def live(client: FakeMLClient) -> tuple[dict[str, int], dict[str, int]]:
    endpoint = client.endpoints[ENDPOINT]
    return dict(endpoint.traffic or {}), dict(endpoint.mirror_traffic or {})


def test_first_deploy_goes_from_smoke_to_all(bundle: Path, scoring: BundleModel, settings) -> None:
    client = FakeMLClient(scoring)
    said: list[str] = []
    result = Rollout(settings, client, on_step=said.append).run(bundle)
    assert (result.deployment, result.model, result.previous, result.stages) == (
        "blue",
        "topicli-bundle:1",
        "",
        ["smoke"],
    )
    assert client.calls == [
        ("register", "topicli-bundle", "1"),
        ("traffic", "{}", "{}"),
        ("deployment", "blue", "topicli-bundle:1"),
        ("invoke", "blue"),
        ("traffic", '{"blue": 100}', "{}"),
    ]
    assert any("creating endpoint" in line for line in said)


def test_second_deploy_goes_through_mirror_canary_and_all(bundle: Path, scoring: BundleModel, settings) -> None:
    client = FakeMLClient(scoring)
    Rollout(settings, client).run(bundle)
    client.calls.clear()
    slept: list[float] = []
    result = Rollout(settings, client, sleep=slept.append).run(bundle)
    assert (result.deployment, result.previous, result.previous_model, result.deleted) == (
        "green",
        "blue",
        "topicli-bundle:1",
        ["blue"],
    )
    assert result.stages == ["smoke", "mirror", "canary", "all"]
    assert client.calls == [
        ("register", "topicli-bundle", "2"),
        ("deployment", "green", "topicli-bundle:2"),
        ("invoke", "green"),
        ("traffic", '{"blue": 100}', '{"green": 10}'),
        ("invoke", "green"),
        ("traffic", '{"blue": 90, "green": 10}', "{}"),
        ("invoke", "green"),
        ("traffic", '{"green": 100}', "{}"),
        ("invoke", "green"),
        ("delete", "blue"),
    ]
    assert slept == [0.0, 0.0, 0.0]  # each stage watched for [deploy] watch_seconds


# Where each failure strikes on the second rollout (the SDK error's message and type), and what the user reads.
FAILURES = {
    "model": (("(InternalServerError) upstream",), "registering"),
    "environment": (("(InternalServerError) upstream",), "serving environment"),
    "deployment": (
        ("(BadArgument) Not enough quota available for Standard_DS3_v2",),
        "not enough quota",
    ),
    "provision": (
        ("(ResourceNotReady) User container has crashed or terminated",),
        "failed to provision",
    ),
    "invoke:green#1": (("upstream request timeout",), "smoke stage"),
    "traffic:mirror": (("(Conflict) endpoint busy",), "setting the traffic"),
    "invoke:green#2": (("upstream request timeout",), "mirror stage"),
    "state:green": (("unused", "ResourceNotFoundError"), "is Failed at the smoke stage"),
    "traffic:canary": (("(Conflict) endpoint busy",), "setting the traffic"),
    "invoke:green#3": (("(502) bad gateway",), "canary stage"),
    "traffic:all": (("(Conflict) endpoint busy",), "setting the traffic"),
    "invoke:green#4": (("(502) bad gateway",), "all stage"),
}


@pytest.mark.parametrize("step", list(FAILURES))
def test_a_failure_at_any_step_leaves_all_traffic_on_the_old_deployment(
    step: str, bundle: Path, scoring: BundleModel, settings
) -> None:
    client = FakeMLClient(scoring)
    Rollout(settings, client).run(bundle)
    error, said = FAILURES[step]
    client.fail[step] = sdk_error(*error)
    client.calls.clear()
    with pytest.raises(TopicliError) as failed:
        Rollout(settings, client).run(bundle)
    message = str(failed.value)
    assert said in message and "\n" not in message
    assert ("failed", step) in client.calls
    assert live(client) == ({"blue": 100}, {}), "all traffic back on the old deployment, nothing mirrored"
    assert "blue" in client.deployments and ("delete", "blue") not in client.calls, "the old one is kept"
    if "green" in client.deployments:  # created, then failed: kept for its logs, and the message says how
        assert f"az ml online-deployment get-logs --endpoint-name {ENDPOINT} --name green" in message


def test_a_failure_before_the_new_deployment_takes_traffic_on_a_new_endpoint(
    bundle: Path, scoring: BundleModel, settings
) -> None:
    client = FakeMLClient(scoring, fail={"invoke:blue#1": sdk_error("502")})
    with pytest.raises(TopicliError, match="it takes no traffic, and blue is kept for its logs"):
        Rollout(settings, client).run(bundle)
    assert live(client) == ({}, {})


def test_deleting_the_old_deployment_fails_after_the_switch(bundle: Path, scoring: BundleModel, settings) -> None:
    client = FakeMLClient(scoring)
    Rollout(settings, client).run(bundle)
    client.fail["delete"] = sdk_error("(Conflict) busy")
    with pytest.raises(TopicliError, match="deleting deployment blue: Azure refused the request"):
        Rollout(settings, client).run(bundle)
    assert live(client) == ({"green": 100}, {}), "the new deployment passed every gate and keeps the traffic"


def test_stages_set_to_zero_are_skipped(bundle: Path, scoring: BundleModel, settings, monkeypatch) -> None:
    monkeypatch.setenv("TOPICLI_DEPLOY_MIRROR_PERCENT", "0")
    monkeypatch.setenv("TOPICLI_DEPLOY_CANARY_PERCENT", "25")
    settings = load_settings(None)
    client = FakeMLClient(scoring)
    Rollout(settings, client).run(bundle)
    client.calls.clear()
    result = Rollout(settings, client).run(bundle, keep_old=True)
    assert result.stages == ["smoke", "canary", "all"] and result.deleted == []
    assert [call for call in client.calls if call[0] == "traffic"] == [
        ("traffic", '{"blue": 75, "green": 25}', "{}"),
        ("traffic", '{"green": 100}', "{}"),
    ]


def test_a_registered_model_deploys_without_registering(bundle: Path, scoring: BundleModel, settings) -> None:
    client = FakeMLClient(scoring)
    Rollout(settings, client).run(bundle)
    Rollout(settings, client).run(bundle)  # versions 1 and 2
    client.calls.clear()
    result = Rollout(settings, client).run(None, azureml.model_reference("topicli-bundle:1", settings))
    assert result.model == "topicli-bundle:1" and not [c for c in client.calls if c[0] == "register"]
    latest = Rollout(settings, client).run(None, azureml.model_reference("latest", settings))
    assert latest.model == "topicli-bundle:2"
    with pytest.raises(TopicliError, match=r"model topicli-bundle:9 is not registered"):
        Rollout(settings, client).run(None, azureml.model_reference("topicli-bundle:9", settings))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("latest", "topicli-bundle@latest"), ("m:3", "m:3"), ("m@latest", "m@latest"), ("m", "m@latest")],
)
def test_model_references(text: str, expected: str, settings) -> None:
    assert str(azureml.model_reference(text, settings)) == expected


def test_a_bad_model_reference_is_refused(settings) -> None:
    with pytest.raises(TopicliError, match="write NAME:VERSION, NAME@latest or latest"):
        azureml.model_reference("m:1:2", settings)


def test_rollback_moves_traffic_to_the_kept_deployment(bundle: Path, scoring: BundleModel, settings) -> None:
    client = FakeMLClient(scoring)
    Rollout(settings, client).run(bundle)
    Rollout(settings, client).run(bundle, keep_old=True)
    assert live(client) == ({"green": 100}, {})
    result = Rollout(settings, client).rollback()
    assert (result.deployment, result.model, result.previous) == ("blue", "topicli-bundle:1", "green")
    assert live(client) == ({"blue": 100}, {})


def test_rollback_refuses_an_unhealthy_previous_deployment(bundle: Path, scoring: BundleModel, settings) -> None:
    client = FakeMLClient(scoring)
    Rollout(settings, client).run(bundle)
    Rollout(settings, client).run(bundle, keep_old=True)
    client.fail["invoke:blue#2"] = sdk_error("502")
    with pytest.raises(TopicliError, match="deployment blue failed its smoke request at the rollback stage"):
        Rollout(settings, client).rollback()
    assert live(client) == ({"green": 100}, {})


def test_rollback_redeploys_the_previous_model_once_its_deployment_is_gone(
    bundle: Path, scoring: BundleModel, settings
) -> None:
    client = FakeMLClient(scoring)
    Rollout(settings, client).run(bundle)
    second = Rollout(settings, client).run(bundle)
    assert list(client.deployments) == ["green"]
    with pytest.raises(TopicliError, match="no previous model is recorded"):
        Rollout(settings, client).rollback()
    result = Rollout(settings, client).rollback(second.previous_model)
    assert (result.deployment, result.model) == ("blue", "topicli-bundle:1")
    assert live(client) == ({"blue": 100}, {})


def test_the_default_endpoint_name_is_unique_per_workspace_and_region(monkeypatch) -> None:
    for name, value in WORKSPACE.items():
        monkeypatch.setenv(name, value)
    here = azureml.endpoint_name(load_settings(None))
    monkeypatch.setenv("TOPICLI_AZURE_LOCATION", "eastus2")
    there = azureml.endpoint_name(load_settings(None))
    monkeypatch.setenv("TOPICLI_AZURE_WORKSPACE", "other")
    other = azureml.endpoint_name(load_settings(None))
    assert len({here, there, other}) == 3 and all(n.startswith("topicli-") and len(n) <= 32 for n in (here, there))


def test_deploy_command_records_the_endpoint_and_score_follows_it(
    bundle: Path, scoring: BundleModel, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in WORKSPACE.items():
        monkeypatch.setenv(name, value)
    client = FakeMLClient(scoring)
    monkeypatch.setattr(azureml, "ml_client", lambda settings: client)
    config = isolated / "topicli.toml"
    config.write_text("# mine\n[azure]\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["deploy", "--bundle", str(bundle), "--config", str(config)])
    assert result.exit_code == 0, result.stderr
    name = load_settings(config).azure.endpoint
    assert name.startswith("topicli-") and name in client.endpoints and "# mine" in config.read_text()
    record = deployed.last(load_settings(config))
    assert record is not None and (record.target, record.endpoint, record.deployment) == ("azure", name, "blue")

    # `topicli score POSTS` now goes to that endpoint, with its key; nothing listens there, so it fails sending.
    sent: list[Any] = []
    monkeypatch.setattr(
        "topicli.cli.score._score", lambda settings, posts, endpoint, output, restart: sent.append(endpoint)
    )
    result = runner.invoke(app, ["score", "posts.csv", "--config", str(config)])
    assert result.exit_code == 0, result.stderr
    assert sent[0].url == f"https://{name}.westeurope.inference.ml.azure.com/score" and sent[0].key == f"key-of-{name}"

    result = runner.invoke(app, ["deploy", "--rollback", "--config", str(config)])
    assert result.exit_code == 2 and "no previous model is recorded" in result.stderr


def test_score_without_a_deployment_says_what_to_do(isolated: Path) -> None:
    result = CliRunner().invoke(app, ["score", "posts.csv"])
    assert result.exit_code == 2
    assert "nothing deployed yet" in result.stderr and "topicli deploy local" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["deploy", "--model", "m:1", "--bundle", "b"], "give one"),
        (["deploy", "--rollback", "--dry-run"], "it takes no --dry-run"),
        (["deploy", "triton", "--rollback", "--aci"], "it takes no --dry-run, --aci"),
    ],
)
def test_deploy_refuses_options_that_do_not_go_together(arguments: list[str], said: str, isolated: Path) -> None:
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2 and said in result.stderr
