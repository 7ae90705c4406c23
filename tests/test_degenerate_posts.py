"""Degenerate posts: many exact copies of one text, texts an encoder cannot tell apart, very long posts.

Copies are embedded once and clustered as one point weighing as many posts (DBSCAN's
`sample_weight`); every post still gets its own row, copies the same cluster and topic.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from topicli.cli import app
from topicli.config import Settings
from topicli.io import read_posts
from topicli.method.embedding import Embedder
from topicli.method.labelling import ClusteringScorer, ClusterLabeller
from topicli.method.pipeline import Pipeline
from topicli.method.scoring import TopicScores
from topicli.serving.bundle import BundleModel

from .conftest import EXAMPLES, needs_data

COPIED = "Happy birthday! 🎉"
FAST = '[encoder]\nname = "all-MiniLM-L6-v2"\n'  # the session's encoder: no second model to load


@pytest.fixture
def folder(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with an embedding cache of its own: the ONNX encoder's last bits depend on which texts
    share a batch, and other tests compare the session cache's vectors of the examples with fresh ones."""
    monkeypatch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(isolated / "cache"))
    return isolated


def run(folder: Path, posts: pd.DataFrame, config: str) -> tuple[int, str, pd.DataFrame | None, pd.DataFrame | None]:
    """`topicli run` on `posts` in `folder` with that topicli.toml: exit code, stderr, posts and topic table out."""
    (folder / "topicli.toml").write_text(config)
    posts.to_csv(folder / "in.csv", index=False)
    result = CliRunner().invoke(app, ["run", str(folder / "in.csv"), "-o", str(folder / "out.csv")])
    if result.exit_code:
        return result.exit_code, result.stderr, None, None
    read = {"dtype": str, "keep_default_na": False}
    return 0, result.stderr, pd.read_csv(folder / "out.csv", **read), pd.read_csv(folder / "out.topics.csv", **read)


def examples() -> pd.DataFrame:
    return pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)[["id", "caption"]]


def assert_every_post_has_a_topic(posts: pd.DataFrame, source: pd.DataFrame) -> None:
    assert posts["id"].tolist() == source["id"].tolist(), "a row per post, in order"
    written = source["caption"].str.strip() != ""
    assert (posts.loc[written, "topic"] != "").all() and (posts.loc[~written, "topic"] == "").all()


@pytest.mark.heavy
def test_500_identical_posts_and_a_few_others_get_topics(every_post_shown: None, folder: Path) -> None:
    others = examples().iloc[:40]
    copies = pd.DataFrame({"id": [f"copy{i}" for i in range(500)], "caption": [COPIED] * 500})
    source = pd.concat([copies.iloc[:250], others, copies.iloc[250:]], ignore_index=True)
    code, err, posts, table = run(folder, source, FAST + "[clustering]\nmin_topics = 2\n")
    assert code == 0, err
    assert posts is not None and table is not None
    assert_every_post_has_a_topic(posts, source)
    copied = posts[posts["caption"] == COPIED]
    assert len(copied) == 500 and copied["cluster"].nunique() == 1 and copied["topic"].nunique() == 1
    assert copied["cluster"].iloc[0] == "0", "the largest cluster, counted in posts"
    size = table.loc[table["topic"] == copied["topic"].iloc[0], "size"].astype(int)
    assert size.iloc[0] >= 500, "the topic table counts posts, not distinct texts"


def test_fewer_than_three_distinct_posts_is_one_clear_error(folder: Path) -> None:
    source = pd.DataFrame({"id": range(503), "caption": [COPIED] * 500 + ["hello there"] * 3})
    code, err, _, _ = run(folder, source, FAST)
    assert code == 2
    expected = "error: clustering needs at least 3 distinct non-empty posts, got 2; add posts with other texts"
    assert err.strip().splitlines()[-1] == expected and "Traceback" not in err


@pytest.mark.heavy
def test_examples_with_20_copies_of_one_post_keep_the_other_topics(every_post_shown: None, folder: Path) -> None:
    source = examples()
    code, err, alone, _ = run(folder, source, FAST)
    assert code == 0, err
    copies = pd.DataFrame({"id": [f"copy{i}" for i in range(20)], "caption": [COPIED] * 20})
    code, err, posts, table = run(folder, pd.concat([source, copies], ignore_index=True), FAST)
    assert code == 0, err
    assert posts is not None and table is not None and alone is not None
    assert_every_post_has_a_topic(posts, pd.concat([source, copies], ignore_index=True))
    copied = posts.iloc[len(source) :]
    assert copied["cluster"].nunique() == 1 and copied["topic"].nunique() == 1
    assert int(table.loc[table["topic"] == copied["topic"].iloc[0], "size"].iloc[0]) >= 20
    same = np.mean(posts["topic"].iloc[: len(source)].to_numpy() == alone["topic"].to_numpy())
    assert same >= 0.9, f"only {same:.0%} of the other posts kept their topic"


