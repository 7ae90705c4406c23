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
from topicli.errors import TopicliError
from topicli.method.encoder_export import ONNX_ENCODER_FILE as ENCODER_FILE
from topicli.method.encoders import SentenceTransformerEncoder, load_encoder, shipped_encoder_folder
from topicli.method.tokens import PACKAGE_ENCODER_FILE
from topicli.serving.bundle import BundleModel, Predictions
from topicli.serving.onnx import ASSIGN_FILE, EXPORT_MANIFEST, OnnxPipeline, export_onnx

from .bundle_edits import with_fields
from .conftest import EXAMPLES, needs_data, tweets
from .test_serving import agreement, run_examples

NEW_POSTS = ["Golden hour at the beach, best surf of the summer 🌊", "   ", "receta de paella valenciana", ""]


def minilm_run(folder: Path, cache_dir: Path, *options: str, **settings: str) -> Path:
    """`topicli run examples/posts.csv` with all-MiniLM-L6-v2 (the examples alone pick a multilingual encoder)."""
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


@pytest.mark.heavy
def test_the_graph_calibrates_the_confidence_as_the_bundle(
    run_folder: Path, model: BundleModel, exported: OnnxPipeline, tmp_path: Path
) -> None:
    graph = onnx.load(str(run_folder / "onnx" / ASSIGN_FILE), load_external_data=False).graph
    assert model.calibrator is not None
    assert any(node.op_type == "Sigmoid" and node.name.startswith("calibrated") for node in graph.node)
    # a bundle that keeps the raw confidence exports it raw
    raw_folder = with_fields(run_folder / "bundle", tmp_path / "raw", {"calibration": None})
    texts = example_texts()
    raw = BundleModel.load(raw_folder).predict(texts)
    assert_same(raw, OnnxPipeline(export_onnx(raw_folder, tmp_path / "onnx")).predict(texts))
    calibrated = exported.predict(texts)
    assert_same(model.predict(texts), calibrated)  # calibrated confidences agree to 1e-5
    assert np.nanmax(np.abs(calibrated.confidence - raw.confidence)) > 0.05


@pytest.mark.heavy
def test_unmatched_clusters_give_no_topic_in_the_graph_as_in_the_bundle(tmp_path: Path, cache_dir: Path) -> None:
    run_folder = minilm_run(tmp_path, cache_dir, TOPICLI_LABELLING_UNMATCHED_BELOW="0.5")
    model = BundleModel.load(run_folder / "bundle")
    unmatched = [c.cluster for c in model.labeller.cluster_topics_ if c.unmatched]
    assert 0 < len(unmatched) < len(model.labeller.cluster_topics_)  # both kinds of cluster are served
    texts = example_texts()
    bundle = model.predict(texts)
    in_unmatched = np.isin(bundle.clusters, unmatched)
    assert in_unmatched.any() and (bundle.topics[in_unmatched] == -1).all()
    assert_same(bundle, OnnxPipeline(export_onnx(run_folder / "bundle", tmp_path / "onnx")).predict(texts))


@pytest.mark.heavy
def test_unsure_posts_give_no_topic_in_the_graph_as_in_the_bundle(tmp_path: Path, cache_dir: Path) -> None:
    run_folder = minilm_run(tmp_path, cache_dir, TOPICLI_LABELLING_MIN_CONFIDENCE="0.6")
    model = BundleModel.load(run_folder / "bundle")
    texts = example_texts()
    bundle = model.predict(texts)
    unsure = bundle.suggested >= 0
    assert unsure.any() and (bundle.topics >= 0).any(), "both unsure and shown posts are served"
    assert (bundle.topics[unsure] == -1).all() and np.isnan(bundle.confidence[unsure]).all()
    assert np.nanmin(bundle.confidence) >= 0.6
    assert_same(bundle, OnnxPipeline(export_onnx(run_folder / "bundle", tmp_path / "onnx")).predict(texts))


@pytest.mark.heavy
def test_embeddings_match_the_pytorch_model(model: BundleModel, exported: OnnxPipeline) -> None:
    texts = [t for t in example_texts() if t.strip()]
    vectors, valid = exported.embed(texts)
    assert valid.all()
    pytorch = load_encoder(str(shipped_encoder_folder()))  # a folder: sentence-transformers in PyTorch
    assert isinstance(pytorch, SentenceTransformerEncoder)
    assert np.min(np.sum(vectors * pytorch.encode(texts), axis=1)) >= 0.9999


