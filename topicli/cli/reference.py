"""The docs site's reference pages, written from the code so that they cannot drift from it.

`settings_markdown` lists every setting of the settings model (`topicli.config`) with its default,
what it may hold and its help text; `commands_markdown` gives every command of the Typer app with
its `--help`. The MkDocs hook `docs/hooks.py` puts them into docs/configuration.md and docs/cli.md
at build time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import Field, fields
from typing import Any

import typer
import typer.core
import typer.main

from topicli.cli.app import app
from topicli.config import Settings, env_name, toml_value

HELP_WIDTH = 100  # columns of the `--help` texts on the CLI page


def _markdown_text(text: str) -> str:
    """Plain text as Markdown: code spans kept as they are, characters Markdown would read outside them escaped.

    Help texts hold `[section]` names, `<placeholders>` and `TOPICLI_<SECTION>_<KEY>`, which would
    otherwise become links, HTML tags or emphasis, or split a table cell (`|`).
    """
    parts = text.split("`")
    for outside in range(0, len(parts), 2):
        escaped = re.sub(r"([\\*_\[\]|])", r"\\\1", parts[outside])
        parts[outside] = escaped.replace("<", "&lt;")
    return "`".join(parts)


def _allowed(declared: Field[Any]) -> str:
    """What a setting may hold, as loading checks it (`topicli.config._check_value`)."""
    meta = declared.metadata
    kind = type(declared.default)
    if meta["choices"]:
        return ", ".join(f"`{choice}`" for choice in meta["choices"])
    if kind is bool:
        return "`true`, `false`"
    if kind in (int, float):
        low, high = meta["range"]
        return f"{kind.__name__}, {kind(low):,} to {kind(high):,}"
    if meta["check"] is not None:
        return _markdown_text(meta["check"].__doc__.strip().splitlines()[0])
    return "text"


def settings_markdown() -> str:
    """Every setting, one table per `[section]`: name and environment variable, default, allowed values, help."""
    lines: list[str] = []
    for section in fields(Settings):
        group = section.default_factory  # type: ignore[misc]
        lines += [f"## `[{section.name}]`", "", _markdown_text(group.__doc__.strip()), ""]
        lines += ["| setting | default | allowed | what it does |", "|---|---|---|---|"]
        for declared in fields(group):
            name = f"`{declared.name}`<br>`{env_name(section.name, declared.name)}`"
            default = f"`{toml_value(declared.default)}`"
            lines.append(f"| {name} | {default} | {_allowed(declared)} | {_markdown_text(declared.metadata['help'])} |")
        lines.append("")
    return "\n".join(lines)


def commands_markdown() -> str:
    """Every command that `--help` lists, in its order, each a heading with its `--help` text beneath."""
    root = typer.main.get_command(app)
    with typer.Context(root, info_name="topicli", terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH) as ctx:
        return "\n".join(_help_section(ctx, level=2))


def _help_section(ctx: typer.Context, level: int) -> Iterator[str]:
    """A command's heading and `--help`, then its subcommands'; `topicli` and its commands share a level."""
    yield from (f"{'#' * level} {ctx.command_path}", "", "```text", ctx.get_help(), "```", "")
    command = ctx.command
    if not isinstance(command, typer.core.TyperGroup):
        return
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            with typer.Context(
                sub, info_name=name, parent=ctx, terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH
            ) as sub_ctx:
                yield from _help_section(sub_ctx, level + (ctx.parent is not None))
