"""The posts readers on whatever a file may hold: every example ends in `Posts` or one `TopicliError` line.

Random bytes under every suffix, random JSON values (as an array, as JSON Lines, pretty-printed),
CSV written in random dialects and encodings, and Parquet files with columns of every kind. Where
the file is well formed, the texts read back must be the texts written; and every writer gives back
what was read, wherever its format can hold it (issue 32: a lone surrogate came back as U+FFFD).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topicli.errors import TopicliError
from topicli.io import Posts, read_posts, read_table, write_table

SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that survives any UTF encoding: no lone surrogates. JSON may hold them (as \ud800 escapes).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
JSON_TEXT = st.text(st.characters(blacklist_categories=()), max_size=30)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | JSON_TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12
)
KEYS = st.sampled_from(["caption", "text", "id", "Body", "x"]) | JSON_TEXT
LONE_SURROGATE = re.compile("[\ud800-\udfff]")

pytestmark = pytest.mark.filterwarnings("ignore:.*lone surrogate")


@FAST
@given(
    rows=st.lists(
        st.fixed_dictionaries({"id": st.integers(-(2**53), 2**53) | TEXT, "caption": JSON_TEXT}), min_size=1, max_size=6
    ),
    source=st.sampled_from([".jsonl", ".json"]),
    target=st.sampled_from(SUFFIXES),
)
def test_every_writer_gives_back_what_was_read(
    folder: Path, rows: list[dict[str, Any]], source: str, target: str
) -> None:
    """Read (JSON, which can spell any text), write in every format, read again: the same text, exactly where the
    format can hold it (JSON, JSON Lines), and with U+FFFD only for a lone surrogate where it cannot (CSV, Parquet
    hold UTF-8 only)."""
    path, written = folder / f"in{source}", folder / f"out{target}"
    path.write_text(
        "".join(json.dumps(row) + "\n" for row in rows) if source == ".jsonl" else json.dumps(rows), encoding="utf-8"
    )
    frame = read_table(path)
    assert frame["caption"].tolist() == [row["caption"] for row in rows]
    write_table(frame, written)
    back = read_table(written)["caption"].tolist()
    captions = [row["caption"] for row in rows]
    if target in (".json", ".jsonl"):
        assert back == captions
    else:
        assert back == [LONE_SURROGATE.sub("\ufffd", caption) for caption in captions]


def test_a_lone_surrogate_in_jsonl_comes_back_as_its_escape(tmp_path: Path) -> None:
    """issue 32, as found: a JSONL post with `\\ud800` was written back with U+FFFD in its place."""
    source = tmp_path / "posts.jsonl"
    source.write_text('{"caption": "bad \\ud800 half"}\n{"caption": "fine"}\n', encoding="utf-8")
    posts = read_posts(source)
    assert posts.texts == ["bad \ufffd half", "fine"]  # the encoder's view: repaired
    write_table(posts.frame, tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_text(
        encoding="utf-8"
    ) == '{"caption":"bad \\ud800 half"}\n{"caption":"fine"}\n'


def read_in(folder: Path, name: str, data: bytes, column: str = "") -> Posts | None:
    """`read_posts` on `data` saved as `name`; None when it refused the file with one clean line."""
    path = folder / name
    path.write_bytes(data)
    try:
        return read_posts(path, column)
    except TopicliError as error:
        message = str(error)
        assert message and "\n" not in message, repr(message)
        return None
    finally:
        path.unlink()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every example (hypothesis runs all of a test's examples inside one call of it)."""
    return tmp_path_factory.mktemp("readers")


@FAST
@given(
    suffix=st.sampled_from(SUFFIXES),
    head=st.sampled_from([b"", b"caption\n", b"[{", b'{"text": ', b"PAR1"]),
    body=st.binary(max_size=300),
)
def test_random_bytes(folder: Path, suffix: str, head: bytes, body: bytes) -> None:
    posts = read_in(folder, f"p{suffix}", head + body)
    if posts is not None:
        assert all(isinstance(text, str) for text in posts.texts)
        assert any(text.strip() for text in posts.texts)


@FAST
@given(value=JSON_VALUES, suffix=st.sampled_from([".json", ".jsonl"]), indent=st.sampled_from([None, 0, 2, "\t"]))
def test_random_json_value(folder: Path, value: Any, suffix: str, indent: int | str | None) -> None:
    read_in(folder, f"p{suffix}", json.dumps(value, indent=indent).encode())


