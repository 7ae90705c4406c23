import numpy as np
import pytest

from topicli.method.encoders import choose_encoder, english_share
from topicli.method.scoring import (
    FLOOR_MIN_POSTS,
    auto_neighbours,
    cosine_scores,
    finish_scores,
    part_vectors,
    topic_floors,
)
from topicli.method.topics import topic_parts


def test_topic_parts() -> None:
    assert topic_parts("Food & Dining") == ["food", "dining"]
    assert topic_parts("science/technology") == ["science", "technology"]
    assert topic_parts("film_tv_&_video") == ["film tv", "video"]
    assert topic_parts("Arts and Crafts") == ["arts", "crafts"]
    assert topic_parts("Dogs") == ["dogs"]


def test_a_topic_scores_its_best_part(embedder) -> None:
    posts = embedder(["grilled salmon with lemon for dinner", "a new restaurant opened downtown, great service"])
    parts, owner = part_vectors(["Food & Dining", "Cars"], "This post is about {topic}.", embedder)
    assert owner.tolist() == [0, 0, 1]
    scores = cosine_scores(posts, parts, owner, 2)
    np.testing.assert_allclose(scores[:, 0], (posts @ parts[:2].T).max(axis=1), rtol=1e-6)
    assert (scores[:, 0] > scores[:, 1]).all()


def test_smoothing_moves_a_post_toward_its_neighbours() -> None:
    raw = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    neighbours = np.array([[1, 2], [0, 2], [0, 1]])
    smoothed = finish_scores(raw, neighbours, 0.5, cosine=False)
    np.testing.assert_allclose(smoothed[0], [0.5, 0.5])
    np.testing.assert_allclose(smoothed[1], [0.25, 0.75])
    assert np.array_equal(finish_scores(raw, neighbours, 0.0, cosine=False), raw)
    probabilities = finish_scores(raw, neighbours, 0.5, cosine=True)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert np.argmax(probabilities[1:], axis=1).tolist() == [1, 1]
    assert probabilities[1, 1] < probabilities[2, 1] or np.allclose(probabilities[1], probabilities[2])


def test_a_topic_near_every_post_loses_its_floor_and_its_pull() -> None:
    """Topic 1 scores 0.4 more on every post (a name near everything): it takes them all until its floor goes."""
    rng = np.random.default_rng(0)
    own = rng.integers(0, 2, size=400)
    raw = np.where(np.eye(2, dtype=bool)[own], 0.5, 0.2) + rng.normal(0, 0.02, (400, 2))
    raw[:, 1] += 0.4
    assert (raw.argmax(axis=1) == 1).all()
    floors = topic_floors(raw, 0.05, 0.75)
    np.testing.assert_allclose(floors, [0.75 * np.quantile(raw[:, 0], 0.05), 0.75 * np.quantile(raw[:, 1], 0.05)])
    assert ((raw - floors).argmax(axis=1) == own).mean() > 0.95
    assert not topic_floors(raw, 0.05, 0.0).any() and not topic_floors(raw[: FLOOR_MIN_POSTS - 1], 0.05, 0.75).any()


@pytest.mark.parametrize(("n", "k"), [(10, 5), (200, 5), (7000, 28), (1_000_000, 30)])
def test_auto_neighbours(n: int, k: int) -> None:
    assert auto_neighbours(n) == k


def test_auto_encoder_follows_the_share_of_english_posts() -> None:
    english = ["I love the beach in summer", "best coffee in town", "leg day at the gym today"] * 4
    german = ["Yoga im Park bei Sonnenuntergang", "Heute gibt es Kuchen mit Sahne", "Wir fahren ans Meer"] * 4
    assert english_share(english) == 1.0 and english_share(german) == 0.0
    assert choose_encoder("auto", english) == "all-MiniLM-L6-v2"
    assert choose_encoder("auto", english[:6] + german[:6]) == "multilingual-e5-small"
    assert choose_encoder("multilingual", english) == "multilingual"
