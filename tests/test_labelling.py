from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from topicli.errors import TopicliError
from topicli.method.labelling import ClusteringScorer, ClusterLabeller
from topicli.method.scoring import COSINE_SCALE, TopicScores, cosine_scores, part_vectors, softmax
from topicli.method.topics import read_topics

DOGS = [
    "my puppy learned to sit today 🐶",
    "long walk with the dog in the park",
    "our golden retriever loves swimming",
    "adopted a rescue dog this weekend",
    "dog grooming day, he hates the bath",
]
COFFEE = [
    "flat white and a croissant ☕️",
    "trying a new espresso roast this morning",
    "latte art is getting better",
    "cold brew season is here",
    "best coffee shop in town, hands down",
]
RUNNING = [
    "ran my first half marathon 🏃",
    "easy 5k before work",
    "new running shoes, who dis",
    "interval training on the track",
    "long run sunday, 18km done",
]
TOPICS = ["Dogs", "Coffee", "Running", "Personal Finance"]


@pytest.fixture(scope="module")
def setup(embedder):
    posts = embedder([*DOGS, *COFFEE, *RUNNING, "my puppy chewed my new shoes"])
    parts, owner = part_vectors(TOPICS, "This post is about {topic}.", embedder)
    scores = softmax(cosine_scores(posts, parts, owner, len(TOPICS)), COSINE_SCALE)
    labels = np.array([0] * 5 + [1] * 5 + [2] * 5 + [-1])
    return posts, labels, TopicScores(posts, scores)


def test_shipped_topic_list_and_user_files(tmp_path: Path) -> None:
    shipped = read_topics()
    assert len(shipped) == len(set(shipped)) == 100
    path = tmp_path / "t.txt"
    path.write_text("# mine\nDogs\n\nCoffee\nDogs\n")
    assert read_topics(path) == ["Dogs", "Coffee"]
    path.write_text("Dogs\n")
    with pytest.raises(TopicliError, match="at least two"):
        read_topics(path)
    with pytest.raises(TopicliError, match="not found"):
        read_topics(tmp_path / "none.txt")


def test_clusters_get_their_topic_with_confidence_and_runner_up(setup) -> None:
    posts, labels, probabilities = setup
    labeller = ClusterLabeller(k=3).fit(posts, labels, probabilities)
    assert [c.topic for c in labeller.cluster_topics_] == [0, 1, 2]
    for info in labeller.cluster_topics_:
        assert len(info.voters) == 3 and info.size == 5
        assert info.confidence > info.runner_up_confidence and info.runner_up != info.topic
        mean = probabilities(np.array(info.voters)).mean(axis=0)
        assert info.confidence == pytest.approx(float(mean.max()))


@pytest.mark.parametrize(
    ("policy", "distance", "cluster", "topic"),
    [("unassigned", 0.5, -1, -1), ("classify", 0.5, -1, 0), ("nearest", 0.9, 0, 0), ("nearest", 0.01, -1, -1)],
)
def test_noise_policies(setup, policy: str, distance: float, cluster: int, topic: int) -> None:
    posts, labels, probabilities = setup
    labeller = ClusterLabeller(k=3, noise_policy=policy, noise_distance=distance, override_margin=1.0)
    labeller.fit(posts, labels, probabilities)
    clusters, topics, confidence = labeller.assign(posts, labels, probabilities)
    assert topics[:15].tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert (clusters[-1], topics[-1]) == (cluster, topic)
    assert np.isnan(confidence[-1]) == (topic == -1)


def test_scorer_punishes_a_giant_mixed_cluster(setup) -> None:
    _posts, labels, probabilities = setup
    scorer = ClusteringScorer(probabilities, k=3, sample=16, seed=0)
    right = scorer(labels)
    merged = scorer(np.where(labels >= 0, 0, -1))
    assert right["agreement"] > 0.9 and right["coverage"] == pytest.approx(15 / 16)
    assert merged["score"] < right["score"] - 0.4


def test_a_post_leaves_its_cluster_only_when_its_own_scores_disagree_enough(setup) -> None:
    posts, labels, probabilities = setup
    mixed = labels.copy()
    mixed[4] = 1  # a dog post put in the coffee cluster
    keep = ClusterLabeller(k=3, override_margin=1.0).fit(posts, mixed, probabilities)
    assert keep.assign(posts, mixed, probabilities)[1][4] == 1
    leave = ClusterLabeller(k=3, override_margin=0.0).fit(posts, mixed, probabilities)
    clusters, topics, confidence = leave.assign(posts, mixed, probabilities)
    assert (clusters[4], topics[4]) == (1, 0)
    assert confidence[4] == pytest.approx(float(probabilities(np.array([4]))[0].max()))


