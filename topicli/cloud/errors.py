"""Azure SDK failures as one `TopicliError` line: what failed, and what to do about it.

The Azure SDK raises its own exception types (`azure.core.exceptions`, `azure.identity`,
`azure.ai.ml.exceptions`), whose messages run to dozens of lines (DefaultAzureCredential lists
every credential it tried). `cloud_error` maps each kind to one line; the root command group of
the CLI applies it to anything a command lets through, so every command that reaches Azure
(`deploy`, `score azure`, `cluster --on azureml`, ...) fails the same way. Code that knows more
(which deployment failed to provision) raises its own `TopicliError` first.
"""

from __future__ import annotations

import logging
import re

from topicli.errors import TopicliError

SIGN_IN = (
    "run `az login` (or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a service principal, "
    "or AZURE_FEDERATED_TOKEN_FILE in CI), then try again"
)
WORKSPACE_HINT = (
    "check [azure] subscription_id, resource_group and workspace in topicli.toml (`topicli infra up` writes them)"
)
QUOTA_HINT = (
    "ask for more vCPU quota for that VM family in this region (Azure portal, Quotas), "
    "or choose a smaller [azure] instance_type or fewer instances"
)
_QUOTA = re.compile(r"quota|not enough (cores|vcpu)|OutOfQuota|QuotaExceeded", re.IGNORECASE)
_LONGEST = 300


def quiet_sdk() -> None:
    """Hold azure.ai.ml's log to the level the CLI gave the `azure` logger (CRITICAL unless --debug).

    Importing azure.ai.ml gives its logger a stderr handler of its own at INFO, apart from the
    `azure` logger, so it would print its notes (experimental classes, validation warnings)
    around our one line; call this once it is imported.
    """
    logging.getLogger("azure.ai.ml").setLevel(logging.getLogger("azure").level)


def first_line(text: str) -> str:
    """The first line that says something, cut to a length a terminal shows on one line."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else ""
    # azure-core messages start with "(Code) message" and repeat it as "Code: ...\nMessage: ..." below.
    return line if len(line) <= _LONGEST else line[: _LONGEST - 3] + "..."


def is_quota(error: BaseException) -> bool:
    """Whether Azure refused for want of quota (its error code or its message says so)."""
    code = getattr(getattr(error, "error", None), "code", None) or ""
    return bool(_QUOTA.search(f"{code} {error}"))


def cloud_error(error: BaseException, doing: str = "") -> TopicliError | None:
    """One line for an Azure SDK failure (`doing` says what was being done), or None for any other error."""
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    if not isinstance(error, AzureError):
        return None
    what = f"{doing}: " if doing else ""
    said = first_line(getattr(error, "message", None) or str(error))
    if isinstance(error, ClientAuthenticationError):  # CredentialUnavailableError is one
        return TopicliError(f"{what}not signed in to Azure ({type(error).__name__}); {SIGN_IN}")
    if isinstance(error, ResourceNotFoundError):
        if "workspace" in said.lower():
            return TopicliError(f"{what}Azure ML workspace not found ({said}); {WORKSPACE_HINT}")
        return TopicliError(f"{what}not found in Azure ({said}); {WORKSPACE_HINT}, and the names in [azure]")
    if isinstance(error, HttpResponseError) and is_quota(error):
        return TopicliError(f"{what}not enough quota ({said}); {QUOTA_HINT}")
    if isinstance(error, HttpResponseError) and error.status_code == 403:
        return TopicliError(
            f"{what}Azure refused access ({said}); your identity needs a role on the workspace, "
            "such as AzureML Data Scientist (docs/azure.md: Roles)"
        )
    if isinstance(error, ServiceRequestError):
        return TopicliError(f"{what}could not reach Azure ({said}); check the network, proxy or firewall")
    if isinstance(error, HttpResponseError):
        status = f"HTTP {error.status_code}: " if error.status_code else ""
        return TopicliError(f"{what}Azure refused the request ({status}{said}); `--debug` shows the whole answer")
    # azure.ai.ml's own exceptions (ValidationException, UserErrorException, ...): the SDK refused before sending.
    return TopicliError(f"{what}the Azure ML SDK refused ({type(error).__name__}: {said})")
