"""`topicli infra`: Terraform on [infra] terraform_dir, its outputs written back into the config."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from topicli.cli import render
from topicli.cli.common import ConfigOption, command_group, console, err_console, settings_for
from topicli.config import DEFAULT_CONFIG_PATH
from topicli.errors import TopicliError

if TYPE_CHECKING:
    from topicli.cloud.terraform import Output

infra_app = command_group("Azure resources as code: plan, up, down, output.", no_args_is_help=True)

YesOption = Annotated[bool, typer.Option("--yes", "-y", help="go ahead without asking")]


@contextmanager
def terraform_output_on_error(ctx: typer.Context) -> Iterator[None]:
    """With --debug, show all that Terraform said before the one-line error (which carries its first error)."""
    from topicli.cloud.terraform import TerraformError

    try:
        yield
    except TerraformError as error:
        if (ctx.find_root().obj or {}).get("debug"):
            err_console.print(error.output, markup=False, highlight=False, soft_wrap=True)
        raise


SENSITIVE = "(sensitive)"  # shown in place of an output's value that Terraform marks sensitive


def _masked(values: dict[str, Any], outputs: dict[str, Output], show_sensitive: bool = False) -> dict[str, Any]:
    """`values` with those of sensitive outputs replaced by `SENSITIVE`, unless `show_sensitive`."""
    hidden = {name for name, output in outputs.items() if output.sensitive and not show_sensitive}
    return {name: SENSITIVE if name in hidden else value for name, value in values.items()}


def _show(text: str) -> None:
    """Terraform's own text as it wrote it: no rich markup, highlighting or re-wrapping."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@infra_app.command()
def plan(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Show what `up` would change in Azure, changing nothing."""
    from topicli.cloud import terraform

    runner = terraform.runner_for(settings_for(config))
    with terraform_output_on_error(ctx):
        planned = runner.plan()
    _show(planned.text)
    console.print(f"[bold]{'no changes' if planned.empty else planned.summary()}[/]")


@infra_app.command()
def up(ctx: typer.Context, config: ConfigOption = None, yes: YesOption = False) -> None:
    """Create or update the Azure resources, then write their names into the config file."""
    from topicli.cloud import terraform

    runner = terraform.runner_for(settings_for(config))
    with terraform_output_on_error(ctx):
        planned = runner.plan()
        _show(planned.text)
        if planned.empty:
            console.print("[bold]no changes[/]")
        else:
            if not yes:
                typer.confirm(f"Apply: {planned.summary()}?", abort=True)
            _show(runner.apply(planned))
        outputs = runner.recorded_outputs()
    path = config or DEFAULT_CONFIG_PATH
    written = terraform.write_outputs_to_config(path, {name: output.value for name, output in outputs.items()})
    render.values(console, f"written to [azure] in {path}", _masked(written, outputs))


@infra_app.command()
def down(ctx: typer.Context, config: ConfigOption = None, yes: YesOption = False) -> None:
    """Destroy every Azure resource that `up` created (asks for the workspace name first)."""
    from topicli.cloud import terraform

    settings = settings_for(config)
    runner = terraform.runner_for(settings)
    with terraform_output_on_error(ctx):
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
    ctx: typer.Context,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the outputs as one JSON object")] = False,
    show_sensitive: Annotated[
        bool, typer.Option("--show-sensitive", help=f"show outputs marked sensitive instead of {SENSITIVE}")
    ] = False,
) -> None:
    """Show the outputs of the last `up`: subscription, resource group, workspace, compute, registry, storage."""
    from topicli.cloud import terraform

    runner = terraform.runner_for(settings_for(config))
    with terraform_output_on_error(ctx):
        recorded = runner.recorded_outputs()
    outputs = _masked({name: output.value for name, output in recorded.items()}, recorded, show_sensitive)
    if as_json:
        console.print_json(json.dumps(outputs))
    elif outputs:
        render.values(console, f"outputs of {runner.folder}", outputs)
    else:
        console.print(f"no outputs yet: nothing was applied from {runner.folder}; run `topicli infra up`")
