"""Hostile input on the real CLI: every case ends in one line on stderr and exit code 2, before any work.

Settings are refused when they are loaded (config file, TOPICLI_<SECTION>_<KEY> variables and
options alike), paths before the first post is embedded: each test points the embedding cache at
a folder of its own and checks that nothing was written there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from topicli.cli import app

from .conftest import EXAMPLES

runner = CliRunner()


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with the example posts, a regular file `afile`, and a cache that must stay unwritten."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "posts.csv").write_bytes(EXAMPLES.read_bytes())
    (tmp_path / "afile").write_text("a file, not a folder\n")
    return tmp_path


def refused(here: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run topicli; it must fail with exit code 2 and one line on stderr, having embedded nothing. The line."""
    result = runner.invoke(app, [str(a) for a in args], env=env)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert not (here / "cache").exists(), "nothing may be embedded before the check"
    return lines[0]


# Settings, refused at load time


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--eps", "-1", "[clustering] eps must be between 0.0 and 2.0, got -1.0"),
        ("--eps", "nan", "[clustering] eps must be a finite number between 0.0 and 2.0, got nan"),
        ("--min-samples", "-3", "[clustering] min_samples must be between 0 and"),
    ],
)
def test_bad_options(here: Path, option: str, value: str, message: str) -> None:
    assert message in refused(here, "run", "posts.csv", option, value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[labelling]\nk = 0\n", "[labelling] k must be between 1 and"),
        ('[labelling]\ntopic_template = "{foo} bad"\n', "[labelling] topic_template must hold the {topic} placeholder"),
        ('[labelling]\ntopic_template = "no placeholder"\n', "[labelling] topic_template must hold the {topic}"),
        ('[classifier]\ntopic_template = "{foo} bad"\n', "[classifier] topic_template must hold the {topic}"),
        ('[classifier]\ntopic_template = "no placeholder"\n', "[classifier] topic_template must hold the {topic}"),
        ("[clustering]\nmin_topics = -5\n", "[clustering] min_topics must be between 1 and"),
        ("[labelling]\nneighbours = -1\n", "[labelling] neighbours must be between 0 and"),
        ("[labelling]\nnoise_distance = -0.2\n", "[labelling] noise_distance must be between 0.0 and 2.0"),
        ("[clustering]\nmin_topics = 50\nmax_topics = 20\n", "min_topics (50) is above max_topics (20)"),
        ("[clustering]\neps = nan\n", "[clustering] eps must be a finite number between 0.0 and 2.0, got nan"),
        ("[clustering]\neval_sample = 0\n", "[clustering] eval_sample must be between 1 and"),
        ("[input]\nmax_chars = 0\n", "[input] max_chars must be between 1 and"),
    ],
)
def test_bad_config_files(here: Path, config: str, message: str) -> None:
    Path("topicli.toml").write_text(config)
    line = refused(here, "run", "posts.csv")
    assert message in line and ("topicli.toml: " in line or line.startswith("error: settings: "))


def test_bad_port_refused_by_deploy_local(here: Path) -> None:
    Path("topicli.toml").write_text("[serving]\nport = 99999\n")
    assert "[serving] port must be between 1 and 65535, got 99999" in refused(here, "deploy", "local")
    Path("topicli.toml").unlink()
    assert "[serving] port must be between 1 and 65535, got 0" in refused(here, "deploy", "local", "--port", "0")


@pytest.mark.parametrize("name", ["TOPICLI_SERVING_BATCH_SIZE", "TOPICLI_SERVING_IN_FLIGHT"])
def test_bad_client_settings_refused_by_score(here: Path, name: str) -> None:
    line = refused(here, "score", "endpoint", "http://127.0.0.1:9/score", "posts.csv", env={name: "0"})
    assert f"environment variable {name}: [serving]" in line and "must be between 1 and" in line


# Paths, checked before any embedding


def test_output_whose_parent_is_a_file(here: Path) -> None:
    line = refused(here, "run", "posts.csv", "-o", "afile/out.csv")
    assert "-o afile/out.csv: afile is a file, so no folder can be made there" in line


def test_output_that_is_a_folder(here: Path) -> None:
    (here / "results").mkdir()
    assert "-o results is a folder; give a file path" in refused(here, "run", "posts.csv", "-o", "results")


def test_output_with_an_unknown_suffix(here: Path) -> None:
    assert "unknown format '.txt'" in refused(here, "run", "posts.csv", "-o", "out.txt")


@pytest.mark.parametrize("output", ["posts.csv", "./posts.csv", "{here}/posts.csv"])
def test_output_that_is_the_input(here: Path, output: str) -> None:
    before = (here / "posts.csv").read_bytes()
    line = refused(here, "run", "posts.csv", "-o", output.format(here=here))
    assert "is the input file posts.csv; writing there would overwrite it" in line
    assert (here / "posts.csv").read_bytes() == before


