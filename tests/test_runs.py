"""Run folders own where a run's outputs went: `run -o FILE` is found again by `report`, `label` and `export`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from topicli.cli import app
from topicli.errors import TopicliError
from topicli.io import file_digest
from topicli.method.base import Candidate
from topicli.method.records import ClusterRun, check_output_columns, with_topics
from topicli.runs.outputs import OUTPUTS_FILE, find_posts_output

from .conftest import EXAMPLES


def invoke(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_run_with_output_elsewhere_is_found_by_report_label_and_export(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPICLI_ENCODER_NAME", "all-MiniLM-L6-v2")  # the encoder that exports to ONNX
    code, _, err = invoke("run", EXAMPLES, "-o", "elsewhere/out.csv")
    assert code == 0, err
    folder = isolated / "topicli-out" / "posts"
    record = json.loads((folder / OUTPUTS_FILE).read_text())
    assert record["posts"] == str((isolated / "elsewhere/out.csv").resolve())
    assert record["topic_table"] == str((isolated / "elsewhere/out.topics.csv").resolve())
    assert record["sha256"]["posts"] == file_digest(isolated / "elsewhere/out.csv")
    assert not list(folder.glob("posts.*")), "the posts went where -o said, not into the run folder"
    assert find_posts_output(folder) == (isolated / "elsewhere/out.csv").resolve()

    code, out, err = invoke("report", "--max-points", "60")
    assert code == 0, err
    assert (folder / "report.html").is_file() and "60 of" in " ".join(out.split())

    code, _, err = invoke("export", "onnx", "-o", "exported")
    assert code == 0, err
    assert json.loads((isolated / "exported/export.json").read_text())["bundle"] == str((folder / "bundle").resolve())

    code, _, err = invoke("label")
    assert code == 0, err
    assert json.loads((folder / OUTPUTS_FILE).read_text())["posts"] == "posts.csv", "inside the run folder: by name"
    assert find_posts_output(folder) == folder / "posts.csv"


def test_a_recorded_output_that_is_gone_is_named(tmp_path: Path) -> None:
    posts = tmp_path / "out.csv"
    (tmp_path / OUTPUTS_FILE).write_text(json.dumps({"posts": str(posts), "topic_table": ""}))
    with pytest.raises(TopicliError, match=r"out\.csv .* is gone"):
        find_posts_output(tmp_path)


def test_output_columns_are_checked_and_filled_in_one_place() -> None:
    frame = pd.DataFrame({"caption": ["a", "", "c"]})
    filled = with_topics(frame, [0, 2], [3, -1], ["Food", "Travel"], [0.123456, float("nan")])
    assert filled["cluster"].tolist() == [3, -1, -1]
    assert filled["topic"].tolist() == ["Food", "", "Travel"]
    assert filled["topic_confidence"].iloc[0] == 0.1235 and filled["topic_confidence"].isna().tolist()[1:] == [True] * 2
    assert "cluster" not in frame.columns, "the caller's frame is left alone"
    with pytest.raises(TopicliError, match="already has column"):
        check_output_columns(filled, "posts.csv")


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (folder / "clustering.json").write_text('{"input": "posts.csv", '),
        lambda folder: (folder / "clustering.json").write_text('{"input": "posts.csv"}'),
        lambda folder: (folder / "clusters.npy").write_bytes(b"\x93NUMPY garbage"),
        lambda folder: (folder / "core.npy").write_bytes(b""),
    ],
    ids=["cut-json", "missing-keys", "bad-clusters", "empty-core"],
)
def test_a_damaged_clustering_is_one_line_naming_the_fix(tmp_path: Path, damage: Callable[[Path], object]) -> None:
    labels = np.array([0, 1, -1])
    candidate = Candidate("dbscan", 0.3, 2, 0, 2, 0.67, True, {"score": 0.5, "agreement": 1.0, "topics_used": 2})
    ClusterRun("posts.csv", "0" * 64, "caption", "enc", labels, labels >= 0, [candidate], candidate, "why").save(
        tmp_path
    )
    assert ClusterRun.load(tmp_path).labels.tolist() == [0, 1, -1]
    damage(tmp_path)
    with pytest.raises(TopicliError, match=r"is damaged .*run `topicli cluster POSTS` again"):
        ClusterRun.load(tmp_path)