def test_the_labeller_is_a_scikit_learn_estimator_with_keyword_only_settings() -> None:
    labeller = ClusterLabeller(k=3, noise_policy="nearest")
    expected = {
        "k": 3,
        "noise_distance": 0.5,
        "noise_policy": "nearest",
        "override_margin": 0.0,
        "unmatched_below": 0.0,
        "min_confidence": 0.0,
    }
    assert labeller.get_params() == expected and clone(labeller).get_params() == expected
    with pytest.raises(TypeError):
        ClusterLabeller(3)


def test_a_cluster_no_topic_fits_is_unmatched_and_keeps_its_best_topic_aside(embedder) -> None:
    # the list lacks coffee: the coffee cluster's best topic fits it less well than the others' fit them
    topics = ["Dogs", "Running", "Personal Finance"]
    posts = embedder([*DOGS, *COFFEE, *RUNNING])
    parts, owner = part_vectors(topics, "This post is about {topic}.", embedder)
    probabilities = TopicScores(posts, softmax(cosine_scores(posts, parts, owner, len(topics)), COSINE_SCALE))
    labels = np.array([0] * 5 + [1] * 5 + [2] * 5)
    plain = ClusterLabeller(k=3).fit(posts, labels, probabilities)
    confidence = [c.confidence for c in plain.cluster_topics_]
    assert confidence[1] < min(confidence[0], confidence[2]), confidence
    threshold = (confidence[1] + min(confidence[0], confidence[2])) / 2
    labeller = ClusterLabeller(k=3, unmatched_below=threshold).fit(posts, labels, probabilities)
    assert [c.unmatched for c in labeller.cluster_topics_] == [False, True, False]
    clusters, assigned, post_confidence = labeller.assign(posts, labels, probabilities)
    assert (assigned[5:10] == -1).all(), "no topic for the unmatched cluster's posts, not even by override"
    assert (assigned[:5] == 0).all() and (assigned[10:] >= 0).all()
    assert np.isnan(post_confidence[5:10]).all() and clusters.tolist() == labels.tolist()
    best = labeller.unmatched_best(clusters)
    assert best.tolist() == [-1] * 5 + [plain.cluster_topics_[1].topic] * 5 + [-1] * 5
    assert labeller.unmatched_best(np.array([-1])).tolist() == [-1], "noise is in no cluster"


def test_an_unsure_post_is_shown_with_no_topic_and_its_topic_kept_aside() -> None:
    labeller = ClusterLabeller(min_confidence=0.5)
    topics = np.array([3, 1, -1, 2, 0])
    confidence = np.array([0.9, 0.49, np.nan, 0.5, 0.1])
    shown, kept, withheld = labeller.withhold(topics, confidence)
    assert shown.tolist() == [3, -1, -1, 2, -1]
    assert np.isnan(kept[[1, 2, 4]]).all() and kept[[0, 3]].tolist() == [0.9, 0.5]
    assert withheld.tolist() == [-1, 1, -1, -1, 0], "the topic each unsure post would have had"
    off = ClusterLabeller().withhold(topics, confidence)
    assert off[0].tolist() == topics.tolist() and (off[2] == -1).all(), "0 withholds nothing"


def test_unmatched_is_judged_on_the_calibrated_chance_that_a_cluster_is_right(embedder) -> None:
    """With a calibrator, `unmatched_below` reads P(right) of each cluster's vote, not the raw confidence: a
    calibrator that finds every cluster sure flags none at a threshold the raw confidences fall below."""
    from topicli.method.calibration import ConfidenceCalibrator

    topics = ["Dogs", "Running", "Personal Finance"]
    posts = embedder([*DOGS, *COFFEE, *RUNNING])
    parts, owner = part_vectors(topics, "This post is about {topic}.", embedder)
    probabilities = TopicScores(posts, softmax(cosine_scores(posts, parts, owner, len(topics)), COSINE_SCALE))
    labels = np.array([0] * 5 + [1] * 5 + [2] * 5)
    raw = ClusterLabeller(k=3, unmatched_below=0.5).fit(posts, labels, probabilities)
    by_raw = [c.confidence < 0.5 for c in raw.cluster_topics_]
    assert [c.unmatched for c in raw.cluster_topics_] == by_raw, "without a calibrator: the raw confidence"

    def calibrator(intercept: float) -> ConfidenceCalibrator:  # P(right) = sigmoid(intercept) for every cluster
        fitted = ConfidenceCalibrator()
        fitted.coef_, fitted.intercept_ = np.array([0.0, 0.0]), intercept
        return fitted

    sure = ClusterLabeller(k=3, unmatched_below=0.5).fit(posts, labels, probabilities, calibrator=calibrator(10.0))
    assert not any(c.unmatched for c in sure.cluster_topics_)
    assert sure.cluster_probabilities(calibrator(10.0)) == pytest.approx([1 / (1 + np.exp(-10))] * 3)
    unsure = ClusterLabeller(k=3, unmatched_below=0.5).fit(posts, labels, probabilities, calibrator=calibrator(-10.0))
    assert all(c.unmatched for c in unsure.cluster_topics_)