def test_topic_table_that_would_be_the_input(here: Path) -> None:
    (here / "week.topics.csv").write_bytes(EXAMPLES.read_bytes())
    line = refused(here, "run", "week.topics.csv", "-o", "week.csv")
    assert "-o's topic table week.topics.csv is the input file" in line


def test_output_dir_that_cannot_be_made(here: Path) -> None:
    Path("topicli.toml").write_text('[output]\ndir = "afile/out"\n')
    line = refused(here, "run", "posts.csv")
    assert "[output] dir afile/out/posts: afile is a file" in line
    assert "--run afile/run: afile is a file" in refused(here, "cluster", "posts.csv", "--run", "afile/run")


def test_cache_dir_that_cannot_be_made(here: Path) -> None:
    line = refused(here, "run", "posts.csv", env={"TOPICLI_ENCODER_CACHE_DIR": "afile/cache"})
    assert "[encoder] cache_dir afile/cache: afile is a file" in line
    line = refused(here, "train-classifier", "posts.csv", env={"TOPICLI_ENCODER_CACHE_DIR": "afile/cache"})
    assert "[encoder] cache_dir afile/cache: afile is a file" in line


def test_missing_topic_list_fails_before_embedding(here: Path) -> None:
    assert "topic list nope.txt not found" in refused(here, "run", "posts.csv", "--topics", "nope.txt")


def test_report_png_folder_that_cannot_be_written(here: Path) -> None:
    (here / "run").mkdir()
    line = refused(here, "report", "--run", "run", "--png", "afile/charts")
    assert "--png afile/charts: afile is a file, so no folder can be made there" in line
    assert "--png afile is a file, not a folder" in refused(here, "report", "--run", "run", "--png", "afile")


def test_train_classifier_output_under_a_file(here: Path) -> None:
    assert "-o afile/model: afile is a file" in refused(here, "train-classifier", "posts.csv", "-o", "afile/model")


@pytest.fixture
def locked(here: Path) -> Iterator[Path]:
    """A folder nobody may write in: mode 0o500, and for root (whom modes do not stop) the immutable flag."""
    folder = here / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    immutable = os.geteuid() == 0 and shutil.which("chattr") is not None
    if immutable and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        immutable = False
    try:
        (folder / "probe").touch()
        stops_writes = False
    except OSError:
        stops_writes = True
    if stops_writes:
        yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o700)
    if not stops_writes:
        pytest.skip("root writes into a 0o500 folder and chattr +i is not allowed here: no folder can be locked")


def test_read_only_folders(here: Path, locked: Path) -> None:
    assert "-o locked/out.csv: cannot write in locked" in refused(here, "run", "posts.csv", "-o", "locked/out.csv")
    line = refused(here, "run", "posts.csv", env={"TOPICLI_ENCODER_CACHE_DIR": "locked"})
    assert "[encoder] cache_dir locked: cannot write in locked" in line
    Path("topicli.toml").write_text('[output]\ndir = "locked"\n')
    assert "[output] dir locked/posts: cannot write in locked" in refused(here, "run", "posts.csv")
    (here / "run").mkdir()
    assert "--png locked: cannot write in locked" in refused(here, "report", "--run", "run", "--png", "locked")


# Posts files whose text column is not text


def test_all_numeric_text_column_is_named_as_not_text(here: Path) -> None:
    Path("nums.jsonl").write_text("\n".join(json.dumps({"id": i, "caption": 1000 + i}) for i in range(5)))
    line = refused(here, "run", "nums.jsonl")
    assert "column 'caption' holds numbers, not text" in line and "--text-column" in line


def test_list_in_the_text_column_names_the_post(here: Path) -> None:
    Path("lists.json").write_text(json.dumps([{"caption": "fine"}, {"caption": ["a", "list"]}]))
    assert "post 2 in column 'caption' holds a list, not text" in refused(here, "run", "lists.json")


def test_pretty_printed_json_object(here: Path) -> None:
    Path("one.json").write_text(json.dumps({"caption": "one post", "id": 1}, indent=2))
    line = refused(here, "run", "one.json")
    assert "expected a JSON array of objects or JSON Lines (one object per line), got one JSON object" in line


def test_all_numeric_parquet_column_is_named_as_not_text(here: Path) -> None:
    pq.write_table(pa.table({"caption": pa.array([2024, None, 7], pa.int64())}), "nums.parquet")
    assert "column 'caption' holds numbers, not text" in refused(here, "run", "nums.parquet")


def test_init_where_no_file_can_be_written(here: Path) -> None:
    assert "cannot write afile/topicli.toml (Not a directory)" in refused(here, "init", "afile/topicli.toml")
    (here / "folder").mkdir()
    assert "cannot write folder (Is a directory)" in refused(here, "init", "folder", "--force")
