"""How a new post joins a cluster: DBSCAN's own rule, kept as plain arrays.

A post joins the cluster of its nearest core point when that point is within the point's radius,
else it is noise. DBSCAN's radius is eps for every core point. HDBSCAN keeps no such rule without
its pickled model (`approximate_predict`), so the bundle stores every cluster member with its core
distance (distance to its min_samples-th neighbour) and a post joins the cluster of its nearest
member when it lies within that member's core distance (an approximation: a member is its own
nearest member, so the posts of the run keep their clusters; a noise post of the run can join a
cluster).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from topicli.method.base import Candidate


def core_radii(vectors: np.ndarray, chosen: Candidate, core: np.ndarray) -> np.ndarray:
    """Cosine radius of each core point: eps for DBSCAN, each member's core distance for HDBSCAN."""
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
