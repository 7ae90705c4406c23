"""The safe rollout of `topicli deploy` against a fake of MLClient's operations that can fail at every step.

The entities going in and out are the SDK's own (ManagedOnlineEndpoint with traffic and
mirror_traffic, ManagedOnlineDeployment, Model, Environment), and the failures are the SDK's
own exception types. A deployment answers `invoke` with the real scoring code on its own
bundle. Azure Monitor is the real `MonitorManagementClient` on a fake transport that answers
the metrics API with the request series each deployment is given (`FakeMonitor.served`), and
takes the autoscale and alert PUTs.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from azure.ai.ml.entities import Environment, ManagedOnlineDeployment, ManagedOnlineEndpoint, Model
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.transport import HttpTransport
from azure.core.pipeline.transport._requests_basic import RequestsTransportResponse
from typer.testing import CliRunner

from topicli.cli import app
from topicli.cloud import azureml, deployed, metrics
from topicli.cloud.deployed import Passed
from topicli.cloud.rollout import Rollout
from topicli.config import load_settings
from topicli.errors import TopicliError
from topicli.serving.bundle import BundleModel
from topicli.serving.protocol import handle

from .conftest import sdk_error
from .test_serving import run_examples

WORKSPACE = {
    "TOPICLI_AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "TOPICLI_AZURE_RESOURCE_GROUP": "rg",
    "TOPICLI_AZURE_WORKSPACE": "ws",
    "TOPICLI_AZURE_LOCATION": "westeurope",
    "TOPICLI_AZURE_COMPUTE": "cpu-cluster",
    "TOPICLI_DEPLOY_WATCH_SECONDS": "0",
}
ENDPOINT = "topicli-e2e"
HEALTHY = (400, 0, 120.0)  # per deployment and window: 2xx answers, 5xx answers, p95 latency in ms


class Token:
    """A credential that is signed in."""

    def get_token(self, *scopes: str, **options: Any) -> AccessToken:
        return AccessToken("token", 2**31)


class FakeMonitor(HttpTransport):
    """Azure Monitor's side of the wire: the metrics API answers each deployment's `served` figures (HEALTHY
    unless given), spread over three one-minute points; autoscale and alert PUTs are echoed and kept."""

    def __init__(
        self, served: dict[str, tuple[int, int, float | None]] | None = None, endpoint: str = ENDPOINT
    ) -> None:
        self.served, self.endpoint = dict(served or {}), endpoint
        self.queried: list[tuple[str, str]] = []  # (metric, deployment)
        self.put: dict[str, dict[str, Any]] = {}  # autoscale setting or alert rule name -> body
        self.deleted: list[str] = []

    def __enter__(self) -> FakeMonitor:
        return self

    def __exit__(self, *_: Any) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, request: Any, **_: Any) -> RequestsTransportResponse:
        url = urlparse(request.url)
        query = parse_qs(url.query)
        body: Any = {}
        if request.method == "GET" and url.path.endswith("/providers/Microsoft.Insights/metrics"):
            assert url.path.endswith(f"/onlineEndpoints/{self.endpoint}/providers/Microsoft.Insights/metrics"), url.path
            assert query["metricnamespace"] == [metrics.NAMESPACE] and query["interval"] == ["PT1M"]
            deployment = re.search(r"deployment eq '([^']+)'", query["$filter"][0])[1]
            metric = query["metricnames"][0]
            self.queried.append((metric, deployment))
            body = self._metric(metric, deployment, query)
        elif request.method == "PUT":
            name = url.path.rsplit("/", 1)[1]
            self.put[name] = json.loads(request.body)
            body = {"id": url.path, "name": name, **self.put[name]}
        elif request.method == "DELETE":
            self.deleted.append(url.path.rsplit("/", 1)[1])
        else:
            raise AssertionError(f"unexpected {request.method} {request.url}")
        response = requests.Response()
        response.status_code, response._content = 200, json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
        return RequestsTransportResponse(request, response)

    def _metric(self, metric: str, deployment: str, query: dict[str, list[str]]) -> dict[str, Any]:
        ok, errors, p95 = self.served.get(deployment, HEALTHY)
        start = datetime(2026, 1, 1, tzinfo=UTC)

        def points(total: float | None, key: str) -> list[dict[str, Any]]:
            if total is None:
                return []
            share = [total / 3] * 3 if key == "total" else [total] * 3
            return [
                {"timeStamp": (start + timedelta(minutes=i)).isoformat(), key: value} for i, value in enumerate(share)
            ]

        if metric == metrics.REQUESTS:
            assert query["aggregation"] == ["Total"] and "statusCodeClass eq '*'" in query["$filter"][0]
            series = [
                {"metadatavalues": [{"name": {"value": "statuscodeclass"}, "value": code}], "data": points(n, "total")}
                for code, n in (("2xx", ok), ("5xx", errors))
            ]
        else:
            assert metric == metrics.LATENCY and query["aggregation"] == ["Average"]
            series = [{"metadatavalues": [], "data": points(p95, "average")}]
        return {
            "timespan": query["timespan"][0],
            "interval": "PT1M",
            "value": [
                {
                    "id": f"/metrics/{metric}",
                    "type": "Microsoft.Insights/metrics",
                    "name": {"value": metric},
                    "unit": "Count",
                    "timeseries": series,
                }
            ],
        }


def monitor_of(transport: FakeMonitor, settings) -> Any:
    return metrics.monitor_client(settings, Token(), transport=transport)


def rollout(settings, client: FakeMLClient, transport: FakeMonitor | None = None, **options: Any) -> Rollout:
    """A Rollout on the fake client, reading metrics from `transport` (healthy figures when none is given)."""
    return Rollout(settings, client, monitor=monitor_of(transport or FakeMonitor(), settings), **options)


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
        self.loaded: dict[str, BundleModel] = {}
        self.models, self.environments = _Models(self), _Environments(self)
        self.online_endpoints, self.online_deployments = _Endpoints(self), _Deployments(self)

    def bundle_of(self, deployment: str) -> BundleModel:
        """The scoring model of the bundle that `deployment`'s registered model holds (loaded once per path)."""
        path = self.deployments[deployment].model.path
        if path not in self.loaded:
            self.loaded[path] = BundleModel.load(Path(path))
        return self.loaded[path]

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
        status, body = handle(self.client.bundle_of(deployment_name), Path(request_file).read_bytes())
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
            assert (Path(deployment.code_configuration.code) / "topicli" / "serving" / "bundle" / "model.py").is_file()
        self.client.calls.append(("deployment", deployment.name, f"{deployment.model.name}:{deployment.model.version}"))

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
    result = rollout(settings, client, on_step=said.append).run(bundle)
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
    rollout(settings, client).run(bundle)
    client.calls.clear()
    slept: list[float] = []
    result = rollout(settings, client, sleep=slept.append).run(bundle)
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
        ("traffic", '{"blue": 90, "green": 10}', "{}"),
        ("traffic", '{"green": 100}', "{}"),
        ("invoke", "green"),
        ("delete", "blue"),
    ]
    assert slept == [0.0, 0.0, 0.0]  # each stage watched for [deploy] watch_seconds
    # Mirror and canary were gated on both deployments' live metrics, each gate's figures kept.
    assert [(g["stage"], g["passed"], g["candidate"]["requests"], g["old"]["requests"]) for g in result.gates] == [
        ("mirror", True, 400, 400),
        ("canary", True, 400, 400),
    ]


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
    "state:green": (("unused", "ResourceNotFoundError"), "is Failed at the smoke stage"),
    "traffic:canary": (("(Conflict) endpoint busy",), "setting the traffic"),
    "traffic:all": (("(Conflict) endpoint busy",), "setting the traffic"),
    "invoke:green#2": (("(502) bad gateway",), "all stage"),
}


