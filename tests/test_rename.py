"""Renaming and merging a run's topics: the mapping file, the outputs written again, a new bundle, no re-clustering."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from topicli.cli import app
from topicli.errors import TopicliError
from topicli.method.rename import read_mapping, rename_outputs
from topicli.serving.bundle import FORMAT_VERSION, Bundle, BundleModel, Manifest, renamed_bundle

from .conftest import EXAMPLES

runner = CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_mapping_file(tmp_path: Path) -> None:
    assert read_mapping(write(tmp_path / "a.csv", "from,to\nCats,Pets\nDogs, Pets\n")) == {
        "Cats": "Pets",
        "Dogs": "Pets",
    }
    assert read_mapping(write(tmp_path / "b.csv", '"Food & Cooking",Food\n')) == {"Food & Cooking": "Food"}
    for text, problem in (
        ("a,b,c\n", "3 columns"),
        ("Cats,\n", "empty name"),
        ("Cats,Pets\nCats,Animals\n", "renamed twice"),
        ("old,new\n", "holds no pair"),
    ):
        with pytest.raises(TopicliError, match=problem):
            read_mapping(write(tmp_path / "bad.csv", text))
    with pytest.raises(TopicliError, match="no such file"):
        read_mapping(tmp_path / "none.csv")


def a_run() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Posts and topic table as a run writes them: Cats (cluster 0), Dogs (cluster 1), an unmatched cluster 2."""
    captions = ["my cat sleeps all day #catsofinstagram", "the cat knocked a glass over", "cat nap",
                "walked the dog in the rain", "the dog loves the park #dogsofinstagram",
                "shabbat dinner with challah", "challah for shabbat"]  # fmt: skip
    posts = pd.DataFrame(
        {
            "caption": captions,
            "date": ["2026-01-01", "2026-01-02", "2026-01-09", "2026-01-03", "2026-01-10", "2026-01-04", "2026-01-11"],
            "cluster": [0, 0, -1, 1, 1, 2, 2],
            "topic": ["Cats", "Cats", "Cats", "Dogs", "Dogs", "", ""],
            "topic_confidence": [0.6, 0.5, 0.4, 0.7, 0.3, np.nan, np.nan],
            "topic_runner_up": ["", "", "", "", "", "Food & Cooking", "Food & Cooking"],
        }
    )
    table = pd.DataFrame(
        [
            ["Cats", "topic", "0", 3, 1, 0.5, "Dogs", "cat", captions[0], captions[1], captions[2]],
            ["Dogs", "topic", "1", 2, 0, 0.5, "Cats", "dog", captions[3], captions[4], ""],
            ["shabbat · challah", "unmatched", "2", 2, 0, 0.08, "Food & Cooking", "shabbat, challah", captions[5], "",
             ""],
        ],
        columns=["topic", "kind", "clusters", "size", "from_noise", "confidence", "runner_up", "keywords",
                 "example_1", "example_2", "example_3"],
    )  # fmt: skip
    return posts, table


TOPICS = ["Cats", "Dogs"]  # the bundle's topic list


def as_matched(texts: list[str], cluster: int, topic: int) -> tuple[np.ndarray, np.ndarray]:
    """A bundle's answer for a joined cluster's posts: its topic at confidence 0.08, but the last post's own is Dogs."""
    assert cluster == 2
    topics = np.full(len(texts), topic)
    topics[-1] = 1
    return topics, np.full(len(texts), 0.08)


def test_merging_two_topics_sums_them_and_finds_their_keywords_again() -> None:
    posts, table = a_run()
    renamed = rename_outputs(posts, table, "caption", {"Cats": "Pets", "Dogs": "Pets"}, TOPICS, as_matched)
    assert renamed.posts["topic"].tolist() == ["Pets"] * 5 + ["", ""]
    assert renamed.posts["cluster"].tolist() == posts["cluster"].tolist(), "no re-clustering"
    pets = renamed.topic_table.iloc[0]
    assert (pets["topic"], pets["kind"], pets["size"], pets["from_noise"], pets["clusters"]) == (
        "Pets",
        "topic",
        5,
        1,
        "0 1",
    )
    assert pets["confidence"] == pytest.approx(np.mean([0.6, 0.5, 0.4, 0.7, 0.3]), abs=1e-4)
    assert {"cat", "dog"} <= set(pets["keywords"].split(", "))
    assert pets["example_1"] == posts["caption"][3], "the most confident post first"
    assert pets["runner_up"] == "", "Cats' runner-up was Dogs, Dogs' Cats: both are Pets now"
    assert renamed.topic_table["kind"].tolist() == ["topic", "unmatched"]
    assert renamed.over_time is not None and set(renamed.over_time["topic"]) == {"Pets"}
    assert renamed.over_time.groupby("topic")["posts"].sum()["Pets"] == 5


