from pathlib import Path

import numpy as np
import pytest

from topicli.classifier import load_classifier
from topicli.errors import TopicliError
from topicli.labelling import ClusteringScorer, ClusterLabeller, ProbabilityCache, read_topics

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
    model, manifest = load_classifier()
    posts = embedder(DOGS + COFFEE + RUNNING + ["my puppy chewed my new shoes"])
    topics = embedder([manifest["template"].format(topic=t.lower()) for t in TOPICS])
    labels = np.array([0] * 5 + [1] * 5 + [2] * 5 + [-1])
    return posts, labels, ProbabilityCache(model, posts, topics)


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
    labeller = ClusterLabeller(k=3, noise_policy=policy, noise_distance=distance).fit(posts, labels, probabilities)
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
