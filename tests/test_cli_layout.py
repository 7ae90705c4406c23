"""The command line's shape: a fast start, plain help texts, modes as commands, old flags that name their command."""

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from topicli.cli import app

from .conftest import EXAMPLES, ROOT

runner = CliRunner()

HEAVY = ("sklearn", "scipy", "torch", "onnxruntime", "pandas")

# Runs `topicli ARGS` in this interpreter, then names the heavy packages it loaded on the last line.
PROBE = f"""
import sys
from topicli.cli import main
try:
    main()
finally:
    print("loaded:", *sorted(name for name in {HEAVY!r} if name in sys.modules))
"""


@pytest.mark.parametrize("arguments", [["--help"], ["--version"], ["init"]])
def test_help_and_init_start_without_the_heavy_libraries(arguments: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *arguments], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "loaded:"


@pytest.mark.parametrize(
    ("arguments", "shown"),
    [
        (["score", "azure", "--help"], "the [azure] endpoint"),
        (["export", "triton", "--help"], "[triton] max_batch_size"),
        (["deploy", "local", "--help"], "[serving] port"),
    ],
)
def test_help_texts_keep_config_section_names(arguments: list[str], shown: str) -> None:
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert shown in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    ("arguments", "usage"),
    [
        (["deploy", "--dry-run", "--help"], "topicli deploy azure"),
        (["score", "posts.csv", "--help"], "topicli score deployed"),
        (["score", "triton", "--help"], "topicli score triton"),
    ],
)
def test_a_mode_group_runs_its_default_command_unless_one_is_named(arguments: list[str], usage: str) -> None:
    result = runner.invoke(app, arguments, prog_name="topicli")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: {usage} ")


def test_score_without_a_command_follows_the_last_deploy_and_says_when_there_is_none(isolated: Path) -> None:
    result = runner.invoke(app, ["score", str(EXAMPLES)])
    assert result.exit_code == 2 and "nothing deployed yet" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["deploy", "--local", "--port", "8000"], "`--local` is now a command: topicli deploy local"),
        (["deploy", "--local", "--stop"], "`--local --stop` is now a command: topicli deploy stop"),
        (["deploy", "--triton", "--dry-run"], "`--triton` is now a command: topicli deploy triton"),
        (["score", "posts.csv", "--local"], "`--local` is now a command: topicli score local POSTS"),
        (["score", "posts.csv", "--azure"], "`--azure` is now a command: topicli score azure POSTS"),
        (["score", "posts.csv", "--endpoint", "http://h/s"], "`--endpoint` is now a command: topicli score endpoint"),
        (["score", "posts.csv", "--endpoint=http://h/s"], "`--endpoint` is now a command: topicli score endpoint"),
        (["score", "posts.csv", "--triton", "http://h:8000"], "`--triton` is now a command: topicli score triton"),
    ],
)
def test_old_mode_flags_name_the_command_that_replaced_them(arguments: list[str], message: str) -> None:
    result = runner.invoke(app, arguments)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), result.output


def test_only_render_builds_tables() -> None:
    builders = [path.name for path in (ROOT / "topicli" / "cli").glob("*.py") if "Table(" in path.read_text()]
    assert builders == ["render.py"]


def test_version_prints_the_installed_release() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"topicli {version('topicli')}\n"


def test_help_lists_the_everyday_commands_first_and_every_command_once() -> None:
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.stdout.split("Commands:\n", 1)[1].splitlines() if line.strip()]
    everyday = ["run", "report", "cluster", "label", "evaluate", "train", "deploy", "score"]
    assert listed[: len(everyday)] == everyday
    shown = [name for name, command in typer.main.get_command(app).commands.items() if not command.hidden]
    assert sorted(listed) == sorted(shown)
