"""The online endpoints' own logs (console, traffic, events) sent to the project's Log Analytics workspace.

Terraform cannot do this: the endpoints are created by `topicli deploy`, after `infra up`. So
`deploy` puts a diagnostic setting on the endpoint it deploys to, through Azure Resource Manager
(`Microsoft.Insights/diagnosticSettings`, an idempotent PUT), when [azure] log_analytics_workspace
names the workspace (`topicli infra up` writes it from Terraform's output).
"""

from __future__ import annotations

from typing import Any

from topicli.config import Settings

ARM = "https://management.azure.com"
API_VERSION = "2021-05-01-preview"
SETTING = "topicli-logs"
CATEGORIES = ("AmlOnlineEndpointConsoleLog", "AmlOnlineEndpointTrafficLog", "AmlOnlineEndpointEventLog")


def endpoint_id(settings: Settings, endpoint: str) -> str:
    azure = settings.azure
    return (
        f"/subscriptions/{azure.subscription_id}/resourceGroups/{azure.resource_group}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{azure.workspace}/onlineEndpoints/{endpoint}"
    )


def diagnostic_setting(settings: Settings) -> dict[str, Any]:
    """The body of the PUT: every endpoint log category and its metrics to the Log Analytics workspace."""
    return {
        "properties": {
            "workspaceId": settings.azure.log_analytics_workspace,
            "logs": [{"category": category, "enabled": True} for category in CATEGORIES],
            "metrics": [{"category": "AllMetrics", "enabled": True}],
        }
    }


def send_endpoint_logs(settings: Settings, endpoint: str, credential: Any, transport: Any = None) -> str:
    """Put the diagnostic setting on `endpoint`; the URL it went to. Azure's refusals raise the SDK's own errors."""
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
    from azure.core.rest import HttpRequest

    policies = [RetryPolicy(), BearerTokenCredentialPolicy(credential, f"{ARM}/.default")]
    options = {"transport": transport} if transport is not None else {}
    url = f"{ARM}{endpoint_id(settings, endpoint)}/providers/Microsoft.Insights/diagnosticSettings/{SETTING}"
    with PipelineClient(ARM, policies=policies, **options) as client:
        request = HttpRequest("PUT", url, params={"api-version": API_VERSION}, json=diagnostic_setting(settings))
        client.send_request(request).raise_for_status()
    return url
