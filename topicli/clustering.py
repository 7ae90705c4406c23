"""Density clustering of unit vectors, and the search for parameters that give a usable count.

DBSCAN runs on cosine distance. The search builds one sparse neighbourhood graph at the
largest radius it will try and hands it, as precomputed distances, to every DBSCAN run,
so the expensive part is done once. Radii come from the data: quantiles of each post's
distance to its m-th neighbour, so the grid suits any encoder. Candidates whose cluster
count lies in [min_topics, max_topics] are ranked by a score supplied by the caller
(labelling scores them with cls_model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from topicli.errors import TopicliError
from topicli.progress import Advance

MIN_SAMPLES_GRID = (2, 3, 5, 8, 12, 20)
CORE_SHARE_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6)
HDBSCAN_GRID = ((5, 5), (10, 5), (15, 5), (25, 10), (40, 10))
Scorer = Callable[[np.ndarray], dict[str, float]]


@dataclass
class Candidate:
    """One clustering the search tried."""

    algorithm: str
    eps: float
    min_samples: int
    min_cluster_size: int
    n_clusters: int
    coverage: float
    in_range: bool
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.scores.get("score", float("nan"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Cluster ids 0..n-1 by decreasing size (ties by first post), noise stays -1."""
    ids, first, counts = np.unique(labels[labels >= 0], return_index=True, return_counts=True)
    order = ids[np.lexsort((first, -counts))]
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(label, -1) for label in labels], dtype=np.int64)


def dbscan(graph: Any, eps: float, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and core-point mask of DBSCAN on a precomputed sparse cosine-distance graph.

    Entries of the graph beyond eps are ignored, so one graph serves every smaller eps.
    """
    model = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit(graph)
    core = np.zeros(graph.shape[0], dtype=bool)
    core[model.core_sample_indices_] = True
    return _relabel(model.labels_), core


def neighbour_distances(vectors: np.ndarray, k: int) -> np.ndarray:
    """Cosine distance of every post to its k nearest neighbours (itself excluded)."""
    k = min(k, len(vectors) - 1)
    distances, _ = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(vectors).kneighbors(vectors)
    return distances[:, 1:]


def radius_graph(vectors: np.ndarray, radius: float) -> Any:
    """Sparse matrix of cosine distances up to `radius`; exact zeros kept as tiny values so they count."""
    graph = NearestNeighbors(radius=radius, metric="cosine").fit(vectors).radius_neighbors_graph(mode="distance")
    graph.data = np.maximum(graph.data, 1e-9)
    graph.setdiag(1e-9)
    return graph.tocsr()


def hdbscan_labels(vectors: np.ndarray, min_cluster_size: int, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels of HDBSCAN (euclidean on unit vectors orders like cosine) and its cluster members as "core"."""
    import hdbscan

    model = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, metric="euclidean")
    labels = _relabel(model.fit(vectors).labels_)
    return labels, labels >= 0


class ClusterSearch:
    """Searches clustering parameters and keeps the best-scored clustering in range.

    `eps`/`min_samples` of 0 are searched, a value fixes it (HDBSCAN searches
    min_cluster_size and takes min_samples). After `fit`: `candidates_` (every
    clustering tried), `best_`, and its `labels_` (cluster per post, -1 noise) and
    `core_` (DBSCAN's core points; HDBSCAN's cluster members).
    """

    def __init__(
        self,
        algorithm: str = "dbscan",
        min_topics: int = 20,
        max_topics: int = 100,
        eps: float = 0.0,
        min_samples: int = 0,
    ) -> None:
        self.algorithm = algorithm
        self.min_topics = min_topics
        self.max_topics = max_topics
        self.eps = eps
        self.min_samples = min_samples

    def _grid(self, vectors: np.ndarray) -> list[tuple[float, int, int]]:
        """(eps, min_samples, min_cluster_size) to try; eps is DBSCAN's, min_cluster_size HDBSCAN's."""
        if self.algorithm == "hdbscan":
            sizes = [(size, samples) for size, samples in HDBSCAN_GRID]
            if self.min_samples:
                sizes = sorted({(size, self.min_samples) for size, _ in HDBSCAN_GRID})
            return [(0.0, samples, size) for size, samples in sizes]
        if self.eps and self.min_samples:
            return [(self.eps, self.min_samples, 0)]
        distances = neighbour_distances(vectors, max(MIN_SAMPLES_GRID))
        if self.eps:
            return [(self.eps, m, 0) for m in MIN_SAMPLES_GRID]
        samples = (self.min_samples,) if self.min_samples else MIN_SAMPLES_GRID
        grid = set()
        for m in samples:
            column = distances[:, min(m, distances.shape[1]) - 1]
            grid |= {(round(float(np.quantile(column, share)), 4), m, 0) for share in CORE_SHARE_GRID}
        return sorted(grid)

    def fit(self, vectors: np.ndarray, scorer: Scorer, progress: Advance | None = None) -> ClusterSearch:
        if len(vectors) < 3:
            raise TopicliError(f"clustering needs at least 3 non-empty posts, got {len(vectors)}")
        grid = self._grid(vectors)
        graph = radius_graph(vectors, max(eps for eps, _, _ in grid)) if self.algorithm == "dbscan" else None
        self.candidates_: list[Candidate] = []
        fixed = len(grid) == 1
        best: Candidate | None = None
        for eps, min_samples, min_cluster_size in grid:
            if self.algorithm == "dbscan":
                labels, core = dbscan(graph, eps, min_samples)
            else:
                labels, core = hdbscan_labels(vectors, min_cluster_size, min_samples)
            n_clusters = int(labels.max() + 1)
            candidate = Candidate(
                algorithm=self.algorithm,
                eps=eps,
                min_samples=min_samples,
                min_cluster_size=min_cluster_size,
                n_clusters=n_clusters,
                coverage=float(np.mean(labels >= 0)),
                in_range=self.min_topics <= n_clusters <= self.max_topics,
            )
            if (candidate.in_range or fixed) and n_clusters > 0:
                candidate.scores = scorer(labels)
                if best is None or candidate.score > best.score:
                    best, self.labels_, self.core_ = candidate, labels, core
            self.candidates_.append(candidate)
            if progress is not None:
                progress(1)
        if best is None:
            counts = sorted(c.n_clusters for c in self.candidates_)
            raise TopicliError(
                f"no clustering has {self.min_topics}-{self.max_topics} clusters (the search found {counts[0]} to "
                f"{counts[-1]}); widen [clustering] min_topics/max_topics or fix --eps and --min-samples"
            )
        self.best_ = best
        return self
