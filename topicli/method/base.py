"""Small definitions that several method modules share, kept here so that sharing one adds no floor.

`scoring` needs the shape of an embedding function but not the embedder; `clustering` and
`labelling` both count a share of posts; a run folder records the clusterings that the search
tried without loading the search; the bundle's format names the noise policies and the
calibrator's features without loading either. Numpy only: importing this module loads no other topicli module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

Embed = Callable[[Sequence[str]], np.ndarray]  # texts → unit vectors, one row each (an `Embedder` is one)
NOISE_POLICIES = ("unassigned", "nearest", "classify")  # what `labelling.ClusterLabeller` does with noise posts
FEATURES = ("logit_confidence", "log_margin")  # what `calibration.ConfidenceCalibrator` reads of a post


def share(mask: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The share of posts in `mask`, each point counting as the posts it stands for."""
    return float(np.mean(mask)) if weights is None else float(np.average(mask, weights=weights))


@dataclass
class Candidate:
    """One clustering the search tried (`topicli.method.clustering`), as a run folder records it."""

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
