"""Reading posts and labelled text (CSV, JSONL, Parquet) and writing tables atomically."""

from __future__ import annotations

import csv
import ctypes
import errno
import functools
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
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
        """Every post's text as the encoder sees it ("" where missing; a lone surrogate as U+FFFD, see `encodable`);
        the frame keeps the text as read. Builds a new list each call, so read it once."""
        return [encodable(text) if isinstance(text, str) else "" for text in self.frame[self.text_column].tolist()]


def table_format(path: Path) -> str:
    """csv, jsonl or parquet, by the file's suffix."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TopicliError(
            f"{path}: unknown format {path.suffix or '(no suffix)'!r}; use .csv, .jsonl, .json or .parquet"
        )
    return fmt


def _one_line(error: BaseException) -> str:
    """A library's error message on one line (Arrow's and pandas' span several)."""
    return " ".join(str(error).split())


def _decode_utf8(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise TopicliError(
            f"{path}: invalid UTF-8 on line {line} (byte {error.start}); re-save the file as UTF-8"
        ) from None


def _json_problem(path: Path, where: str, error: ValueError | RecursionError) -> str:
    """What Python's JSON parser refused in `where` (a line of JSON Lines, or "the file" for a whole document),
    on one line: bad syntax, an integer over 4,300 digits, nesting deeper than the interpreter's stack."""
    if isinstance(error, json.JSONDecodeError):
        at = f" on line {error.lineno}" if where == "the file" else ""
        return f"{path}: {where} is not valid JSON{at} ({error.msg})"
    return f"{path}: {where} is not readable JSON ({_one_line(error) or 'nested too deeply'})"


def _not_rows(path: Path, text: str) -> str | None:
    """Why a .json/.jsonl file that is not JSON Lines is not a table, when the whole text is one JSON document
    (a pretty-printed object, a number): the JSON Lines error alone would call it invalid JSON."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(document, list):
        return f"{path}: holds one JSON array; name the file .json, or write one JSON object per line"
    kind = "object" if isinstance(document, dict) else type(document).__name__
    return f"{path}: expected a JSON array of objects or JSON Lines (one object per line), got one JSON {kind}"


def _read_jsonl(path: Path, text: str) -> list[Any]:
    rows = []
    # JSON Lines ends a line at "\n" only: U+0085 or U+2028 inside a text (written raw) is no line end
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as error:
            problem = _json_problem(path, f"line {number}", error)
            raise TopicliError(_not_rows(path, text) or f"{problem}; one JSON object per line") from None
        if not isinstance(row, dict):
            raise TopicliError(
                _not_rows(path, text) or f"{path}: line {number} is not a JSON object; one object per line"
            )
        rows.append(row)
    return rows


def _read_json_array(path: Path, text: str) -> list[Any]:
    try:
        rows = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise TopicliError(_json_problem(path, "the file", error)) from None
    if not isinstance(rows, list):
        raise TopicliError(f"{path}: expected a JSON array of objects or JSON Lines (one object per line)")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise TopicliError(f"{path}: item {number} of the array is not an object; one JSON object per post")
    return rows


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """`text` with every lone UTF-16 surrogate (JSON can spell one, `"\\ud800"`) replaced by U+FFFD: no encoder,
    cache key or UTF-8 file can take one. Only what is encoded or shown is repaired; outputs keep the text as read
    wherever their format can hold it (`write_table`)."""
    return LONE_SURROGATE.sub("\ufffd", text)


def _surrogates(frame: pd.DataFrame) -> set[tuple[int, int]]:
    """(row, column) positions of the cells holding a lone surrogate (a column name cannot: `_json_frame`)."""
    found: set[tuple[int, int]] = set()
    for j, name in enumerate(frame.columns):
        if frame[name].dtype == object:
            found |= {(i, j) for i, v in enumerate(frame[name]) if isinstance(v, str) and LONE_SURROGATE.search(v)}
    return found


def _json_frame(path: Path, text: str, fmt: str) -> pd.DataFrame:
    """JSON rows as a table, each value as it was written: a column with a missing value stays `object`,
    so an integer caption stays 2024 and does not turn into 2024.0, and so does a column holding a lone
    surrogate (`"\\ud800"`), which no Arrow string can hold: the text is kept as read."""
    rows = _read_json_array(path, text) if fmt == "json" and text.lstrip().startswith("[") else _read_jsonl(path, text)
    if any(LONE_SURROGATE.search(key) for row in rows for key in row):
        warnings.warn(
            f"{path}: a column name holds a lone surrogate (\\ud800 to \\udfff); read with U+FFFD in its place",
            stacklevel=3,
        )
        rows = [{encodable(key): value for key, value in row.items()} for row in rows]
    frame = pd.DataFrame(rows, dtype=object)
    kept = {j for _, j in _surrogates(frame)}
    return pd.DataFrame(
        {
            name: column if column.isna().any() or j in kept else column.infer_objects()
            for j, (name, column) in enumerate(frame.items())
        },
        index=frame.index,
    )


def read_table(path: Path) -> pd.DataFrame:
    """A whole table, every column as read; strings stay strings (no NaN for empty cells).

    `.json` holds either one array of objects or one object per line (JSON Lines). Column names
    must be unique: a second `caption` would leave it unclear which one holds the text.
    """
    path = Path(path)
    fmt = table_format(path)
    if not path.exists():
        raise TopicliError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise TopicliError(f"{path} is a folder; give a .csv, .jsonl or .parquet file")
    if path.stat().st_size == 0:
        raise TopicliError(f"{path} is empty; it needs a header and at least one post")
    try:
        if fmt == "parquet":
            frame = _read_parquet(path)
        elif fmt == "csv":
            frame = _read_csv(path)
        else:
            frame = _json_frame(path, _decode_utf8(path, path.read_bytes()), fmt)
    except OSError as error:
        raise TopicliError(f"{path}: cannot read it ({error.strerror or _one_line(error)})") from None
    twice = sorted({str(name) for name in frame.columns[frame.columns.duplicated()]})
    if twice:
        raise TopicliError(f"{path}: column name(s) {_names(twice)} used more than once; rename the copies")
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    """Integer columns with nulls come back as Python integers, not floats (an id 7 stays 7, not 7.0).

    `ParquetFile` rather than `pq.read_table`: the latter's dataset reader refuses repeated column
    names with an error of several lines; `read_table` names them instead.
    """
    try:
        return pq.ParquetFile(path).read().to_pandas(integer_object_nulls=True)
    except (pa.ArrowException, ValueError, TypeError, KeyError) as error:
        raise TopicliError(f"{path}: not a readable Parquet file ({_one_line(error)})") from None


def _read_csv(path: Path) -> pd.DataFrame:
    """Every column as strings; pandas reads the file in blocks, so the file is never held whole as bytes
    and again as text (at 300k posts that was 3x the peak of reading; bench/run.py `streaming`).
    Invalid UTF-8 is reported by line, as for the other formats."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        _decode_utf8(path, path.read_bytes())  # raises the message that names the line
        raise TopicliError(f"{path}: not readable as UTF-8 ({_one_line(error)}); re-save the file as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise TopicliError(f"{path} has no rows; it needs a header and at least one post") from None
    except pd.errors.ParserError as error:
        _decode_utf8(path, path.read_bytes())  # a file that is not UTF-8 is reported as such first
        raise TopicliError(f"{path}: not a valid CSV file ({_one_line(error)})") from None


def _names(columns: list[Any]) -> str:
    """Column names for a message: as they are, or quoted where blank, padded or holding a line break."""
    shown = [str(c) if str(c).isprintable() and str(c).strip() == str(c) != "" else repr(str(c)) for c in columns]
    return ", ".join(shown)


def find_text_column(columns: list[str], requested: str, path: Path) -> str:
    """The requested column, or the first of caption/text/content/body present."""
    if requested:
        if requested not in columns:
            raise TopicliError(f"{path}: no column {requested!r}; columns are {_names(columns)}")
        return requested
    lowered = {str(c).lower(): c for c in columns}
    for name in TEXT_COLUMN_NAMES:
        if name in lowered:
            return lowered[name]
    raise TopicliError(
        f"{path}: no text column found (looked for {', '.join(TEXT_COLUMN_NAMES)}); "
        f"name it with --text-column, columns are {_names(columns)}"
    )


def _as_text(value: Any) -> str | None:
    """A cell of the text column as text: a string as it is (bytes too, when UTF-8: Parquet writers that know no
    string type store text as bytes); a number or true/false as JSON writes it, which is how a CSV reader would
    read it; "" for a missing value; None for anything else (a list, an object, bytes that are not UTF-8)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, Decimal):
        return str(value)
    return None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple | np.ndarray):
        return "a list"
    return "bytes that are not UTF-8" if isinstance(value, bytes) else f"a {type(value).__name__}"


def _text_column(frame: pd.DataFrame, column: str, path: Path) -> None:
    """Make the text column text, in place: numbers and true/false become the text they are written as (JSON
    and Parquet keep their types, CSV reads every cell as text); a list or an object is an error, and so is a
    column with no text in it at all but numbers."""
    if isinstance(frame[column].dtype, pd.StringDtype):
        return  # strings and missing values only (a CSV column, always)
    values = frame[column].tolist()
    texts = [_as_text(value) for value in values]
    for number, (value, text) in enumerate(zip(values, texts, strict=True), start=1):
        if text is None:
            raise TopicliError(
                f"{path}: post {number} in column {column!r} holds {_kind(value)}, not text; "
                "is that the right column? Name the text column with --text-column"
            )
    if all(isinstance(value, str) for value in values):
        return
    if not any(isinstance(value, str | bytes) for value in values) and any(texts):
        raise TopicliError(
            f"{path}: column {column!r} holds numbers, not text; is that the right column? "
            "Name the text column with --text-column"
        )
    frame[column] = pd.Series(
        [text if text else value for value, text in zip(values, texts, strict=True)], index=frame.index, dtype=object
    )


def read_posts(path: Path, text_column: str = "") -> Posts:
    """Posts from a file; fails clearly when there is nothing to give a topic to."""
    path = Path(path)
    frame = read_table(path)
    if len(frame) == 0:
        raise TopicliError(f"{path} has no rows; it needs at least one post")
    column = find_text_column(list(frame.columns), text_column, path)
    frame = frame.reset_index(drop=True)
    _text_column(frame, column, path)
    posts = Posts(frame=frame, text_column=column, path=path)
    if not any(text.strip() for text in posts.texts):
        raise TopicliError(f"{path}: every post in column {column!r} is empty; is that the right column?")
    return posts


def _same_path(first: Path, second: Path) -> bool:
    """Whether two paths name one file: the same resolved path, or (both existing) the same inode."""
    first, second = Path(first), Path(second)
    if first.resolve() == second.resolve():
        return True
    try:
        return first.exists() and second.exists() and first.samefile(second)
    except OSError:
        return False


def _holds(folder: Path, path: Path) -> bool:
    """Whether `path` lies inside `folder` (or is it), both resolved: the folder replaced whole would take it."""
    folder, path = Path(folder).resolve(), Path(path).resolve()
    return path == folder or folder in path.parents


def check_writable(
    path: Path,
    what: str,
    *,
    folder: bool = False,
    inputs: tuple[Path, ...] = (),
    keep: Mapping[Path, str] | None = None,
) -> None:
    """Fail now, before any work, when `path` (named `what` in the message: an option or a setting) cannot be
    written, or must not be; otherwise the error would come after the whole pipeline has run, or data be lost.

    Every command that writes checks each path it writes here. A file must not be an existing folder, one of
    `inputs` (writing it would overwrite what is read) nor one of `keep` (files the command must leave alone,
    each with what it is: a run's own files, its outputs, another output of the same command); a folder must
    not be an existing file, and one written whole (given `inputs` or `keep`) must not hold any of them. A file
    is tried in the nearest folder that exists above it, a folder inside itself when it exists: a real write,
    since permission bits say nothing for root or a read-only mount. Nothing is left behind: no folder is made
    and the trial file is gone when this returns.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise TopicliError(f"{what} {path} is a file, not a folder; give a folder path")
    if not folder and path.is_dir():
        raise TopicliError(f"{what} {path} is a folder; give a file path, such as {path / 'posts.csv'}")
    kept = {Path(source): f"the input file {source}" for source in inputs}  # named first, and as inputs
    kept.update((path, what) for path, what in (keep or {}).items() if path not in kept)
    for other, description in kept.items():
        if _same_path(path, other):
            raise TopicliError(
                f"{what} {path} is {description}; writing there would overwrite it, so give another path"
            )
        if folder and _holds(path, other):
            held = description if str(other) in description else f"{other} ({description})"
            raise TopicliError(f"{what} {path} holds {held}; writing the folder would replace it, so give another path")
    start = path if folder else path.parent
    existing = next((p for p in (start, *start.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise TopicliError(f"{what} {path}: {existing} is a file, so no folder can be made there; choose another path")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise TopicliError(
            f"{what} {path}: cannot write in {existing} ({error.strerror or _one_line(error)}); "
            "choose another path or change the folder's permissions"
        ) from None


def file_digest(*paths: Path) -> str:
    """sha256 (hex) of the files' bytes, one file after another, read in blocks."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs here (a temp name carrying it belongs to a live writer)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def stale_leftovers(parent: Path, prefix: str) -> list[Path]:
    """Entries `<prefix><pid>.*` in `parent` left by writers that are no longer running (a crash, a kill)."""
    found = []
    for entry in Path(parent).glob(f"{prefix}*") if Path(parent).is_dir() else []:
        pid = entry.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            found.append(entry)
    return found


def remove(path: Path) -> None:
    """Delete a file, a link or a folder tree; nothing when it is gone already."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux `renameat2` with RENAME_EXCHANGE), a folder with a link too;
    False where the system or the file system cannot, and nothing was changed."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_cwd, rename_exchange = -100, 2
    if renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` that replaces it only once the block succeeds.

    The temporary name carries this process's id, so the next write to `path` removes what a
    killed writer left (`.posts.csv.<pid>.<random>.tmp`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    for leftover in stale_leftovers(path.parent, prefix):
        remove(leftover)
    handle, temp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=".tmp", dir=path.parent)
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

    The old folder, if any, is moved aside first and deleted after. A writer killed between those
    two renames leaves no `folder` but a whole `.<name>.old-<pid>`: the next write puts it back
    first, then removes what killed writers left, so `folder` is whole whenever it exists.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    for old in sorted(stale_leftovers(folder.parent, f".{folder.name}.old-")):
        if not folder.exists():
            os.replace(old, folder)
        else:
            remove(old)
    for leftover in stale_leftovers(folder.parent, f".{folder.name}."):
        remove(leftover)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{os.getpid()}.", dir=folder.parent))
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
    held = _surrogates(frame)
    if held and fmt in ("csv", "parquet"):
        frame = _utf8_only(frame, held, path)
    with atomic_path(path) as temp:
        if fmt == "csv":  # a carriage return is no line end here: quoted, or the CSV reader would split the row
            quoting = csv.QUOTE_ALL if _has_carriage_return(frame) else csv.QUOTE_MINIMAL
            frame.to_csv(temp, index=False, lineterminator="\n", quoting=quoting)
        elif fmt in ("json", "jsonl") and held:
            temp.write_text(_json_with_surrogates(frame, held, fmt == "jsonl"), encoding="utf-8")
        elif fmt == "json":
            frame.to_json(temp, orient="records", force_ascii=False)
        elif fmt == "jsonl":
            frame.to_json(temp, orient="records", lines=True, force_ascii=False)
        else:
            pq.write_table(_arrow_table(frame), temp)


def _has_carriage_return(frame: pd.DataFrame) -> bool:
    """Whether a text cell holds a carriage return, which CSV keeps only inside quotes."""
    texts = frame.select_dtypes(exclude=["number", "bool"])
    return any(texts[c].map(lambda v: isinstance(v, str) and "\r" in v).any() for c in texts.columns)


def _utf8_only(frame: pd.DataFrame, held: set[tuple[int, int]], path: Path) -> pd.DataFrame:
    """A copy of `frame` with its lone surrogates as U+FFFD, with a warning: CSV and Parquet hold only UTF-8."""
    out = frame.copy()
    for i, j in held:
        out.iat[i, j] = encodable(out.iat[i, j])
    warnings.warn(
        f"{path}: {len(held)} value(s) holding a lone surrogate (\\ud800 to \\udfff) written with U+FFFD in its "
        "place, since the format holds only UTF-8; write .jsonl or .json to keep them as read",
        stacklevel=3,
    )
    return out


def _json_with_surrogates(frame: pd.DataFrame, held: set[tuple[int, int]], lines: bool) -> str:
    """The frame as pandas writes it to JSON (records), with the cells that hold lone surrogates (which pandas'
    encoder refuses) put back as `\\udXXXX` escapes, which JSON can hold."""
    clean = frame.copy()
    clean.columns = [f"c{j}" for j in range(len(frame.columns))]
    for i, j in held:
        clean.iat[i, j] = ""
    written = clean.to_json(orient="records", lines=lines, force_ascii=False)
    rows = [json.loads(line) for line in written.split("\n") if line.strip()] if lines else json.loads(written)
    names = list(frame.columns)
    restored = [
        {names[j]: frame.iat[i, j] if (i, j) in held else row[f"c{j}"] for j in range(len(names))}
        for i, row in enumerate(rows)
    ]
    dump = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
    text = "".join(dump(row) + "\n" for row in restored) if lines else dump(restored)
    return LONE_SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def _arrow_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table; a column of mixed values (ids that are numbers in some rows and text in
    others, as JSON allows) is written as text, since Parquet holds one type per column."""
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        mixed = {
            name: frame[name].map(lambda value: value if value is None else str(value))
            for name in frame.columns
            if frame[name].dtype == object
        }
        return pa.Table.from_pandas(frame.assign(**mixed), preserve_index=False)
