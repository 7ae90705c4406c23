"""Topic lists with descriptions: `Name: description` lines, the parts they add, and runs that serve them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from topicli.errors import TopicliError
from topicli.method.scoring import cosine_scores, part_vectors
from topicli.method.topics import Topic, parse_topic, read_topics, scored_parts, topic_parts
from topicli.serving.bundle import BundleModel
from topicli.serving.onnx import OnnxPipeline, export_onnx

from .conftest import EXAMPLES
from .test_onnx_export import assert_serves_the_run, minilm_run

TEMPLATE = "This post is about {topic}."


def test_a_line_is_a_name_and_an_optional_description() -> None:
    topic = parse_topic("Fitness & Workouts:  gym, training,   exercise ")
    assert (str(topic), topic.description) == ("Fitness & Workouts", "gym, training, exercise")
    assert (str(parse_topic("  Coffee  ")), parse_topic("Coffee").description) == ("Coffee", "")
    assert parse_topic("Dogs:").description == parse_topic("Dogs:   ").description == ""
    assert parse_topic("Dogs:") == "Dogs"


def test_a_colon_stays_in_the_name_unless_a_space_follows_it() -> None:
    assert (str(parse_topic("Star Trek:Picard")), parse_topic("Star Trek:Picard").description) == (
        "Star Trek:Picard",
        "",
    )
    assert (str(parse_topic("Re: Zero")), parse_topic("Re: Zero").description) == ("Re", "Zero")
    escaped = parse_topic(r"Re\: Zero: anime, isekai")
    assert (str(escaped), escaped.description) == ("Re: Zero", "anime, isekai")
    assert parse_topic("Time: 10:30, clocks").description == "10:30, clocks"


def test_a_topic_is_its_name_wherever_names_go() -> None:
    topic = Topic("Coffee", "espresso, latte")
    assert topic == "Coffee" and hash(topic) == hash("Coffee") and {topic: 1}["Coffee"] == 1
    assert json.dumps([topic]) == '["Coffee"]'
    assert "espresso" in repr(topic)


def test_reading_a_file_with_descriptions_comments_and_repeats(tmp_path: Path) -> None:
    path = tmp_path / "topics.txt"
    path.write_text("# my list: not a topic\nDogs: puppy, leash\n\nCoffee\nDogs: cats\nRe\\: Zero: anime\n")
    topics = read_topics(path)
    assert topics == ["Dogs", "Coffee", "Re: Zero"]
    assert [t.description for t in topics] == ["puppy, leash", "", "anime"]  # a repeated name keeps its first line
    path.write_text("Dogs: pets\n: nameless words\n")
    with pytest.raises(TopicliError, match="line 2 has a description but no name"):
        read_topics(path)


def test_the_shipped_topics_each_have_a_few_keywords() -> None:
    shipped = read_topics()
    assert len(shipped) == len(set(shipped)) == 100
    counts = [len(t.description.split(",")) for t in shipped]
    assert min(counts) >= 4 and max(counts) <= 8
    assert all(":" not in t for t in shipped)


def test_a_description_is_one_more_part_to_score_by(embedder) -> None:
    described = [Topic("Dogs", "puppy, leash, dog walk"), Topic("Personal Finance")]
    assert scored_parts(described[0]) == [*topic_parts("Dogs"), "puppy, leash, dog walk"]
    assert scored_parts(described[1]) == topic_parts("Personal Finance")
    parts, owner = part_vectors(described, TEMPLATE, embedder)
    bare, bare_owner = part_vectors([str(t) for t in described], TEMPLATE, embedder)
    assert owner.tolist() == [0, 0, 1] and bare_owner.tolist() == [0, 1]
    np.testing.assert_allclose(parts[1], embedder([TEMPLATE.format(topic="puppy, leash, dog walk")])[0], atol=1e-6)
    post = embedder(["clipped the new leash on and off we went around the block"])
    with_description, without = cosine_scores(post, parts, owner, 2), cosine_scores(post, bare, bare_owner, 2)
    assert with_description[0, 0] > without[0, 0] + 0.05  # the leash is in the description, not the name
    assert with_description[0, 1] == pytest.approx(without[0, 1], abs=1e-5)


def test_a_run_with_descriptions_serves_its_topics(tmp_path: Path, cache_dir: Path) -> None:
    """Descriptions live in the bundle's part vectors only: the bundle and the ONNX graph serve the run's topics."""
    lines = ["Coffee: espresso, latte, barista", "Dogs: puppy, dog walk", "Running: marathon, 5k, jogging", "Cats"]
    lines += ["Food & Cooking: recipes, dinner", "Beach & Summer: sea, sand, sunshine", "Music & Concerts", "Gaming"]
    (tmp_path / "topics.txt").write_text("\n".join(lines) + "\n")
    topics = read_topics(tmp_path / "topics.txt")
    run_folder = minilm_run(tmp_path, cache_dir, "--topics", str(tmp_path / "topics.txt"))
    model = BundleModel.load(run_folder / "bundle")
    assert model.topics == [str(t) for t in topics]
    assert np.bincount(model.part_owner).tolist() == [len(scored_parts(t)) for t in topics]
    texts = pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)["caption"].tolist()
    assert_serves_the_run(run_folder, texts, model.predict(texts), model.topics)
    exported = OnnxPipeline(export_onnx(run_folder / "bundle", tmp_path / "onnx"))
    assert_serves_the_run(run_folder, texts, exported.predict(texts), model.topics)