@FAST
@given(
    rows=st.lists(st.dictionaries(KEYS, JSON_VALUES, max_size=4), min_size=1, max_size=6),
    layout=st.sampled_from(["array", "lines", "pretty array"]),
    column=st.sampled_from(["", "caption", "x"]),
)
def test_random_json_rows(folder: Path, rows: list[dict[str, Any]], layout: str, column: str) -> None:
    if layout == "lines":
        name, data = "p.jsonl", "\n".join(json.dumps(row) for row in rows)
    else:
        name, data = "p.json", json.dumps(rows, indent=2 if layout == "pretty array" else None)
    posts = read_in(folder, name, data.encode())
    if posts is None:
        return
    for row, text, kept in zip(rows, posts.texts, posts.frame[posts.text_column], strict=True):
        value = row.get(posts.text_column)
        if isinstance(value, str):
            assert text == LONE_SURROGATE.sub("\ufffd", value)  # what the encoder sees
            assert kept == value  # what the outputs get: the text as read
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            assert text == ""
        else:  # a JSON scalar reads as the text it is written as, as CSV would read it
            assert isinstance(value, bool | int | float) and text == json.dumps(value)


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, list[str], bool]:
    """A CSV of (id, caption) in a random dialect and encoding; its captions; whether it is plain
    UTF-8 comma-separated (so the captions must read back exactly)."""
    captions = draw(st.lists(TEXT, min_size=1, max_size=6))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC, csv.QUOTE_NONE]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    out = io.StringIO()
    escape = "\\" if quoting == csv.QUOTE_NONE else None  # with quotes, pandas reads a backslash as it is
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=newline, escapechar=escape)
    writer.writerow(["id", "caption"])
    for number, caption in enumerate(captions):
        writer.writerow([f"p{number}", caption])
    data = out.getvalue().encode(encoding, errors="replace")
    # Python's writer quotes a line break in a field only when it is part of the line terminator.
    quoted = quoting in (csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC) or (quoting == csv.QUOTE_MINIMAL and newline == "\r\n")
    plain = delimiter == "," and encoding.startswith("utf-8") and quoted
    return data, captions, plain


@FAST
@given(file=csv_files())
def test_random_csv_dialects(folder: Path, file: tuple[bytes, list[str], bool]) -> None:
    data, captions, plain = file
    posts = read_in(folder, "p.csv", data)
    if plain and any(caption.strip() for caption in captions):
        assert posts is not None and posts.texts == captions


PARQUET_COLUMNS = {
    "int": (pa.int64(), st.none() | st.integers(-(2**63), 2**63 - 1)),
    "float": (pa.float64(), st.none() | st.floats()),
    "bool": (pa.bool_(), st.none() | st.booleans()),
    "string": (pa.string(), st.none() | TEXT),
    "binary": (pa.binary(), st.none() | st.binary(max_size=8)),
    "list": (pa.list_(pa.string()), st.none() | st.lists(TEXT, max_size=3)),
    "struct": (pa.struct([("a", pa.int64())]), st.none() | st.fixed_dictionaries({"a": st.integers(0, 9)})),
    "timestamp": (pa.timestamp("s"), st.none() | st.datetimes()),
    "decimal": (pa.decimal128(10, 2), st.none() | st.decimals(min_value=-999, max_value=999, places=2)),
}


@FAST
@given(
    kinds=st.lists(st.sampled_from(sorted(PARQUET_COLUMNS)), min_size=1, max_size=3),
    names=st.lists(st.sampled_from(["caption", "text", "id", "x"]), min_size=3, max_size=3),
    rows=st.integers(0, 5),
    data=st.data(),
)
def test_random_parquet_columns(
    folder: Path, kinds: list[str], names: list[str], rows: int, data: st.DataObject
) -> None:
    fields = [pa.field(name, PARQUET_COLUMNS[kind][0]) for name, kind in zip(names, kinds, strict=False)]
    columns = [data.draw(st.lists(PARQUET_COLUMNS[kind][1], min_size=rows, max_size=rows)) for kind in kinds]
    buffer = io.BytesIO()
    pq.write_table(
        pa.Table.from_arrays(
            [pa.array(c, f.type) for c, f in zip(columns, fields, strict=False)], schema=pa.schema(fields)
        ),
        buffer,
    )
    posts = read_in(folder, "p.parquet", buffer.getvalue())
    if posts is not None and kinds[names.index(posts.text_column)] == "string":
        position = names.index(posts.text_column)
        assert posts.texts == [value or "" for value in columns[position]]


def test_a_table_with_every_suffix_reads_the_same(tmp_path: Path) -> None:
    """The examples above could all pass by refusing everything: this one must read."""
    rows = [{"caption": "hello", "id": 1}, {"caption": 2024, "id": 2}]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=2))
    (tmp_path / "a.csv").write_text("caption,id\nhello,1\n2024,2\n")
    pq.write_table(pa.table({"caption": ["hello", "2024"], "id": [1, 2]}), tmp_path / "a.parquet")
    for suffix in SUFFIXES:
        assert read_posts(tmp_path / f"a{suffix}").texts == ["hello", "2024"], suffix
        assert len(read_table(tmp_path / f"a{suffix}")) == 2
