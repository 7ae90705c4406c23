"""Every Azure SDK and Terraform failure is one line and exit code 2, through the real CLI.

Azure cannot be reached, so the SDK talks to a fake transport: the real `MLClient` sends its
real requests, the transport answers as Azure Resource Manager would (404, 403, a refused
connection), and the SDK raises its own exception types from those answers. Not being signed
in is the real `EnvironmentCredential` with no AZURE_* variables. Failures in the middle of a
rollout come from the fake client of tests/test_rollout.py, raising the SDK's types.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from topicli.cli import app
from topicli.cloud import azureml
from topicli.cloud.errors import cloud_error
from topicli.serving.bundle import BundleModel

from .conftest import sdk_error
from .test_infra import TERRAFORM_DIR
from .test_rollout import WORKSPACE, FakeMLClient
from .test_serving import run_examples

RESOURCE = "Microsoft.MachineLearningServices/workspaces/ws"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    return run_examples(tmp_path_factory.mktemp("errors-run"), cache_dir) / "bundle"


@pytest.fixture
def workspace(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in WORKSPACE.items():
        monkeypatch.setenv(name, value)
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    return isolated


def talk_to(monkeypatch: pytest.MonkeyPatch, transport: Any, credential: Any = None) -> None:
    """`ml_client` builds the real MLClient, on `transport` (a `FakeTransport`), signed in with `credential`."""
    import azure.ai.ml
    import azure.identity

    from tests.azure_fakes import Token

    monkeypatch.setattr(azure.ai.ml, "MLClient", functools.partial(azure.ai.ml.MLClient, transport=transport))
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", lambda: credential or Token())


def one_line(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_not_signed_in(workspace: Path, monkeypatch: pytest.MonkeyPatch, azure_fakes: ModuleType) -> None:
    from azure.identity import EnvironmentCredential

    transport = azure_fakes.FakeTransport(200)
    talk_to(monkeypatch, transport, EnvironmentCredential())
    line = one_line(CliRunner().invoke(app, ["score", "azure", "posts.csv"]))
    assert "not signed in to Azure (CredentialUnavailableError)" in line and "az login" in line
    assert "AZURE_CLIENT_ID" in line and transport.sent == []


def test_workspace_not_found(workspace: Path, monkeypatch: pytest.MonkeyPatch, azure_fakes: ModuleType) -> None:
    message = f"The Resource '{RESOURCE}' under resource group 'rg' was not found."
    talk_to(monkeypatch, azure_fakes.FakeTransport(404, "ResourceNotFound", message))
    line = one_line(CliRunner().invoke(app, ["score", "azure", "posts.csv"]))
    assert "Azure ML workspace not found" in line and "[azure] subscription_id, resource_group and workspace" in line


def test_endpoint_not_found(workspace: Path, monkeypatch: pytest.MonkeyPatch, azure_fakes: ModuleType) -> None:
    message = f"The Resource '{RESOURCE}/onlineEndpoints/gone' under resource group 'rg' was not found."
    transport = azure_fakes.FakeTransport(404, "ResourceNotFound", message)
    talk_to(monkeypatch, transport)
    monkeypatch.setenv("TOPICLI_AZURE_ENDPOINT", "gone")
    line = one_line(CliRunner().invoke(app, ["score", "azure", "posts.csv"]))
    assert line == "error: online endpoint gone not found in workspace ws; `topicli deploy` creates it, or set " + (
        "[azure] endpoint to an existing one"
    )
    assert transport.sent[0].startswith("https://management.azure.com/subscriptions/")


def test_access_refused(workspace: Path, monkeypatch: pytest.MonkeyPatch, azure_fakes: ModuleType) -> None:
    talk_to(
        monkeypatch,
        azure_fakes.FakeTransport(403, "AuthorizationFailed", "The client 'me' does not have authorization"),
    )
    line = one_line(CliRunner().invoke(app, ["score", "azure", "posts.csv"]))
    assert "Azure refused access" in line and "AzureML Data Scientist" in line


def test_azure_unreachable(workspace: Path, monkeypatch: pytest.MonkeyPatch, azure_fakes: ModuleType) -> None:
    talk_to(monkeypatch, azure_fakes.FakeTransport())
    line = one_line(CliRunner().invoke(app, ["score", "azure", "posts.csv"]))
    assert "could not reach Azure" in line


def test_debug_keeps_the_traceback(workspace: Path, monkeypatch: pytest.MonkeyPatch, azure_fakes: ModuleType) -> None:
    talk_to(monkeypatch, azure_fakes.FakeTransport(403, "AuthorizationFailed", "no"))
    result = CliRunner().invoke(app, ["--debug", "score", "azure", "posts.csv"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "HttpResponseError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: Azure refused access")


@pytest.mark.parametrize(
    ("step", "error", "said"),
    [
        (
            "deployment",
            "(OperationNotAllowed) Not enough quota available for Standard_DS3_v2",
            "creating deployment blue: not enough quota ((OperationNotAllowed) Not enough quota available",
        ),
        (
            "provision",
            "(ResourceNotReady) User container has crashed or terminated",
            "az ml online-deployment get-logs --endpoint-name topicli-e2e --name blue --resource-group rg "
            "--workspace-name ws",
        ),
    ],
)
def test_deploy_failures(
    step: str,
    error: str,
    said: str,
    bundle: Path,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOPICLI_AZURE_ENDPOINT", "topicli-e2e")
    client = FakeMLClient(BundleModel.load(bundle), fail={step: sdk_error(error)})
    monkeypatch.setattr(azureml, "ml_client", lambda settings: client)
    line = one_line(CliRunner().invoke(app, ["deploy", "--bundle", str(bundle)]))
    assert said in line


def test_terraform_providers_unreachable(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, bundled_engine: None
) -> None:
    shutil.copytree(TERRAFORM_DIR, workspace / "tf", ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    monkeypatch.setenv("TOPICLI_INFRA_TERRAFORM_DIR", "tf")
    # Wherever the tests run, a proxy that refuses every connection stands for a registry out of reach.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    result = CliRunner().invoke(app, ["infra", "plan"])
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: terraform init failed in ")
    assert "terraform providers mirror DIR" in last and "TF_PLUGIN_CACHE_DIR" in last


def test_a_job_submission_not_signed_in(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, azure_fakes: ModuleType
) -> None:
    """`cluster --on azureml` reaches Azure through the SDK's job upload: the root command group makes it one line."""
    from azure.identity import EnvironmentCredential

    from .conftest import EXAMPLES

    transport = azure_fakes.FakeTransport(200)
    talk_to(monkeypatch, transport, EnvironmentCredential())
    line = one_line(CliRunner().invoke(app, ["cluster", str(EXAMPLES), "--on", "azureml"]))
    assert "not signed in to Azure (CredentialUnavailableError)" in line and transport.sent == []


