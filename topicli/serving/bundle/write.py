"""Writing a bundle: the `Manifest` and arrays of a labelled run (`bundle_contents`), then the folder
(`save_bundle`), which records every file's sha256 and the bundle id; a rename writes through the same model
(`renamed_bundle`)."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import save_file

from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import UMASK, atomic_folder, file_digest
from topicli.method.classifier import SHIPPED_MODEL
from topicli.method.encoders import DEFAULT_ENCODER, shipped_encoder_folder
from topicli.serving.bundle.format import (
    ARRAYS,
    CLASSIFIER_FOLDER,
    ENCODER_FOLDER,
    FORMAT_VERSION,
    MANIFEST,
    Bundle,
    Manifest,
    Rename,
)
from topicli.serving.bundle.joining import core_radii, join_clusters
from topicli.serving.bundle.read import ENCODER_PACKAGES, PACKAGE_ONLY
from topicli.serving.bundle.versions import package_versions

if TYPE_CHECKING:
    from topicli.method.pipeline import LabelledPosts
    from topicli.method.records import ClusterRun
    from topicli.method.rename import RenamedRun

JOIN_CHECK_POSTS = 5000  # run posts on which the join rule is checked: brute force against every core point


def _encoder_source(name: str, include: bool) -> dict[str, str]:
    if include:
        return {"source": "bundle", "path": ENCODER_FOLDER}
    if name in ENCODER_PACKAGES:
        package = ENCODER_PACKAGES[name]
        return {"source": "package", "package": package, "version": version(package)}
    return {"source": "folder", "path": str(Path(name).expanduser().resolve())}


def _encoder_folder(name: str) -> Path:
    """The sentence-transformers folder of an encoder, to copy into a bundle."""
    if name in PACKAGE_ONLY:
        raise TopicliError(
            f"the {name} encoder cannot be copied into a bundle (its weights live in the "
            f"{ENCODER_PACKAGES[name]} package); install that package where the bundle is served"
        )
    return shipped_encoder_folder() if name == DEFAULT_ENCODER else Path(name).expanduser().resolve()


@dataclass
class BundleContents:
    """A bundle before it is written: its manifest (its files' digests and id still to come, `save_bundle`
    gives them), its arrays, and the folders copied in beside them."""

    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray]
    classifier_folder: Path | None  # copied as `cls_model/` when the scorer is cls_model
    encoder_folder: Path | None  # copied as `encoder/` when the encoder travels with the bundle


def _join_rule(run: ClusterRun) -> str:
    if run.chosen.algorithm == "dbscan":
        return f"nearest DBSCAN core point within eps={run.chosen.eps:g}"
    return "nearest HDBSCAN cluster member within that member's core distance (approximation)"


def bundle_contents(
    result: LabelledPosts, run: ClusterRun, settings: Settings, include_encoder: bool = False
) -> BundleContents:
    """What the bundle of a labelled run holds, from the label step's result and the clustering alone."""
    s = settings.labelling
    prepared = result.prepared
    rows, vectors = prepared.rows, prepared.vectors
    labels, core = run.labels[rows], run.core[rows]
    labeller = result.labeller
    # The serving join rule, replayed on the run's own posts: how often it puts them back in their clusters.
    radius = core_radii(vectors, run.chosen, core)
    check = np.sort(np.random.default_rng(0).choice(len(rows), size=min(len(rows), JOIN_CHECK_POSTS), replace=False))
    joined = join_clusters(vectors[check], vectors[core], labels[core], radius)
    topics = result.topics
    adapted = prepared.adapter is not None and bool(prepared.adapter.rounds_)
    means = prepared.language_means
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "versions": package_versions(),
        "source": {"input": run.input, "input_sha256": run.input_sha256, "posts": len(rows)},
        "settings": {name: asdict(getattr(settings, name)) for name in ("encoder", "clustering", "labelling")},
        "encoder": {
            "name": prepared.encoder_name,
            "identity": prepared.encoder_identity,
            "dimension": int(vectors.shape[1]),
            **_encoder_source(prepared.encoder_name, include_encoder),
            "choice": prepared.encoder_choice.to_dict() if prepared.encoder_choice else None,
            "centred_languages": means.languages if means is not None else None,
        },
        "clustering": {**run.chosen.to_dict(), "core_points": int(core.sum()), "join_rule": _join_rule(run)},
        "scoring": {
            "scorer": s.scorer,
            "template": prepared.template,
            "neighbours": prepared.neighbours.shape[1],
            "neighbour_weight": s.neighbour_weight,
            "adaptation": prepared.adapter.summary() if adapted else None,
        },
        "labeller": labeller.get_params(),
        "topics": topics,
        "clusters": [
            {
                **info.to_dict(),
                "topic_name": topics[info.topic],
                "runner_up_name": topics[info.runner_up],
                "keywords": (result.cluster_keywords or {}).get(info.cluster, []),
            }
            for info in labeller.cluster_topics_
        ],
        "topic_keywords": _topic_keywords(result),
        "calibration": result.calibrator.to_dict() if result.calibrator else None,  # of topic_confidence
        "metrics": {
            "coverage": result.coverage,
            "chosen_score": run.chosen.score,
            "chosen_scores": run.chosen.scores,
            "n_clusters": run.chosen.n_clusters,
            "join_agreement": float(np.mean(joined == labels[check])) if len(check) else 1.0,
        },
        "limits": {
            "max_posts": settings.serving.max_posts,
            "max_chars": settings.serving.max_chars,
            "encoded_chars": settings.input.max_chars,
        },
    }
    arrays = {
        "post_vectors": np.ascontiguousarray(vectors, dtype=np.float32),
        "post_raw_scores": np.ascontiguousarray(prepared.raw_scores, dtype=np.float32),
        "core_index": np.flatnonzero(core).astype(np.int64),
        "core_clusters": labels[core].astype(np.int64),
        "core_radius": radius,
        "centres": np.ascontiguousarray(labeller.centres_, dtype=np.float32),
        "topic_part_vectors": np.ascontiguousarray(prepared.topic_parts, dtype=np.float32),
        "topic_part_owner": prepared.part_owner.astype(np.int64),
        "topic_floors": np.ascontiguousarray(prepared.topic_floors, dtype=np.float32),
    }
    if adapted:  # a served post's raw scores get the run's head's correction, as the run's posts did
        arrays["head_coef"] = np.ascontiguousarray(prepared.adapter.coef_, dtype=np.float32)
        arrays["head_intercept"] = np.ascontiguousarray(prepared.adapter.intercept_, dtype=np.float32)
    if means is not None:  # a served post loses its language's mean, as the run's posts did
        arrays["language_means"] = np.ascontiguousarray(means.means, dtype=np.float32)
    return BundleContents(
        manifest=manifest,
        arrays=arrays,
        classifier_folder=Path(settings.classifier.path or SHIPPED_MODEL) if s.scorer == "cls_model" else None,
        encoder_folder=_encoder_folder(prepared.encoder_name) if include_encoder else None,
    )