@pytest.mark.parametrize("step", list(FAILURES))
def test_a_failure_at_any_step_leaves_all_traffic_on_the_old_deployment(
    step: str, bundle: Path, scoring: BundleModel, settings
) -> None:
    client = FakeMLClient(scoring)
    rollout(settings, client).run(bundle)
    error, said = FAILURES[step]
    client.fail[step] = sdk_error(*error)
    client.calls.clear()
    with pytest.raises(TopicliError) as failed:
        rollout(settings, client).run(bundle)
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
        rollout(settings, client).run(bundle)
    assert live(client) == ({}, {})


def test_deleting_the_old_deployment_fails_after_the_switch(bundle: Path, scoring: BundleModel, settings) -> None:
    client = FakeMLClient(scoring)
    rollout(settings, client).run(bundle)
    client.fail["delete"] = sdk_error("(Conflict) busy")
    with pytest.raises(TopicliError, match="deleting deployment blue: Azure refused the request"):
        rollout(settings, client).run(bundle)
    assert live(client) == ({"green": 100}, {}), "the new deployment passed every gate and keeps the traffic"


def test_stages_set_to_zero_are_skipped(bundle: Path, scoring: BundleModel, settings, monkeypatch) -> None:
    monkeypatch.setenv("TOPICLI_DEPLOY_MIRROR_PERCENT", "0")
    monkeypatch.setenv("TOPICLI_DEPLOY_CANARY_PERCENT", "25")
    settings = load_settings(None)
    client = FakeMLClient(scoring)
    rollout(settings, client).run(bundle)
    client.calls.clear()
    result = rollout(settings, client).run(bundle, keep_old=True)
    assert result.stages == ["smoke", "canary", "all"] and result.deleted == []
    assert [call for call in client.calls if call[0] == "traffic"] == [
        ("traffic", '{"blue": 75, "green": 25}', "{}"),
        ("traffic", '{"green": 100}', "{}"),
    ]


