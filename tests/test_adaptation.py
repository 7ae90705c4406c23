"""The per-run head (`topicli.method.adaptation`): pseudo-labels, rounds, determinism, and what it buys on real posts.

The figures behind its settings are in bench/results/quality_levers_dev.md; here, on 1,500 TweetTopic train
tweets with the real MiniLM encoder, the adapted scores must beat the unadapted ones, the head must be the
same on a second fit, and a run's bundle must carry it so that serving gives the run's topics.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from topicli.method.adaptation import LOG_FLOOR, MIN_PER_TOPIC, ScoreAdapter, pseudo_labels
from topicli.method.clustering import nearest_neighbours
from topicli.method.embedding import Embedder
from topicli.method.evaluation import score
from topicli.method.scoring import (
    COSINE_SCALE,
    auto_neighbours,
    cosine_scores,
    finish_scores,
    part_vectors,
    topic_floors,
)

from .conftest import needs_data


def test_pseudo_labels_take_each_topics_surest_share_by_margin() -> None:
    probabilities = np.array(
        [
            [0.9, 0.1, 0.0],  # topic 0, margin 0.8
            [0.6, 0.4, 0.0],  # topic 0, margin 0.2
            [0.5, 0.45, 0.05],  # topic 0, margin 0.05
            [0.7, 0.3, 0.0],  # topic 0, margin 0.4
            [0.2, 0.8, 0.0],  # topic 1, margin 0.6
            [0.1, 0.5, 0.4],  # topic 1, margin 0.1
        ]
    )
    rows, topics = pseudo_labels(probabilities, share=0.5)
    # topic 0: half of 4 is 2, its two largest margins (rows 0 and 3); topic 1: at least MIN_PER_TOPIC of 2
    assert rows.tolist() == [0, 3, 4, 5] and topics.tolist() == [0, 0, 1, 1]
    rows, _ = pseudo_labels(probabilities, share=0.01)
    assert len(rows) == 2 * MIN_PER_TOPIC  # however small the share, each topic taken keeps MIN_PER_TOPIC
    assert 2 not in pseudo_labels(probabilities, share=1.0)[1]  # no post's best topic: no pseudo-label


@pytest.fixture(scope="module")
def train_tweets(embedder: Embedder) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[list[str]]]:
    """1,500 TweetTopic train tweets: vectors, raw scores less the floors (as a run), neighbours, topics, gold."""
    path = needs_data("eval", "tweet_topic_single", "train_2020.single.json")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:1500]
    topics = sorted({r["label_name"] for r in rows})
    vectors = embedder([r["text"] for r in rows])
    parts, owner = part_vectors(topics, "This post is about {topic}.", embedder)
    raw = cosine_scores(vectors, parts, owner, len(topics))
    raw -= topic_floors(raw, 0.05, 0.75)
    k = auto_neighbours(len(vectors))
    _, indices = nearest_neighbours(vectors, k)
    return vectors, raw, indices[:, :k], topics, [[r["label_name"]] for r in rows]


@pytest.mark.heavy
def test_the_head_lifts_macro_f1_is_deterministic_and_keeps_its_rounds(train_tweets: tuple) -> None:
    vectors, raw, neighbours, topics, gold = train_tweets

    def finish(scores: np.ndarray) -> np.ndarray:
        return finish_scores(scores, neighbours, 0.5, True)

    def macro_f1(probabilities: np.ndarray) -> float:
        predicted = [topics[i] for i in np.argmax(probabilities, axis=1)]
        return score(predicted, gold, [0] * len(gold), topics)["macro_f1"]

    adapter = ScoreAdapter(max_rounds=3).fit(vectors, raw, finish)
    again = ScoreAdapter(max_rounds=3).fit(vectors, raw, finish)
    assert np.array_equal(adapter.coef_, again.coef_) and np.array_equal(adapter.intercept_, again.intercept_)
    assert 1 <= adapter.rounds_ <= len(adapter.agreement_) <= 3
    if adapter.rounds_ < len(adapter.agreement_):  # the round that stopped it did not beat the best by its error
        best = max(adapter.agreement_[:-1])
        assert adapter.agreement_[-1] <= best + np.sqrt(best * (1 - best) / 1)
    correction = adapter.correction(vectors)
    assert correction.shape == raw.shape
    assert correction.max() <= 0 and correction.min() >= adapter.weight_ / COSINE_SCALE * LOG_FLOOR - 1e-6
    # 1,500 posts are little evidence for a 6 x 384 head: it speaks at a fraction of its strength, and still lifts
    assert 0 < adapter.weight_ < 0.5 * adapter.strength
    assert macro_f1(finish(raw + correction)) > macro_f1(finish(raw)) + 0.005


def test_no_rounds_when_the_posts_give_one_topic(embedder: Embedder) -> None:
    vectors = embedder(["a cat on a mat", "my cat sleeps", "kittens playing", "a cat and a dog"])
    raw = np.column_stack([np.ones(4), np.zeros(4)]).astype(np.float32)
    adapter = ScoreAdapter().fit(vectors, raw, lambda scores: scores)
    assert adapter.rounds_ == 0 and adapter.summary()["rounds"] == 0


@pytest.mark.heavy
def test_a_runs_bundle_carries_the_head_and_serves_the_runs_topics(tmp_path: Path, cache_dir: Path) -> None:
    from topicli.serving.bundle import BundleModel, read_bundle

    from .test_serving import run_examples

    out = run_examples(tmp_path, cache_dir)
    bundle = read_bundle(out / "bundle")
    manifest, arrays = bundle.manifest, bundle.arrays
    adaptation = manifest.scoring.adaptation
    assert adaptation is not None and adaptation.rounds >= 1 and adaptation.pseudo_labels > 0
    assert arrays["head_coef"].shape == (len(manifest.topics), manifest.encoder.dimension)
    assert np.abs(arrays["head_coef"]).sum() > 0
    model = BundleModel.load(out / "bundle")
    run = pd.read_csv(out / "posts.csv", dtype=str, keep_default_na=False)
    served = model.predict(run["caption"].tolist())
    names = [model.topics[t] if t >= 0 else "" for t in served.topics]
    assert names == run["topic"].tolist()
