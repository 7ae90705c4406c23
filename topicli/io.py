"""Reading posts and labelled text (CSV, JSONL, Parquet) and writing tables atomically."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from topicli.errors import TopicliError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
TEXT_COLUMN_NAMES = ("caption", "text", "content", "body")
UMASK = os.umask(0)  # read once: files we write get the mode open() would give them
os.umask(UMASK)


@dataclass(frozen=True)
class Posts:
    """Posts as read: every original column, and which one holds the text."""

    frame: pd.DataFrame
    text_column: str
    path: Path

    @property
    def texts(self) -> list[str]:
        """Every post's text ("" where missing); builds a new list each call, so read it once."""
        return [text if isinstance(text, str) else "" for text in self.frame[self.text_column].tolist()]


def table_format(path: Path) -> str:
    """csv, jsonl or parquet, by the file's suffix."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TopicliError(
            f"{path}: unknown format {path.suffix or '(no suffix)'!r}; use .csv, .jsonl, .json or .parquet"
        )
    return fmt


def _decode_utf8(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise TopicliError(
            f"{path}: invalid UTF-8 on line {line} (byte {error.start}); re-save the file as UTF-8"
        ) from None


def _read_jsonl(path: Path, text: str) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise TopicliError(
                f"{path}: line {number} is not valid JSON ({error.msg}); one JSON object per line"
            ) from None
        if not isinstance(row, dict):
            raise TopicliError(f"{path}: line {number} is not a JSON object; one object per line")
        rows.append(row)
    return pd.DataFrame(rows)


def _read_json_array(path: Path, text: str) -> pd.DataFrame:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise TopicliError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from None
    if not all(isinstance(row, dict) for row in rows):
        raise TopicliError(f"{path}: a JSON array of objects is needed, one object per post")
    return pd.DataFrame(rows)


def read_table(path: Path) -> pd.DataFrame:
    """A whole table, every column as read; strings stay strings (no NaN for empty cells).

    `.json` holds either one array of objects or one object per line (JSON Lines).
    """
    path = Path(path)
    fmt = table_format(path)
    if not path.exists():
        raise TopicliError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise TopicliError(f"{path} is a folder; give a .csv, .jsonl or .parquet file")
    if path.stat().st_size == 0:
        raise TopicliError(f"{path} is empty; it needs a header and at least one post")
    if fmt == "parquet":
        try:
            return pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError) as error:
            raise TopicliError(f"{path}: not a readable Parquet file ({error})") from None
    if fmt == "csv":
        return _read_csv(path)
    text = _decode_utf8(path, path.read_bytes())
    if fmt == "json" and text.lstrip().startswith("["):
        return _read_json_array(path, text)
    return _read_jsonl(path, text)


def _read_csv(path: Path) -> pd.DataFrame:
    """Every column as strings; pandas reads the file in blocks, so the file is never held whole as bytes
    and again as text (at 300k posts that was 3x the peak of reading; bench/run.py `streaming`).
    Invalid UTF-8 is reported by line, as for the other formats."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError:
        _decode_utf8(path, path.read_bytes())  # raises the message that names the line
        raise
    except pd.errors.EmptyDataError:
        raise TopicliError(f"{path} has no rows; it needs a header and at least one post") from None
    except pd.errors.ParserError as error:
        _decode_utf8(path, path.read_bytes())  # a file that is not UTF-8 is reported as such first
        raise TopicliError(f"{path}: not a valid CSV file ({str(error).strip()})") from None


def find_text_column(columns: list[str], requested: str, path: Path) -> str:
    """The requested column, or the first of caption/text/content/body present."""
    if requested:
        if requested not in columns:
            raise TopicliError(f"{path}: no column {requested!r}; columns are {', '.join(map(str, columns))}")
        return requested
    lowered = {str(c).lower(): c for c in columns}
    for name in TEXT_COLUMN_NAMES:
        if name in lowered:
            return lowered[name]
    raise TopicliError(
        f"{path}: no text column found (looked for {', '.join(TEXT_COLUMN_NAMES)}); "
        f"name it with --text-column, columns are {', '.join(map(str, columns))}"
    )


def read_posts(path: Path, text_column: str = "") -> Posts:
    """Posts from a file; fails clearly when there is nothing to give a topic to."""
    path = Path(path)
    frame = read_table(path)
    if frame.empty:
        raise TopicliError(f"{path} has no rows; it needs at least one post")
    column = find_text_column(list(frame.columns), text_column, path)
    posts = Posts(frame=frame.reset_index(drop=True), text_column=column, path=path)
    if not any(text.strip() for text in posts.texts):
        raise TopicliError(f"{path}: every post in column {column!r} is empty; is that the right column?")
    return posts


def file_digest(*paths: Path) -> str:
    """sha256 (hex) of the files' bytes, one file after another, read in blocks."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` that replaces it only once the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    os.chmod(temp, 0o666 & ~UMASK)  # mkstemp makes 0600; give the file the mode open() would
    try:
        yield Path(temp)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


@contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """A staging folder beside `folder` that replaces it only once the block succeeds (removed if it fails).

    The old folder, if any, is moved aside first and deleted after, so `folder` is always whole.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    os.chmod(staging, 0o777 & ~UMASK)  # mkdtemp makes 0700; give the folder the mode mkdir would
    try:
        yield staging
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
        os.replace(staging, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """CSV, JSONL or Parquet by the suffix, written to a temporary file and renamed into place."""
    path = Path(path)
    fmt = table_format(path)
    with atomic_path(path) as temp:
        if fmt == "csv":
            frame.to_csv(temp, index=False, lineterminator="\n")
        elif fmt == "json":
            frame.to_json(temp, orient="records", force_ascii=False)
        elif fmt == "jsonl":
            frame.to_json(temp, orient="records", lines=True, force_ascii=False)
        else:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), temp)
