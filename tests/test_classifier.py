import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from topicli.errors import TopicliError
from topicli.method.classifier import PairClassifier, load_classifier, save_classifier
from topicli.method.topics import topic_phrase
from topicli.method.training import label_space, load_labelled, make_pairs, train_classifier

from .conftest import needs_data

TEMPLATE = "This post is about {topic}."
LABELS = [
    "WORLDPOST",
    "THE WORLDPOST",
    "PARENTS",
    "PARENTING",
    "TRAVEL",
    "SPORTS",
    "FOOD & DRINK",
    "STYLE & BEAUTY",
    "STYLE",
    "CRIME",
    "RELIGION",
    "TECH",
    "WEDDINGS",
    "DIVORCE",
    "COMEDY",
    "ENVIRONMENT",
    "MONEY",
    "SCIENCE",
    "EDUCATION",
    "HOME & LIVING",
]


@pytest.fixture(scope="module")
def huffpost(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small slice of HuffPost: 80 headlines for each of 20 labels."""
    source = pd.read_csv(needs_data("train", "huffpost.csv"))
    rows = source[source["label_name"].isin(LABELS)].groupby("label_name").head(80)
    path = tmp_path_factory.mktemp("train") / "huffpost.csv"
    rows.to_csv(path, index=False)
    return path


def test_topic_phrase() -> None:
    assert topic_phrase("rec.sport.hockey") == "rec sport hockey"
    assert topic_phrase("STYLE & BEAUTY") == "style & beauty"
    assert topic_phrase("change_user_name") == "change user name"


def test_near_duplicates_are_found_and_never_negatives(huffpost: Path, embedder) -> None:
    data = load_labelled([huffpost], ["text"], ["label_name"])
    vectors = embedder(data["text"].tolist())
    space = label_space(data, vectors, embedder, TEMPLATE, 0.8)
    name = {n: i for i, n in enumerate(space.names)}
    assert space.duplicate[name["worldpost"], name["the worldpost"]]
    assert space.duplicate[name["parents"], name["parenting"]]
    assert space.duplicate[name["style"], name["style & beauty"]]
    assert not space.duplicate[name["travel"], name["crime"]]
    owners = np.array([name[label] for label in data["label"]])
    texts, labels, targets = make_pairs(owners, space, np.ones(len(space.names), bool), 6, np.random.default_rng(0))
    negatives = targets == 0
    assert negatives.sum() == 6 * len(owners)
    assert not space.duplicate[owners[texts[negatives]], labels[negatives]].any()
    assert (labels[targets == 1] == owners).all()


def test_training_reports_held_out_figures_above_chance_and_round_trips(
    huffpost: Path, embedder, tmp_path: Path
) -> None:
    data = load_labelled([huffpost], ["text"], ["label_name"])
    vectors = embedder(data["text"].tolist())
    model, summary = train_classifier(data, vectors, embedder, TEMPLATE, PairClassifier(epochs=3), 6, 0.8, 0.2)
    metrics = summary["metrics"]
    unseen = metrics["unseen_labels"]
    assert 3 <= len(unseen) <= 6
    assert metrics["pair_roc_auc"] > 0.75
    assert metrics["top1_seen_labels"] > 2.5 / (len(LABELS) - len(unseen))
    assert metrics["top1_unseen_labels"] > 1.5 / len(unseen)

    save_classifier(model, tmp_path / "m", {"template": TEMPLATE, **summary})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["manifest.json", "weights.safetensors"]
    loaded, manifest = load_classifier(tmp_path / "m")
    topics = embedder([TEMPLATE.format(topic=t) for t in ("travel", "crime", "weddings")])
    np.testing.assert_array_equal(loaded.predict_proba(vectors[:50], topics), model.predict_proba(vectors[:50], topics))
    assert manifest["metrics"] == json.loads(json.dumps(metrics))


def test_shipped_classifier_reads_topic_names(embedder) -> None:
    model, manifest = load_classifier()
    assert manifest["metrics"]["pair_roc_auc"] > 0.8
    topics = ["Dogs", "Personal Finance", "Coffee"]
    topic_vectors = embedder([manifest["template"].format(topic=topic_phrase(t)) for t in topics])
    posts = embedder(
        [
            "my puppy would not stop chasing his tail 🐶",
            "how I paid off my student loans in two years",
            "flat white and a croissant to start the day",
        ]
    )
    assert np.argmax(model.predict_proba(posts, topic_vectors), axis=1).tolist() == [0, 1, 2]


def test_not_a_model_folder_and_wrong_format(tmp_path: Path) -> None:
    with pytest.raises(TopicliError, match="not a cls_model folder"):
        load_classifier(tmp_path)
    shipped, _ = load_classifier()
    save_classifier(shipped, tmp_path / "m", {"template": TEMPLATE})
    manifest = tmp_path / "m" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(TopicliError, match="cls_model format 99"):
        load_classifier(tmp_path / "m")
