import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from topicli.cli import app

from .conftest import EXAMPLES, needs_data

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_init_writes_the_config_and_refuses_to_overwrite(isolated: Path) -> None:
    code, _out, _ = invoke("init")
    assert code == 0 and (isolated / "topicli.toml").is_file()
    assert "[clustering]" in (isolated / "topicli.toml").read_text()
    code, _, err = invoke("init")
    assert code == 2 and "--force" in err


def test_run_on_the_examples_gives_every_post_a_topic(every_post_shown: None, isolated: Path) -> None:
    code, out, err = invoke("run", EXAMPLES)
    assert code == 0, err
    assert "candidate clusterings" in out and "chose eps=" in out
    posts = pd.read_csv(isolated / "topicli-out/posts/posts.csv", dtype=str, keep_default_na=False)
    source = pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)
    assert list(posts.columns) == [*source.columns, "cluster", "topic", "topic_confidence"]
    assert posts["id"].tolist() == source["id"].tolist()
    empty = source["caption"].str.strip() == ""
    assert empty.sum() == 3
    assert (posts.loc[empty, "topic"] == "").all() and (posts.loc[empty, "cluster"] == "-1").all()
    assert (posts.loc[~empty, "topic"] != "").all(), (
        "the default noise policy (classify) leaves no post without a topic"
    )
    table = pd.read_csv(isolated / "topicli-out/posts/posts.topics.csv", dtype=str, keep_default_na=False)
    assert list(table.columns[:6]) == ["topic", "clusters", "size", "from_noise", "confidence", "runner_up"]
    assert table["size"].astype(int).sum() == (~empty).sum()
    assert set(table["topic"]) == set(posts.loc[~empty, "topic"])
    clustering = json.loads((isolated / "topicli-out/posts/clustering.json").read_text())
    assert 20 <= clustering["chosen"]["n_clusters"] <= 100


@pytest.mark.heavy
def test_same_input_same_bytes_cold_and_warm(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(isolated / "fresh-cache"))
    outputs = []
    for name in ("cold.csv", "warm.csv"):
        code, _, err = invoke("run", EXAMPLES, "-o", name)
        assert code == 0, err
        outputs.append((isolated / name).read_bytes() + (isolated / name.replace(".csv", ".topics.csv")).read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.heavy
def test_cluster_then_label_equals_run(isolated: Path) -> None:
    assert invoke("run", EXAMPLES, "-o", "together.parquet")[0] == 0
    code, _out, err = invoke("cluster", EXAMPLES, "--run", "apart")
    assert code == 0, err
    code, _out, err = invoke("label", "--run", "apart", "-o", "apart.jsonl")
    assert code == 0, err
    together = pd.read_parquet(isolated / "together.parquet")
    apart = pd.read_json(isolated / "apart.jsonl", lines=True, dtype={"id": str})
    assert together["topic"].fillna("").tolist() == apart["topic"].fillna("").tolist()
    assert together["cluster"].tolist() == apart["cluster"].tolist()


@pytest.mark.heavy
def test_label_reads_the_posts_from_here_when_the_run_was_clustered_elsewhere(isolated: Path) -> None:
    assert invoke("cluster", EXAMPLES, "--run", "cloud")[0] == 0
    recorded = isolated / "cloud" / "clustering.json"
    document = json.loads(recorded.read_text())
    document["input"] = "/mnt/azureml/cr/j/0a1b/cap/data-capability/wd/INPUT_posts/posts.csv"  # as a job records it
    recorded.write_text(json.dumps(document))
    code, _out, err = invoke("label", "--run", "cloud")
    assert code == 2 and "is not on this machine" in err and "--posts" in err and "Traceback" not in err
    Path("other.csv").write_text("caption\nnot the posts that were clustered\n")
    code, _out, err = invoke("label", "--run", "cloud", "--posts", "other.csv")
    assert code == 2 and "changed since it was clustered" in err
    copy = Path("downloaded.csv")
    copy.write_bytes(EXAMPLES.read_bytes())
    code, _out, err = invoke("label", "--run", "cloud", "--posts", str(copy), "-o", "labelled.csv")
    assert code == 0, err
    assert len(pd.read_csv("labelled.csv")) == len(pd.read_csv(EXAMPLES))
    assert json.loads(recorded.read_text())["input"] == str(copy), "the run now records where its posts are"


def test_options_and_environment_override_the_config(
    every_post_shown: None, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated / "topics.txt").write_text("Coffee\nDogs\nRunning\nWeddings\nPersonal Finance\n")
    Path("topicli.toml").write_text('[labelling]\nnoise_policy = "unassigned"\n[clustering]\nmin_topics = 2\n')
    monkeypatch.setenv("TOPICLI_CLUSTERING_MAX_TOPICS", "400")
    code, _out, err = invoke(
        "run", EXAMPLES, "--topics", "topics.txt", "--eps", "0.5", "--min-samples", "2", "-o", "o.csv"
    )
    assert code == 0, err
    posts = pd.read_csv("o.csv", dtype=str, keep_default_na=False)
    clustering = json.loads(Path("topicli-out/posts/clustering.json").read_text())
    assert [(c["eps"], c["min_samples"]) for c in clustering["candidates"]] == [(0.5, 2)]
    assert set(posts["topic"]) <= {"", "Coffee", "Dogs", "Running", "Weddings", "Personal Finance"}
    assert ((posts["cluster"] == "-1") == (posts["topic"] == "")).all(), "unassigned: noise keeps no topic"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such file"),
        ("posts.xlsx", b"caption\nhi\n", "unknown format"),
        ("empty.csv", b"", "is empty"),
        ("blank.csv", b'caption\n" "\n', "every post in column 'caption' is empty"),
        ("latin1.csv", b"caption\nok\nol\xe1 mundo\n", "invalid UTF-8 on line 3"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(isolated: Path, name: str, content: bytes | None, message: str) -> None:
    if content is not None:
        (isolated / name).write_bytes(content)
    code, out, err = invoke("run", name)
    assert code == 2
    assert message in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_unknown_column_and_bad_config_exit_2(isolated: Path) -> None:
    code, _, err = invoke("run", EXAMPLES, "--text-column", "body")
    assert code == 2 and "no column 'body'" in err
    Path("topicli.toml").write_text("[clustering]\nmin_topic = 3\n")
    code, _, err = invoke("cluster", EXAMPLES)
    assert code == 2 and "unknown setting [clustering] min_topic" in err
    code, _, err = invoke("label")
    assert code == 2


def test_debug_shows_the_traceback(isolated: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "topicli", "--debug", "run", "nope.csv"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "Traceback" in result.stderr and "no such file" in result.stderr


def test_train_classifier_command(isolated: Path) -> None:
    source = pd.read_csv(needs_data("train", "huffpost.csv"))
    labels = ["TRAVEL", "SPORTS", "CRIME", "RELIGION", "TECH", "WEDDINGS", "MONEY", "SCIENCE", "EDUCATION", "COMEDY"]
    source[source["label_name"].isin(labels)].groupby("label_name").head(60).to_csv("small.csv", index=False)
    code, out, err = invoke("train-classifier", "small.csv", "--label-column", "label_name", "-o", "model")
    assert code == 0, err
    assert "pair ROC-AUC" in out and "labels held out of training" in out
    manifest = json.loads(Path("model/manifest.json").read_text())
    assert manifest["metrics"]["pair_roc_auc"] > 0.7 and manifest["training"]["labels"] == 10
    code, out, err = invoke("train-classifier", "small.csv", "--label-column", "topic")
    assert code == 2 and "none of the label columns topic" in err
