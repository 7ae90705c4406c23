"""Training cls_model from labelled text: pairs, near-duplicate labels, held-out figures.

Negatives for a text are other labels *of the same source file* (a label from another
corpus may well describe the text: a banking request is "about" the news topic money),
never a near-duplicate of its own label. Two labels are near-duplicates when their names
say the same (name cosine at or above a threshold, or one name's words inside the
other's: WORLDPOST / THE WORLDPOST, ARTS / ARTS & CULTURE) or their texts do (cosine of
the two labels' mean text vectors at or above 0.9: HEALTHY LIVING / WELLNESS).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import read_table
from topicli.method.classifier import PairClassifier, save_classifier
from topicli.method.embedding import Embed, Embedder
from topicli.method.encoders import choose_encoder
from topicli.method.topics import topic_phrase
from topicli.progress import ProgressFactory

CENTROID_DUPLICATE = 0.9


def _first_present(columns: Sequence[str], wanted: Sequence[str], kind: str, path: Path) -> str:
    for name in wanted:
        if name in columns:
            return name
    raise TopicliError(f"{path}: none of the {kind} columns {', '.join(wanted)}; columns are {', '.join(columns)}")


def load_labelled(
    paths: Sequence[Path], text_columns: Sequence[str], label_columns: Sequence[str], drop_labels: Sequence[str] = ()
) -> pd.DataFrame:
    """Columns text, label (as words), source; each file uses the first named column it has."""
    frames = []
    for path in paths:
        table = read_table(Path(path))
        text = _first_present(list(table.columns), text_columns, "text", path)
        label = _first_present(list(table.columns), label_columns, "label", path)
        frame = pd.DataFrame({"text": table[text].astype(str), "label": table[label].astype(str)})
        frame = frame[~frame["label"].isin(drop_labels) & (frame["text"].str.strip() != "")]
        frame["label"] = frame["label"].map(topic_phrase)
        frame["source"] = Path(path).name
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    if data.empty or data.groupby("source")["label"].nunique().min() < 2:
        raise TopicliError("training data needs at least two labels in each file, with non-empty texts")
    return data


@dataclass
class LabelSpace:
    """Every label with its source, name vector and near-duplicates."""

    names: list[str]
    sources: list[str]
    vectors: np.ndarray
    duplicate: np.ndarray  # (labels, labels) bool, the diagonal included

    def same_source(self, i: int) -> np.ndarray:
        return np.array([s == self.sources[i] for s in self.sources])


def label_space(
    data: pd.DataFrame, text_vectors: np.ndarray, embed: Embed, template: str, threshold: float
) -> LabelSpace:
    """Labels keyed by (source, name), with name vectors and the near-duplicate relation."""
    keys = sorted(set(zip(data["source"], data["label"], strict=True)))
    sources, names = [k[0] for k in keys], [k[1] for k in keys]
    vectors = embed([template.format(topic=name) for name in names])
    index = {key: i for i, key in enumerate(keys)}
    owner = np.array([index[k] for k in zip(data["source"], data["label"], strict=True)])
    centroids = np.vstack([text_vectors[owner == i].mean(axis=0) for i in range(len(keys))])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    words = [set(re.findall(r"\w+", name)) - {"the", "and", "of"} for name in names]
    contained = np.array([[bool(a) and bool(b) and (a <= b or b <= a) for b in words] for a in words])
    duplicate = (vectors @ vectors.T >= threshold) | (centroids @ centroids.T >= CENTROID_DUPLICATE) | contained
    same = np.equal.outer(np.array(sources), np.array(sources))
    return LabelSpace(names=names, sources=sources, vectors=vectors, duplicate=duplicate & same)


def make_pairs(
    owners: np.ndarray, space: LabelSpace, allowed: np.ndarray, negatives: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text index, label index, target) rows: each text with its label and `negatives` others.

    Half the negatives are the labels whose names are closest to the true one (hard), the
    rest drawn at random, all among `allowed` labels of the same source that are not
    near-duplicates of the true label.
    """
    similarity = space.vectors @ space.vectors.T
    candidates = {}
    for label in np.unique(owners):
        ok = allowed & space.same_source(label) & ~space.duplicate[label]
        pool = np.flatnonzero(ok)
        candidates[label] = pool[np.argsort(-similarity[label, pool], kind="stable")]
    text_rows, label_rows, targets = [], [], []
    hard = negatives // 2
    for text, label in enumerate(owners):
        pool = candidates[label]
        chosen = list(pool[:hard])
        rest = pool[hard:]
        if len(rest):
            chosen += list(rng.choice(rest, size=min(negatives - len(chosen), len(rest)), replace=False))
        text_rows += [text] * (1 + len(chosen))
        label_rows += [label, *chosen]
        targets += [1] + [0] * len(chosen)
    return np.array(text_rows), np.array(label_rows), np.array(targets, dtype=np.float32)


def _top1(scores: np.ndarray, owners: np.ndarray, candidates: np.ndarray, space: LabelSpace) -> float:
    """Share of texts whose best-scored candidate label is their label or a near-duplicate of it."""
    best = candidates[np.argmax(scores, axis=1)]
    return float(np.mean(space.duplicate[owners, best]))


