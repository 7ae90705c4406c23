import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from topicli.errors import TopicliError
from topicli.io import check_writable, read_posts, read_table, write_table


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet"])
def test_tables_round_trip_every_format_and_keep_empty_strings(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({"id": ["a", "b", "c"], "caption": ["café ☕️ #morning", "", 'tacos, "al pastor"\nnight']})
    path = tmp_path / f"posts{suffix}"
    write_table(frame, path)
    back = read_table(path)
    assert back["caption"].tolist() == frame["caption"].tolist()
    posts = read_posts(path)
    assert posts.text_column == "caption"
    assert posts.texts[1] == ""
    assert not list(tmp_path.glob(".*tmp")), "no temporary file is left behind"


def test_text_column_found_by_name_or_given(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("id,Body,note\n1,hello there,x\n")
    assert read_posts(path).text_column == "Body"
    assert read_posts(path, "note").text_column == "note"


def test_write_replaces_atomically_and_keeps_the_old_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.parquet"
    write_table(pd.DataFrame({"a": [1]}), path)

    def half_written(table: pa.Table, where: Path) -> None:
        Path(where).write_bytes(b"PAR1 cut short")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_table(pd.DataFrame({"a": [2]}), path)
    assert read_table(path)["a"].tolist() == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such file"),
        ("posts.txt", b"caption\nhi\n", "unknown format '.txt'"),
        ("empty.csv", b"", "is empty"),
        ("header.csv", b"caption\n", "has no rows"),
        ("blank.csv", b'caption\n" "\n""\n', "every post in column 'caption' is empty"),
        ("latin1.csv", b"caption\nfine\ncaf\xe9\n", "invalid UTF-8 on line 3"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": \n', "line 2 is not valid JSON"),
        ("nocol.csv", b"id,title\n1,hello\n", "no text column found"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TopicliError) as error:
        read_posts(path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_column_names_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("id,caption\n1,hello\n")
    with pytest.raises(TopicliError, match="no column 'text'; columns are id, caption"):
        read_posts(path, "text")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_json_scalars_in_the_text_column_are_text_as_in_csv(tmp_path: Path, suffix: str) -> None:
    rows = [{"id": i, "caption": value} for i, value in enumerate(["a post", 2024, None, 3.5, True])]
    path = tmp_path / f"p{suffix}"
    if suffix == ".jsonl":
        write_jsonl(path, rows)
    else:
        path.write_text(json.dumps(rows))
    posts = read_posts(path)
    assert posts.texts == ["a post", "2024", "", "3.5", "true"]
    assert posts.frame["caption"].tolist()[:2] == ["a post", "2024"], "the output carries them as text too"


def test_parquet_integers_with_nulls_stay_integers(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"caption": ["a post", "2024", None], "n": pa.array([2024, None, 7], pa.int64())}), path)
    assert read_table(path)["n"].tolist() == [2024, None, 7], "not 2024.0 and NaN"
    assert read_posts(path).texts == ["a post", "2024", ""]
    with pytest.raises(TopicliError, match="column 'n' holds numbers, not text"):
        read_posts(path, "n")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"caption": 1}, {"caption": 2.5}], "column 'caption' holds numbers, not text"),
        ([{"caption": "ok"}, {"caption": ["a", "b"]}], "post 2 in column 'caption' holds a list, not text"),
        ([{"caption": {"a": 1}}, {"caption": "ok"}], "post 1 in column 'caption' holds an object, not text"),
        ([{"caption": None}, {"caption": None}], "every post in column 'caption' is empty"),
    ],
)
def test_text_columns_that_hold_no_text(tmp_path: Path, rows: list[dict], message: str) -> None:
    with pytest.raises(TopicliError, match=re.escape(message)):
        read_posts(write_jsonl(tmp_path / "p.jsonl", rows))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("one.json", '{\n  "caption": "a post"\n}\n', "expected a JSON array of objects or JSON Lines"),
        ("one.jsonl", '{\n  "caption": "a post"\n}\n', "got one JSON object"),
        ("number.json", "42", "got one JSON int"),
        ("scalars.json", "[1, 2]", "item 1 of the array is not an object"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, "is not readable JSON"),
        ("huge.jsonl", '{"caption": ' + "9" * 5000 + "}", "line 1 is not readable JSON"),
        ("bad.json", '[{"caption": "a"},\n', "the file is not valid JSON on line 2 (Expecting value)"),
        ("array.jsonl", '[{"caption": "a"}]', "holds one JSON array; name the file .json"),
        ("columns.jsonl", '{"a\\nb": "x"}', "columns are 'a\\nb'"),
    ],
)
def test_malformed_json_gives_one_clear_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TopicliError) as error:
        read_posts(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_lone_surrogates_are_repaired_only_for_the_encoder(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"caption": "bad \\ud800 half"}\n{"caption": "pair \\ud83d\\ude00 whole"}\n', encoding="utf-8")
    posts = read_posts(path)
    assert posts.texts == ["bad \ufffd half", "pair \U0001f600 whole"]
    assert all(text.encode("utf-8") for text in posts.texts)
    assert posts.frame["caption"].tolist() == ["bad \ud800 half", "pair \U0001f600 whole"]
    with pytest.warns(UserWarning, match="1 value.* lone surrogate .* written with U\\+FFFD"):
        write_table(posts.frame, tmp_path / "out.csv")
    assert read_table(tmp_path / "out.csv")["caption"].tolist() == ["bad \ufffd half", "pair \U0001f600 whole"]


def test_parquet_text_stored_as_bytes_is_read_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"caption": pa.array(["café ☕".encode(), None, b"ok"], pa.binary())}), path)
    assert read_posts(path).texts == ["café ☕", "", "ok"]
    pq.write_table(pa.table({"caption": pa.array([b"ok", b"caf\xe9"], pa.binary())}), path)
    with pytest.raises(TopicliError, match="post 2 in column 'caption' holds bytes that are not UTF-8, not text"):
        read_posts(path)


