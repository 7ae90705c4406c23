"""`topicli deploy`'s safe rollout on an Azure ML managed online endpoint, and `--rollback`.

**Colours.** The new deployment takes a colour (blue, green, red) that holds no deployment;
when all three are taken, one that neither serves nor holds a deployment that passed every
gate (`history`, from `deployed.json`). It never replaces the live deployment or one kept for
a rollback. It is created with no traffic, at the live deployment's instance count (autoscale
may have moved it) or [azure] instance_count on a new endpoint, then moved forward one stage
at a time, each gated:

1. smoke: provisioning Succeeded and a smoke request sent to it alone (`invoke(deployment_name=...)`)
   comes back as one topicli result per post, before any user request reaches it;
2. mirror: `[deploy] mirror_percent` of live requests are copied to it (their answers dropped);
3. canary: it takes `[deploy] canary_percent` of live traffic;
4. all: it takes 100 %, and passes the smoke gate again.

Mirror and canary are gated on live metrics (`topicli.cloud.metrics`): over the stage's
`[deploy] watch_seconds`, the new deployment must have served `[deploy] min_requests`, with a
5xx share and a p95 latency within bounds of the old one's. Each gate's figures are printed and
kept (`DeployResult.gates`, `gates` when a rollout fails). On the first endpoint there is no
live traffic to mirror or split, so the stages go from smoke to all. A failed gate (or any
failure of Azure on the way) puts all traffic back on the previous deployment, clears the
mirror, keeps the new deployment for its logs and says which `az ml online-deployment get-logs`
command shows them. Once the new deployment passed its last gate it gets its autoscale setting
and the endpoint its alert rules (`topicli.cloud.capacity`); then the other deployments are
deleted, unless `keep_old`.

**Models.** A local bundle is registered as a new version of [azure] model_name; `--model
name:version|name@latest|latest` deploys a registered model as it is, registering nothing.

**Rollback.** `rollback` goes to the last deployment in `history` (deployments that passed
every gate) that serves another model than the live one: all traffic to it when it still
serves that model (instant, after a smoke gate); else that model deployed again through the
same stages. A candidate that failed a gate is never in `history`, so never a rollback target.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from topicli.cloud import azureml, capacity, metrics
from topicli.cloud.deployed import Passed
from topicli.cloud.errors import cloud_error, first_line, is_quota
from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.serving.client import TOPICLI_JSON, WireProtocol

SMOKE_POSTS = ["Morning espresso before the run", "Our puppy met the neighbours' cat"]
Step = Callable[[str], None]


@dataclass(frozen=True)
class DeployResult:
    endpoint: str
    deployment: str
    model: str  # name:version
    scoring_uri: str
    deleted: list[str]
    previous: str = ""  # the deployment that served before, "" on a new endpoint
    previous_model: str = ""  # name:version it served
    stages: list[str] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)  # the metric gates, with their figures
    instances: int = 0  # instances the deployment was created with
    capacity: list[str] = field(default_factory=list)  # autoscale setting and alert rules put


def _quiet(_: str) -> None:
    return None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Rollout:
    """One rollout of a model onto the [azure] endpoint through `client` (MLClient or a fake of its operations)."""

    protocol: WireProtocol = TOPICLI_JSON  # what the smoke request speaks

    def __init__(
        self,
        settings: Settings,
        client: Any,
        on_step: Step = _quiet,
        sleep: Callable[[float], None] = time.sleep,
        endpoint_logs: Callable[[str], Any] | None = None,
        monitor: Any | None = None,
        history: Sequence[Passed] = (),
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        """`endpoint_logs(name)` sends the endpoint's own logs to Log Analytics (`topicli.cloud.monitor`);
        `monitor` is Azure Monitor's client (`metrics.monitor_client`), which the metric gates read and the
        autoscale setting and alerts are put through; `history` the deployments that passed every gate."""
        azureml.check_limits(settings)  # before any call to Azure
        self.settings, self.client, self.say, self.sleep, self.now = settings, client, on_step, sleep, now
        self.endpoint_logs, self.monitor, self.history = endpoint_logs, monitor, list(history)
        self.endpoint = self.endpoint_name()
        self.stages: list[str] = []
        self.gates: list[metrics.Gate] = []

    # What differs between the topicli scoring script and Triton (topicli.cloud.triton_online)

    def endpoint_name(self) -> str:
        return azureml.endpoint_name(self.settings)

    def endpoint_entity(self) -> Any:
        return azureml.endpoint_entity(self.settings)

    def bundle_model(self, bundle: Path) -> Any:
        """The model entity a local bundle is registered as."""
        return azureml.bundle_model(self.settings, azureml.check_bundle(bundle))

    @contextmanager
    def deployment(self, name: str, model: Any, bundle: Path | None, instances: int) -> Iterator[Any]:
        """The deployment entity of `model` on `instances`, valid inside the block (its code folder is staged)."""
        encoder = azureml.bundle_encoder(bundle) if bundle is not None else None
        env = self._azure(
            "registering the serving environment",
            lambda: self.client.environments.create_or_update(azureml.serving_environment(self.settings, encoder)),
        )
        with tempfile.TemporaryDirectory(prefix="topicli-code-") as code:
            staged = azureml.stage_code(Path(code))
            yield azureml.deployment_plan(self.settings, staged, name, model, env, instances).deployment

    def send_smoke(self, deployment: str, body: dict[str, Any]) -> str:
        """Send `body` to `deployment` alone; its answer's text."""
        with tempfile.TemporaryDirectory(prefix="topicli-smoke-") as folder:
            request = Path(folder) / "request.json"
            request.write_text(json.dumps(body), encoding="utf-8")
            return self.client.online_endpoints.invoke(
                endpoint_name=self.endpoint, deployment_name=deployment, request_file=str(request)
            )

    def logs_command(self, deployment: str) -> str:
        azure = self.settings.azure
        return (
            f"az ml online-deployment get-logs --endpoint-name {self.endpoint} --name {deployment} "
            f"--resource-group {azure.resource_group} --workspace-name {azure.workspace}"
        )

    # Azure, one call each; a failure becomes one line that says which step failed.

    def _azure(self, doing: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except TopicliError:
            raise
        except Exception as error:
            translated = cloud_error(error, doing)
            if translated is None:
                raise
            raise translated from error

    def current_endpoint(self) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.client.online_endpoints.get(self.endpoint)
        except ResourceNotFoundError:
            return None

    def set_traffic(self, traffic: dict[str, int], mirror: dict[str, int]) -> Any:
        """Put the endpoint's traffic and mirror traffic as given (Azure wants the whole maps)."""

        def update() -> Any:
            endpoint = self.client.online_endpoints.get(self.endpoint)
            endpoint.traffic = traffic
            endpoint.mirror_traffic = mirror
            return self.client.online_endpoints.begin_create_or_update(endpoint).result()

        return self._azure(f"setting the traffic of endpoint {self.endpoint}", update)

    # Health

    def gate(self, deployment: str, stage: str) -> None:
        """The deployment is Succeeded and answers a smoke request; else a TopicliError naming the stage."""
        self.provisioned(deployment, stage)
        self.smoke(deployment, stage)

    def provisioned(self, deployment: str, stage: str) -> None:
        state = self._azure(
            f"reading deployment {deployment}",
            lambda: self.client.online_deployments.get(name=deployment, endpoint_name=self.endpoint),
        ).provisioning_state
        if state != "Succeeded":
            raise TopicliError(f"deployment {deployment} is {state} at the {stage} stage")

    def smoke(self, deployment: str, stage: str) -> None:
        """A request to the deployment alone; it must answer with a topic for every post."""
        ids = list(range(len(SMOKE_POSTS)))
        try:
            answer = self.send_smoke(deployment, self.protocol.body(ids, SMOKE_POSTS))
            results = self.protocol.results(httpx.Response(200, text=answer), ids, f"deployment {deployment}")
            ok = all(r["topic"] is not None or r["cluster"] is not None for r in results)
        except Exception as error:  # any failure of the new deployment is a failed gate
            ok, answer = False, f"{type(error).__name__}: {error}"
        if not ok:
            said = " ".join(str(answer).split())[:200]
            raise TopicliError(f"deployment {deployment} failed its smoke request at the {stage} stage ({said})")

    def live_gate(self, deployment: str, old: str, stage: str, start: datetime) -> None:
        """The live-metrics gate of `stage`: `deployment` against `old` since `start`; printed and kept."""
        if self.monitor is None:
            raise TopicliError(f"the {stage} gate reads Azure Monitor's metrics, and no Azure Monitor client was given")
        end = self.now()

        def read(name: str) -> metrics.Figures:
            return self._azure(
                f"reading the request metrics of deployment {name} from Azure Monitor",
                lambda: metrics.figures(self.monitor, self.settings, self.endpoint, name, start, end),
            )

        gate = metrics.judge(stage, deployment, read(deployment), old, read(old), self.settings.deploy)
        self.gates.append(gate)
        self.say(gate.line())
        if not gate.passed:
            raise TopicliError(f"deployment {deployment} failed its {gate.line()}")

    def watch(self, deployment: str, stage: str, old: str = "") -> None:
        """Run `stage` for [deploy] watch_seconds, then its gate: live metrics for mirror and canary, else smoke."""
        self.stages.append(stage)
        start = self.now()
        self.say(f"{stage}: watching {deployment} for {self.settings.deploy.watch_seconds:g} s")
        self.sleep(self.settings.deploy.watch_seconds)
        if stage in ("mirror", "canary"):
            self.provisioned(deployment, stage)
            self.live_gate(deployment, old, stage, start)
        else:
            self.gate(deployment, stage)

    # The rollout

    def model(self, bundle: Path | None, reference: azureml.ModelReference | None) -> Any:
        if reference is not None:
            model = self._azure(f"finding model {reference}", lambda: azureml.registered_model(self.client, reference))
            self.say(f"model {model.name}:{model.version} (registered, used as it is)")
            return model
        entity = self.bundle_model(bundle)  # type: ignore[arg-type]
        model = self._azure(f"registering {bundle}", lambda: self.client.models.create_or_update(entity))
        self.say(f"registered {bundle} as model {model.name}:{model.version}")
        return model

    def create(self, name: str, model: Any, bundle: Path | None, instances: int) -> None:
        """Create or update deployment `name` (no traffic yet); a failed provisioning names its logs."""
        with self.deployment(name, model, bundle, instances) as entity:
            self.say(f"creating deployment {name} on {instances} instances (no traffic yet)")
            try:
                self.client.online_deployments.begin_create_or_update(entity).result()
            except Exception as error:
                translated = cloud_error(error, f"creating deployment {name}")
                if translated is None:
                    raise
                if is_quota(error):
                    raise translated from error
                raise TopicliError(
                    f"deployment {name} of endpoint {self.endpoint} failed to provision ({first_line(str(error))}); "
                    f"its logs: {self.logs_command(name)}"
                ) from error

    def run(
        self, bundle: Path | None, reference: azureml.ModelReference | None = None, keep_old: bool = False
    ) -> DeployResult:
        deploy = self.settings.deploy
        model = self.model(bundle, reference)
        endpoint = self.current_endpoint()
        if endpoint is None:
            self.say(f"creating endpoint {self.endpoint} (key auth)")
            self._azure(
                f"creating endpoint {self.endpoint}",
                lambda: self.client.online_endpoints.begin_create_or_update(self.endpoint_entity()).result(),
            )
            traffic: dict[str, int] = {}
        else:
            traffic = {name: share for name, share in (endpoint.traffic or {}).items() if share}
        if self.endpoint_logs is not None:
            logs = self.endpoint_logs
            self._azure(f"sending the logs of endpoint {self.endpoint} to Log Analytics", lambda: logs(self.endpoint))
            self.say(f"endpoint {self.endpoint}: console, traffic and event logs go to Log Analytics")
        existing = {d.name: d for d in self._deployments()} if endpoint is not None else {}
        old = max(traffic, key=traffic.get) if traffic else ""  # type: ignore[arg-type]
        old_model = _model_of(existing[old]) if old in existing else ""
        instances = getattr(existing.get(old), "instance_count", None) or self.settings.azure.instance_count
        name = self._colour(existing, old)
        self.create(name, model, bundle if reference is None else None, instances)
        try:
            self.stages.append("smoke")
            self.gate(name, "smoke")
            if old and deploy.mirror_percent:
                self.say(f"mirror: {deploy.mirror_percent} % of live requests copied to {name}")
                self.set_traffic(traffic, {name: deploy.mirror_percent})
                self.watch(name, "mirror", old)
            if old and deploy.canary_percent:
                self.say(f"canary: {name} takes {deploy.canary_percent} % of traffic")
                self.set_traffic({old: 100 - deploy.canary_percent, name: deploy.canary_percent}, {})
                self.watch(name, "canary", old)
            self.say(f"all: {name} takes 100 % of traffic")
            updated = self.set_traffic({name: 100}, {})
            if old:
                self.watch(name, "all")
        except TopicliError as failed:
            raise self._rolled_back(failed, name, old) from failed
        put = self._capacity(name, instances)
        deleted = [] if keep_old else self._delete_others(name)
        return DeployResult(
            self.endpoint,
            name,
            f"{model.name}:{model.version}",
            updated.scoring_uri,
            deleted,
            old,
            old_model,
            self.stages,
            [gate.record() for gate in self.gates],
            instances,
            put,
        )

    def _deployments(self) -> list[Any]:
        return list(
            self._azure(
                f"listing the deployments of {self.endpoint}",
                lambda: self.client.online_deployments.list(endpoint_name=self.endpoint),
            )
        )

    def _colour(self, existing: dict[str, Any], serving: str) -> str:
        """The colour of the new deployment: a free one, else one that holds nothing to keep (see the module)."""
        free = [colour for colour in azureml.COLOURS if colour not in existing]
        if free:
            return free[0]
        kept = {serving} | {
            entry.deployment
            for entry in self.history
            if not entry.rolled_back
            and entry.deployment in existing
            and _model_of(existing[entry.deployment]) == entry.model
        }
        spare = [colour for colour in azureml.COLOURS if colour not in kept]
        if not spare:
            raise TopicliError(
                f"deployments {', '.join(azureml.COLOURS)} of endpoint {self.endpoint} each serve or are kept for "
                "a rollback; delete one first: "
                f"az ml online-deployment delete --endpoint-name {self.endpoint} --name NAME"
            )
        self.say(f"deployment {spare[0]} holds no deployment to keep: the new one replaces it")
        return spare[0]

    def _capacity(self, name: str, instances: int) -> list[str]:
        """Autoscale on the deployment that took all traffic, and the endpoint's alerts (skipped without a monitor)."""
        if self.monitor is None:
            return []
        put = self._azure(
            f"putting the autoscale setting of {name} and the alert rules of {self.endpoint}",
            lambda: capacity.put_capacity(self.monitor, self.settings, self.endpoint, name, instances),
        )
        azure = self.settings.azure
        self.say(
            f"autoscale {put[0]}: {azure.autoscale_min} to {azure.autoscale_max} instances on CPU and requests per "
            f"instance; alert rules {', '.join(put[1:])}"
        )
        return put

    def _served_model(self, deployment: str) -> str:
        """`name:version` of the model a deployment serves."""
        return _model_of(
            self._azure(
                f"reading deployment {deployment}",
                lambda: self.client.online_deployments.get(name=deployment, endpoint_name=self.endpoint),
            )
        )

    def _rolled_back(self, failed: TopicliError, name: str, old: str) -> TopicliError:
        """Traffic back where it was (all on `old`, nothing mirrored), the new deployment kept for its logs."""
        if old:
            self.set_traffic({old: 100}, {})
            where = f"all traffic is back on {old}"
        else:
            where = "it takes no traffic"
        return TopicliError(f"{failed}; {where}, and {name} is kept for its logs: {self.logs_command(name)}")

    def _delete_others(self, keep: str) -> list[str]:
        deleted = []
        for other in [d.name for d in self._deployments() if d.name != keep]:
            self.say(f"deleting the previous deployment {other}")
            self._azure(
                f"deleting deployment {other}",
                lambda other=other: self.client.online_deployments.begin_delete(
                    name=other, endpoint_name=self.endpoint
                ).result(),
            )
            if self.monitor is not None:
                self._azure(
                    f"deleting the autoscale setting of {other}",
                    lambda other=other: capacity.remove_autoscale(self.monitor, self.settings, self.endpoint, other),
                )
            deleted.append(other)
        return deleted

    def rollback(self) -> DeployResult:
        """All traffic to the last deployment that passed every gate with another model than the live one."""
        endpoint = self._azure(f"reading endpoint {self.endpoint}", self.current_endpoint)
        if endpoint is None:
            raise TopicliError(f"endpoint {self.endpoint} does not exist: nothing to roll back")
        traffic = endpoint.traffic or {}
        serving = max(traffic, key=traffic.get) if traffic else ""
        existing = {d.name: d for d in self._deployments()}
        serving_model = _model_of(existing[serving]) if serving in existing else ""
        target = next((p for p in reversed(self.history) if not p.rolled_back and p.model != serving_model), None)
        if target is None:
            raise TopicliError(
                f"no deployment that passed every gate served another model than {serving or 'none'} "
                f"({serving_model or 'nothing'}) on endpoint {self.endpoint}, as deployed.json records; deploy the one "
                "you want: topicli deploy --model NAME:VERSION"
            )
        if target.deployment in existing and _model_of(existing[target.deployment]) == target.model:
            self.stages.append("rollback")
            self.gate(target.deployment, "rollback")
            updated = self.set_traffic({target.deployment: 100}, {})
            self.say(f"all traffic back on {target.deployment} ({target.model})")
            return DeployResult(
                self.endpoint,
                target.deployment,
                target.model,
                updated.scoring_uri,
                [],
                serving,
                serving_model,
                self.stages,
            )
        self.say(f"no deployment serves {target.model} any more: deploying it again")
        return self.run(None, azureml.model_reference(target.model, self.settings))


def _model_of(deployment: Any) -> str:
    """`name:version` of the model a deployment entity serves (its model is an asset id or an entity)."""
    model = deployment.model
    if isinstance(model, str):  # azureml:/subscriptions/.../models/NAME/versions/VERSION or azureml:NAME:VERSION
        parts = model.replace("azureml:", "").strip("/").split("/")
        return f"{parts[-3]}:{parts[-1]}" if len(parts) >= 3 else parts[-1]
    return f"{model.name}:{model.version}" if model is not None else ""
