"""`topicli init`: the config file, with every setting, its default and a comment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topicli.cli.common import command_group, console
from topicli.config import DEFAULT_CONFIG_PATH, default_config_text
from topicli.errors import TopicliError

init_app = command_group()


@init_app.command()
def init(
    path: Annotated[Path, typer.Argument(help="where to write the config")] = DEFAULT_CONFIG_PATH,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write topicli.toml with every setting, its default and a comment."""
    if path.exists() and not force:
        raise TopicliError(f"{path} already exists; pass --force to overwrite it")
    try:
        path.write_text(default_config_text(), encoding="utf-8")
    except OSError as error:  # a folder there, a missing or read-only folder; io's check would load pandas
        raise TopicliError(f"cannot write {path} ({error.strerror or error}); give another path") from None
    console.print(f"wrote {path}")
