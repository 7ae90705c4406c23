"""`topicli export onnx`: onnxruntime on the exported graphs gives what the bundle gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from typer.testing import CliRunner

from topicli.cli import app
from topicli.method.encoder_export import ONNX_ENCODER_FILE as ENCODER_FILE
from topicli.method.encoders import SentenceTransformerEncoder, load_encoder, shipped_encoder_folder
from topicli.serving.bundle import BundleModel, Predictions
from topicli.serving.onnx import ASSIGN_FILE, EXPORT_MANIFEST, OnnxPipeline, export_onnx

from .conftest import EXAMPLES, tweets
from .test_serving import run_examples

NEW_POSTS = ["Golden hour at the beach, best surf of the summer 🌊", "   ", "receta de paella valenciana", ""]


def minilm_run(folder: Path, cache_dir: Path, *options: str, **settings: str) -> Path:
    """`topicli run examples/posts.csv` with all-MiniLM-L6-v2 (the examples alone would pick multilingual)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOPICLI_ENCODER_NAME", "all-MiniLM-L6-v2")
        for name, value in settings.items():
            patch.setenv(name, value)
        return run_examples(folder, cache_dir, *options)


def example_texts() -> list[str]:
    return pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)["caption"].tolist() + NEW_POSTS


def assert_same(bundle: Predictions, exported: Predictions) -> None:
    """Same cluster and topic for every post; confidence equal to float32 precision, NaN where no topic."""
    np.testing.assert_array_equal(exported.clusters, bundle.clusters)
    np.testing.assert_array_equal(exported.topics, bundle.topics)
    np.testing.assert_array_equal(np.isnan(exported.confidence), np.isnan(bundle.confidence))
    np.testing.assert_allclose(exported.confidence, bundle.confidence, atol=1e-5, equal_nan=True)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    return minilm_run(tmp_path_factory.mktemp("onnx-run"), cache_dir)


@pytest.fixture(scope="module")
def model(run_folder: Path) -> BundleModel:
    return BundleModel.load(run_folder / "bundle")


@pytest.fixture(scope="module")
def exported(run_folder: Path) -> OnnxPipeline:
    return OnnxPipeline(export_onnx(run_folder / "bundle", run_folder / "onnx"))


def test_export_writes_checked_graphs_and_no_pickle(run_folder: Path, exported: OnnxPipeline) -> None:
    folder = run_folder / "onnx"
    manifest = json.loads((folder / EXPORT_MANIFEST).read_text())
    assert manifest["bundle_id"] == json.loads((run_folder / "bundle" / "manifest.json").read_text())["bundle_id"]
    for name in (ENCODER_FILE, ASSIGN_FILE):
        onnx.checker.check_model(str(folder / name), full_check=True)
        graph = onnx.load(str(folder / name), load_external_data=False).graph
        assert [i.name for i in graph.input] == manifest["graphs"][name]["inputs"]
        assert [o.name for o in graph.output] == manifest["graphs"][name]["outputs"]
    assert not [p for p in folder.rglob("*") if p.suffix in (".pkl", ".pickle", ".joblib")]


def test_same_topics_as_the_bundle_on_the_examples(model: BundleModel, exported: OnnxPipeline) -> None:
    texts = example_texts()
    assert_same(model.predict(texts), exported.predict(texts))


def test_embeddings_match_the_pytorch_model(model: BundleModel, exported: OnnxPipeline) -> None:
    texts = [t for t in example_texts() if t.strip()]
    vectors, valid = exported.embed(texts)
    assert valid.all()
    pytorch = load_encoder(str(shipped_encoder_folder()))  # a folder: sentence-transformers in PyTorch
    assert isinstance(pytorch, SentenceTransformerEncoder)
    assert np.min(np.sum(vectors * pytorch.encode(texts), axis=1)) >= 0.9999


def test_a_bundle_carrying_its_encoder_exports_it_through_torch(tmp_path: Path, cache_dir: Path) -> None:
    run_folder = minilm_run(tmp_path, cache_dir, "--include-encoder")
    model = BundleModel.load(run_folder / "bundle")
    assert isinstance(model.encoder, SentenceTransformerEncoder)  # served by PyTorch from the bundle's copy
    texts = example_texts()
    assert_same(
        model.predict(texts), OnnxPipeline(export_onnx(run_folder / "bundle", tmp_path / "onnx")).predict(texts)
    )


@pytest.mark.heavy
def test_same_topics_on_2000_evaluation_posts(model: BundleModel, exported: OnnxPipeline) -> None:
    texts = [row["text"] for row in tweets(2000)]
    bundle = model.predict(texts)
    assert len(set(bundle.topics.tolist())) > 5  # new posts spread over topics: the comparison means something
    assert_same(bundle, exported.predict(texts))


@pytest.mark.parametrize(
    "settings",
    [
        {"TOPICLI_LABELLING_SCORER": "cls_model", "TOPICLI_LABELLING_NOISE_POLICY": "nearest"},
        {"TOPICLI_LABELLING_NOISE_POLICY": "unassigned", "TOPICLI_LABELLING_OVERRIDE_MARGIN": "0.05"},
    ],
    ids=["cls_model-nearest", "cosine-unassigned-margin"],
)
def test_scorer_and_noise_policy_variants(tmp_path: Path, cache_dir: Path, settings: dict[str, str]) -> None:
    run_folder = minilm_run(tmp_path, cache_dir, **settings)
    model = BundleModel.load(run_folder / "bundle")
    texts = example_texts()
    bundle = model.predict(texts)
    if settings.get("TOPICLI_LABELLING_NOISE_POLICY") == "unassigned":
        assert np.isnan(bundle.confidence[bundle.clusters < 0]).all()
    assert_same(bundle, OnnxPipeline(export_onnx(run_folder / "bundle", tmp_path / "onnx")).predict(texts))


def test_cli_export_and_its_errors(run_folder: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["export", "onnx", str(run_folder / "bundle"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / ENCODER_FILE).is_file() and (tmp_path / "out" / ASSIGN_FILE).is_file()
    missing = runner.invoke(app, ["export", "onnx", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert "is not a model bundle" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_a_multilingual_bundle_is_refused_with_the_fix(tmp_path: Path, cache_dir: Path) -> None:
    run_folder = run_examples(tmp_path, cache_dir)  # `auto` takes the multilingual encoder on the examples
    result = CliRunner().invoke(app, ["export", "onnx", str(run_folder / "bundle")])
    assert result.exit_code == 2
    assert "has no ONNX export" in result.stderr and "all-MiniLM-L6-v2" in result.stderr
    assert not (run_folder / "onnx").exists()
