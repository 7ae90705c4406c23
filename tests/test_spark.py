"""`--engine spark` on a real local Spark (local[2], real Python workers): embed in tasks, fit on a sample on
the driver, assign every post in tasks; and the bad inputs that must stop with one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from tests.conftest import EXAMPLES, ROOT
from topicli.cli.app import app
from topicli.config import load_settings
from topicli.serving.bundle import ARRAYS, MANIFEST, BundleModel

pytest.importorskip("pyspark")


def cli(folder: Path, cache_dir: Path, *args: str, **settings: str) -> CliRunner:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(cache_dir))
        for name, value in settings.items():
            patch.setenv(name, value)
        result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + result.stderr
    return result


@pytest.fixture(scope="module")
def spark():
    """One local[2] session for the module; the CLI's `spark_session` joins it (getOrCreate)."""
    from topicli.spark.session import spark_session

    if not os.environ.get("JAVA_HOME") and not shutil.which("java"):
        pytest.skip("Spark needs a Java runtime (Java 17): none on PATH and no JAVA_HOME")

    session = spark_session(load_settings(None).scale)
    yield session
    session.stop()


FEED = {"TOPICLI_LABELLING_UNMATCHED_BELOW": "0.2", "TOPICLI_LABELLING_MIN_CONFIDENCE": "0.4"}


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """`topicli run examples/posts.csv` in one process: its run folder."""
    folder = tmp_path_factory.mktemp("single")
    cli(folder, cache_dir, "run", str(EXAMPLES), **FEED)
    return folder / "topicli-out" / "posts"


@pytest.fixture(scope="module")
def on_spark(spark, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """`topicli run --engine spark examples/posts.csv` with the default sample (more than the posts)."""
    folder = tmp_path_factory.mktemp("spark")
    cli(folder, cache_dir, "run", str(EXAMPLES), "--engine", "spark", **FEED)
    return folder / "topicli-out" / "posts"


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({"id": str}).set_index("id").sort_index()


@pytest.mark.heavy
def test_sample_of_every_post_gives_each_post_the_single_process_topic(single: Path, on_spark: Path) -> None:
    alone = by_id(pd.read_csv(single / "posts.csv", dtype={"id": str}, keep_default_na=False))
    spread = by_id(pd.read_parquet(on_spark / "posts.parquet"))
    assert len(spread) == len(alone) == len(pd.read_csv(EXAMPLES))
    assert (spread.index == alone.index).all()
    assert (spread["topic"].to_numpy() == alone["topic"].to_numpy()).all()
    # posts of unmatched clusters and unsure posts (both runs hold them back alike) keep the topic they would have had
    assert (alone["topic_runner_up"] != "").any() and (alone["topic"] != "").any()
    assert (spread["topic_runner_up"].to_numpy() == alone["topic_runner_up"].to_numpy()).all()
    assert (spread["cluster"].to_numpy() == alone["cluster"].astype(int).to_numpy()).all()
    confidence = pd.to_numeric(alone["topic_confidence"]).to_numpy()
    assert np.allclose(spread["topic_confidence"].to_numpy(), confidence, atol=1.0001e-4, equal_nan=True)
    # the vectors went to Parquet partitions, one per task slot at least, and the bundle to the run folder
    assert len(list((on_spark / "vectors.parquet").glob("part-*.parquet"))) >= 2
    bundles = [json.loads((run / "bundle" / MANIFEST).read_text()) for run in (single, on_spark)]
    assert bundles[0]["source"]["posts"] == bundles[1]["source"]["posts"]  # the sample was every distinct text


@pytest.mark.heavy
def test_a_smaller_sample_fits_on_it_alone_and_assigns_every_post_by_the_bundle(
    spark, tmp_path: Path, cache_dir: Path
) -> None:
    from topicli.spark.engine import run_spark

    settings = load_settings(
        None, overrides={"encoder": {"cache_dir": str(cache_dir)}, "scale": {"sample": 120}, "clustering": {}}
    )
    done = run_spark(spark, settings, str(EXAMPLES), tmp_path / "run")
    bundle = tmp_path / "run" / "bundle"
    assert done.sample == 120 and json.loads((bundle / MANIFEST).read_text())["source"]["posts"] == 120
    assert load_file(str(bundle / ARRAYS))["post_vectors"].shape[0] == 120  # the driver held the sample only
    out = pd.read_parquet(done.output)
    posts = pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)
    assert sorted(out["id"]) == sorted(posts["id"]) and done.posts == len(posts)
    # every post, in the sample or not, gets what the bundle served in one process gives it
    model = BundleModel.load(bundle)
    predicted = model.predict(posts["caption"].tolist())
    model_topics = [model.topics[t] if t >= 0 else "" for t in predicted.topics]
    served = dict(zip(posts["id"], model_topics, strict=True))
    agree = np.mean([served[i] == t for i, t in zip(out["id"], out["topic"], strict=True)])
    assert agree == 1.0