def test_a_registered_model_deploys_without_registering(bundle: Path, scoring: BundleModel, settings) -> None:
    client = FakeMLClient(scoring)
    rollout(settings, client).run(bundle)
    rollout(settings, client).run(bundle)  # versions 1 and 2
    client.calls.clear()
    result = rollout(settings, client).run(None, azureml.model_reference("topicli-bundle:1", settings))
    assert result.model == "topicli-bundle:1" and not [c for c in client.calls if c[0] == "register"]
    latest = rollout(settings, client).run(None, azureml.model_reference("latest", settings))
    assert latest.model == "topicli-bundle:2"
    with pytest.raises(TopicliError, match=r"model topicli-bundle:9 is not registered"):
        rollout(settings, client).run(None, azureml.model_reference("topicli-bundle:9", settings))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("latest", "topicli-bundle@latest"), ("m:3", "m:3"), ("m@latest", "m@latest"), ("m", "m@latest")],
)
def test_model_references(text: str, expected: str, settings) -> None:
    assert str(azureml.model_reference(text, settings)) == expected


def test_a_bad_model_reference_is_refused(settings) -> None:
    with pytest.raises(TopicliError, match="write NAME:VERSION, NAME@latest or latest"):
        azureml.model_reference("m:1:2", settings)


def passed(*results: Any) -> list[Passed]:
    """The history the CLI keeps after these rollouts passed."""
    return [Passed(r.deployment, r.model, "") for r in results]


def test_rollback_moves_traffic_to_the_kept_deployment(bundle: Path, scoring: BundleModel, settings) -> None:
    client = FakeMLClient(scoring)
    first = rollout(settings, client).run(bundle)
    second = rollout(settings, client).run(bundle, keep_old=True)
    assert live(client) == ({"green": 100}, {})
    result = rollout(settings, client, history=passed(first, second)).rollback()
    assert (result.deployment, result.model, result.previous) == ("blue", "topicli-bundle:1", "green")
    assert live(client) == ({"blue": 100}, {})


def test_rollback_refuses_an_unhealthy_previous_deployment(bundle: Path, scoring: BundleModel, settings) -> None:
    client = FakeMLClient(scoring)
    first = rollout(settings, client).run(bundle)
    second = rollout(settings, client).run(bundle, keep_old=True)
    client.fail["invoke:blue#2"] = sdk_error("502")
    with pytest.raises(TopicliError, match="deployment blue failed its smoke request at the rollback stage"):
        rollout(settings, client, history=passed(first, second)).rollback()
    assert live(client) == ({"green": 100}, {})


