"""`topicli train`: cls_model from `[classifier] train_data` first, then cluster, label and the bundle, with the
posts from the argument or `[input] posts`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import EXAMPLES
from topicli.cli.app import app
from topicli.io import file_digest
from topicli.serving.bundle import MANIFEST, BundleModel


def test_train_alone_reads_the_config_fits_cls_model_then_writes_the_bundle(isolated: Path) -> None:
    labelled = isolated / "labelled.csv"
    examples = pd.read_csv(EXAMPLES)
    examples.rename(columns={"caption": "text", "intended_topic": "label"}).to_csv(labelled, index=False)
    (isolated / "topicli.toml").write_text(
        f'[input]\nposts = "{EXAMPLES}"\n[classifier]\ntrain_data = "{labelled}"\nepochs = 1\n', encoding="utf-8"
    )
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 0, result.output + result.stderr
    trained = isolated / "topicli-out" / "cls_model"
    assert json.loads((trained / "manifest.json").read_text())["data"] == [str(labelled)]
    bundle = isolated / "topicli-out" / "posts" / "bundle"
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["scoring"]["scorer"] == "cls_model"  # labelled with the cls_model it just trained
    assert file_digest(bundle / "cls_model" / "weights.safetensors") == file_digest(trained / "weights.safetensors")
    posts = pd.read_csv(isolated / "topicli-out" / "posts" / "posts.csv")
    assert len(posts) == len(examples) and posts["topic"].notna().mean() > 0.5
    model = BundleModel.load(bundle)  # what deploy serves loads whole
    assert model.topics == manifest["topics"]


def test_train_without_posts_is_one_line(isolated: Path) -> None:
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "[input] posts" in lines[0]


@pytest.mark.heavy
def test_pipeline_steps_run_here_give_the_run_topics(isolated: Path) -> None:
    """The four steps of `train --on azureml`, chained by hand as Azure ML chains them (each step's output
    folder the next one's input), give every post the topic `topicli run` gives it."""
    runner = CliRunner()
    steps = [
        ["step", "embed", str(EXAMPLES), "--cache", "vectors"],
        ["step", "cluster", str(EXAMPLES), "--cache", "vectors", "--run", "clustering"],
        ["step", "label", str(EXAMPLES), "--cache", "vectors", "--run", "clustering", "-o", "labelled"],
        ["step", "register", "labelled", "--model", "model"],
        ["run", str(EXAMPLES)],
    ]
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"{args}: {result.output}{result.stderr}"
    assert list((isolated / "vectors").rglob("*.npy"))  # the embed step's output holds the vectors
    stepped = pd.read_csv(isolated / "labelled" / "posts.csv", keep_default_na=False)
    ran = pd.read_csv(isolated / "topicli-out" / "posts" / "posts.csv", keep_default_na=False)
    assert (stepped["topic"] == ran["topic"]).all()
    registered = BundleModel.load(isolated / "model")
    assert registered.bundle_id == json.loads((isolated / "labelled" / "bundle" / MANIFEST).read_text())["bundle_id"]
