"""What every command shares: consoles, the config option, error handling, progress bars."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from topicli.bundle import bundle_folder
from topicli.config import Settings, load_settings
from topicli.errors import TopicliError
from topicli.pipeline import latest_run_folder

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="config file; default topicli.toml in this folder when present", show_default=False
    ),
]


class TopicliGroup(typer.core.TyperGroup):
    """Turns a `TopicliError` into one line on stderr and exit code 2 (a traceback with --debug)."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TopicliError as error:
            if (ctx.obj or {}).get("debug"):
                traceback.print_exc()
            err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


def settings_for(config: Path | None, **sections: dict[str, Any]) -> Settings:
    """The settings a command runs with: config file, environment, then its own options."""
    return load_settings(config, overrides=sections)


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Any]:
    """A rich progress bar on stderr; yields a callback `advance(n)`."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            progress.advance(task, n)

        yield advance


def chosen_bundle(bundle: Path | None, settings: Settings) -> Path:
    """The bundle a command was given, or else the bundle of the latest run."""
    return bundle or bundle_folder(latest_run_folder(settings))
