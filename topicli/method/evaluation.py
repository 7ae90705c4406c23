"""Scoring topics against gold labels: accuracy, macro-F1, NMI, coverage.

Gold may be multi-label. A post counts as right when its topic is one of its gold
topics; for macro-F1 such a post's gold is the topic it got, and a wrong post's gold is
its first gold topic, so single-label gold gives the usual figures.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, normalized_mutual_info_score

from topicli.errors import TopicliError

FIGURES = ("accuracy", "macro_f1", "nmi", "coverage", "accuracy_shown", "n_clusters", "n_topics_used", "seconds")


def _as_list(value: Any) -> list[str]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v).strip() for v in value if str(v).strip()]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    text = str(value).strip()
    if text.startswith("["):
        try:
            return _as_list(json.loads(text))
        except json.JSONDecodeError:
            pass
    return [part.strip() for part in text.split("|") if part.strip()]


def read_gold(frame: pd.DataFrame, column: str, source: str) -> list[list[str]]:
    """Gold topics per post: a list (JSONL/Parquet) or `|`-separated text (CSV)."""
    if column not in frame.columns:
        raise TopicliError(f"{source}: no gold column {column!r}; columns are {', '.join(map(str, frame.columns))}")
    gold = [_as_list(value) for value in frame[column]]
    if not any(gold):
        raise TopicliError(f"{source}: gold column {column!r} is empty in every row")
    return gold


def gold_topics(gold: Sequence[Sequence[str]]) -> list[str]:
    """The candidate topics when none are given: every gold topic, sorted."""
    return sorted({topic for topics in gold for topic in topics})


def score(
    predicted: Sequence[str], gold: Sequence[Sequence[str]], clusters: Sequence[int], topics: Sequence[str]
) -> dict[str, float]:
    """Figures over the posts that have gold topics; an empty prediction is a miss."""
    keep = [i for i, g in enumerate(gold) if g]
    if not keep:
        raise TopicliError("no post has a gold topic to score against")
    pred = [predicted[i] for i in keep]
    golds = [gold[i] for i in keep]
    right = np.array([p in g for p, g in zip(pred, golds, strict=True)])
    effective = [p if ok else g[0] for p, g, ok in zip(pred, golds, right, strict=True)]
    labels = [t for t in topics if t in set(effective) | set(pred)]
    return {
        "accuracy": float(right.mean()),
        "macro_f1": float(f1_score(effective, pred, labels=labels, average="macro", zero_division=0)),
        "nmi": float(normalized_mutual_info_score([g[0] for g in golds], [clusters[i] for i in keep])),
        "coverage": float(np.mean([p != "" for p in pred])),
        "n_topics_used": len({p for p in pred if p}),
    }


def reliability_bins(confidence: np.ndarray, right: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-width confidence bins over [0, 1] (the last one closed): each non-empty bin's bounds, post count,
    mean confidence and accuracy. Posts with no confidence (NaN) are left out."""
    confidence, right = np.asarray(confidence, dtype=np.float64), np.asarray(right, dtype=np.float64)
    keep = np.isfinite(confidence)
    confidence, right = confidence[keep], right[keep]
    index = np.clip((confidence * bins).astype(np.int64), 0, bins - 1)
    out = []
    for b in range(bins):
        mine = index == b
        if mine.any():
            out.append(
                {
                    "lower": b / bins,
                    "upper": (b + 1) / bins,
                    "count": int(mine.sum()),
                    "confidence": float(confidence[mine].mean()),
                    "accuracy": float(right[mine].mean()),
                }
            )
    return out


def expected_calibration_error(confidence: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """ECE: over equal-width confidence bins, |mean confidence - accuracy| weighted by the bin's share of posts."""
    found = reliability_bins(confidence, right, bins)
    total = sum(b["count"] for b in found)
    return float(sum(b["count"] / total * abs(b["confidence"] - b["accuracy"]) for b in found)) if total else 0.0


def accuracy_at(confidence: np.ndarray, right: np.ndarray, threshold: float) -> tuple[float, float]:
    """(accuracy of the posts with confidence >= threshold, their share of all posts with a confidence);
    accuracy is NaN when no post reaches the threshold."""
    confidence, right = np.asarray(confidence, dtype=np.float64), np.asarray(right, dtype=bool)
    keep = np.isfinite(confidence)
    above = confidence[keep] >= threshold
    accuracy = float(right[keep][above].mean()) if above.any() else float("nan")
    return accuracy, float(above.mean()) if keep.any() else 0.0