def _topic_keywords(result: LabelledPosts) -> dict[str, list[str]]:
    """Each topic's c-TF-IDF keywords, from the topic table (the run's record; serving does not read them)."""
    table = result.topic_table
    if "keywords" not in table.columns:  # a table built elsewhere (the Spark engine's) may have none
        return {}
    topics = table[table["kind"] == "topic"] if "kind" in table.columns else table
    pairs = zip(topics["topic"], topics["keywords"].fillna(""), strict=True)
    return {str(topic): [w for w in str(words).split(", ") if w] for topic, words in pairs}


def file_digests(folder: Path) -> dict[str, str]:
    """The sha256 of every file in a bundle folder but its manifest, by path relative to the folder."""
    return {
        path.relative_to(folder).as_posix(): file_digest(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() != MANIFEST
    }


def save_bundle(contents: BundleContents, folder: Path) -> Manifest:
    """Write a bundle into `folder`, replacing any bundle there only once it is whole; its manifest, checked by
    the format's model, with the sha256 of every file and the id they and the answer fields make."""
    with atomic_folder(folder) as staging:
        save_file(contents.arrays, str(staging / ARRAYS))
        os.chmod(staging / ARRAYS, 0o666 & ~UMASK)  # safetensors makes private files; give the usual mode
        if contents.classifier_folder is not None:
            shutil.copytree(contents.classifier_folder, staging / CLASSIFIER_FOLDER)
        if contents.encoder_folder is not None:
            shutil.copytree(contents.encoder_folder, staging / ENCODER_FOLDER)
        unsigned = {**contents.manifest, "files": file_digests(staging), "bundle_id": "unsigned"}
        manifest = Manifest.model_validate(unsigned)
        manifest = manifest.model_copy(update={"bundle_id": manifest.digest()})
        (staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def write_bundle(
    result: LabelledPosts, run: ClusterRun, settings: Settings, folder: Path, include_encoder: bool = False
) -> Manifest:
    """The bundle of a labelled run, written into `folder` (`bundle_contents`, then `save_bundle`)."""
    return save_bundle(bundle_contents(result, run, settings, include_encoder), folder)


def renamed_bundle(bundle: Bundle, run: RenamedRun) -> BundleContents:
    """A bundle with the new names of `topicli label --rename`: the topic list (same length and order, merged
    topics sharing a name), each cluster's topic and runner-up names, the unmatched clusters that joined a
    topic, the topics' keywords; and the mapping applied, under `renamed`. Same arrays and folders."""
    m = bundle.manifest
    topics = [run.mapping.get(t, t) for t in m.topics]
    clusters = []
    for cluster in m.clusters:
        joined = run.joined.get(cluster.cluster)
        topic = topics.index(joined) if joined is not None else cluster.topic
        changes = {"topic": topic, "topic_name": topics[topic], "runner_up_name": topics[cluster.runner_up]}
        clusters.append(cluster.model_copy(update=changes if joined is None else {**changes, "unmatched": False}))
    table = run.topic_table[run.topic_table["kind"] == "topic"]
    keywords = {
        str(t): [w for w in str(k).split(", ") if w] for t, k in zip(table["topic"], table["keywords"], strict=True)
    }
    rename = Rename(topics=dict(run.mapping), joined={str(c): t for c, t in run.joined.items()})
    manifest = m.model_copy(
        update={"topics": topics, "clusters": clusters, "topic_keywords": keywords, "renamed": [*m.renamed, rename]}
    )
    folder = bundle.folder
    return BundleContents(
        manifest.model_dump(mode="json"),
        bundle.arrays,
        folder / CLASSIFIER_FOLDER if (folder / CLASSIFIER_FOLDER).is_dir() else None,
        folder / ENCODER_FOLDER if (folder / ENCODER_FOLDER).is_dir() else None,
    )
