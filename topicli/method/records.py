"""What a run records of its posts: the chosen clustering (`ClusterRun`) that `cluster` leaves for `label`,
and the output columns (`cluster`, `topic`, `topic_confidence`), checked and filled here for a run and
for `topicli score` alike. Where these are written is `topicli.runs`' job.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from topicli import __version__
from topicli.errors import TopicliError
from topicli.io import atomic_path
from topicli.method.base import Candidate

OUTPUT_COLUMNS = ("cluster", "topic", "topic_confidence")
RUNNER_UP_COLUMN = "topic_runner_up"  # a run's posts only: the topic a post of an unmatched cluster would have had
CLUSTERING_FILE = "clustering.json"


@dataclass(frozen=True)
class FeedCounts:
    """What a labelled run shows and what it holds back, in posts: shown with a topic; unsure (a topic below
    [labelling] min_confidence, kept as a suggestion); in clusters no topic fits; in no cluster (noise: some
    of them shown with a topic of their own)."""

    posts: int
    shown: int
    unsure: int
    unmatched: int
    noise: int

    @property
    def coverage(self) -> float:
        """The share of the posts shown with a topic."""
        return self.shown / self.posts if self.posts else 0.0


@dataclass
class ClusterRun:
    """A chosen clustering of a posts file: what `cluster` leaves for `label`."""

    input: str
    input_sha256: str
    text_column: str
    encoder: str
    labels: np.ndarray  # per post; -1 is noise or an empty post
    core: np.ndarray  # per post; True for DBSCAN core points (HDBSCAN: cluster members)
    candidates: list[Candidate]
    chosen: Candidate
    reason: str

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in (("clusters.npy", self.labels), ("core.npy", self.core)):
            with atomic_path(folder / name) as temp, open(temp, "wb") as handle:
                np.save(handle, array)
        document = {
            "topicli_version": __version__,
            "input": self.input,
            "input_sha256": self.input_sha256,
            "text_column": self.text_column,
            "encoder": self.encoder,
            "candidates": [c.to_dict() for c in self.candidates],
            "chosen": self.chosen.to_dict(),
            "reason": self.reason,
        }
        with atomic_path(folder / CLUSTERING_FILE) as temp:
            temp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> ClusterRun:
        manifest, labels = folder / CLUSTERING_FILE, folder / "clusters.npy"
        if not manifest.is_file() or not labels.is_file():
            raise TopicliError(f"{folder} holds no clustering; run `topicli cluster POSTS` first")
        try:
            document = json.loads(manifest.read_text(encoding="utf-8"))
            run = cls(
                input=str(document["input"]),
                input_sha256=str(document["input_sha256"]),
                text_column=str(document["text_column"]),
                encoder=str(document["encoder"]),
                labels=np.load(labels, allow_pickle=False),
                core=np.load(folder / "core.npy", allow_pickle=False),
                candidates=[Candidate(**c) for c in document["candidates"]],
                chosen=Candidate(**document["chosen"]),
                reason=str(document["reason"]),
            )
        except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise TopicliError(
                f"the clustering in {folder} is damaged ({type(error).__name__}: {error}); "
                "run `topicli cluster POSTS` again"
            ) from None
        if run.labels.shape != run.core.shape or run.labels.ndim != 1:
            raise TopicliError(
                f"the clustering in {folder} is damaged (clusters and core points differ in length); "
                "run `topicli cluster POSTS` again"
            )
        return run


def check_output_columns(frame: pd.DataFrame, source: Path | str) -> None:
    """Refuse posts that already carry an output column: writing ours would overwrite the user's."""
    taken = [c for c in (*OUTPUT_COLUMNS, RUNNER_UP_COLUMN) if c in frame.columns]
    if taken:
        raise TopicliError(f"{source} already has column(s) {', '.join(taken)}; rename them and rerun")


def with_topics(
    frame: pd.DataFrame,
    rows: Sequence[int] | np.ndarray,
    clusters: Sequence[int] | np.ndarray,
    topics: Sequence[str],
    confidence: Sequence[float] | np.ndarray,
    runner_up: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A copy of the posts with the output columns: `rows` get their cluster, topic name ("" for none) and
    confidence (NaN for none, 4 decimals); every other post is cluster -1 with no topic. With `runner_up`
    (a run's), also RUNNER_UP_COLUMN: the topic a post of an unmatched cluster would have had ("" for others)."""
    out = frame.copy()
    out["cluster"] = -1
    out["topic"] = ""
    out["topic_confidence"] = np.nan
    if runner_up is not None:
        out[RUNNER_UP_COLUMN] = ""
    if len(rows):
        out.loc[rows, "cluster"] = clusters
        out.loc[rows, "topic"] = list(topics)
        out.loc[rows, "topic_confidence"] = np.round(np.asarray(confidence, dtype=np.float64), 4)
        if runner_up is not None:
            out.loc[rows, RUNNER_UP_COLUMN] = list(runner_up)
    return out
