"""Naming clusters from a topic list, scoring candidate clusterings, and each post's topic.

A cluster's topic is voted by the k posts nearest its centre: their topic scores
(topicli.method.scoring) are averaged per topic, the best mean wins and is the cluster's
confidence; the second is kept as runner-up.

A clustering is scored by how well its clusters hold together in the scorer's eyes: the
share of a random sample of posts whose own best topic is their cluster's topic (noise
counts as a miss). A giant cluster of mixed posts scores low even with full coverage,
which is what the naive "mean confidence x coverage" got wrong.

A post takes its cluster's topic unless its own scores prefer another topic by more than
`override_margin`; noise posts follow the noise policy.

A cluster whose topic's confidence is below `unmatched_below` is *unmatched*: no topic of the
list fits it (the list may miss a topic). Its posts get no topic, and no override (their own
scores come from the same list that fits them badly); the topic it would have had is kept
(`unmatched_best`) so that nothing is lost.

The rows may be distinct texts standing for several posts each (`weights`, their copies):
centres, voters, cluster sizes, coverage and the scorer's sample then count posts, as if
every copy were a row of its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.base import BaseEstimator

from topicli.errors import TopicliError
from topicli.method.base import NOISE_POLICIES, share
from topicli.method.calibration import ConfidenceCalibrator, log_ratio, logit_confidence
from topicli.method.scoring import TopicScores

if TYPE_CHECKING:
    from topicli.serving.bundle.format import Bundle

CHUNK = 65536


def centres(vectors: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Unit-length mean vector of each cluster (rows 0..n_clusters-1), each row counted `weights` times."""
    n_clusters = int(labels.max() + 1)
    sums = np.zeros((n_clusters, vectors.shape[1]), dtype=np.float64)
    members = np.flatnonzero(labels >= 0)
    for start in range(0, len(members), CHUNK):  # a 0/1 sparse product sums in post order, as np.add.at did
        rows = members[start : start + CHUNK]
        counts = np.ones(len(rows)) if weights is None else weights[rows].astype(np.float64)
        indicator = csr_matrix((counts, (labels[rows], np.arange(len(rows)))), (n_clusters, len(rows)))
        sums += indicator @ np.asarray(vectors[rows], dtype=np.float64)
    return (sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


def nearest_to_centre(
    vectors: np.ndarray, labels: np.ndarray, centre: np.ndarray, k: int, weights: np.ndarray | None = None
) -> list[np.ndarray]:
    """For each cluster, the indices of its k posts most similar to its centre (ties by index).

    With `weights` (posts each row stands for), the nearest rows until they stand for k posts.
    """
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(len(centre) + 1))
    out = []
    for c in range(len(centre)):
        rows = order[bounds[c] : bounds[c + 1]]
        # in row blocks: a giant cluster's rows gathered at once would copy most of a memory-mapped matrix
        similarity = (
            np.concatenate([vectors[rows[start : start + CHUNK]] @ centre[c] for start in range(0, len(rows), CHUNK)])
            if len(rows)
            else np.empty(0, dtype=np.float32)
        )
        nearest = rows[np.lexsort((rows, -similarity))]
        out.append(nearest[: k if weights is None else int(np.searchsorted(np.cumsum(weights[nearest]), k)) + 1])
    return out


def voter_weights(voters: list[np.ndarray], weights: np.ndarray | None, k: int) -> list[np.ndarray] | None:
    """The posts each voter stands for, the last one cut so that a cluster's voters stand for at most k."""
    if weights is None:
        return None
    return [np.minimum(weights[rows], k - (np.cumsum(weights[rows]) - weights[rows])) for rows in voters]