def test_endpoint_logs_go_to_log_analytics(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, azure_fakes: ModuleType
) -> None:
    from azure.core.exceptions import HttpResponseError

    from topicli.cloud import monitor
    from topicli.config import load_settings

    analytics = f"/subscriptions/{WORKSPACE['TOPICLI_AZURE_SUBSCRIPTION_ID']}/resourceGroups/rg/providers/" + (
        "Microsoft.OperationalInsights/workspaces/log-topicli"
    )
    monkeypatch.setenv("TOPICLI_AZURE_LOG_ANALYTICS_WORKSPACE", analytics)
    settings = load_settings(None)
    transport = azure_fakes.FakeTransport(200)
    url = monitor.send_endpoint_logs(settings, "topicli-e2e", azure_fakes.Token(), transport=transport)
    (request,) = transport.requests
    assert request.method == "PUT" and request.url.startswith(url) and "api-version=" in request.url
    assert url.endswith(
        f"{RESOURCE}/onlineEndpoints/topicli-e2e/providers/Microsoft.Insights/diagnosticSettings/topicli-logs"
    )
    assert request.headers["Authorization"] == "Bearer token"
    body = json.loads(request.body)["properties"]
    assert body["workspaceId"] == analytics
    assert {log["category"] for log in body["logs"]} == set(monitor.CATEGORIES)

    refused = azure_fakes.FakeTransport(403, "AuthorizationFailed", "no write on Microsoft.Insights/diagnosticSettings")
    with pytest.raises(HttpResponseError) as failed:
        monitor.send_endpoint_logs(settings, "topicli-e2e", azure_fakes.Token(), transport=refused)
    assert "Azure refused access" in str(cloud_error(failed.value))


def test_a_rollout_sends_the_endpoint_logs(bundle: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from topicli.cloud.rollout import Rollout
    from topicli.config import load_settings
    from topicli.errors import TopicliError

    monkeypatch.setenv("TOPICLI_AZURE_ENDPOINT", "topicli-e2e")
    settings, sent = load_settings(None), []
    client = FakeMLClient(BundleModel.load(bundle))
    Rollout(settings, client, endpoint_logs=sent.append).run(bundle)
    assert sent == ["topicli-e2e"]

    def refuse(endpoint: str) -> None:
        raise sdk_error("(AuthorizationFailed) no write on diagnosticSettings")

    with pytest.raises(TopicliError, match="sending the logs of endpoint topicli-e2e to Log Analytics: Azure refused"):
        Rollout(settings, client, endpoint_logs=refuse).run(bundle)
    assert client.endpoints["topicli-e2e"].traffic == {"blue": 100}, "nothing moved"


# Every command that reaches Azure, run as a user runs it: the real executable, the real DefaultAzureCredential
# with nobody signed in (its developer credentials only, so nothing probes a managed-identity address), a home
# with no token cache, and the whole output counted.
CREDENTIAL_LESS = {
    "deploy": ["deploy", "--model", "topicli-bundle:1"],
    "deploy bundle": ["deploy", "--bundle", "BUNDLE"],
    "deploy rollback": ["deploy", "--rollback"],
    "deploy triton rollback": ["deploy", "triton", "--rollback"],
    "score azure": ["score", "azure", "POSTS"],
    "train on azureml": ["train", "POSTS", "--on", "azureml"],
    "spark job": ["train", "POSTS", "--on", "azureml", "--engine", "spark"],
}


def _signed_out(home: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "MSI_", "IDENTITY_"))}
    env |= {k.upper(): v for k, v in WORKSPACE.items()}
    env |= {"HOME": str(home), "AZURE_TOKEN_CREDENTIALS": "dev", "TOPICLI_AZURE_ENDPOINT": "topicli-e2e"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env


@pytest.mark.heavy
@pytest.mark.parametrize("command", list(CREDENTIAL_LESS))
def test_a_credential_less_azure_command_prints_one_line(command: str, bundle: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from .conftest import EXAMPLES

    arguments = [
        {"BUNDLE": str(bundle), "POSTS": str(EXAMPLES)}.get(argument, argument) for argument in CREDENTIAL_LESS[command]
    ]
    done = subprocess.run(
        [sys.executable, "-m", "topicli", *arguments],
        cwd=tmp_path,
        env=_signed_out(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2 and len(lines) <= 2, lines
    assert lines[-1].startswith("error: ") and "not signed in to Azure" in lines[-1] and "az login" in lines[-1]


def test_debug_shows_what_the_credential_tried(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "topicli", "--debug", *CREDENTIAL_LESS["deploy"]],
        cwd=tmp_path,
        env=_signed_out(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Attempted credentials" in done.stderr and "Traceback" in done.stderr
