"""The root `topicli` command: the global options, and every command module joined into one app."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer

from topicli.cli.classifier import classifier_app
from topicli.cli.common import command_group, show_warning
from topicli.cli.deploy import deploy_app
from topicli.cli.export import export_app
from topicli.cli.infra import infra_app
from topicli.cli.init import init_app
from topicli.cli.report import report_app
from topicli.cli.score import score_app
from topicli.cli.topics import topics_app

app = command_group("Topics for unlabelled social-media posts.", no_args_is_help=True, add_completion=False)
app.add_typer(init_app)
app.add_typer(classifier_app)
app.add_typer(topics_app)
app.add_typer(report_app)
app.add_typer(deploy_app, name="deploy")
app.add_typer(score_app, name="score")
app.add_typer(infra_app, name="infra")
app.add_typer(export_app, name="export")


@app.callback()
def main_options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks for errors")] = False,
) -> None:
    ctx.obj = {"debug": debug}


def main() -> None:
    """The `topicli` executable: each warning the library gives is one `warning:` line on stderr."""
    warnings.showwarning = show_warning
    app()