@dataclass
class ClusterTopic:
    """A cluster's topic, its mean topic probability, and the runner-up."""

    cluster: int
    size: int
    topic: int
    confidence: float
    runner_up: int
    runner_up_confidence: float
    voters: list[int]
    unmatched: bool = False  # the topic's confidence is below the labeller's unmatched_below

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def vote(
    voters: list[np.ndarray],
    sizes: np.ndarray,
    probabilities: TopicScores,
    weights: list[np.ndarray] | None = None,
) -> list[ClusterTopic]:
    """Every cluster's topic in one pass over a (clusters, k, topics) block of its voters' probabilities.

    `weights`: the posts each voter stands for (`voter_weights`), one each by default. Padding rows
    weigh 0 and come after the real ones, so each mean is bit-for-bit the weighted mean of that
    cluster's own (voters, topics) rows; ties go to the lower topic index.
    """
    if not voters:
        return []
    width = max(len(rows) for rows in voters)
    padded = np.zeros((len(voters), width), dtype=np.int64)
    counts = np.array([len(rows) for rows in voters])
    valid = np.arange(width) < counts[:, None]
    padded[valid] = np.concatenate(voters)
    block = probabilities(padded.ravel()).reshape(len(voters), width, -1)
    weight = np.zeros((len(voters), width), dtype=block.dtype)
    weight[valid] = 1 if weights is None else np.concatenate(weights)
    mean = (block * weight[:, :, None]).sum(axis=1) / weight.sum(axis=1, keepdims=True)
    order = np.argsort(-mean, axis=1, kind="stable")[:, :2]
    best = np.take_along_axis(mean, order, axis=1)
    return [
        ClusterTopic(c, int(sizes[c]), int(o[0]), float(b[0]), int(o[1]), float(b[1]), rows.tolist())
        for c, (rows, o, b) in enumerate(zip(voters, order, best, strict=True))
    ]


class ClusteringScorer:
    """Scores a clustering by topic agreement on a fixed random sample of posts.

    `weights`: the posts each row stands for; the sample is drawn from the posts, so a row is
    drawn as often as its copies would be.
    """

    def __init__(
        self,
        probabilities: TopicScores,
        k: int = 20,
        sample: int = 3000,
        seed: int = 0,
        weights: np.ndarray | None = None,
    ) -> None:
        self.probabilities = probabilities
        self.k = k
        self.weights = weights
        n = len(probabilities.vectors) if weights is None else int(weights.sum())
        self.sample = np.sort(np.random.default_rng(seed).choice(n, size=min(n, sample), replace=False))
        if weights is not None:  # the drawn posts, the copies of row i numbered after those of rows before it
            self.sample = np.searchsorted(np.cumsum(weights), self.sample, side="right")

    def __call__(self, labels: np.ndarray) -> dict[str, float]:
        vectors = self.probabilities.vectors
        centre = centres(vectors, labels, self.weights)
        voters = nearest_to_centre(vectors, labels, centre, self.k, self.weights)
        weights = voter_weights(voters, self.weights, self.k)
        topics = np.array([info.topic for info in vote(voters, np.zeros(len(voters)), self.probabilities, weights)])
        own_best = np.argmax(self.probabilities(self.sample), axis=1)
        sampled = labels[self.sample]
        agrees = (sampled >= 0) & (own_best == topics[np.maximum(sampled, 0)])
        clustered = sampled >= 0
        agreement = float(agrees[clustered].mean()) if clustered.any() else 0.0
        return {
            "score": float(agrees.mean()),
            "agreement": agreement,
            "coverage": share(labels >= 0, self.weights),
            "topics_used": len(set(topics.tolist())),
        }