@pytest.mark.parametrize("language", ["ell_Grek", "mar_Deva"])
def test_one_word_posts_the_english_encoder_cannot_tell_apart_get_topics(
    every_post_shown: None, folder: Path, language: str
) -> None:
    """all-MiniLM-L6-v2 drops Greek accents and Devanagari vowel signs: many different words get one vector,
    which put 0 into the eps grid."""
    sentences = pd.read_csv(needs_data("eval", "sib200", language, "test.tsv"), sep="\t", dtype=str)
    source = pd.DataFrame({"id": sentences["index_id"], "caption": [s.split()[0] for s in sentences["text"]]})
    code, err, posts, _ = run(folder, source, FAST + "[clustering]\nmin_topics = 2\n")
    assert code == 0, err
    assert posts is not None
    assert_every_post_has_a_topic(posts, source)
    for _, group in posts.groupby("caption"):
        assert group["topic"].nunique() == 1, "copies get one topic"


@pytest.mark.heavy
def test_posts_longer_than_max_chars_are_cut_before_encoding_and_counted(folder: Path, embedder: Embedder) -> None:
    source = examples()
    long_posts = [source["caption"].iloc[0] * 40, "z" * 20_000]
    path = folder / "long.csv"
    pd.concat([source, pd.DataFrame({"id": ["long1", "long2"], "caption": long_posts})]).to_csv(path, index=False)
    settings = Settings()
    settings = replace(settings, input=replace(settings.input, max_chars=300))
    pipeline = Pipeline(settings.method, embedder=Embedder(cache_dir=folder / "cache", encoder=embedder.encoder))
    prepared = pipeline.prepare(read_posts(path))
    expected = sum(len(text) > 300 for text in [*source["caption"], *long_posts])
    assert prepared.cut == expected >= 2
    row = prepared.text_index[len(source)]
    np.testing.assert_allclose(prepared.vectors[row], embedder.encoder.encode([long_posts[0][:300]])[0], atol=1e-5)
    result = pipeline.label(prepared, pipeline.cluster(prepared))
    assert result.cut == expected
    assert result.posts["caption"].iloc[-1] == long_posts[1], "the output keeps the whole post"


def test_weighted_labelling_equals_labelling_every_copy(embedder: Embedder) -> None:
    """Voters, centres, cluster sizes and the scorer's sample count a text's copies as posts."""
    texts = examples()["caption"].iloc[:120].tolist()
    texts = [t for t in texts if t.strip()]
    distinct = embedder.encoder.encode(texts)  # no cache: see `folder`
    weights = np.random.default_rng(3).integers(1, 8, size=len(texts))
    owner = np.repeat(np.arange(len(texts)), weights)
    labels = np.arange(len(texts)) % 6 - 1  # five clusters and some noise
    matrix = np.random.default_rng(4).dirichlet(np.ones(12), size=len(texts)).astype(np.float32)
    ours = ClusterLabeller(k=10).fit(distinct, labels, TopicScores(distinct, matrix), weights)
    every = ClusterLabeller(k=10).fit(distinct[owner], labels[owner], TopicScores(distinct[owner], matrix[owner]))
    np.testing.assert_allclose(ours.centres_, every.centres_, atol=1e-6)
    for mine, theirs in zip(ours.cluster_topics_, every.cluster_topics_, strict=True):
        assert (mine.size, mine.topic, mine.runner_up) == (theirs.size, theirs.topic, theirs.runner_up)
        assert mine.confidence == pytest.approx(theirs.confidence, abs=1e-6)
        assert mine.voters == list(dict.fromkeys(owner[theirs.voters].tolist()))
    whole = int(weights.sum())
    scored = ClusteringScorer(TopicScores(distinct, matrix), k=10, sample=whole, weights=weights)(labels)
    scored_every = ClusteringScorer(TopicScores(distinct[owner], matrix[owner]), k=10, sample=whole)(labels[owner])
    assert scored == pytest.approx(scored_every)


@pytest.mark.heavy
def test_the_run_says_how_many_posts_were_cut_and_serving_cuts_as_the_run_did(
    every_post_shown: None, folder: Path
) -> None:
    source = examples()
    long_post = "A very long caption about our morning espresso. " * 200  # 9,800 characters
    posts = pd.concat([source, pd.DataFrame({"id": ["long"], "caption": [long_post]})], ignore_index=True)
    code, _, out, _ = run(folder, posts, FAST + "[input]\nmax_chars = 2000\n")
    assert code == 0 and out is not None
    result = CliRunner().invoke(app, ["label"])
    assert result.exit_code == 0, result.stderr
    assert "cut 1 posts longer than 2,000 characters" in " ".join(result.stdout.split())
    model = BundleModel.load(folder / "topicli-out" / "in" / "bundle")
    assert model.limits.encoded_chars == 2000
    served, whole = model.predict([long_post]), model.predict([long_post[:2000]])
    assert (served.topics[0], served.clusters[0]) == (whole.topics[0], whole.clusters[0])
    assert out.loc[out["id"] == "long", "topic"].iloc[0] == model.topics[served.topics[0]]
