"""`topicli infra`: Terraform on [infra] terraform_dir, its outputs written back into the config."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from topicli import infra
from topicli.cli_support import ConfigOption, TopicliGroup, console, err_console, settings_for
from topicli.config import DEFAULT_CONFIG_PATH
from topicli.errors import TopicliError

infra_app = typer.Typer(cls=TopicliGroup, help="Azure resources as code: plan, up, down, output.", no_args_is_help=True)

YesOption = Annotated[bool, typer.Option("--yes", "-y", help="go ahead without asking")]


@contextmanager
def terraform_output_on_error() -> Iterator[None]:
    """Show what Terraform said before the one-line error."""
    try:
        yield
    except infra.TerraformError as error:
        err_console.print(error.output, markup=False, highlight=False, soft_wrap=True)
        raise


def _show(text: str) -> None:
    """Terraform's own text as it wrote it: no rich markup, highlighting or re-wrapping."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _values_table(title: str, values: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("value")
    for name, value in values.items():
        table.add_row(name, str(value))
    return table


@infra_app.command()
def plan(config: ConfigOption = None) -> None:
    """Show what `up` would change in Azure, changing nothing."""
    runner = infra.runner_for(settings_for(config))
    with terraform_output_on_error():
        planned = runner.plan()
    _show(planned.text)
    console.print(f"[bold]{'no changes' if planned.empty else planned.summary()}[/]")


@infra_app.command()
def up(config: ConfigOption = None, yes: YesOption = False) -> None:
    """Create or update the Azure resources, then write their names into the config file."""
    runner = infra.runner_for(settings_for(config))
    with terraform_output_on_error():
        planned = runner.plan()
        _show(planned.text)
        if planned.empty:
            console.print("[bold]no changes[/]")
        else:
            if not yes:
                typer.confirm(f"Apply: {planned.summary()}?", abort=True)
            _show(runner.apply(planned))
        outputs = runner.outputs()
    path = config or DEFAULT_CONFIG_PATH
    written = infra.write_outputs(path, outputs)
    console.print(_values_table(escape(f"written to [azure] in {path}"), written))


@infra_app.command()
def down(config: ConfigOption = None, yes: YesOption = False) -> None:
    """Destroy every Azure resource that `up` created (asks for the workspace name first)."""
    settings = settings_for(config)
    runner = infra.runner_for(settings)
    with terraform_output_on_error():
        resources = runner.resources()
        if not resources:
            console.print(f"nothing to destroy: the Terraform state in {runner.folder} holds no resources")
            return
        if not yes:
            workspace = runner.outputs().get("workspace") or settings.azure.workspace
            if not workspace:
                raise TopicliError(
                    f"the state names no workspace to confirm with; pass --yes to destroy {len(resources)} resources"
                )
            typed = typer.prompt(
                f"This destroys {len(resources)} resources and their data; type the workspace name ({workspace})"
            )
            if typed != workspace:
                raise TopicliError(f"{typed!r} is not the workspace name {workspace!r}; nothing was destroyed")
        _show(runner.destroy())


@infra_app.command()
def output(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the outputs as one JSON object")] = False,
) -> None:
    """Show the outputs of the last `up`: subscription, resource group, workspace, compute, registry, storage."""
    runner = infra.runner_for(settings_for(config))
    with terraform_output_on_error():
        outputs = runner.outputs()
    if as_json:
        console.print_json(json.dumps(outputs))
    elif outputs:
        console.print(_values_table(f"outputs of {runner.folder}", outputs))
    else:
        console.print(f"no outputs yet: nothing was applied from {runner.folder}; run `topicli infra up`")