def test_repeated_parquet_column_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"])], names=["caption", "caption"]), path)
    with pytest.raises(TopicliError, match="column name\\(s\\) caption used more than once"):
        read_posts(path)


def test_check_writable(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "in.csv").write_text("caption\nhi\n")
    check_writable(tmp_path / "new" / "deeper" / "out.csv", "-o")
    check_writable(tmp_path / "new" / "cache", "[encoder] cache_dir", folder=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "in.csv"], "a check leaves nothing behind"
    cases = [
        (tmp_path / "afile" / "out.csv", {}, "afile is a file, so no folder can be made there"),
        (tmp_path / "afile", {"folder": True}, "is a file, not a folder"),
        (tmp_path, {}, "is a folder; give a file path"),
        (tmp_path / "in.csv", {"inputs": (tmp_path / "in.csv",)}, "is the input file"),
        (tmp_path / "x" / ".." / "in.csv", {"inputs": (tmp_path / "in.csv",)}, "is the input file"),
    ]
    for path, options, message in cases:
        with pytest.raises(TopicliError, match=re.escape(message)):
            check_writable(path, "-o", **options)
    (tmp_path / "link.csv").hardlink_to(tmp_path / "in.csv")
    with pytest.raises(TopicliError, match="is the input file"):
        check_writable(tmp_path / "link.csv", "-o", inputs=(tmp_path / "in.csv",))


def test_a_column_of_mixed_values_is_written_to_parquet_as_text(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": [1, "x2", None], "caption": ["a", "b", "c"]})
    write_table(frame, tmp_path / "out.parquet")
    back = read_table(tmp_path / "out.parquet")
    assert back["id"].tolist()[:2] == ["1", "x2"] and back["id"].isna().tolist()[2]
    assert back["caption"].tolist() == ["a", "b", "c"]