def _accuracy_over(
    model: PairClassifier | None, text_vectors: np.ndarray, owners: np.ndarray, space: LabelSpace, allowed: np.ndarray
) -> dict[str, float]:
    """Top-1 of the model and of cosine zero-shot, each text against the allowed labels of its source."""
    hits_model, hits_cosine, total = 0.0, 0.0, 0
    for source in sorted(set(space.sources)):
        candidates = np.flatnonzero(allowed & (np.array(space.sources) == source))
        rows = np.flatnonzero(np.isin(owners, candidates))
        if len(rows) == 0 or len(candidates) < 2:
            continue
        vectors = text_vectors[rows]
        if model is not None:
            hits_model += _top1(
                model.predict_proba(vectors, space.vectors[candidates]), owners[rows], candidates, space
            ) * len(rows)
        hits_cosine += _top1(vectors @ space.vectors[candidates].T, owners[rows], candidates, space) * len(rows)
        total += len(rows)
    return {"model": hits_model / max(total, 1), "cosine": hits_cosine / max(total, 1), "texts": total}


def held_out_labels(space: LabelSpace, share: float, rng: np.random.Generator) -> np.ndarray:
    """A mask of labels kept out of training: whole near-duplicate groups, `share` of each source."""
    held = np.zeros(len(space.names), dtype=bool)
    for source in sorted(set(space.sources)):
        members = np.flatnonzero(np.array(space.sources) == source)
        count = round(share * len(members))
        for label in rng.permutation(members):
            if held[members].sum() >= count:
                break
            held |= space.duplicate[label]
    return held


def train_classifier(
    data: pd.DataFrame,
    text_vectors: np.ndarray,
    embed: Embed,
    template: str,
    model: PairClassifier,
    negatives: int,
    near_duplicate: float,
    held_out_share: float,
) -> tuple[PairClassifier, dict[str, Any]]:
    """Held-out figures first (texts and whole labels kept out), then the model refit on everything."""
    rng = np.random.default_rng(model.seed)
    space = label_space(data, text_vectors, embed, template, near_duplicate)
    index = {key: i for i, key in enumerate(zip(space.sources, space.names, strict=True))}
    owners = np.array([index[k] for k in zip(data["source"], data["label"], strict=True)])

    unseen = held_out_labels(space, held_out_share, rng)
    seen = ~unseen
    test_text = rng.random(len(owners)) < 0.2
    train_rows = np.flatnonzero(seen[owners] & ~test_text)
    test_rows = np.flatnonzero(seen[owners] & test_text)
    unseen_rows = np.flatnonzero(unseen[owners])

    t, lab, y = make_pairs(owners[train_rows], space, seen, negatives, rng)
    trial = clone(model).fit(text_vectors[train_rows][t], space.vectors[lab], y)
    t, lab, y = make_pairs(owners[test_rows], space, seen, negatives, rng)
    pair_scores = trial.decision_function(text_vectors[test_rows][t], space.vectors[lab])
    seen_top1 = _accuracy_over(trial, text_vectors[test_rows], owners[test_rows], space, seen)
    unseen_top1 = _accuracy_over(trial, text_vectors[unseen_rows], owners[unseen_rows], space, unseen)
    metrics = {
        "pair_roc_auc": float(roc_auc_score(y, pair_scores)),
        "top1_seen_labels": seen_top1["model"],
        "top1_seen_labels_cosine": seen_top1["cosine"],
        "top1_unseen_labels": unseen_top1["model"],
        "top1_unseen_labels_cosine": unseen_top1["cosine"],
        "held_out_texts": len(test_rows),
        "unseen_label_texts": len(unseen_rows),
        "unseen_labels": [space.names[i] for i in np.flatnonzero(unseen)],
    }

    everything = np.ones(len(space.names), dtype=bool)
    t, lab, y = make_pairs(owners, space, everything, negatives, rng)
    model.fit(text_vectors[t], space.vectors[lab], y)
    duplicates = sorted(
        {(space.names[i], space.names[j]) for i, j in zip(*np.nonzero(space.duplicate), strict=True) if i < j}
    )
    summary = {
        "metrics": metrics,
        "training": {
            "texts": len(data),
            "labels": len(space.names),
            "pairs": len(y),
            "sources": {s: int(n) for s, n in data["source"].value_counts().sort_index().items()},
            "near_duplicates": [list(pair) for pair in duplicates],
        },
    }
    return model, summary


def fit_classifier(
    settings: Settings,
    paths: Sequence[Path],
    text_columns: Sequence[str],
    label_columns: Sequence[str],
    drop_labels: Sequence[str],
    output: Path,
    progress: ProgressFactory,
) -> dict[str, Any]:
    """`topicli train-classifier`: read, embed, train, evaluate, save; returns the manifest."""
    s = settings.classifier
    data = load_labelled(paths, text_columns, label_columns, drop_labels)
    texts = [text[: settings.input.max_chars] for text in data["text"]]  # as posts are cut before encoding
    encoder = choose_encoder(settings.encoder.name, texts)
    embedder = Embedder(encoder, settings.encoder.batch_size, settings.encoder.cache_dir)
    with progress("embedding training texts", len(set(texts))) as advance:
        vectors = embedder(texts, advance)
    model = PairClassifier(hidden=s.hidden, epochs=s.epochs, seed=s.seed)
    model, summary = train_classifier(
        data, vectors, embedder, s.topic_template, model, s.negatives, s.near_duplicate, s.held_out_labels
    )
    manifest = {
        "encoder": embedder.identity,
        "encoder_name": encoder,
        "template": s.topic_template,
        "data": [str(p) for p in paths],
        "text_columns": list(text_columns),
        "label_columns": list(label_columns),
        "dropped_labels": list(drop_labels),
        **summary,
    }
    save_classifier(model, output, manifest)
    return manifest