class ClusterLabeller(BaseEstimator):
    """Gives each cluster a topic, then every post its topic (override margin, noise policy).

    After `fit`: `centres_` and `cluster_topics_` (one `ClusterTopic` per cluster).
    """

    def __init__(
        self,
        *,
        k: int = 20,
        noise_policy: str = "classify",
        noise_distance: float = 0.5,
        override_margin: float = 0.0,
        unmatched_below: float = 0.0,
        min_confidence: float = 0.0,
    ) -> None:
        self.k = k
        self.noise_policy = noise_policy
        self.noise_distance = noise_distance
        self.override_margin = override_margin
        self.unmatched_below = unmatched_below
        self.min_confidence = min_confidence

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> ClusterLabeller:
        """The labeller a run fitted, rebuilt from its bundle: its parameters, centres and cluster topics."""
        manifest = bundle.manifest
        labeller = cls(**manifest.labeller.model_dump())
        labeller.centres_ = bundle.arrays["centres"]
        names = {f.name for f in fields(ClusterTopic)}
        labeller.cluster_topics_ = [
            ClusterTopic(**{k: v for k, v in c.model_dump().items() if k in names}) for c in manifest.clusters
        ]
        return labeller

    def fit(
        self,
        vectors: np.ndarray,
        labels: np.ndarray,
        probabilities: TopicScores,
        weights: np.ndarray | None = None,
        calibrator: ConfidenceCalibrator | None = None,
    ) -> ClusterLabeller:
        """`weights`: the posts each row stands for (copies of its text), one each by default. `calibrator`:
        what makes a confidence a probability; a cluster is unmatched (no topic fits) when the probability that
        its topic is right is below `unmatched_below` (its raw confidence, without a calibrator)."""
        if self.noise_policy not in NOISE_POLICIES:
            raise TopicliError(f"noise policy {self.noise_policy!r} unknown; use one of {', '.join(NOISE_POLICIES)}")
        self.centres_ = centres(vectors, labels, weights) if labels.max() >= 0 else np.empty((0, vectors.shape[1]))
        voters = nearest_to_centre(vectors, labels, self.centres_, self.k, weights)
        member = labels >= 0
        sizes = np.bincount(labels[member], None if weights is None else weights[member], len(self.centres_))
        self.cluster_topics_ = vote(voters, sizes, probabilities, voter_weights(voters, weights, self.k))
        for info, right in zip(self.cluster_topics_, self.cluster_probabilities(calibrator), strict=True):
            info.unmatched = bool(right < self.unmatched_below)
        return self

    def cluster_probabilities(self, calibrator: ConfidenceCalibrator | None = None) -> np.ndarray:
        """Each cluster's chance that its topic is right: the calibrator read on the cluster as on a post (its
        vote's confidence, and that confidence over the runner-up's), or the raw confidence without one."""
        confidence = np.array([c.confidence for c in self.cluster_topics_], dtype=np.float64)
        if calibrator is None or not len(confidence):
            return confidence
        runner_up = np.array([c.runner_up_confidence for c in self.cluster_topics_], dtype=np.float64)
        features = np.column_stack([logit_confidence(confidence), log_ratio(confidence, runner_up)])
        return calibrator.predict_proba_right(features)

    def withhold(self, topics: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(topics shown, their confidence, topics withheld): a post whose (calibrated) confidence is below
        `min_confidence` is shown with no topic and NaN confidence; the topic it would have had is kept (-1 for
        every other post), so nothing is lost."""
        unsure = (topics >= 0) & (np.nan_to_num(confidence, nan=1.0) < self.min_confidence)
        withheld = np.where(unsure, topics, -1)
        return np.where(unsure, -1, topics), np.where(unsure, np.nan, confidence), withheld

    def suggested(self, clusters: np.ndarray, withheld: np.ndarray) -> np.ndarray:
        """The topic each post would have had where it has none shown: its unmatched cluster's, or its own
        withheld one (`withhold`); -1 for every other post."""
        return np.where(withheld >= 0, withheld, self.unmatched_best(clusters))

    def unmatched_best(self, clusters: np.ndarray) -> np.ndarray:
        """For posts in unmatched clusters (`clusters` as `assign` returns them), the topic their cluster would
        have had; -1 for every other post."""
        best = np.array([info.topic if info.unmatched else -1 for info in self.cluster_topics_] + [-1])
        return best[np.where(clusters >= 0, clusters, len(self.cluster_topics_))]

    def assign(
        self, vectors: np.ndarray, labels: np.ndarray, probabilities: TopicScores
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cluster, topic index or -1, confidence or NaN) for every post; noise by the policy, and no topic
        for the posts of unmatched clusters."""
        clusters = labels.copy()
        topics = np.full(len(labels), -1, dtype=np.int64)
        confidence = np.full(len(labels), np.nan, dtype=np.float64)
        noise = np.flatnonzero(labels < 0)
        if self.noise_policy == "nearest" and len(noise) and len(self.centres_):
            similarity = vectors[noise] @ self.centres_.T
            best = np.argmax(similarity, axis=1)
            close = 1.0 - similarity[np.arange(len(noise)), best] <= self.noise_distance
            clusters[noise[close]] = best[close]
        for info in self.cluster_topics_:
            if not info.unmatched:
                rows = clusters == info.cluster
                topics[rows] = info.topic
                confidence[rows] = info.confidence
        clustered = np.flatnonzero((clusters >= 0) & (topics >= 0))  # posts of unmatched clusters keep no topic
        if len(clustered):
            scores = probabilities(clustered)
            own = np.argmax(scores, axis=1)
            gap = scores[np.arange(len(own)), own] - scores[np.arange(len(own)), topics[clustered]]
            overridden = clustered[gap > self.override_margin]
            topics[overridden] = own[gap > self.override_margin]
            confidence[overridden] = scores[gap > self.override_margin].max(axis=1)
        if self.noise_policy == "classify" and len(noise):
            scores = probabilities(noise)
            topics[noise] = np.argmax(scores, axis=1)
            confidence[noise] = scores.max(axis=1)
        return clusters, topics, confidence