def test_rollback_redeploys_the_previous_model_once_its_deployment_is_gone(
    bundle: Path, scoring: BundleModel, settings
) -> None:
    client = FakeMLClient(scoring)
    first = rollout(settings, client).run(bundle)
    second = rollout(settings, client).run(bundle)
    assert list(client.deployments) == ["green"]
    with pytest.raises(TopicliError, match="no deployment that passed every gate served another model"):
        rollout(settings, client, history=passed(second)).rollback()
    result = rollout(settings, client, history=passed(first, second)).rollback()
    assert (result.deployment, result.model) == ("blue", "topicli-bundle:1")
    assert live(client) == ({"blue": 100}, {})


# Live-metric gates: what each deployment served in the stage's window, and the verdict.
SCENARIOS = {
    "healthy": ((380, 2, 130.0), None),
    "failing": ((300, 60, 135.0), "5xx share 16.67% above the old 0.00%"),
    "slow": ((400, 0, 900.0), "p95 900 ms above 1.5 x the old 120 ms"),
    "too few requests": ((12, 0, 110.0), "12 requests, fewer than [deploy] min_requests (50)"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_mirror_and_canary_promote_only_on_live_metrics(
    scenario: str, bundle: Path, scoring: BundleModel, settings
) -> None:
    served, failure = SCENARIOS[scenario]
    client = FakeMLClient(scoring)
    rollout(settings, client).run(bundle)
    transport = FakeMonitor({"green": served})
    said: list[str] = []
    candidate = rollout(settings, client, transport, on_step=said.append)
    if failure is None:
        result = candidate.run(bundle)
        assert live(client) == ({"green": 100}, {}) and result.stages == ["smoke", "mirror", "canary", "all"]
        assert [gate["passed"] for gate in result.gates] == [True, True]
        assert result.gates[0]["candidate"] == {"requests": 382, "errors": 2, "p95_ms": 130.0, "error_share": 0.005236}
        assert result.gates[0]["old"]["requests"] == 400 and result.gates[0]["old_deployment"] == "blue"
        assert any(line.startswith("mirror gate passed (green: 382 requests, 5xx 0.52%, p95 130 ms") for line in said)
        # The new deployment got its autoscale setting and the endpoint its alerts; blue's setting went with blue.
        autoscale = transport.put[f"{ENDPOINT}-green-autoscale"]["properties"]
        assert autoscale["targetResourceUri"].endswith(f"/onlineEndpoints/{ENDPOINT}/deployments/green")
        (profile,) = autoscale["profiles"]
        assert profile["capacity"] == {"minimum": "3", "maximum": "10", "default": "3"}
        triggers = [(r["metricTrigger"]["metricName"], r["scaleAction"]["direction"]) for r in profile["rules"]]
        assert triggers == [
            ("CpuUtilizationPercentage", "Increase"),
            ("CpuUtilizationPercentage", "Decrease"),
            ("RequestsPerMinute", "Increase"),
        ]
        assert profile["rules"][2]["metricTrigger"]["dividePerInstance"] is True
        assert {f"{ENDPOINT}-5xx", f"{ENDPOINT}-latency"} <= set(transport.put)
        assert transport.deleted == [f"{ENDPOINT}-blue-autoscale"]
        return
    with pytest.raises(TopicliError) as stopped:
        candidate.run(bundle)
    assert "failed its mirror gate failed: " in str(stopped.value) and failure in str(stopped.value)
    assert live(client) == ({"blue": 100}, {}), "all traffic back on the old deployment, nothing mirrored"
    assert [gate.stage for gate in candidate.gates] == ["mirror"] and not candidate.gates[0].passed
    assert {(metrics.REQUESTS, "green"), (metrics.REQUESTS, "blue"), (metrics.LATENCY, "green")} <= set(
        transport.queried
    )
    assert f"{ENDPOINT}-green-autoscale" not in transport.put, "no capacity for a candidate that failed"


def test_a_failing_canary_is_stopped_after_a_healthy_mirror(bundle: Path, scoring: BundleModel, settings) -> None:
    client = FakeMLClient(scoring)
    rollout(settings, client).run(bundle)

    class FailsUnderLoad(FakeMonitor):
        def _metric(self, metric: str, deployment: str, query: dict[str, list[str]]) -> dict[str, Any]:
            canary = sum(1 for m, d in self.queried if m == metrics.REQUESTS and d == "green") > 1
            self.served["green"] = (300, 45, 140.0) if canary else HEALTHY
            return super()._metric(metric, deployment, query)

    candidate = rollout(settings, client, FailsUnderLoad())
    with pytest.raises(TopicliError, match=r"failed its canary gate failed: 5xx share 13\.04%"):
        candidate.run(bundle)
    assert [(g.stage, g.passed) for g in candidate.gates] == [("mirror", True), ("canary", False)]
    assert live(client) == ({"blue": 100}, {})


def test_a_new_deployment_starts_at_the_live_ones_instance_count(bundle: Path, scoring: BundleModel, settings) -> None:
    client = FakeMLClient(scoring)
    first = rollout(settings, client).run(bundle)
    assert first.instances == 3 and client.deployments["blue"].instance_count == 3  # [azure] instance_count
    client.deployments["blue"].instance_count = 7  # autoscale grew it under load
    second = rollout(settings, client).run(bundle)
    assert second.instances == 7 and client.deployments["green"].instance_count == 7


def test_the_gate_rules(settings) -> None:
    rules = settings.deploy
    old = metrics.Figures(1000, 10, 200.0)
    assert metrics.judge("canary", "green", metrics.Figures(100, 2, 299.0), "blue", old, rules).passed
    # 2 % + 1 point is the most the new one may answer 5xx; 1.5 x 200 ms its p95.
    assert not metrics.judge("canary", "green", metrics.Figures(100, 3, 200.0), "blue", old, rules).passed
    assert not metrics.judge("canary", "green", metrics.Figures(100, 0, 301.0), "blue", old, rules).passed
    none = metrics.judge("canary", "green", metrics.Figures(0, 0, None), "blue", old, rules)
    assert none.failed == ["0 requests, fewer than [deploy] min_requests (50)"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, bundle: Path) -> list[Path]:
    """Three distinct bundles: the shipped topics, then the same topics named "... v2" and "... v3"."""
    made = [bundle]
    shipped = (Path(azureml.PACKAGE_ROOT) / "data" / "topics.txt").read_text(encoding="utf-8").splitlines()
    for version in (2, 3):
        folder = tmp_path_factory.mktemp(f"bundle-v{version}")
        topics = folder / "topics.txt"
        renamed = [
            line if line.startswith("#") or ":" not in line else line.replace(":", f" v{version}:", 1)
            for line in shipped
        ]
        topics.write_text("\n".join(renamed) + "\n", encoding="utf-8")
        made.append(run_examples(folder, cache_dir, "--topics", str(topics)) / "bundle")
    return made


def version_served(client: FakeMLClient) -> int:
    """Which of the three bundles answers the endpoint's live traffic: scored by the deployment with 100 %."""
    (serving,) = [name for name, share in live(client)[0].items() if share == 100]
    request = json.dumps({"data": ["Homemade pasta with basil", "Leg day at the gym", "Sunset over the sea"]})
    status, body = handle(client.bundle_of(serving), request.encode())
    assert status == 200
    topics = {post["topic"] for post in body["results"]} - {None}
    assert topics
    found = {2 if t.endswith(" v2") else 3 if t.endswith(" v3") else 1 for t in topics}
    assert len(found) == 1, topics
    return found.pop()


def test_three_bundles_through_keep_old_a_failing_gate_and_rollback(
    bundles: list[Path], scoring: BundleModel, settings, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v1, then v2 with --keep-old, then v3 failing its mirror gate, then --rollback: through the CLI, which keeps
    deployed.json's history. v3 must not take v1's colour, and the rollback must land on v1, never on v3."""
    client = FakeMLClient(scoring)
    transport = FakeMonitor()
    monkeypatch.setattr(azureml, "ml_client", lambda settings: client)
    monkeypatch.setattr("topicli.cli.deploy._monitor", lambda settings: monitor_of(transport, settings))
    runner = CliRunner()

    def deploy(*arguments: str) -> Any:
        return runner.invoke(app, ["deploy", *arguments])

    result = deploy("--bundle", str(bundles[0]))
    assert result.exit_code == 0, result.stderr
    assert version_served(client) == 1 and live(client) == ({"blue": 100}, {})

    result = deploy("--bundle", str(bundles[1]), "--keep-old")
    assert result.exit_code == 0, result.stderr
    assert version_served(client) == 2 and live(client) == ({"green": 100}, {})
    assert "mirror gate: green 400 requests, 5xx 0.00%, p95 120.0 ms; blue 400 requests" in result.stdout
    assert set(client.deployments) == {"blue", "green"}

    transport.served["red"] = (200, 50, 150.0)  # v3 answers a fifth of its mirrored requests with 5xx
    result = deploy("--bundle", str(bundles[2]))
    assert result.exit_code == 2 and "failed its mirror gate failed: 5xx share 20.00%" in result.stderr
    assert version_served(client) == 2 and live(client) == ({"green": 100}, {})
    assert [call for call in client.calls if call[0] == "deployment"][-1] == ("deployment", "red", "topicli-bundle:3")
    assert client.deployments["blue"].model.path == str(bundles[0].resolve()), "v1's deployment was not touched"
    record = json.loads((isolated / "topicli-out" / "deployed.json").read_text(encoding="utf-8"))
    assert record["failed"] and record["gates"][0]["candidate"]["errors"] == 50 and not record["gates"][0]["passed"]
    assert [(e["deployment"], e["model"]) for e in record["history"]] == [
        ("blue", "topicli-bundle:1"),
        ("green", "topicli-bundle:2"),
    ]

    result = deploy("--rollback")
    assert result.exit_code == 0, result.stderr
    assert version_served(client) == 1 and live(client) == ({"blue": 100}, {})
    record = json.loads((isolated / "topicli-out" / "deployed.json").read_text(encoding="utf-8"))
    assert (record["deployment"], record["model"]) == ("blue", "topicli-bundle:1")
    assert [(e["model"], e["rolled_back"]) for e in record["history"]] == [
        ("topicli-bundle:1", False),
        ("topicli-bundle:2", True),
    ]
    # Nothing passed before v1: a second rollback has nowhere to go, and says so.
    result = deploy("--rollback")
    assert result.exit_code == 2 and "no deployment that passed every gate" in result.stderr
    assert version_served(client) == 1


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
    monkeypatch.setattr("topicli.cli.deploy._monitor", lambda settings: monitor_of(FakeMonitor(), settings))
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
        "topicli.cli.score._score", lambda settings, posts, endpoint, output, restart: sent.append(endpoint())
    )
    result = runner.invoke(app, ["score", "posts.csv", "--config", str(config)])
    assert result.exit_code == 0, result.stderr
    assert sent[0].url == f"https://{name}.westeurope.inference.ml.azure.com/score" and sent[0].key == f"key-of-{name}"

    result = runner.invoke(app, ["deploy", "--rollback", "--config", str(config)])
    assert result.exit_code == 2 and "no deployment that passed every gate" in result.stderr


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


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("TOPICLI_SERVING_TIMEOUT", "300", "[serving] timeout (300 s) is above 180 s"),
        ("TOPICLI_AZURE_INSTANCE_TYPE", "Standard_X9_v9", "is no VM size of managed online endpoints"),
        ("TOPICLI_AZURE_INSTANCE_COUNT", "0", "[azure] instance_count must be between 1 and 50"),
        ("TOPICLI_AZURE_AUTOSCALE_MAX", "2", "instance_count (3) must lie between autoscale_min (3) and autoscale_max"),
    ],
)
def test_azure_limits_are_checked_before_any_call(
    variable: str, value: str, said: str, bundle: Path, scoring: BundleModel, settings, monkeypatch, isolated: Path
) -> None:
    client = FakeMLClient(scoring)
    monkeypatch.setattr(azureml, "ml_client", lambda settings: client)
    monkeypatch.setattr("topicli.cli.deploy._monitor", lambda settings: monitor_of(FakeMonitor(), settings))
    monkeypatch.setenv(variable, value)
    for arguments in (["deploy", "--bundle", str(bundle)], ["deploy", "--dry-run", "--bundle", str(bundle)]):
        result = CliRunner().invoke(app, arguments)
        assert result.exit_code == 2 and said in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert client.calls == [], "nothing was sent"
