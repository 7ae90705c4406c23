import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from topicli.errors import TopicliError
from topicli.method.classifier import PairClassifier, load_classifier, save_classifier
from topicli.method.topics import topic_phrase
from topicli.method.training import (
    DESCRIBED,
    Recipe,
    balanced_rows,
    label_space,
    load_labelled,
    make_pairs,
    pair_topics,
    read_label_words,
    train_classifier,
)

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
    everything = np.ones(len(space.names), bool)
    texts, labels, targets = make_pairs(owners, vectors, space, everything, 6, np.random.default_rng(0))
    negatives = targets == 0
    assert negatives.sum() == 6 * len(owners)
    assert not space.duplicate[owners[texts[negatives]], labels[negatives]].any()  # the own label included
    assert (labels[targets == 1] == owners).all()


def test_hard_negatives_are_the_labels_nearest_the_text(huffpost: Path, embedder) -> None:
    """Of a text's 6 negatives, 3 are the allowed labels whose names are nearest the text, none a near-duplicate
    of its own label; the same seed gives the same pairs."""
    data = load_labelled([huffpost], ["text"], ["label_name"])
    vectors = embedder(data["text"].tolist())
    space = label_space(data, vectors, embedder, TEMPLATE, 0.8)
    owners = np.array([space.names.index(label) for label in data["label"]])
    everything = np.ones(len(space.names), bool)
    texts, labels, targets = make_pairs(owners, vectors, space, everything, 6, np.random.default_rng(0))
    for text in range(0, len(owners), 97):
        rows = (texts == text) & (targets == 0)
        allowed = np.flatnonzero(~space.duplicate[owners[text]])
        nearest = allowed[np.argsort(-(space.vectors[allowed] @ vectors[text]))[:3]]
        assert set(labels[rows][:3]) == set(nearest)
        assert not space.duplicate[owners[text], labels[rows]].any()
    again = make_pairs(owners, vectors, space, everything, 6, np.random.default_rng(0))
    np.testing.assert_array_equal(again[1], labels)


def test_balancing_takes_as_many_texts_from_every_source_spread_over_labels() -> None:
    sources = np.array(["big"] * 900 + ["small"] * 100)
    labels = np.array([f"b{i % 3}" for i in range(900)] + ["s0"] * 10 + ["s1"] * 90)
    rows = balanced_rows(sources, labels, np.arange(1000), np.random.default_rng(0))
    assert (sources[rows] == "big").sum() == (sources[rows] == "small").sum() == 100
    counts = pd.Series(labels[rows]).value_counts()
    assert counts[["b0", "b1", "b2"]].max() - counts[["b0", "b1", "b2"]].min() <= 1  # even over the labels
    assert counts["s0"] == 10 and counts["s1"] == 90  # a small source gives everything it has
    assert len(set(rows)) == len(rows)
    np.testing.assert_array_equal(rows, balanced_rows(sources, labels, np.arange(1000), np.random.default_rng(0)))
    capped = balanced_rows(sources, labels, np.arange(1000), np.random.default_rng(0), most=30)
    assert (sources[capped] == "big").sum() == (sources[capped] == "small").sum() == 30
    assert pd.Series(labels[capped][sources[capped] == "big"]).value_counts().tolist() == [10, 10, 10]


def test_descriptions_reach_the_topic_vectors(huffpost: Path, embedder) -> None:
    data = load_labelled([huffpost], ["text"], ["label_name"])
    vectors = embedder(data["text"].tolist())
    descriptions = {"travel": "trips, holidays, destinations, flights, hotels"}
    space = label_space(data, vectors, embedder, TEMPLATE, 0.8, descriptions)
    travel, crime = space.names.index("travel"), space.names.index("crime")
    described = embedder([TEMPLATE.format(topic=DESCRIBED.format(name="travel", description=descriptions["travel"]))])
    np.testing.assert_allclose(space.described[travel], described[0], atol=1e-6)
    np.testing.assert_array_equal(space.described[crime], space.vectors[crime])  # no description: the bare name
    labels = np.array([travel] * 400)
    mixed = pair_topics(space, labels, 0.5, np.random.default_rng(0))
    from_description = np.isclose(mixed @ space.described[travel], 1.0, atol=1e-5)
    assert 0.4 < from_description.mean() < 0.6  # the model sees both forms
    assert np.isclose(pair_topics(space, labels, 0.0, np.random.default_rng(0)) @ space.vectors[travel], 1).all()


def test_shipped_descriptions_cover_every_training_label() -> None:
    """Every label of the shared training files (AG News's indices by their names) has a description."""
    words = read_label_words()
    train = needs_data("train")
    files = [train / "huffpost.csv", train / "clinc150.csv", train / "20newsgroups" / "train.jsonl"]
    files.append(train / "ag_news_test.csv")
    data = load_labelled(
        files, ["text", "subject", "Title"], ["label_name", "domain", "label", "Class Index"], ["oos"], words.names
    )
    assert set(data.loc[data["source"] == "ag_news_test.csv", "label"]) == {
        "world",
        "sports",
        "business",
        "science & technology",
    }
    assert not set(data["label"]) - set(words.descriptions)


@pytest.mark.heavy
def test_training_reports_held_out_figures_above_chance_and_round_trips(
    huffpost: Path, embedder, tmp_path: Path
) -> None:
    data = load_labelled([huffpost], ["text"], ["label_name"])
    vectors = embedder(data["text"].tolist())
    model, summary = train_classifier(data, vectors, embedder, TEMPLATE, PairClassifier(epochs=3), Recipe())
    metrics = summary["metrics"]
    unseen = metrics["unseen_labels"]
    assert 3 <= len(unseen) <= 6
    assert metrics["pair_roc_auc"] > max(0.7, metrics["pair_roc_auc_cosine"])  # hard pairs, better than cosine
    assert metrics["top1_seen_labels"] > 2.5 / (len(LABELS) - len(unseen))
    assert metrics["top1_unseen_labels"] > 1.5 / len(unseen)

    save_classifier(model, tmp_path / "m", {"template": TEMPLATE, **summary})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["manifest.json", "weights.safetensors"]
    loaded, manifest = load_classifier(tmp_path / "m")
    topics = embedder([TEMPLATE.format(topic=t) for t in ("travel", "crime", "weddings")])
    np.testing.assert_array_equal(loaded.predict_proba(vectors[:50], topics), model.predict_proba(vectors[:50], topics))
    assert manifest["metrics"] == json.loads(json.dumps(metrics))
    again, _ = train_classifier(data, vectors, embedder, TEMPLATE, PairClassifier(epochs=3), Recipe())
    for name, weights in model.weights_.items():  # seeded: the same data trains the same model
        np.testing.assert_array_equal(again.weights_[name], weights)


def test_shipped_classifier_reads_topic_names(embedder) -> None:
    model, manifest = load_classifier()
    metrics = manifest["metrics"]
    assert metrics["pair_roc_auc"] > metrics["pair_roc_auc_cosine"]  # its held-out pairs, the same for both
    assert manifest["training"]["described_labels"] == manifest["training"]["labels"]  # every label was described
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
