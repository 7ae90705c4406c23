"""Issue 32's probe, kept: each case is its reproduction on the real CLI, with what must happen instead.

- no command writes over an input, a run's own files or another output (one line, exit 2, the file unchanged);
- no traceback for a radius below every pair, a cls_model manifest that is not JSON, a cache path that is a folder;
- quiet: no third-party warning on `topicli run`, and no half-drawn progress bar before an error line.

The served-bundle, process-group and HTTP cases run the real server: tests/test_serving_server.py; the text
written back as read: tests/test_readers_property.py; Spark's log and -o suffix: tests/test_spark.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from topicli.cli import app
from topicli.method.embedding import CacheDamagedWarning, Embedder, posts_vectors_path, text_keys

from .conftest import EXAMPLES, ROOT

runner = CliRunner()
SMALL = 40  # posts of examples/posts.csv in small.csv: a small run, where scikit-learn warned


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def here(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A folder with posts.csv (the examples), small.csv (their first posts), other.csv (a copy), and `topicli run`
    done on small.csv and other.csv."""
    folder = tmp_path_factory.mktemp("hardening")
    (folder / "posts.csv").write_bytes(EXAMPLES.read_bytes())
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "small.csv").write_text("".join(lines[: SMALL + 1]), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(cache_dir))
        result = runner.invoke(app, ["run", "small.csv"])
        assert result.exit_code == 0, result.stderr
        shutil.copy(folder / "small.csv", folder / "other.csv")
        result = runner.invoke(app, ["run", "other.csv"])  # a second run, from the cache
    assert result.exit_code == 0, result.stderr
    return folder


@pytest.fixture
def cli(here: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(here)
    monkeypatch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(cache_dir))

    def invoke(*args: str, env: dict[str, str] | None = None):
        return runner.invoke(app, [str(a) for a in args], env=env)

    return invoke


def one_line(result) -> str:
    """The command failed with exit code 2 and one `error:` line last on stderr, no traceback: that line."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and not any(line.startswith("error: ") for line in lines[:-1])
    return lines[-1]


# 1. Data loss through -o: every command that writes refuses an input, a run's files, another output


@pytest.mark.parametrize(
    ("args", "kept", "message"),
    [
        # the three reproductions of issue 32, each exited 0 and overwrote the file
        (
            ["report", "-o", "topicli-out/small/posts.csv"],
            "topicli-out/small/posts.csv",
            "is a file of topicli-out/small",
        ),
        (["report", "-o", "small.csv"], "small.csv", "is run topicli-out/small's input posts"),
        (["score", "local", "posts.csv", "-o", "posts.csv"], "posts.csv", "is the input file posts.csv"),
        # the same for every other command that writes
        (
            ["report", "-o", "topicli-out/small/bundle/manifest.json"],
            "topicli-out/small/bundle/manifest.json",
            "is a file",
        ),
        (
            ["score", "posts.csv", "-o", "topicli-out/small/posts.topics.csv"],
            "topicli-out/small/posts.topics.csv",
            "is a file",
        ),
        (["score", "endpoint", "http://127.0.0.1:9/score", "posts.csv", "-o", "small.csv"], "small.csv", "input posts"),
        (["run", "posts.csv", "-o", "topicli-out/small/posts.csv"], "topicli-out/small/posts.csv", "is a file"),
        (["label", "--run", "topicli-out/small", "-o", "small.csv"], "small.csv", "is the input file small.csv"),
        (
            ["export", "onnx", "topicli-out/small/bundle", "-o", "topicli-out/small"],
            "topicli-out/small/posts.csv",
            "holds",
        ),
        (["export", "triton", "topicli-out/small/bundle", "-o", "topicli-out"], "topicli-out/small/posts.csv", "holds"),
        (["train-classifier", "small.csv", "-o", "."], "small.csv", "holds the input file small.csv"),
        (
            ["train-classifier", "small.csv", "-o", "topicli-out/small/bundle"],
            "topicli-out/small/bundle/manifest.json",
            "holds",
        ),
        (
            ["export", "onnx", "topicli-out/small/bundle", "-o", "topicli-out/other"],
            "topicli-out/other/posts.csv",
            "holds",
        ),
        # Spark writes a folder of parts, replaced whole: refused before Spark starts
        (
            [
                "score",
                "posts.csv",
                "--engine",
                "spark",
                "--bundle",
                "topicli-out/small/bundle",
                "-o",
                "topicli-out/small",
            ],
            "topicli-out/small/posts.csv",
            "holds",
        ),
        (
            ["run", "posts.csv", "--engine", "spark", "-o", "topicli-out/small.csv"],
            "topicli-out/small/posts.csv",
            "holds",
        ),
    ],
)
def test_no_command_writes_over_an_input_or_a_runs_files(
    cli, here: Path, args: list[str], kept: str, message: str
) -> None:
    before = digest(here / kept)
    line = one_line(cli(*args))
    assert message in line and "writing " in line, line
    assert digest(here / kept) == before


def test_the_commands_own_outputs_may_be_written_again(cli, here: Path) -> None:
    """The check refuses what belongs to others, not a command's own output: report.html twice is fine."""
    for _ in range(2):
        result = cli("report", "--run", "topicli-out/small", "-o", "topicli-out/small/report.html")
        assert result.exit_code == 0, result.stderr


