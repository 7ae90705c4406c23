"""Run folders and outputs: where a run keeps its clustering, its bundle and the record of its outputs.

A run folder (`[output] dir/<posts name>/` by default) holds:

- `clustering.json`, `clusters.npy`, `core.npy`: the chosen clustering (`ClusterRun`), what
  `cluster` leaves for `label`;
- `outputs.json`: where `label` or `run` wrote the posts with topics and the topic table, so
  that `report` finds them when `-o` put them elsewhere;
- `bundle/`: the model bundle (`topicli.serving.bundle`).

The output columns (`cluster`, `topic`, `topic_confidence`) are checked and filled here, for a
run and for `topicli score` alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from topicli import __version__
from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import atomic_path, table_format, write_table
from topicli.method.clustering import Candidate

if TYPE_CHECKING:
    from topicli.method.pipeline import LabelledPosts

OUTPUT_COLUMNS = ("cluster", "topic", "topic_confidence")
CLUSTERING_FILE = "clustering.json"
OUTPUTS_FILE = "outputs.json"
BUNDLE_FOLDER = "bundle"


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
        document = json.loads(manifest.read_text(encoding="utf-8"))
        return cls(
            input=document["input"],
            input_sha256=document["input_sha256"],
            text_column=document["text_column"],
            encoder=document["encoder"],
            labels=np.load(labels),
            core=np.load(folder / "core.npy"),
            candidates=[Candidate(**c) for c in document["candidates"]],
            chosen=Candidate(**document["chosen"]),
            reason=document["reason"],
        )


def default_run_folder(settings: Settings, posts_path: Path) -> Path:
    return Path(settings.output.dir) / Path(posts_path).stem


def latest_run_folder(settings: Settings) -> Path:
    """The run folder under the output dir whose clustering was written last."""
    found = sorted(Path(settings.output.dir).glob(f"*/{CLUSTERING_FILE}"), key=lambda p: (p.stat().st_mtime, str(p)))
    if not found:
        raise TopicliError(f"no clustering under {settings.output.dir}; run `topicli cluster POSTS` first")
    return found[-1].parent


def bundle_folder(run_folder: Path) -> Path:
    return Path(run_folder) / BUNDLE_FOLDER


def topic_table_path(output: Path) -> Path:
    """The topic table's file beside the posts output: `posts.csv` → `posts.topics.csv`."""
    return output.with_name(f"{output.stem}.topics{output.suffix}")


def check_output_columns(frame: pd.DataFrame, source: Path | str) -> None:
    """Refuse posts that already carry an output column: writing ours would overwrite the user's."""
    taken = [c for c in OUTPUT_COLUMNS if c in frame.columns]
    if taken:
        raise TopicliError(f"{source} already has column(s) {', '.join(taken)}; rename them and rerun")


def with_topics(
    frame: pd.DataFrame,
    rows: Sequence[int] | np.ndarray,
    clusters: Sequence[int] | np.ndarray,
    topics: Sequence[str],
    confidence: Sequence[float] | np.ndarray,
) -> pd.DataFrame:
    """A copy of the posts with the output columns: `rows` get their cluster, topic name ("" for none) and
    confidence (NaN for none, 4 decimals); every other post is cluster -1 with no topic."""
    out = frame.copy()
    out["cluster"] = -1
    out["topic"] = ""
    out["topic_confidence"] = np.nan
    if len(rows):
        out.loc[rows, "cluster"] = clusters
        out.loc[rows, "topic"] = list(topics)
        out.loc[rows, "topic_confidence"] = np.round(np.asarray(confidence, dtype=np.float64), 4)
    return out


def write_outputs(result: LabelledPosts, output: Path, run_folder: Path) -> Path:
    """Posts and topic table, each written atomically, and their places recorded in the run folder.

    Returns the topic table's path.
    """
    table_format(output)
    table_path = topic_table_path(output)
    write_table(result.posts, output)
    write_table(result.topic_table, table_path)
    record = {"posts": str(Path(output).resolve()), "topic_table": str(table_path.resolve())}
    with atomic_path(Path(run_folder) / OUTPUTS_FILE) as temp:
        temp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return table_path


def find_posts_output(folder: Path, posts: Path | None = None) -> Path:
    """The posts output of a run: `posts` when given, else the one the run folder records, else the newest
    `posts.*` in the folder (runs written before outputs were recorded)."""
    if posts is not None:
        if not posts.is_file():
            raise TopicliError(f"{posts}: no such file; give --posts the file `topicli run -o` wrote")
        return posts
    record = Path(folder) / OUTPUTS_FILE
    if record.is_file():
        recorded = Path(json.loads(record.read_text(encoding="utf-8"))["posts"])
        if not recorded.is_file():
            raise TopicliError(f"{recorded} (the run's posts output) is gone; rerun `topicli label` or pass --posts")
        return recorded
    found = [p for p in Path(folder).glob("posts.*") if not p.name.startswith("posts.topics.")]
    if not found:
        raise TopicliError(f"no posts output (posts.*) in {folder}; pass --posts PATH with the file given to -o")
    return max(found, key=lambda p: (p.stat().st_mtime, p.name))
