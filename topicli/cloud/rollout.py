"""`topicli deploy`'s safe rollout on an Azure ML managed online endpoint, and `--rollback`.

**Blue/green.** The new deployment takes the colour not serving. It is created with no
traffic, then moved forward one stage at a time, each gated on health (the deployment's
provisioning state is Succeeded and a smoke request sent to it alone, `invoke(deployment_name=...)`,
comes back as one topicli result per post):

1. smoke: the gate alone, before any user request reaches it;
2. mirror: `[deploy] mirror_percent` of live requests are copied to it (their answers dropped);
3. canary: it takes `[deploy] canary_percent` of live traffic;
4. all: it takes 100 %.

Each stage runs `[deploy] watch_seconds` before its gate. On the first endpoint there is no
live traffic to mirror or split, so the stages go from smoke to all. A failed gate (or any
failure of Azure on the way) puts all traffic back on the previous deployment, clears the
mirror, keeps the new deployment for its logs and says which `az ml online-deployment get-logs`
command shows them. The previous deployment is deleted only after the new one passed its last
gate, unless `keep_old`.

**Models.** A local bundle is registered as a new version of [azure] model_name; `--model
name:version|name@latest|latest` deploys a registered model as it is, registering nothing.

**Rollback.** `rollback` moves all traffic back to the other deployment when it still exists
(instant); when it was deleted, it deploys the model the previous deployment served (recorded
in `DeployResult.previous_model` and kept by the CLI) through the same stages.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from topicli.cloud import azureml
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


def _quiet(_: str) -> None:
    return None


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
    ) -> None:
        """`endpoint_logs(name)` sends the endpoint's own logs to Log Analytics (`topicli.cloud.monitor`)."""
        self.settings, self.client, self.say, self.sleep = settings, client, on_step, sleep
        self.endpoint_logs = endpoint_logs
        self.endpoint = self.endpoint_name()
        self.stages: list[str] = []

    # What differs between the topicli scoring script and Triton (topicli.cloud.triton_online)

    def endpoint_name(self) -> str:
        return azureml.endpoint_name(self.settings)

    def endpoint_entity(self) -> Any:
        return azureml.endpoint_entity(self.settings)

    def bundle_model(self, bundle: Path) -> Any:
        """The model entity a local bundle is registered as."""
        return azureml.bundle_model(self.settings, azureml.check_bundle(bundle))

    @contextmanager
    def deployment(self, name: str, model: Any, bundle: Path | None) -> Iterator[Any]:
        """The deployment entity of `model`, valid inside the block (its code folder is staged for it)."""
        encoder = azureml.bundle_encoder(bundle) if bundle is not None else None
        env = self._azure(
            "registering the serving environment",
            lambda: self.client.environments.create_or_update(azureml.serving_environment(self.settings, encoder)),
        )
        with tempfile.TemporaryDirectory(prefix="topicli-code-") as code:
            yield azureml.deployment_plan(self.settings, azureml.stage_code(Path(code)), name, model, env).deployment

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
        state = self._azure(
            f"reading deployment {deployment}",
            lambda: self.client.online_deployments.get(name=deployment, endpoint_name=self.endpoint),
        ).provisioning_state
        if state != "Succeeded":
            raise TopicliError(f"deployment {deployment} is {state} at the {stage} stage")
        self.smoke(deployment, stage)

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

    def watch(self, deployment: str, stage: str) -> None:
        self.stages.append(stage)
        self.say(f"{stage}: watching {deployment} for {self.settings.deploy.watch_seconds:g} s")
        self.sleep(self.settings.deploy.watch_seconds)
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

    def create(self, name: str, model: Any, bundle: Path | None) -> None:
        """Create or update deployment `name` (no traffic yet); a failed provisioning names its logs."""
        with self.deployment(name, model, bundle) as entity:
            self.say(f"creating deployment {name} (no traffic yet)")
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
        old = max(traffic, key=traffic.get) if traffic else ""  # type: ignore[arg-type]
        old_model = self._served_model(old) if old else ""
        name = next(colour for colour in azureml.COLOURS if colour != old)
        self.create(name, model, bundle if reference is None else None)
        try:
            self.stages.append("smoke")
            self.gate(name, "smoke")
            if old and deploy.mirror_percent:
                self.say(f"mirror: {deploy.mirror_percent} % of live requests copied to {name}")
                self.set_traffic(traffic, {name: deploy.mirror_percent})
                self.watch(name, "mirror")
            if old and deploy.canary_percent:
                self.say(f"canary: {name} takes {deploy.canary_percent} % of traffic")
                self.set_traffic({old: 100 - deploy.canary_percent, name: deploy.canary_percent}, {})
                self.watch(name, "canary")
            self.say(f"all: {name} takes 100 % of traffic")
            updated = self.set_traffic({name: 100}, {})
            if old:
                self.watch(name, "all")
        except TopicliError as failed:
            raise self._rolled_back(failed, name, old) from failed
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
        )

    def _served_model(self, deployment: str) -> str:
        """`name:version` of the model a deployment serves (its model is an asset id or an entity)."""
        model = self._azure(
            f"reading deployment {deployment}",
            lambda: self.client.online_deployments.get(name=deployment, endpoint_name=self.endpoint),
        ).model
        if isinstance(model, str):  # azureml:/subscriptions/.../models/NAME/versions/VERSION or azureml:NAME:VERSION
            parts = model.replace("azureml:", "").strip("/").split("/")
            return f"{parts[-3]}:{parts[-1]}" if len(parts) >= 3 else parts[-1]
        return f"{model.name}:{model.version}" if model is not None else ""

    def _rolled_back(self, failed: TopicliError, name: str, old: str) -> TopicliError:
        """Traffic back where it was (all on `old`, nothing mirrored), the new deployment kept for its logs."""
        if old:
            self.set_traffic({old: 100}, {})
            where = f"all traffic is back on {old}"
        else:
            where = "it takes no traffic"
        return TopicliError(f"{failed}; {where}, and {name} is kept for its logs: {self.logs_command(name)}")

    def _delete_others(self, keep: str) -> list[str]:
        deployments = self._azure(
            f"listing the deployments of {self.endpoint}",
            lambda: self.client.online_deployments.list(endpoint_name=self.endpoint),
        )
        deleted = []
        for other in [d.name for d in deployments if d.name != keep]:
            self.say(f"deleting the previous deployment {other}")
            self._azure(
                f"deleting deployment {other}",
                lambda other=other: self.client.online_deployments.begin_delete(
                    name=other, endpoint_name=self.endpoint
                ).result(),
            )
            deleted.append(other)
        return deleted

    def rollback(self, previous_model: str = "") -> DeployResult:
        """All traffic to the other deployment if it is there and healthy; else redeploy `previous_model`."""
        endpoint = self._azure(f"reading endpoint {self.endpoint}", self.current_endpoint)
        if endpoint is None:
            raise TopicliError(f"endpoint {self.endpoint} does not exist: nothing to roll back")
        traffic = endpoint.traffic or {}
        serving = max(traffic, key=traffic.get) if traffic else ""
        others = [
            d
            for d in self._azure(
                f"listing the deployments of {self.endpoint}",
                lambda: self.client.online_deployments.list(endpoint_name=self.endpoint),
            )
            if d.name != serving
        ]
        if others:
            previous = others[0].name
            self.gate(previous, "rollback")
            updated = self.set_traffic({previous: 100}, {})
            self.say(f"all traffic back on {previous}")
            served = self._served_model(previous)
            return DeployResult(self.endpoint, previous, served, updated.scoring_uri, [], serving, "", ["rollback"])
        if not previous_model:
            raise TopicliError(
                f"endpoint {self.endpoint} has no deployment besides {serving or 'none'} and no previous model is "
                "recorded; deploy the one you want: topicli deploy --model NAME:VERSION"
            )
        self.say(f"the previous deployment is gone: deploying its model {previous_model} again")
        reference = azureml.model_reference(previous_model, self.settings)
        return self.run(None, reference)
