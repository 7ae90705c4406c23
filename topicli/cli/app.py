"""The root `topicli` command: the global options, and every command module joined into one app."""

from __future__ import annotations

import logging
import warnings
from typing import Annotated, Any, ClassVar

import typer
import typer.core

from topicli import __version__
from topicli.cli.classifier import classifier_app
from topicli.cli.common import TopicliGroup, command_group, show_warning
from topicli.cli.deploy import deploy_app
from topicli.cli.export import export_app
from topicli.cli.infra import infra_app
from topicli.cli.init import init_app
from topicli.cli.report import report_app
from topicli.cli.score import score_app
from topicli.cli.topics import topics_app
from topicli.cli.train import train_app


class _CloudErrors(typer.core.TyperGroup):
    """Turns an Azure SDK failure that a command let through into one `TopicliError` line."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:
            from topicli.cloud.errors import cloud_error

            translated = cloud_error(error)
            if translated is None:
                raise
            raise translated from error


class RootGroup(TopicliGroup, _CloudErrors):
    """The root group: TopicliGroup's one-line errors, around `_CloudErrors` (so Azure failures become one line).

    `topicli --help` lists the everyday commands first, in the order a newcomer meets them (`run`, then
    `report`), not in the order the command modules are joined; the rest follow in that order.
    """

    everyday: ClassVar[tuple[str, ...]] = ("run", "report", "cluster", "label", "evaluate", "train", "deploy", "score")

    def list_commands(self, ctx: typer.Context) -> list[str]:
        rank = {name: place for place, name in enumerate(self.everyday)}
        return sorted(super().list_commands(ctx), key=lambda name: rank.get(name, len(rank)))


app = command_group(
    "Topics for unlabelled social-media posts.", cls=RootGroup, no_args_is_help=True, add_completion=False
)
app.add_typer(init_app)
app.add_typer(classifier_app)
app.add_typer(topics_app)
app.add_typer(report_app)
app.add_typer(deploy_app, name="deploy")
app.add_typer(score_app, name="score")
app.add_typer(infra_app, name="infra")
app.add_typer(export_app, name="export")
app.add_typer(train_app)


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"topicli {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="show tracebacks and the Azure SDK's own log for errors")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", help="print topicli's version and exit", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    ctx.obj = {"debug": debug}
    # The Azure SDK logs its own account of a failure (azure.identity: a dozen lines naming every credential
    # it tried) before the error reaches the CLI, which says it in one line; --debug shows it again.
    logging.getLogger("azure").setLevel(logging.NOTSET if debug else logging.CRITICAL)


def main() -> None:
    """The `topicli` executable: each warning the library gives is one `warning:` line on stderr."""
    warnings.showwarning = show_warning
    app()
