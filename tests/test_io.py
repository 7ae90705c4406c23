from pathlib import Path

import pandas as pd
import pytest

from topicli.errors import TopicliError
from topicli.io import read_posts, read_table, write_table


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


def test_write_replaces_atomically_and_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    write_table(pd.DataFrame({"a": [1]}), path)
    with pytest.raises(Exception):  # noqa: B017 - pyarrow refuses a column of mixed objects
        write_table(pd.DataFrame({"a": [object()]}), path)
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
