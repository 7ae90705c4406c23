"""A run's outputs: the posts with topics, the topic table and the topics over time, and the record of
where they went (`outputs.json`), so that `report` finds them when `-o` put them elsewhere."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from topicli.errors import TopicliError
from topicli.io import atomic_path, file_digest, table_format, write_table

OUTPUTS_FILE = "outputs.json"
OVER_TIME_FILE = "over_time.csv"  # topic counts per period (topicli.method.timeline), always in the run folder


class OutputSet(Protocol):
    """What `write_outputs` writes: a label step's `LabelledPosts`, or a renamed run (`topicli.method.rename`)."""

    posts: pd.DataFrame
    topic_table: pd.DataFrame
    over_time: pd.DataFrame | None


def topic_table_path(output: Path) -> Path:
    """The topic table's file beside the posts output: `posts.csv` → `posts.topics.csv`."""
    return output.with_name(f"{output.stem}.topics{output.suffix}")


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