# 6. No tracebacks


def test_a_radius_below_every_pair_is_one_line_with_no_half_drawn_bar(cli) -> None:
    """issue 32: `--eps 1e-9` raised IndexError; the error line followed a half-drawn "searching clusterings" bar."""
    result = cli("run", "small.csv", "--eps", "1e-9")
    line = one_line(result)
    assert "--eps 1e-09 leaves every post as noise" in line and "give a larger --eps" in line
    assert "searching clusterings" not in result.stderr, "the failed bar is cleared, not left half-drawn"


def test_a_cls_model_manifest_that_is_not_json_is_one_line(cli, here: Path) -> None:
    model = here / "bad-model"
    model.mkdir(exist_ok=True)
    (model / "manifest.json").write_text("not json {")
    (model / "weights.safetensors").write_bytes(b"")
    env = {"TOPICLI_LABELLING_SCORER": "cls_model", "TOPICLI_CLASSIFIER_PATH": str(model)}
    line = one_line(cli("run", "small.csv", env=env))
    assert "manifest.json is not readable JSON" in line and "train-classifier" in line


def test_a_cache_vectors_path_that_is_a_folder_heals(tmp_path: Path, embedder: Embedder) -> None:
    """issue 32: a folder where the posts' vectors file goes raised IsADirectoryError; a chunk's too."""
    texts = ["a folder where a file should be", "second post", "third post"]
    cache = Embedder(embedder.name, cache_dir=tmp_path, encoder=embedder.encoder)
    path = posts_vectors_path(cache.cache, text_keys(texts))
    path.mkdir(parents=True)
    with pytest.warns(CacheDamagedWarning, match="a folder, not a file"):
        vectors = cache.on_disk(texts)
    assert vectors.shape == (3, embedder.encoder.dimension) and path.is_file()
    chunk = next(cache.cache.folder.glob("*.vectors.npy"))
    chunk.unlink()
    chunk.mkdir()
    again = Embedder(embedder.name, cache_dir=tmp_path, encoder=embedder.encoder)
    with pytest.warns(CacheDamagedWarning, match="unreadable"):
        assert np.allclose(again(texts), vectors, atol=1e-6)
    assert chunk.is_file(), "the chunk is written again where the folder was"


# 8. Quiet by default


def test_a_small_run_prints_no_third_party_warning(cli) -> None:
    """issue 32: scikit-learn's "number of unique classes is greater than 50%" warning printed on small runs."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cli("run", "small.csv")
    assert result.exit_code == 0, result.stderr
    foreign = [f"{w.filename}: {w.message}" for w in caught if f"{os.sep}topicli{os.sep}" not in w.filename]
    assert foreign == []


@pytest.mark.heavy
def test_topicli_run_on_the_examples_prints_no_third_party_warning(tmp_path: Path, cache_dir: Path) -> None:
    """The target of issue 32, as a user runs it: every `warning:` line on stderr is one of topicli's own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOPICLI_ENCODER_CACHE_DIR": str(cache_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "topicli", "run", str(EXAMPLES)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "warning" in line.lower()]
    assert warned == [], warned  # the examples raise none of topicli's own warnings either
