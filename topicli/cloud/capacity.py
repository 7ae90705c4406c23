"""Capacity of the online deployment that takes all traffic: an autoscale setting and alert rules (Azure Monitor).

Online endpoints and deployments are created by `topicli deploy`, after `infra up`, so these
are put at deploy time through azure-mgmt-monitor rather than in Terraform:

- **Autoscale** (`<endpoint>-<deployment>-autoscale`) on the deployment, between [azure]
  autoscale_min and autoscale_max instances: one more when its mean CPU over 5 minutes is above
  [azure] autoscale_cpu_percent or its requests per minute per instance above
  autoscale_requests_per_instance, one fewer when CPU is below a third of that threshold.
- **Alerts** on the endpoint: 5xx answers per minute above [azure] alert_errors_per_minute, and
  p95 latency above [azure] alert_latency_ms, each a 5-minute mean checked every minute.

Both are idempotent PUTs: each deploy puts them again with the same names.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from topicli.cloud.metrics import CLASS, LATENCY, NAMESPACE, REQUESTS, endpoint_id
from topicli.config import Settings

DEPLOYMENT_NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments"
CPU = "CpuUtilizationPercentage"
FIVE_MINUTES = timedelta(minutes=5)


def deployment_id(settings: Settings, endpoint: str, deployment: str) -> str:
    return f"{endpoint_id(settings, endpoint)}/deployments/{deployment}"


def autoscale_name(endpoint: str, deployment: str) -> str:
    return f"{endpoint}-{deployment}-autoscale"


def autoscale_setting(settings: Settings, endpoint: str, deployment: str, instances: int) -> Any:
    """The autoscale setting of `deployment`, starting from its `instances` (kept within [azure]'s min and max)."""
    from azure.mgmt.monitor.models import (
        AutoscaleProfile,
        AutoscaleSettingResource,
        MetricTrigger,
        ScaleAction,
        ScaleCapacity,
        ScaleRule,
        ScaleRuleMetricDimension,
    )

    azure = settings.azure
    target = deployment_id(settings, endpoint, deployment)
    start = min(max(instances, azure.autoscale_min), azure.autoscale_max)

    def rule(metric: str, resource: str, namespace: str, operator: str, threshold: float, direction: str, **extra):
        return ScaleRule(
            metric_trigger=MetricTrigger(
                metric_name=metric,
                metric_namespace=namespace,
                metric_resource_uri=resource,
                time_grain=timedelta(minutes=1),
                statistic="Average",
                time_window=FIVE_MINUTES,
                time_aggregation="Average",
                operator=operator,
                threshold=threshold,
                **extra,
            ),
            scale_action=ScaleAction(direction=direction, type="ChangeCount", value="1", cooldown=FIVE_MINUTES),
        )

    requests = {
        "dimensions": [ScaleRuleMetricDimension(dimension_name="deployment", operator="Equals", values=[deployment])],
        "divide_per_instance": True,
    }
    rules = [
        rule(CPU, target, DEPLOYMENT_NAMESPACE, "GreaterThan", azure.autoscale_cpu_percent, "Increase"),
        rule(CPU, target, DEPLOYMENT_NAMESPACE, "LessThan", azure.autoscale_cpu_percent / 3, "Decrease"),
        rule(
            REQUESTS,
            endpoint_id(settings, endpoint),
            NAMESPACE,
            "GreaterThan",
            azure.autoscale_requests_per_instance,
            "Increase",
            **requests,
        ),
    ]
    profile = AutoscaleProfile(
        name="topicli",
        capacity=ScaleCapacity(minimum=str(azure.autoscale_min), maximum=str(azure.autoscale_max), default=str(start)),
        rules=rules,
    )
    return AutoscaleSettingResource(
        location=azure.location,
        profiles=[profile],
        enabled=True,
        target_resource_uri=target,
        name_properties_name=autoscale_name(endpoint, deployment),
    )


def alert_rules(settings: Settings, endpoint: str) -> dict[str, Any]:
    """The endpoint's alert rules by name: 5xx answers per minute, and p95 latency."""
    from azure.mgmt.monitor.models import (
        MetricAlertResource,
        MetricAlertSingleResourceMultipleMetricCriteria,
        MetricCriteria,
        MetricDimension,
    )

    azure = settings.azure
    scope = endpoint_id(settings, endpoint)

    def alert(description: str, criterion: Any) -> Any:
        return MetricAlertResource(
            location="global",
            description=description,
            severity=2,
            enabled=True,
            scopes=[scope],
            evaluation_frequency=timedelta(minutes=1),
            window_size=FIVE_MINUTES,
            criteria=MetricAlertSingleResourceMultipleMetricCriteria(all_of=[criterion]),
            auto_mitigate=True,
        )

    errors = MetricCriteria(
        name="errors",
        metric_name=REQUESTS,
        metric_namespace=NAMESPACE,
        time_aggregation="Average",
        operator="GreaterThan",
        threshold=azure.alert_errors_per_minute,
        dimensions=[MetricDimension(name=CLASS, operator="Include", values=["5xx"])],
    )
    latency = MetricCriteria(
        name="latency",
        metric_name=LATENCY,
        metric_namespace=NAMESPACE,
        time_aggregation="Average",
        operator="GreaterThan",
        threshold=azure.alert_latency_ms,
    )
    return {
        f"{endpoint}-5xx": alert(f"topicli: {endpoint} answers 5xx", errors),
        f"{endpoint}-latency": alert(f"topicli: {endpoint} p95 latency", latency),
    }


def put_capacity(monitor: Any, settings: Settings, endpoint: str, deployment: str, instances: int) -> list[str]:
    """Put the autoscale setting of `deployment` and the endpoint's alert rules; the names put."""
    group = settings.azure.resource_group
    name = autoscale_name(endpoint, deployment)
    setting = autoscale_setting(settings, endpoint, deployment, instances)
    monitor.autoscale_settings.create_or_update(group, name, setting)
    put = [name]
    for rule, entity in alert_rules(settings, endpoint).items():
        monitor.metric_alerts.create_or_update(group, rule, entity)
        put.append(rule)
    return put


def remove_autoscale(monitor: Any, settings: Settings, endpoint: str, deployment: str) -> None:
    """Delete the autoscale setting of a deployment being deleted (deleting an absent one is no error)."""
    monitor.autoscale_settings.delete(settings.azure.resource_group, autoscale_name(endpoint, deployment))
