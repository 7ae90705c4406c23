"""The docs site builds cleanly, and its reference pages hold every setting and every command of this version."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import typer.core
import typer.main

from topicli.cli import app
from topicli.config import Settings

from .conftest import ROOT


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mkdocs build --strict` of this checkout's docs (and code: the hook imports topicli) into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env["NO_MKDOCS_2_WARNING"] = "1"  # Material's end-of-life banner
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


def _text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", markup))


def _command_paths(command: typer.core.TyperCommand, path: str) -> list[str]:
    paths = [path]
    if isinstance(command, typer.core.TyperGroup):
        for name, sub in command.commands.items():
            if not sub.hidden:
                paths += _command_paths(sub, f"{path} {name}")
    return paths


def test_the_configuration_page_lists_every_setting_with_its_variable_and_help(site: Path) -> None:
    source = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    rows = [" ".join(_text(row).split()) for row in re.findall(r"<tr>(.*?)</tr>", source, re.DOTALL)]
    for section in fields(Settings):
        assert f'id="{section.name}"' in source, section.name
        for setting in fields(section.default_factory):  # type: ignore[misc]
            variable = f"TOPICLI_{section.name}_{setting.name}".upper()
            (row,) = [row for row in rows if variable in row.split()]
            assert row.startswith(f"{setting.name} {variable}"), row
            help_text = setting.metadata["help"].replace("`", "")
            assert "".join(help_text.split()) in "".join(row.split()), row  # tags may split it with spaces


def test_the_cli_page_gives_every_command_its_help(site: Path) -> None:
    page = site / "cli" / "index.html"
    source = page.read_text(encoding="utf-8")
    text = _text(source)
    paths = _command_paths(typer.main.get_command(app), "topicli")
    assert len(paths) > 20  # the root, its commands and the modes of deploy, score, infra and export
    for path in paths:
        assert f'id="{path.replace(" ", "-")}"' in source, path
        assert f"Usage: {path} [OPTIONS]" in text, path


def test_the_hook_is_not_published(site: Path) -> None:
    assert not list(site.rglob("hooks.py")) and not list(site.rglob("__pycache__"))
