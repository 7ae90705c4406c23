"""A loaded bundle (`BundleModel`): new posts given their cluster and topic as the run gave its own."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from topicli.method.adaptation import ScoreAdapter
from topicli.method.calibration import ConfidenceCalibrator
from topicli.method.classifier import PairClassifier
from topicli.method.encoders import Encoder
from topicli.method.labelling import ClusterLabeller
from topicli.method.languages import LanguageMeans
from topicli.method.scoring import TopicScores, finish_scores, raw_scores
from topicli.serving.bundle.format import Bundle
from topicli.serving.bundle.joining import join_clusters
from topicli.serving.bundle.read import load_bundle_classifier, load_bundle_encoder, read_structure, verify_files
from topicli.serving.bundle.versions import BundleVersionWarning, version_differences

SELF_DISTANCE = 1e-5  # a served post this close to a run post is that post: it is not its own neighbour


@dataclass
class Predictions:
    """Per text: cluster (-1 noise or empty), topic index (-1 none), confidence (NaN with no topic), and the topic
    a text shown with none would have had (its unmatched cluster's, or its own below min_confidence; else -1)."""

    clusters: np.ndarray
    topics: np.ndarray
    confidence: np.ndarray
    suggested: np.ndarray | None = None  # None: not answered (an ONNX export gives no suggestion)

    @classmethod
    def none(cls, n: int) -> Predictions:
        """`n` texts with no cluster and no topic (empty posts)."""
        minus_one = np.full(n, -1, dtype=np.int64)
        return cls(minus_one, minus_one.copy(), np.full(n, np.nan, dtype=np.float64), minus_one.copy())

    def put(self, rows: np.ndarray, answered: Predictions) -> None:
        """Fill `rows` with what `answered` gives, in order."""
        self.clusters[rows], self.topics[rows] = answered.clusters, answered.topics
        self.confidence[rows] = answered.confidence
        if self.suggested is not None and answered.suggested is not None:
            self.suggested[rows] = answered.suggested


class BundleModel:
    """A loaded bundle: `predict(texts)` gives new posts their cluster and topic as `topicli run` would.

    Topic scores are computed by `topicli.method.scoring` as `Pipeline.prepare` does, a new post's
    neighbours being its k nearest run posts (itself left out when it was one of them); the
    cluster by the join rule (`topicli.serving.bundle.joining`); then the run's `ClusterLabeller`
    assigns topics, override margin and noise policy included, and its calibrator the confidence.
    """

    def __init__(self, bundle: Bundle, encoder: Encoder, classifier: PairClassifier | None) -> None:
        from sklearn.neighbors import NearestNeighbors

        manifest, arrays = bundle.manifest, bundle.arrays
        self.folder = bundle.folder
        self.manifest = manifest
        self.encoder = encoder
        self.classifier = classifier
        self.topics: list[str] = list(manifest.topics)
        self.limits = manifest.limits
        self.bundle_id: str = manifest.bundle_id
        self.scoring = manifest.scoring
        self.post_vectors = arrays["post_vectors"]
        self.language_means = LanguageMeans.from_bundle(bundle)
        self.post_raw_scores = arrays["post_raw_scores"]
        self.core_vectors = self.post_vectors[arrays["core_index"]]
        self.core_clusters = arrays["core_clusters"]
        self.core_radius = arrays["core_radius"]
        self.parts = arrays["topic_part_vectors"]
        self.part_owner = arrays["topic_part_owner"]
        self.floors = arrays["topic_floors"]
        self.adapter = ScoreAdapter.from_bundle(bundle)
        # The run found neighbours with this same search (scikit-learn, cosine), so ties order alike.
        self.neighbour_index = NearestNeighbors(metric="cosine").fit(self.post_vectors)
        self.labeller = ClusterLabeller.from_bundle(bundle)
        self.version_differences = version_differences(manifest.versions)
        self.calibrator = ConfidenceCalibrator.from_bundle(bundle)  # None: the run's confidence stayed raw

    @classmethod
    def load(cls, folder: Path, batch_size: int = 64) -> BundleModel:
        """Load a bundle, checked whole first (its manifest and arrays, then its encoder and cls_model, then
        every file's digest and its id): a bundle that loads answers every request. Warns
        (`BundleVersionWarning`) when package versions differ from the writer's."""
        bundle = read_structure(Path(folder))
        manifest = bundle.manifest
        encoder = load_bundle_encoder(bundle.folder, manifest.encoder, batch_size)
        classifier = None
        if manifest.scoring.scorer == "cls_model":
            classifier = load_bundle_classifier(bundle.folder, manifest.encoder.dimension)
        verify_files(bundle)
        model = cls(bundle, encoder, classifier)
        if model.version_differences:
            warnings.warn(
                f"bundle {bundle.folder} was written with other versions: {'; '.join(model.version_differences)}",
                BundleVersionWarning,
                stacklevel=2,
            )
        return model

    def scores(self, vectors: np.ndarray) -> TopicScores:
        """Topic scores of new posts, smoothed over their nearest run posts."""
        raw = raw_scores(vectors, self.parts, self.part_owner, len(self.topics), self.classifier) - self.floors
        if self.adapter is not None:
            raw += self.adapter.correction(vectors)
        k = self.scoring.neighbours
        distances, indices = self.neighbour_index.kneighbors(vectors, n_neighbors=min(k + 1, len(self.post_vectors)))
        is_self = distances[:, 0] <= SELF_DISTANCE
        neighbours = np.where(is_self[:, None], indices[:, 1:], indices[:, :-1])[:, :k]
        matrix = finish_scores(
            raw, neighbours, self.scoring.neighbour_weight, self.classifier is None, source=self.post_raw_scores
        )
        return TopicScores(vectors, matrix)

    def predict(self, texts: Sequence[str]) -> Predictions:
        """Cluster, topic and confidence of each text; an empty text gets none, as in `topicli run`."""
        n = len(texts)
        out = Predictions.none(n)
        rows = np.array([i for i, text in enumerate(texts) if text.strip()], dtype=np.int64)
        if len(rows):
            cut = self._as_encoded([texts[i] for i in rows])
            out.put(rows, self.assign_vectors(self.encoder.encode(cut), cut))
        return out

    def _as_encoded(self, texts: Sequence[str]) -> list[str]:
        """Texts cut to as many characters as the run encoded."""
        limit = self.limits.encoded_chars
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
        topics, confidence, _ = labeller.withhold(topics, self._calibrated(confidence, scores))
        return topics, confidence

    def _centred(self, vectors: np.ndarray, encoded_texts: Sequence[str]) -> np.ndarray:
        """Vectors less their language's mean when the run centred its posts by language."""
        if self.language_means is None:
            return vectors
        return self.language_means.centre_texts(vectors, list(encoded_texts))

    def _calibrated(self, confidence: np.ndarray, scores: TopicScores) -> np.ndarray:
        """The labeller's confidence made a probability, as `Pipeline.label` does (unchanged when the run's was raw)."""
        return confidence if self.calibrator is None else self.calibrator.calibrate_posts(confidence, scores)

    def assign_vectors(self, vectors: np.ndarray, encoded_texts: Sequence[str]) -> Predictions:
        """Predictions for posts already encoded, `encoded_texts` being their texts as the encoder read them:
        the bundle's rule, for `predict` and for engines that embed elsewhere (Spark).

        A vector first loses its language's mean when the run centred its posts by language; then the
        nearest core point within its radius, scores smoothed over the run's nearest posts, the labeller,
        the calibrator, and the labeller's `min_confidence` (an unsure post is shown with no topic)."""
        vectors = self._centred(vectors, encoded_texts)
        labels = join_clusters(vectors, self.core_vectors, self.core_clusters, self.core_radius)
        scores = self.scores(vectors)
        clusters, topics, confidence = self.labeller.assign(vectors, labels, scores)
        topics, confidence, withheld = self.labeller.withhold(topics, self._calibrated(confidence, scores))
        return Predictions(clusters, topics, confidence, self.labeller.suggested(clusters, withheld))
