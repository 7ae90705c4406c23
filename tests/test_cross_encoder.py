"""The cross-encoder cls_model: seeded fine-tuning, saved without pickle (fp16), loaded, exported to ONNX."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from topicli.cli.app import app
from topicli.errors import TopicliError
from topicli.method.cross_encoder import (
    INPUTS,
    CrossEncoder,
    encode_pairs,
    export_onnx,
    load_cross_encoder,
    save_cross_encoder,
)
from topicli.method.cross_training import CrossRecipe, topic_text, train_cross_encoder
from topicli.method.encoders import onnx_session

TEXTS = [
    "the striker scored twice in the cup final",
    "new vegan lasagne recipe with cashew cream",
    "senate votes on the new budget bill tonight",
    "our hike to the glacier lake at sunrise",
]
TOPICS = ["sports", "food & cooking: recipes, cooking", "politics", "travel: trips, hiking, destinations"]


def pairs() -> tuple[list[str], list[str], np.ndarray]:
    texts = [t for t in TEXTS for _ in TOPICS]
    topics = [topic for _ in TEXTS for topic in TOPICS]
    targets = np.array([float(i == j) for i in range(len(TEXTS)) for j in range(len(TOPICS))], dtype=np.float32)
    return texts, topics, targets


def tiny(seed: int = 0) -> CrossEncoder:
    return CrossEncoder(max_length=32, batch_size=8, frozen_layers=5, learning_rate=1e-4, seed=seed)


@pytest.mark.heavy
def test_seeded_fit_is_reproducible_and_saved_without_pickle(tmp_path: Path) -> None:
    texts, topics, targets = pairs()
    first = tiny().fit(texts, topics, targets)
    again = tiny().fit(texts, topics, targets)
    logits = first.decision_function(TEXTS, TOPICS)
    np.testing.assert_array_equal(logits, again.decision_function(TEXTS, TOPICS))
    assert not np.array_equal(logits, tiny(seed=1).fit(texts, topics, targets).decision_function(TEXTS, TOPICS))

    size = save_cross_encoder(first, tmp_path / "reader", {"kind": "cross-encoder"})
    files = sorted(p.name for p in (tmp_path / "reader").iterdir())
    assert files == ["config.json", "manifest.json", "reader.safetensors", "tokenizer.json"]
    assert size == (tmp_path / "reader" / "reader.safetensors").stat().st_size < 50e6  # fp16: 2 bytes a weight
    loaded, manifest = load_cross_encoder(tmp_path / "reader")
    assert manifest["kind"] == "cross-encoder" and loaded.get_params() == first.get_params()
    np.testing.assert_allclose(loaded.decision_function(TEXTS, TOPICS), logits, atol=0.02)
    proba = loaded.predict_proba(TEXTS, TOPICS)
    assert proba.shape == (4, 4) and ((proba > 0) & (proba < 1)).all()

    export_onnx(loaded, tmp_path / "reader.onnx")
    feeds = encode_pairs(loaded.tokenizer_, [t for t in TEXTS for _ in TOPICS], [p for _ in TEXTS for p in TOPICS])
    onnx_logits = onnx_session(tmp_path / "reader.onnx").run(None, {k: feeds[k] for k in INPUTS})[0]
    torch_logits = loaded.decision_function([t for t in TEXTS for _ in TOPICS], [p for _ in TEXTS for p in TOPICS])
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-3)


def test_a_folder_without_the_model_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TopicliError, match="not a cross-encoder folder"):
        load_cross_encoder(tmp_path)


def test_topic_text_reads_name_and_description() -> None:
    assert topic_text("travel", "trips, flights") == "travel: trips, flights"
    assert topic_text("travel", "") == "travel"


def test_unknown_kind_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}).to_csv(data, index=False)
    result = CliRunner().invoke(app, ["train-classifier", str(data), "--kind", "bert"])
    assert result.exit_code == 2 and "--kind" in result.stderr


@pytest.mark.heavy
def test_training_holds_out_labels_and_measures_them(embedder) -> None:
    rows = [
        (f"{word} story number {i}", label, source)
        for source, words in (
            (
                "a.csv",
                {
                    "sports": "football match",
                    "food": "pasta recipe",
                    "politics": "election vote",
                    "health": "doctor vaccine",
                },
            ),
            (
                "b.csv",
                {
                    "travel": "flight hotel",
                    "music": "guitar concert",
                    "science": "lab experiment",
                    "fashion": "dress runway",
                },
            ),
        )
        for label, word in words.items()
        for i in range(6)
    ]
    data = pd.DataFrame(rows, columns=["text", "label", "source"])
    recipe = CrossRecipe(texts_per_source=16, negatives=1, held_out_share=0.5)
    model, summary = train_cross_encoder(data, embedder, tiny(), recipe, {"sports": "games, teams"})
    metrics, training = summary["metrics"], summary["training"]
    assert metrics["unseen_labels"]  # some labels held out, and not trained on:
    assert training["labels"] == 8 - len(metrics["unseen_labels"]) == 4  # two of each source's four
    assert training["pairs"] == 2 * training["texts"]  # one positive and one negative a text
    assert 0 <= metrics["top1_unseen_labels_described"] <= 1 and metrics["unseen_label_texts"] > 0
    assert hasattr(model, "network_")