@pytest.mark.heavy
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


@pytest.mark.heavy
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


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """`topicli run examples/posts.csv` with the default settings: `auto` reads 17 % of the posts as other languages."""
    return run_examples(tmp_path_factory.mktemp("default-run"), cache_dir)


def mixed_sib_run(folder: Path, cache_dir: Path, per_language: int = 12) -> tuple[Path, list[str]]:
    """`topicli run` on SIB-200 dev sentences in 8 languages (each sentence once); the run folder and the texts."""
    languages = ("eng_Latn", "deu_Latn", "spa_Latn", "ell_Grek", "ben_Beng", "tha_Thai", "ukr_Cyrl", "vie_Latn")
    texts = []
    for i, language in enumerate(languages):
        frame = pd.read_csv(needs_data("eval", "sib200", language, "dev.tsv"), sep="\t", dtype=str)
        texts += frame["text"].iloc[i * per_language : (i + 1) * per_language].tolist()
    pd.DataFrame({"id": range(len(texts)), "text": texts}).to_csv(folder / "mixed.csv", index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(cache_dir))
        result = CliRunner().invoke(app, ["run", str(folder / "mixed.csv")])
    assert result.exit_code == 0, result.stderr
    assert "auto chose multilingual-e5-small" in result.stdout
    return folder / "topicli-out" / "mixed", texts


def assert_serves_the_run(run_folder: Path, texts: list[str], served: Predictions, topics: list[str]) -> None:
    """Every post's served cluster, topic and confidence are the run's."""
    names = [topics[t] if t >= 0 else "" for t in served.topics]
    shares = agreement(run_folder, served.clusters.tolist(), names, served.confidence.tolist())
    assert shares == {"cluster": 1.0, "topic": 1.0, "confidence": 1.0}


@pytest.mark.heavy
def test_the_default_run_exports_and_serves_its_topics(default_run: Path) -> None:
    """The multilingual default run: its encoder runs in its package beside assign.onnx, with the run's topics."""
    model = BundleModel.load(default_run / "bundle")
    choice = model.manifest.encoder.choice
    assert choice is not None and choice.name == model.manifest.encoder.name != "all-MiniLM-L6-v2"
    assert choice.reason.startswith("auto chose") and choice.languages["en"] > 0.7
    assert model.language_means is not None and "en" in model.manifest.encoder.centred_languages
    exported = OnnxPipeline(export_onnx(default_run / "bundle", default_run / "onnx"))
    manifest = json.loads((default_run / "onnx" / EXPORT_MANIFEST).read_text())
    assert set(manifest["graphs"]) == {PACKAGE_ENCODER_FILE, ASSIGN_FILE}
    assert not (default_run / "onnx" / ENCODER_FILE).exists()
    texts = pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)["caption"].tolist()
    assert_serves_the_run(default_run, texts, exported.predict(texts), model.topics)
    assert_same(model.predict(example_texts()), exported.predict(example_texts()))


@pytest.mark.heavy
def test_a_mixed_sib_run_is_served_alike_by_bundle_and_onnx(tmp_path: Path, cache_dir: Path) -> None:
    run_folder, texts = mixed_sib_run(tmp_path, cache_dir)
    model = BundleModel.load(run_folder / "bundle")
    exported = OnnxPipeline(export_onnx(run_folder / "bundle", tmp_path / "onnx"))
    assert_serves_the_run(run_folder, texts, model.predict(texts), model.topics)
    assert_serves_the_run(run_folder, texts, exported.predict(texts), model.topics)


def test_an_export_refuses_another_package_version(default_run: Path, tmp_path: Path) -> None:
    folder = export_onnx(default_run / "bundle", tmp_path / "onnx")
    spec = json.loads((folder / PACKAGE_ENCODER_FILE).read_text())
    (folder / PACKAGE_ENCODER_FILE).write_text(json.dumps({**spec, "identity": spec["identity"] + "-other"}))
    with pytest.raises(TopicliError, match="install the package version of the export"):
        OnnxPipeline(folder)