@pytest.mark.heavy
def test_score_with_engine_spark_gives_the_run_topics(on_spark: Path, tmp_path: Path, cache_dir: Path) -> None:
    target = tmp_path / "scored"
    result = cli(
        tmp_path, cache_dir, "score", str(EXAMPLES), "--engine", "spark", "--bundle", str(on_spark / "bundle"),
        "-o", str(target),
    )  # fmt: skip
    assert "scored by bundle" in " ".join(result.output.split())  # rich wraps long lines
    scored = by_id(pd.read_parquet(target))
    ran = by_id(pd.read_parquet(on_spark / "posts.parquet"))
    assert (scored["topic"] == ran["topic"]).all() and (scored["cluster"] == ran["cluster"]).all()


def one_line_exit_2(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    return lines[0]


def test_no_java_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    kept = [p for p in os.environ["PATH"].split(os.pathsep) if not Path(p, "java").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(kept))
    line = one_line_exit_2(CliRunner().invoke(app, ["run", str(EXAMPLES), "--engine", "spark"]))
    assert "Java runtime" in line


def test_azureml_path_is_refused_before_spark_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = "azureml://datastores/workspaceblobstore/paths/posts.csv"
    line = one_line_exit_2(CliRunner().invoke(app, ["score", uri, "--engine", "spark", "--bundle", str(tmp_path)]))
    assert "cannot reach" in line


def test_spark_that_does_not_start_is_one_line(tmp_path: Path) -> None:
    """A Java that dies at once: Spark's gateway never comes up (a fresh process, so no session exists)."""
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\necho 'Error: broken JVM' >&2\nexit 1\n")
    java.chmod(0o755)
    env = {**os.environ, "JAVA_HOME": str(java.parents[1]), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "topicli", "run", str(EXAMPLES), "--engine", "spark"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Spark did not start" in errors[0]


@pytest.mark.heavy
def test_run_o_follows_the_suffix_and_the_jvm_writes_to_a_log(tmp_path: Path, cache_dir: Path) -> None:
    """issue 32: `topicli run --engine spark -o s.csv` wrote a folder of Parquet parts named s.csv, and Spark's JVM
    printed its warnings on the terminal. Now: a folder s/ of CSV parts, said so, and the JVM's output in a log
    that one line names (a fresh process, so this run starts the JVM)."""
    if not os.environ.get("JAVA_HOME") and not shutil.which("java"):
        pytest.skip("Spark needs a Java runtime (Java 17): none on PATH and no JAVA_HOME")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOPICLI_ENCODER_CACHE_DIR": str(cache_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "topicli", "run", str(EXAMPLES), "--engine", "spark", "-o", "s.csv"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "goes to topicli-out/spark.log" in said and "a folder of CSV parts" in said and "-o s.csv named" in said
    assert not (tmp_path / "s.csv").exists() and (tmp_path / "s").is_dir()
    parts = sorted((tmp_path / "s").glob("part-*.csv"))
    frame = pd.concat([pd.read_csv(part, dtype=str, keep_default_na=False) for part in parts])
    assert len(frame) == len(pd.read_csv(EXAMPLES, dtype=str)) and {"cluster", "topic"} <= set(frame.columns)
    jvm = [line for line in done.stderr.splitlines() if "WARN" in line or "log4j" in line or "log level" in line]
    assert jvm == [], jvm
    assert "log level" in (tmp_path / "topicli-out" / "spark.log").read_text()
