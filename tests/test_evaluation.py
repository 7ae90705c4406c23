import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from topicli.cli import app
from topicli.errors import TopicliError
from topicli.method.evaluation import FIGURES, gold_topics, read_gold, score

from .conftest import EXAMPLES


def test_multi_label_gold_counts_any_gold_topic_as_right() -> None:
    gold = [["a"], ["a", "b"], ["b"], ["c"], []]
    predicted = ["a", "b", "a", "", "c"]
    figures = score(predicted, gold, [0, 0, 1, -1, 1], ["a", "b", "c"])
    assert figures["accuracy"] == pytest.approx(2 / 4)
    assert figures["coverage"] == pytest.approx(3 / 4)
    # effective gold: a, b, b, c; F1 a = 2/3 (tp 1, fp 1), b = 2/3 (tp 1, fn 1), c = 0
    assert figures["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert figures["n_topics_used"] == 2


def test_gold_is_read_from_lists_and_pipes() -> None:
    frame = pd.DataFrame({"g": [["x", "y"], "x|z", "", '["y"]']})
    assert read_gold(frame, "g", "f") == [["x", "y"], ["x", "z"], [], ["y"]]
    assert gold_topics(read_gold(frame, "g", "f")) == ["x", "y", "z"]
    with pytest.raises(TopicliError, match="no gold column 'topic'"):
        read_gold(frame, "topic", "f")


@pytest.mark.heavy
def test_evaluate_prints_exactly_one_json_object(isolated: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", str(EXAMPLES), "--gold-column", "intended_topic", "--json"])
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    assert list(figures) == list(FIGURES)
    assert 0 < figures["coverage"] < 1 and 20 <= figures["n_clusters"] <= 100, "unsure posts are held back"
    assert figures["accuracy_shown"] > figures["accuracy"], "the posts shown are the surer ones"
    gold = pd.read_csv(EXAMPLES, keep_default_na=False)["intended_topic"]
    assert figures["n_topics_used"] <= gold[gold != ""].nunique()
    assert figures["accuracy"] > 0.5, "25 topics: chance is 0.04"
    table = CliRunner().invoke(app, ["evaluate", str(EXAMPLES), "--gold-column", "intended_topic"])
    assert table.exit_code == 0 and "macro_f1" in table.stdout
    bad = CliRunner().invoke(app, ["evaluate", str(EXAMPLES), "--gold-column", "label"])
    assert bad.exit_code == 2 and "no gold column 'label'" in bad.stderr
