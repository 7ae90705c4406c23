"""What a run shows and what it holds back (issue 29): unsure posts keep their topic aside, coverage is the share
shown, small topics fold into one line, and noise and unsure posts are named at 80 columns."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from topicli.cli import app
from topicli.config import load_settings

from .conftest import EXAMPLES

runner = CliRunner()
pytestmark = pytest.mark.heavy  # one real run of the examples, shared by the module


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[str, Path]:
    """`topicli run examples/posts.csv` with the default settings at 80 columns: (what it printed, run folder)."""
    folder = tmp_path_factory.mktemp("feed")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(cache_dir))
        result = runner.invoke(app, ["run", str(EXAMPLES)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    return " ".join(result.stdout.split()), folder / "topicli-out" / "posts"


def test_the_coverage_printed_is_the_share_of_posts_shown_with_a_topic(default_run: tuple[str, Path]) -> None:
    said, folder = default_run
    posts = pd.read_csv(folder / "posts.csv", dtype=str, keep_default_na=False)
    shown = int((posts["topic"] != "").sum())
    printed = re.search(r"shown with a topic: ([\d,]+) of ([\d,]+) posts \((\d+)%, the coverage\)", said)
    assert printed is not None, said
    assert int(printed[1].replace(",", "")) == shown and int(printed[2].replace(",", "")) == len(posts)
    assert f"(coverage {round(100 * shown / len(posts))}%)" in said
    assert int(printed[3]) == round(100 * shown / len(posts))


def test_unsure_posts_and_noise_are_named_and_nothing_is_lost(default_run: tuple[str, Path]) -> None:
    said, folder = default_run
    settings = load_settings(None, environ={})
    posts = pd.read_csv(folder / "posts.csv", dtype=str, keep_default_na=False)
    confidence = pd.to_numeric(posts["topic_confidence"])
    assert (confidence.dropna() >= settings.labelling.min_confidence).all(), "no topic shown below the threshold"
    held = posts[(posts["topic"] == "") & (posts["caption"].str.strip() != "")]
    assert len(held) and (held["topic_runner_up"] != "").all(), "every post held back keeps the topic it would have had"
    noise = int((posts["cluster"].astype(int) < 0).sum()) - int((posts["caption"].str.strip() == "").sum())
    assert f"noise: {noise:,} in no cluster" in said
    if settings.labelling.min_confidence > 0:
        assert re.search(r"unsure: [\d,]+ \(confidence below", said), said


def test_topics_with_fewer_than_min_posts_fold_into_one_line(default_run: tuple[str, Path]) -> None:
    """On the examples no topic with fewer than [output] min_posts posts is listed on its own; the table file keeps
    every row."""
    said, folder = default_run
    table = pd.read_csv(folder / "posts.topics.csv", dtype=str, keep_default_na=False)
    topics = table[table["kind"] == "topic"].astype({"size": int})
    min_posts = load_settings(None, environ={}).output.min_posts
    small = topics[topics["size"] < min_posts]
    assert len(small), "the examples give some small topics"
    assert f"{len(small)} more topics with fewer than {min_posts} posts each" in said
