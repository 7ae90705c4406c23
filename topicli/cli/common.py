"""What every command shares: consoles, command groups, the config option, settings, progress bars."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ClassVar

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from topicli.config import Settings, load_settings
from topicli.errors import TopicliError
from topicli.progress import Advance

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="config file; default topicli.toml in this folder when present", show_default=False
    ),
]
PostsArgument = Annotated[Path, typer.Argument(help="posts file (.csv, .jsonl, .json, .parquet)")]
PostsOrUriArgument = Annotated[
    str,
    typer.Argument(
        help="posts file (.csv, .jsonl, .json, .parquet); with --on azureml also an azureml:// URI or a data asset"
    ),
]
TextColumnOption = Annotated[
    str | None, typer.Option("--text-column", help="column holding the post text (default: caption/text/content/body)")
]
BundleOption = Annotated[
    Path | None, typer.Option("--bundle", help="model bundle folder (default: the bundle of the latest run)")
]


def show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """A library warning as one `warning: ...` line on stderr (Python's own format adds file, line and source)."""
    text = str(message).replace("\r", "\\r").replace("\n", "\\n")
    err_console.print(f"[bold yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)


class TopicliGroup(typer.core.TyperGroup):
    """Turns a `TopicliError` into one line on stderr and exit code 2 (a traceback with --debug)."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TopicliError as error:
            if (ctx.obj or {}).get("debug"):
                traceback.print_exc()
            # One line even when a message quotes something with a line break (a path, a column name).
            message = str(error).replace("\r", "\\r").replace("\n", "\\n")
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


class ModeGroup(TopicliGroup):
    """A group whose commands are modes of one action, one of them the default.

    `topicli deploy` alone must still deploy to Azure, and `topicli score posts.csv` still score
    against the local server: when the first argument names none of the group's commands (and is
    not --help), the default command is put in front of it. The modes used to be flags; `moved`
    maps the old spellings to the command that replaced them, so an old script fails with one line
    that says what to type instead.
    """

    default_command: ClassVar[str]
    moved: ClassVar[dict[tuple[str, ...], str]]  # old flags (all present) → the command to type now

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            self._refuse_old_flags(args)
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def _refuse_old_flags(self, args: list[str]) -> None:
        given = {arg.split("=", 1)[0] for arg in args}
        for flags, command in self.moved.items():
            if given.issuperset(flags):
                spelled = " ".join(flags)
                raise TopicliError(f"`{spelled}` is now a command: {command}")


def command_group(help: str | None = None, cls: type[TopicliGroup] = TopicliGroup, **options: Any) -> typer.Typer:
    """A Typer for one module's commands; help texts are plain text, so `[azure]` stays `[azure]`.

    Rich markup would read the config section names in help texts as style tags and drop them.
    Without `help`, the module's commands join the root command as they are (`add_typer` without a name).
    """
    return typer.Typer(cls=cls, help=help, rich_markup_mode=None, pretty_exceptions_enable=False, **options)


def settings_for(config: Path | None, **sections: dict[str, Any]) -> Settings:
    """The settings a command runs with: config file, environment, then its own options."""
    return load_settings(config, overrides=sections)


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Advance]:
    """A rich progress bar on stderr; yields a callback `advance(n)`. The bar stays once done, and is cleared when
    the block fails."""
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

        try:
            yield advance
        except BaseException:
            progress.live.transient = True  # cleared, so an error line never follows a half-drawn bar
            raise


def chosen_run(run: Path | None, settings: Settings) -> Path:
    """The run a command reads: the one --run names, else the most recent, named in one line on stderr."""
    if run is not None:
        return run
    from topicli.runs.folder import latest_run_folder

    folder = latest_run_folder(settings)
    err_console.print(f"run {folder} (the most recent; --run DIR reads another)", highlight=False)
    return folder


def chosen_bundle(bundle: Path | None, settings: Settings) -> Path:
    """The bundle a command was given, or else the bundle of the most recent run (named in one line)."""
    if bundle is not None:
        return bundle
    from topicli.runs.folder import bundle_folder

    return bundle_folder(chosen_run(None, settings))
