"""Run folders and outputs: where a run keeps its clustering, its bundle and the record of its outputs.

A run folder (`[output] dir/<posts name>/` by default) is replaced as a set: it is a link to
one attempt folder (`.<name>.attempts/<attempt>/` beside it), and a command writes everything
into a new attempt, then swaps the link in one rename (`new_attempt`). A crash at any point
leaves the previous complete set or the new one, never a mix; the next command removes
attempts that nothing points to and puts back a link a crash left missing. It holds:

- `clustering.json`, `clusters.npy`, `core.npy`: the chosen clustering (`ClusterRun`), what
  `cluster` leaves for `label`;
- `outputs.json`: where `label` or `run` wrote the posts with topics and the topic table, so
  that `report` finds them when `-o` put them elsewhere;
- `bundle/`: the model bundle (`topicli.serving.bundle`);
- `over_time.csv`: topic counts per period, when the posts have dates (`topicli.method.timeline`).

The output columns (`cluster`, `topic`, `topic_confidence`) are checked and filled here, for a
run and for `topicli score` alike.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from topicli import __version__
from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import atomic_path, exchange, file_digest, pid_alive, remove, stale_leftovers, table_format, write_table
from topicli.method.base import Candidate


class OutputSet(Protocol):
    """What `write_outputs` writes: a label step's `LabelledPosts`, or a renamed run (`topicli.method.rename`)."""

    posts: pd.DataFrame
    topic_table: pd.DataFrame
    over_time: pd.DataFrame | None


OUTPUT_COLUMNS = ("cluster", "topic", "topic_confidence")
RUNNER_UP_COLUMN = "topic_runner_up"  # a run's posts only: the topic a post of an unmatched cluster would have had
CLUSTERING_FILE = "clustering.json"
OUTPUTS_FILE = "outputs.json"
OVER_TIME_FILE = "over_time.csv"  # topic counts per period (topicli.method.timeline), always in the run folder
BUNDLE_FOLDER = "bundle"
COMPLETE_FILE = ".complete"  # the last file of an attempt: one without it was cut short


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


def default_run_folder(settings: Settings, posts_path: Path) -> Path:
    return Path(settings.output.dir) / Path(posts_path).stem


def latest_run_folder(settings: Settings) -> Path:
    """The run folder under the output dir whose clustering was written last."""
    found = sorted(
        (p for p in Path(settings.output.dir).glob(f"*/{CLUSTERING_FILE}") if not p.parent.name.startswith(".")),
        key=lambda p: (p.stat().st_mtime, str(p)),
    )  # names starting with a dot are attempts and links being made, not run folders
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


def _attempts(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.attempts")


def _recover(folder: Path) -> None:
    """Put back the link a crash left missing (between moving an old-style folder aside and linking), and
    remove attempts that no link points to and no live process is writing."""
    for leftover in stale_leftovers(folder.parent, f".{folder.name}.link-"):
        remove(leftover)
    attempts = _attempts(folder)
    if not attempts.is_dir():
        return
    complete = sorted((a for a in attempts.iterdir() if (a / COMPLETE_FILE).is_file()), key=lambda a: a.name)
    if not folder.exists() and not folder.is_symlink() and complete:
        _link(folder, complete[-1])
    current = folder.resolve() if folder.is_symlink() else None
    for attempt in attempts.iterdir():
        pid = attempt.name.rsplit("-", 1)[-1]
        writing = pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)) and attempt not in complete
        if attempt.resolve() != current and not writing:
            remove(attempt)


def _link(folder: Path, attempt: Path) -> None:
    """Point `folder` at `attempt` in one rename (a relative link, so the output folder can move)."""
    temp = folder.with_name(f".{folder.name}.link-{os.getpid()}")
    remove(temp)
    os.symlink(os.path.relpath(attempt, folder.parent), temp)
    if folder.is_dir() and not folder.is_symlink():  # a run folder written before attempts: moved aside whole
        legacy = _attempts(folder) / f"{time.strftime('%Y%m%dT%H%M%S')}-legacy-{os.getpid()}"
        if exchange(temp, folder):  # the link in, the old folder out, in one step
            os.replace(temp, legacy)
            return
        os.replace(folder, legacy)  # elsewhere two steps: a crash between them is put right by `_recover`
    os.replace(temp, folder)


