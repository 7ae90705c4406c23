"""Density clustering of unit vectors, and the search for parameters that give a usable count.

DBSCAN runs on cosine distance. The search builds one sparse neighbourhood graph at the
largest radius it will try and hands it, as precomputed distances, to every DBSCAN run,
so the expensive part is done once. Radii come from the data: quantiles of each post's
distance to its m-th neighbour, so the grid suits any encoder. Candidates whose cluster
count lies in [min_topics, max_topics] are ranked by a score supplied by the caller
(labelling scores them with cls_model).

Exact neighbours and DBSCAN cost O(n^2) (42 s at 50k posts), so from `EXACT_LIMIT` posts
on the neighbours come from an approximate index (hnswlib HNSW, chosen by measurement
against faiss and pynndescent in bench/run.py) and the graph holds each post's k nearest
neighbours within the radius, made symmetric. Deciding core points needs only each post's
min_samples nearest (k covers the largest); links between core points beyond each other's
k nearest are lost, and the index misses a few neighbours: tests/test_clustering.py bounds
both by ARI against exact DBSCAN. DBSCAN on that graph is connected components of the core points.

Above `SEARCH_LIMIT` posts the index holds a fixed random sample of that many posts, and
every post's neighbours are its nearest sample posts (its topic scores are smoothed over
them, as a served post's are over run posts): DBSCAN runs on the sample, and every other
post joins, as a border point, the cluster of its nearest sample core point within eps
among those neighbours. A fixed k cannot see past a crowd of near-duplicates larger
than k (at 300k synthetic posts, 18 noisy copies of each source text, the k-NN graph broke
into 5,000+ components), and the single-thread index build dominates the time; a sample of
fixed size keeps both as measured at 100k (bench/results/perf.md).

Posts with the same text are one point with a weight, its number of copies: a core point is
one whose neighbourhood's summed weight reaches min_samples (DBSCAN's `sample_weight`), and
cluster sizes, coverage and the eps grid count posts. Copies at distance 0 from each other
would otherwise put 0 into the grid; so can different texts that an encoder maps to the same
vector, so every eps of the grid is at least `MIN_EPS`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix, diags
from scipy.sparse.csgraph import connected_components
from sklearn.base import BaseEstimator
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from topicli.errors import TopicliError
from topicli.method.base import Candidate, share
from topicli.progress import Advance

ALGORITHMS = ("dbscan", "hdbscan")
MIN_SAMPLES_GRID = (2, 3, 5, 8, 12, 20)
CORE_SHARE_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6)
HDBSCAN_GRID = ((5, 5), (10, 5), (15, 5), (25, 10), (40, 10))
EXACT_LIMIT = 20_000  # below this many posts, exact sklearn neighbours and DBSCAN: small sets keep their results
SEARCH_LIMIT = 100_000  # above this many posts, neighbours are sample posts and DBSCAN runs on the sample
SAMPLE_SEED = 0
MIN_EPS = 1e-4  # the grid's resolution (it rounds to 4 decimals): DBSCAN refuses eps = 0
HNSW_LINKS, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 16, 100, 64  # recall@30 ~0.98 on real embeddings (bench/run.py)
Scorer = Callable[[np.ndarray], dict[str, float]]
Clusterer = Callable[
    [float, int, int], tuple[np.ndarray, np.ndarray]
]  # (eps, min_samples, min_cluster_size) → labels, core
OUT_OF_RANGE = ("nearest", "error")  # what `ClusterSearch` does when no candidate is in range


class OutOfRangeWarning(UserWarning):
    """No clustering had min_topics..max_topics clusters; the nearest one was taken."""


def _relabel(labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Cluster ids 0..n-1 by decreasing size in posts (ties by first post), noise stays -1."""
    member = labels >= 0
    ids, first, counts = np.unique(labels[member], return_index=True, return_counts=True)
    if weights is not None:
        counts = np.bincount(labels[member], weights=weights[member])[ids]
    order = ids[np.lexsort((first, -counts))]
    mapping = np.full(int(labels.max(initial=-1)) + 2, -1, dtype=np.int64)  # the last slot maps -1 to -1
    mapping[order] = np.arange(len(order))
    return mapping[labels]