def test_an_unmatched_cluster_joins_a_topic_of_the_run() -> None:
    posts, table = a_run()
    renamed = rename_outputs(posts, table, "caption", {"shabbat · challah": "Cats", "Cats": "Cats"}, TOPICS, as_matched)
    assert renamed.posts["topic"].tolist()[5:] == ["Cats", "Dogs"], "the bundle's answer, override included"
    assert renamed.posts["topic_confidence"].tolist()[5:] == [0.08, 0.08]
    assert renamed.posts["topic_runner_up"].tolist()[5:] == ["", ""]
    assert renamed.joined == {2: "Cats"} and (renamed.topic_table["kind"] == "topic").all()
    cats = renamed.topic_table.set_index("topic").loc["Cats"]
    assert cats["size"] == 4 and cats["clusters"] == "0 2"
    with pytest.raises(TopicliError, match="can only join a topic of the run"):
        rename_outputs(posts, table, "caption", {"shabbat · challah": "Judaism"}, TOPICS, as_matched)
    with pytest.raises(TopicliError, match=r"no topic or unmatched cluster named 'Birds'.*Cats, Dogs"):
        rename_outputs(posts, table, "caption", {"Birds": "Pets"}, TOPICS, as_matched)


def a_bundle(folder: Path) -> Bundle:
    """A bundle's manifest as the format's model validates it: three clusters, the last one unmatched."""

    def cluster(number: int, topic: int, runner_up: int, unmatched: bool) -> dict[str, object]:
        return {"cluster": number, "size": 2, "topic": topic, "confidence": 0.5, "runner_up": runner_up,
                "runner_up_confidence": 0.2, "voters": [0], "unmatched": unmatched}  # fmt: skip

    manifest = Manifest.model_validate(
        {
            "format_version": FORMAT_VERSION,
            "versions": {},
            "source": {"posts": 7},
            "encoder": {"name": "e", "identity": "e-1", "dimension": 2, "source": "package", "centred_languages": None},
            "clustering": {"algorithm": "dbscan", "core_points": 0},
            "scoring": {"scorer": "cosine", "neighbours": 0, "neighbour_weight": 0.5},
            "labeller": {
                "k": 1,
                "noise_policy": "classify",
                "noise_distance": 0.5,
                "override_margin": 0.0,
                "unmatched_below": 0.45,
                "min_confidence": 0.5,
            },
            "topics": ["Cats", "Dogs", "Food & Cooking"],
            "clusters": [cluster(0, 0, 1, False), cluster(1, 1, 0, False), cluster(2, 2, 0, True)],
            "limits": {"max_posts": 8, "max_chars": 100},
            "files": {},
            "bundle_id": "abc",
        }
    )
    return Bundle(folder, manifest, {})


def test_the_manifest_keeps_its_topic_list_and_gets_the_new_names(tmp_path: Path) -> None:
    posts, table = a_run()
    renamed = rename_outputs(posts, table, "caption", {"Cats": "Pets", "shabbat · challah": "Dogs"}, TOPICS, as_matched)
    bundle = a_bundle(tmp_path)
    out = Manifest.model_validate({**renamed_bundle(bundle, renamed).manifest, "bundle_id": "x"})
    assert bundle.manifest.topics == ["Cats", "Dogs", "Food & Cooking"], "a copy"
    assert out.topics == ["Pets", "Dogs", "Food & Cooking"]
    assert [(c.topic, c.unmatched, c.topic_name, c.runner_up_name) for c in out.clusters] == [
        (0, False, "Pets", "Dogs"),
        (1, False, "Dogs", "Pets"),
        (1, False, "Dogs", "Pets"),
    ]
    assert set(out.topic_keywords) == {"Pets", "Dogs"}
    assert [r.model_dump() for r in out.renamed] == [{"topics": {"Cats": "Pets"}, "joined": {"2": "Dogs"}}]
    assert out.digest() != bundle.manifest.digest(), "new names answer differently: another id"