@contextmanager
def new_attempt(folder: Path) -> Iterator[Path]:
    """A fresh attempt folder for everything a command leaves in the run folder `folder`; when the block
    succeeds it becomes `folder` in one rename, and the attempts it replaced are removed."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _recover(folder)
    attempt = _attempts(folder) / f"{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}-{os.getpid()}"
    attempt.mkdir(parents=True)
    try:
        yield attempt
        (attempt / COMPLETE_FILE).touch()
        _link(folder, attempt)
    except BaseException:
        remove(attempt)
        raise
    _recover(folder)


@dataclass(frozen=True)
class WrittenOutputs:
    """Where the posts with topics and the topic table went, as the user names them."""

    posts: Path
    topic_table: Path
    over_time: Path | None = None  # topic counts per period, in the run folder, when the posts have dates


def write_outputs(
    result: OutputSet, folder: Path, attempt: Path, output: Path | None, default_format: str
) -> WrittenOutputs:
    """Posts and topic table, and their record (`outputs.json`) in the attempt of the run folder `folder`.

    Without `output`, or with one inside the run folder, they go into the attempt and become visible
    with it. Elsewhere, each file is replaced atomically before the attempt is published, and the
    record keeps their sha256, so `report` can tell a pair cut apart by a crash from the pair it wrote.
    """
    output = Path(output) if output is not None else folder / f"posts.{default_format}"
    table_format(output)
    inside = Path(os.path.abspath(output.parent)) == Path(os.path.abspath(folder))
    posts_path = attempt / output.name if inside else output
    table_path = topic_table_path(posts_path)
    write_table(result.posts, posts_path)
    write_table(result.topic_table, table_path)
    if result.over_time is not None:
        write_table(result.over_time, attempt / OVER_TIME_FILE)
    if inside:
        record = {"posts": posts_path.name, "topic_table": table_path.name}
    else:
        record = {
            "posts": str(posts_path.resolve()),
            "topic_table": str(table_path.resolve()),
            "sha256": {"posts": file_digest(posts_path), "topic_table": file_digest(table_path)},
        }
    with atomic_path(attempt / OUTPUTS_FILE) as temp:
        temp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    over_time = folder / OVER_TIME_FILE if result.over_time is not None else None
    return WrittenOutputs(output, topic_table_path(output), over_time)


def find_posts_output(folder: Path, posts: Path | None = None) -> Path:
    """The posts output of a run: `posts` when given, else the one the run folder records, else the newest
    `posts.*` in the folder (runs written before outputs were recorded)."""
    if posts is not None:
        if not posts.is_file():
            raise TopicliError(f"{posts}: no such file; give --posts the file `topicli run -o` wrote")
        return posts
    record_file = Path(folder) / OUTPUTS_FILE
    if record_file.is_file():
        try:
            record = json.loads(record_file.read_text(encoding="utf-8"))
            recorded, table = Path(folder) / record["posts"], Path(folder) / record["topic_table"]
        except (ValueError, KeyError, TypeError):
            raise TopicliError(f"{record_file} is damaged; rerun `topicli label` or pass --posts") from None
        if not recorded.is_file() or not table.is_file():
            raise TopicliError(f"{recorded} (the run's posts output) is gone; rerun `topicli label` or pass --posts")
        digests = record.get("sha256")
        if digests and (file_digest(recorded), file_digest(table)) != (digests["posts"], digests["topic_table"]):
            raise TopicliError(
                f"{recorded} and {table} are not the ones this run wrote (changed since, or cut apart by a "
                "crash); rerun `topicli label`, or pass --posts"
            )
        return recorded
    found = [p for p in Path(folder).glob("posts.*") if not p.name.startswith("posts.topics.")]
    if not found:
        raise TopicliError(f"no posts output (posts.*) in {folder}; pass --posts PATH with the file given to -o")
    return max(found, key=lambda p: (p.stat().st_mtime, p.name))
