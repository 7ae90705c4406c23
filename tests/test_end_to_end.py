"""`topicli run` on 2,000 real tweets with gold topics (TweetTopic test files)."""

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from topicli.cli import app
from topicli.method.topics import topic_phrase

from .conftest import tweets


@pytest.mark.heavy
def test_run_on_2000_tweets(every_post_shown: None, isolated: Path) -> None:
    rows = tweets(2000)
    pd.DataFrame({"id": [str(r["id"]) for r in rows], "text": [r["text"] for r in rows]}).to_json(
        "tweets.jsonl", orient="records", lines=True
    )
    gold = [r["label_name"] for r in rows]
    Path("topics.txt").write_text("\n".join(sorted(set(gold))) + "\n")
    result = CliRunner().invoke(app, ["run", "tweets.jsonl", "--topics", "topics.txt", "-o", "out.parquet"])
    assert result.exit_code == 0, result.stderr
    posts = pd.read_parquet("out.parquet")
    assert posts["id"].tolist() == [str(r["id"]) for r in rows]
    assert (posts["topic"] != "").all()
    accuracy = (posts["topic"].map(topic_phrase) == [topic_phrase(g) for g in gold]).mean()
    assert accuracy > 0.3, f"accuracy {accuracy:.3f} is near chance (1/6)"
    assert posts["topic"].nunique() >= 3
    clustering = json.loads(Path("topicli-out/tweets/clustering.json").read_text())
    assert 20 <= clustering["chosen"]["n_clusters"] <= 100
    table = pd.read_parquet("out.topics.parquet")
    assert table["size"].sum() == len(posts)