@pytest.mark.heavy
def test_label_rename_writes_the_outputs_and_a_new_bundle_without_clustering(
    every_post_shown: None, isolated: Path
) -> None:
    result = runner.invoke(app, ["run", str(EXAMPLES)], env={"TOPICLI_LABELLING_UNMATCHED_BELOW": "0.5"})
    assert result.exit_code == 0, result.stderr
    run = Path("topicli-out/posts")
    table = pd.read_csv(run / "posts.topics.csv", dtype=str, keep_default_na=False)
    topics = table[table["kind"] == "topic"]["topic"].tolist()
    unmatched = table[table["kind"] == "unmatched"]
    first = unmatched["runner_up"].iloc[0]  # the topic the cluster nearly had: a user would join it there
    second = next(t for t in topics if t != first)
    before = json.loads((run / "bundle" / "manifest.json").read_text())
    labels = np.load(run / "clusters.npy")
    mapping = write(
        Path("map.csv"), f'old,new\n"{first}",Merged\n"{second}",Merged\n"{unmatched["topic"].iloc[0]}",Merged\n'
    )
    result = runner.invoke(app, ["label", "--rename", str(mapping)])
    assert result.exit_code == 0, result.stderr
    assert "Merged" in result.stdout and "renamed" in result.stdout
    np.testing.assert_array_equal(np.load(run / "clusters.npy"), labels)
    posts = pd.read_csv(run / "posts.csv", dtype=str, keep_default_na=False)
    after_table = pd.read_csv(run / "posts.topics.csv", dtype=str, keep_default_na=False)
    merged = after_table.set_index("topic").loc["Merged"]
    sizes = table.set_index("topic")["size"].astype(int)
    expected = (posts["topic"] == "Merged").sum()  # the joined cluster's posts whose own topic did not win
    assert sizes[first] + sizes[second] < int(merged["size"]) == expected
    assert expected <= sizes[first] + sizes[second] + int(unmatched["size"].iloc[0])
    assert first not in set(posts["topic"]) and second not in set(after_table["topic"])
    assert len(after_table[after_table["kind"] == "unmatched"]) == len(unmatched) - 1
    over = pd.read_csv(run / "over_time.csv", keep_default_na=False)
    assert over.groupby("topic")["posts"].sum()["Merged"] == expected
    model = BundleModel.load(run / "bundle")
    assert model.bundle_id != before["bundle_id"], "the bundle answers with other names: a new id"
    assert model.topics.count("Merged") == 2 and len(model.topics) == len(before["topics"])
    texts = posts["caption"].tolist()
    predicted = model.predict(texts)
    names = np.array([model.topics[t] if t >= 0 else "" for t in predicted.topics])
    assert (names == posts["topic"].to_numpy()).mean() > 0.95, "serving answers the run's posts with the new names"
    still = posts["cluster"].astype(int).isin(unmatched["clusters"].astype(int).iloc[1:]).to_numpy()
    assert (predicted.topics[still] == -1).all(), "posts of clusters still unmatched get no topic"
    joined = int(unmatched["clusters"].iloc[0])
    rows = (posts["cluster"].astype(int) == joined).to_numpy()
    own = posts.loc[rows, "topic_confidence"].astype(float).to_numpy()
    raw = next(c["confidence"] for c in before["clusters"] if c["cluster"] == joined)
    assert "calibration" in before and not np.allclose(own, round(raw, 4)), "calibrated per post, not the raw one"
    served = predicted.clusters[rows] == joined
    assert served.any()
    assert (posts.loc[rows, "topic"].to_numpy()[served] == names[rows][served]).all(), "as serving answers them"
    np.testing.assert_allclose(own[served], predicted.confidence[rows][served], atol=1e-4)