def dbscan(
    graph: Any, eps: float, min_samples: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and core-point mask of DBSCAN on a precomputed sparse cosine-distance graph.

    Entries of the graph beyond eps are ignored, so one graph serves every smaller eps.
    `weights`: posts each point stands for (copies of one text), counted towards min_samples.
    sklearn's below `EXACT_LIMIT` points, `graph_dbscan` from there on.
    """
    if graph.shape[0] >= EXACT_LIMIT:
        return graph_dbscan(graph, eps, min_samples, weights)
    model = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit(graph, sample_weight=weights)
    core = np.zeros(graph.shape[0], dtype=bool)
    core[model.core_sample_indices_] = True
    return _relabel(model.labels_, weights), core


def graph_dbscan(
    graph: Any, eps: float, min_samples: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """DBSCAN on a sparse distance graph (self-loops stored) in a few vectorised passes.

    A core point's neighbours within eps, itself included, weigh at least min_samples
    (`weights`: posts each point stands for; one each by default). Clusters are the
    connected components of core points; a border point joins the cluster of its nearest
    core neighbour (sklearn takes the first cluster to reach it).
    """
    n = graph.shape[0]
    rows = np.repeat(np.arange(n), np.diff(graph.indptr))
    within = graph.data <= eps
    weight = None if weights is None else weights[graph.indices[within]]
    core = np.bincount(rows[within], weights=weight, minlength=n) >= min_samples
    links = within & core[rows] & core[graph.indices]
    linked = csr_matrix((np.ones(int(links.sum()), dtype=np.int8), (rows[links], graph.indices[links])), shape=(n, n))
    _, component = connected_components(linked, directed=False)
    labels = np.where(core, component, -1)
    border = np.flatnonzero(within & ~core[rows] & core[graph.indices])
    if len(border):
        border = border[np.lexsort((graph.indices[border], graph.data[border], rows[border]))]
        first = np.unique(rows[border], return_index=True)[1]
        labels[rows[border[first]]] = component[graph.indices[border[first]]]
    return _relabel(labels, weights), core


def search_sample(n: int) -> np.ndarray:
    """Sorted indices of the posts DBSCAN runs on: all up to `SEARCH_LIMIT`, else a fixed random `SEARCH_LIMIT`."""
    if n <= SEARCH_LIMIT:
        return np.arange(n)
    return np.sort(np.random.default_rng(SAMPLE_SEED).choice(n, size=SEARCH_LIMIT, replace=False))


def nearest_neighbours(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distances and indices of every post's k nearest neighbours (itself excluded), nearest first.

    Exact below `EXACT_LIMIT` posts, approximate (`approximate_neighbours`) from there on;
    above `SEARCH_LIMIT` posts the neighbours are drawn from `search_sample` only.
    """
    k = min(k, len(vectors) - 1)
    if len(vectors) >= EXACT_LIMIT:
        return approximate_neighbours(vectors, k, search_sample(len(vectors)))
    distances, indices = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(vectors).kneighbors(vectors)
    return distances[:, 1:], indices[:, 1:]


def approximate_neighbours(
    vectors: np.ndarray, k: int, base: np.ndarray | None = None, chunk: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """`nearest_neighbours` from an hnswlib HNSW index on inner product: exact distances, approximate lists.

    The index holds the `base` rows (all by default) and every post is queried against it.
    It is built on one thread, in row order with a fixed seed, so the same vectors always
    give the same graph (a parallel build does not); the queries, each independent, run on
    every core. A row missing itself in its own list (duplicates, or not in `base`) loses
    its farthest hit instead.
    """
    import hnswlib

    n, dimension = vectors.shape
    base = np.arange(n) if base is None else base
    index = hnswlib.Index(space="ip", dim=dimension)
    index.init_index(max_elements=len(base), ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_LINKS, random_seed=0)
    index.set_num_threads(1)
    for start in range(0, len(base), chunk):
        rows = base[start : start + chunk]
        index.add_items(np.ascontiguousarray(vectors[rows], dtype=np.float32), rows)
    index.set_num_threads(os.cpu_count() or 1)
    index.set_ef(max(HNSW_EF_SEARCH, 2 * (k + 1)))
    distances = np.empty((n, k), dtype=np.float32)
    indices = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        found, distance = index.knn_query(np.ascontiguousarray(vectors[start : start + chunk]), k=k + 1)
        found = found.astype(np.int64)
        is_self = found == np.arange(start, start + len(found))[:, None]
        drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
        keep = np.ones(found.shape, dtype=bool)
        keep[np.arange(len(found)), drop] = False
        indices[start : start + chunk] = found[keep].reshape(-1, k)
        distances[start : start + chunk] = distance[keep].reshape(-1, k)
    return np.maximum(distances, 0.0), indices


def join_sample(
    labels: np.ndarray,
    core: np.ndarray,
    sample: np.ndarray,
    distances: np.ndarray,
    local: np.ndarray,
    eps: float,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Every post's cluster from DBSCAN's `labels`/`core` of the sample: a post outside the sample joins
    the cluster of its nearest sample core point within eps (`local`: its neighbours' places in the sample).
    `weights` (posts each point stands for) order the clusters by size."""
    reach = core[local] & (distances <= eps)
    nearest = local[np.arange(len(local)), reach.argmax(axis=1)]
    joined = np.where(reach.any(axis=1), labels[nearest], -1)
    joined[sample] = labels
    return _relabel(joined, weights)


def knn_graph(distances: np.ndarray, indices: np.ndarray, radius: float) -> Any:
    """Sparse symmetric graph of the k-NN links up to `radius`, with self-loops, in the form `radius_graph` has."""
    n, k = indices.shape
    keep = distances <= radius
    rows = np.repeat(np.arange(n), k).reshape(n, k)[keep]
    graph = csr_matrix((np.maximum(distances[keep], 1e-9), (rows, indices[keep])), shape=(n, n))
    return (graph.maximum(graph.T) + diags(np.full(n, 1e-9, dtype=np.float32), format="csr")).tocsr()


def radius_graph(vectors: np.ndarray, radius: float) -> Any:
    """Sparse matrix of cosine distances up to `radius`; exact zeros kept as tiny values so they count."""
    graph = NearestNeighbors(radius=radius, metric="cosine").fit(vectors).radius_neighbors_graph(mode="distance")
    graph.data = np.maximum(graph.data, 1e-9)
    graph.setdiag(1e-9)
    return graph.tocsr()


def hdbscan_labels(
    vectors: np.ndarray, min_cluster_size: int, min_samples: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels of HDBSCAN (euclidean on unit vectors orders like cosine) and its cluster members as "core".

    HDBSCAN takes no weights: a point of weight w is fitted as w copies, and takes its first copy's label.
    """
    import hdbscan

    model = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, metric="euclidean")
    if weights is None:
        labels = _relabel(model.fit(vectors).labels_)
    else:
        copies = np.repeat(np.arange(len(vectors)), weights)
        labels = _relabel(model.fit(vectors[copies]).labels_)[np.searchsorted(copies, np.arange(len(vectors)))]
    return labels, labels >= 0


def reach_distances(
    distances: np.ndarray, indices: np.ndarray | None, m: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Each point's distance to its m-th nearest other post (the last column when m is past it).

    With `weights` (posts each point stands for), a point's own other copies come first, at
    distance 0, then its neighbours count as many posts as they stand for.
    """
    if weights is None or indices is None:
        return distances[:, min(m, distances.shape[1]) - 1]
    needed = m - (weights - 1)
    column = (np.cumsum(weights[indices], axis=1) < needed[:, None]).sum(axis=1).clip(max=distances.shape[1] - 1)
    return np.where(needed <= 0, 0.0, distances[np.arange(len(distances)), column])


class ClusterSearch(BaseEstimator):
    """Searches clustering parameters and keeps the best-scored clustering in range.

    `eps`/`min_samples` of 0 are searched, a value fixes it (HDBSCAN searches
    min_cluster_size and takes min_samples). When no candidate is in range, `out_of_range`
    "nearest" takes the best scored of those nearest the range with an `OutOfRangeWarning`
    (`fallback_` is then True: small inputs and text the encoder cannot separate still get
    topics), and "error" raises. After `fit`: `candidates_` (every
    clustering tried), `best_`, and its `labels_` (cluster per post, -1 noise) and
    `core_` (DBSCAN's core points; HDBSCAN's cluster members).
    """

    def __init__(
        self,
        *,
        algorithm: str = "dbscan",
        min_topics: int = 20,
        max_topics: int = 100,
        eps: float = 0.0,
        min_samples: int = 0,
        out_of_range: str = "nearest",
    ) -> None:
        self.out_of_range = out_of_range
        self.algorithm = algorithm
        self.min_topics = min_topics
        self.max_topics = max_topics
        self.eps = eps
        self.min_samples = min_samples

    def _grid(
        self,
        vectors: np.ndarray,
        distances: np.ndarray | None,
        indices: np.ndarray | None,
        weights: np.ndarray | None,
    ) -> list[tuple[float, int, int]]:
        """(eps, min_samples, min_cluster_size) to try; eps is DBSCAN's, min_cluster_size HDBSCAN's.

        A searched eps is a quantile of the points' distances to their m-th nearest post, never
        below `MIN_EPS`: copies of a text (or texts the encoder cannot tell apart) lie at 0.
        """
        if self.algorithm == "hdbscan":
            sizes = [(size, samples) for size, samples in HDBSCAN_GRID]
            if self.min_samples:
                sizes = sorted({(size, self.min_samples) for size, _ in HDBSCAN_GRID})
            return [(0.0, samples, size) for size, samples in sizes]
        if self.eps and self.min_samples:
            return [(self.eps, self.min_samples, 0)]
        if self.eps:
            return [(self.eps, m, 0) for m in MIN_SAMPLES_GRID]
        if distances is None or distances.shape[1] < min(max(MIN_SAMPLES_GRID), len(vectors) - 1):
            distances, indices = nearest_neighbours(vectors, max(MIN_SAMPLES_GRID))
        samples = (self.min_samples,) if self.min_samples else MIN_SAMPLES_GRID
        grid = set()
        for m in samples:
            column = reach_distances(distances, indices, m, weights)
            grid |= {(max(round(float(np.quantile(column, q)), 4), MIN_EPS), m, 0) for q in CORE_SHARE_GRID}
        return sorted(grid)

    @staticmethod
    def _graph(
        vectors: np.ndarray,
        grid: list[tuple[float, int, int]],
        distances: np.ndarray | None,
        indices: np.ndarray | None,
    ) -> Any:
        """The one neighbourhood graph, at the largest eps of the grid, that every DBSCAN run reads."""
        radius = max(eps for eps, _, _ in grid)
        if len(vectors) < EXACT_LIMIT:
            return radius_graph(vectors, radius)
        needed = max(min_samples for _, min_samples, _ in grid)
        if distances is None or indices is None or indices.shape[1] < needed:
            distances, indices = nearest_neighbours(vectors, needed)
        return knn_graph(distances, indices, radius)

    def fit(
        self,
        vectors: np.ndarray,
        scorer: Scorer,
        progress: Advance | None = None,
        neighbour_distances: np.ndarray | None = None,
        neighbour_indices: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ) -> ClusterSearch:
        """`neighbour_distances`/`_indices`: each post's nearest neighbours (`nearest_neighbours`), if computed.

        `weights`: how many posts each vector stands for (the copies of one text); one each by default.
        DBSCAN above `SEARCH_LIMIT` vectors runs on `search_sample`; the scorer always sees every vector's label.
        """
        if self.algorithm not in ALGORITHMS:
            raise TopicliError(f"clustering algorithm {self.algorithm!r} unknown; use one of {', '.join(ALGORITHMS)}")
        if not 0 <= self.eps <= 2 or self.min_samples < 0:
            raise TopicliError(
                f"eps must lie in [0, 2] and min_samples be 0 or more (0 searches them), got eps={self.eps}, "
                f"min_samples={self.min_samples}; fix --eps/--min-samples or [clustering]"
            )
        if self.out_of_range not in OUT_OF_RANGE:
            raise TopicliError(f"out_of_range {self.out_of_range!r} unknown; use one of {', '.join(OUT_OF_RANGE)}")
        if weights is not None and bool(np.all(weights == 1)):
            weights = None
        if len(vectors) < 3:
            kind = "non-empty posts" if weights is None else "distinct non-empty posts"
            raise TopicliError(f"clustering needs at least 3 {kind}, got {len(vectors)}; add posts with other texts")
        sample = search_sample(len(vectors))
        sampled = self.algorithm == "dbscan" and len(sample) < len(vectors)
        searched, distances, indices, searched_weights = vectors, neighbour_distances, neighbour_indices, weights
        if sampled:
            needed = max(MIN_SAMPLES_GRID)
            if distances is None or indices is None or indices.shape[1] < needed or not np.isin(indices, sample).all():
                distances, indices = nearest_neighbours(vectors, needed)
            full_distances, local = distances, np.searchsorted(sample, indices)
            searched, distances, indices = vectors[sample], distances[sample], local[sample]
            searched_weights = None if weights is None else weights[sample]
        grid = self._grid(searched, distances, indices, searched_weights)
        graph = None
        if self.algorithm == "dbscan":
            graph = self._graph(searched, grid, distances, indices)
        self.candidates_: list[Candidate] = []
        self.fallback_ = False
        fixed = len(grid) == 1

        def cluster(eps: float, min_samples: int, min_cluster_size: int) -> tuple[np.ndarray, np.ndarray]:
            """Labels and core flags of one candidate's parameters."""
            if sampled:
                labels, sample_core = dbscan(graph, eps, min_samples, searched_weights)
                labels = join_sample(labels, sample_core, sample, full_distances, local, eps, weights)
                core = np.zeros(len(vectors), dtype=bool)
                core[sample] = sample_core
                return labels, core
            if self.algorithm == "dbscan":
                return dbscan(graph, eps, min_samples, weights)
            return hdbscan_labels(vectors, min_cluster_size, min_samples, weights)

        best: Candidate | None = None
        for eps, min_samples, min_cluster_size in grid:
            labels, core = cluster(eps, min_samples, min_cluster_size)
            n_clusters = int(labels.max() + 1)
            candidate = Candidate(
                algorithm=self.algorithm,
                eps=eps,
                min_samples=min_samples,
                min_cluster_size=min_cluster_size,
                n_clusters=n_clusters,
                coverage=share(labels >= 0, weights),
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
            if all(c.n_clusters == 0 for c in self.candidates_):
                raise TopicliError(self._all_noise(searched, distances))
            counts = sorted(c.n_clusters for c in self.candidates_)
            found = f"no clustering has {self.min_topics}-{self.max_topics} clusters (the search found {counts[0]} to "
            if self.out_of_range == "error":
                raise TopicliError(
                    f"{found}{counts[-1]}); widen [clustering] min_topics/max_topics, fix --eps and --min-samples, "
                    'or set [clustering] out_of_range = "nearest" to take the nearest clustering'
                )
            best = self._nearest(cluster, scorer)
            warnings.warn(
                f"{found}{counts[-1]}): took the nearest, {best.n_clusters} clusters; its topics are less sure. "
                'Widen [clustering] min_topics/max_topics, or set [clustering] out_of_range = "error" to stop instead',
                OutOfRangeWarning,
                stacklevel=2,
            )
        self.best_ = best
        return self

    def _all_noise(self, vectors: np.ndarray, distances: np.ndarray | None) -> str:
        """Why no candidate has a cluster, for a radius below every pair of posts (--eps 1e-9) and the like: with
        no cluster there is nothing to label, and the nearest candidate would be one of nothing."""
        radii = {c.eps for c in self.candidates_}
        if self.algorithm != "dbscan" or len(radii) > 1 or len(vectors) < 2:
            return (
                f"every clustering tried ({self.algorithm}) leaves every post as noise; give a smaller --min-samples, "
                "a larger --eps, or leave them out to search"
            )
        nearest = float(np.min(distances[:, 0] if distances is not None else nearest_neighbours(vectors, 1)[0]))
        return (
            f"--eps {radii.pop():g} leaves every post as noise (the nearest two posts are {nearest:.4g} apart in "
            "cosine distance); give a larger --eps, or leave --eps out to search"
        )

    def _nearest(
        self, cluster: Callable[[float, int, int], tuple[np.ndarray, np.ndarray]], scorer: Scorer
    ) -> Candidate:
        """Of the candidates whose cluster count is nearest the range (any with a cluster, if one has), the best
        scored, clustered again: the search keeps no candidate's labels."""

        def gap(c: Candidate) -> int:
            return max(self.min_topics - c.n_clusters, c.n_clusters - self.max_topics, 0)

        pool = [c for c in self.candidates_ if c.n_clusters > 0] or self.candidates_
        nearest = min(gap(c) for c in pool)
        best: Candidate | None = None
        for candidate in (c for c in pool if gap(c) == nearest):
            labels, core = cluster(candidate.eps, candidate.min_samples, candidate.min_cluster_size)
            candidate.scores = scorer(labels)
            if best is None or candidate.score > best.score or np.isnan(best.score):
                best, self.labels_, self.core_ = candidate, labels, core
        assert best is not None
        self.fallback_ = True
        return best
