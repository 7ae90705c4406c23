"""The live request metrics of an online deployment (Azure Monitor), and the promotion gate on them.

Azure ML publishes an online endpoint's request metrics on the endpoint resource
(`Microsoft.MachineLearningServices/workspaces/onlineEndpoints`), split by the `deployment`
dimension: `RequestsPerMinute` (also by `statusCodeClass`: 2xx, 4xx, 5xx) and
`RequestLatency_P95` (milliseconds). Mirrored requests count for the deployment they were
copied to, so the mirror stage has figures although its answers are dropped. They are read
through Azure Monitor's metrics API (`MonitorManagementClient.metrics.list`, azure-mgmt-monitor),
the same client that puts the autoscale setting and the alert rules (`topicli.cloud.capacity`).

The gate (`judge`) compares the new deployment with the old one over the same window:
it passes when the new one served at least `[deploy] min_requests` requests, its 5xx share is
at most the old one's plus `[deploy] max_error_increase`, and its p95 latency is at most
`[deploy] max_latency_ratio` times the old one's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from topicli.config import DeploySettings, Settings

NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
REQUESTS = "RequestsPerMinute"
LATENCY = "RequestLatency_P95"
CLASS = "statusCodeClass"


def endpoint_id(settings: Settings, endpoint: str) -> str:
    azure = settings.azure
    return (
        f"/subscriptions/{azure.subscription_id}/resourceGroups/{azure.resource_group}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{azure.workspace}/onlineEndpoints/{endpoint}"
    )


@dataclass(frozen=True)
class Figures:
    """What one deployment served in a window: requests, of them 5xx answers, and p95 latency (None: none reported)."""

    requests: int
    errors: int
    p95_ms: float | None

    @property
    def error_share(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def text(self) -> str:
        latency = f"p95 {self.p95_ms:.0f} ms" if self.p95_ms is not None else "p95 not reported"
        return f"{self.requests} requests, 5xx {self.error_share:.2%}, {latency}"


@dataclass(frozen=True)
class Gate:
    """One stage's gate on live metrics: the figures of both deployments and what failed (nothing: passed)."""

    stage: str
    deployment: str
    candidate: Figures
    old: str
    baseline: Figures
    failed: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failed

    def line(self) -> str:
        verdict = "passed" if self.passed else "failed: " + "; ".join(self.failed)
        return (
            f"{self.stage} gate {verdict} ({self.deployment}: {self.candidate.text()}; "
            f"{self.old}: {self.baseline.text()})"
        )

    def record(self) -> dict[str, Any]:
        """The gate as `deployed.json` keeps it."""
        figures = {"candidate": asdict(self.candidate), "old": asdict(self.baseline)}
        for key in figures:
            requests = figures[key]["requests"]
            figures[key]["error_share"] = round(figures[key]["errors"] / requests, 6) if requests else 0.0
        return {
            "stage": self.stage,
            "deployment": self.deployment,
            "old_deployment": self.old,
            **figures,
            "passed": self.passed,
            "failed": self.failed,
        }


def judge(stage: str, deployment: str, candidate: Figures, old: str, baseline: Figures, rules: DeploySettings) -> Gate:
    """The gate of `stage`: the new deployment's figures against the old one's, by [deploy]'s rules."""
    failed = []
    if candidate.requests < rules.min_requests:
        failed.append(f"{candidate.requests} requests, fewer than [deploy] min_requests ({rules.min_requests})")
    allowed = baseline.error_share + rules.max_error_increase
    if candidate.error_share > allowed:
        failed.append(
            f"5xx share {candidate.error_share:.2%} above the old {baseline.error_share:.2%} + "
            f"[deploy] max_error_increase {rules.max_error_increase:.2%}"
        )
    if candidate.requests and candidate.p95_ms is None:
        failed.append("no p95 latency reported")
    elif candidate.p95_ms is not None and baseline.p95_ms is not None:
        limit = rules.max_latency_ratio * baseline.p95_ms
        if candidate.p95_ms > limit:
            failed.append(
                f"p95 {candidate.p95_ms:.0f} ms above {rules.max_latency_ratio:g} x the old {baseline.p95_ms:.0f} ms"
            )
    return Gate(stage, deployment, candidate, old, baseline, failed)


def monitor_client(settings: Settings, credential: Any, transport: Any = None) -> Any:
    """Azure Monitor's management client on the [azure] subscription (`transport` replaces its HTTP transport)."""
    from azure.mgmt.monitor import MonitorManagementClient

    options = {"transport": transport} if transport is not None else {}
    return MonitorManagementClient(credential, settings.azure.subscription_id, **options)


def _timespan(start: datetime, end: datetime) -> str:
    return f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')}/{end.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def figures(
    monitor: Any, settings: Settings, endpoint: str, deployment: str, start: datetime, end: datetime
) -> Figures:
    """What `deployment` served between `start` and `end` (UTC), read from Azure Monitor."""
    resource, span = endpoint_id(settings, endpoint), _timespan(start, end)
    counted = monitor.metrics.list(
        resource,
        timespan=span,
        interval="PT1M",
        metricnames=REQUESTS,
        aggregation="Total",
        filter=f"deployment eq '{deployment}' and {CLASS} eq '*'",
        metricnamespace=NAMESPACE,
    )
    requests = errors = 0.0
    for metric in counted.value:
        for series in metric.timeseries or []:
            total = sum(point.total or 0.0 for point in series.data or [])
            classes = {(m.name.value or "").lower(): m.value for m in series.metadatavalues or []}
            requests += total
            if str(classes.get(CLASS.lower(), "")).lower() == "5xx":
                errors += total
    timed = monitor.metrics.list(
        resource,
        timespan=span,
        interval="PT1M",
        metricnames=LATENCY,
        aggregation="Average",
        filter=f"deployment eq '{deployment}'",
        metricnamespace=NAMESPACE,
    )
    points = [
        point.average
        for metric in timed.value
        for series in metric.timeseries or []
        for point in series.data or []
        if point.average is not None
    ]
    p95 = sum(points) / len(points) if points else None
    return Figures(round(requests), round(errors), p95)
