"""Training cls_model from labelled text: pairs, near-duplicate labels, held-out figures.

Negatives for a text are other labels *of the same source file* (a label from another
corpus may well describe the text: a banking request is "about" the news topic money),
never a near-duplicate of its own label. Two labels are near-duplicates when their names
say the same (name cosine at or above a threshold, or one name's words inside the
other's: WORLDPOST / THE WORLDPOST, ARTS / ARTS & CULTURE) or their texts do (cosine of
the two labels' mean text vectors at or above 0.9: HEALTHY LIVING / WELLNESS).

Three things in the recipe, each measured on labels held out of training and on the development
sets (bench/results/classifier.md):

* labels get short descriptions (topicli/data/label_descriptions.json), and a pair's topic is
  the label's description ("government, elections, congress, ...", the form a run scores beside
  the name's parts) or its bare name, half and half, so the model reads both;
* half of a text's negatives are the labels of its source nearest *the text* (the ones cosine
  would confuse it with), the rest drawn at random;
* every source gives the same number of texts (the smallest source's count), spread evenly
  over its labels, so one large corpus does not teach its own label style (without it the
  model fits the seen labels better and unseen topic names worse).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import read_table
from topicli.method.base import Embed
from topicli.method.classifier import PairClassifier, save_classifier
from topicli.method.embedding import Embedder
from topicli.method.encoders import choose_encoder
from topicli.method.topics import topic_phrase
from topicli.progress import ProgressFactory

CENTROID_DUPLICATE = 0.9
SHIPPED_DESCRIPTIONS = Path(__file__).parents[1] / "data" / "label_descriptions.json"
# A described label as it goes into the topic template: the description on its own, as a run scores a topic's
# description (a part of its own beside the name's parts: topicli.method.topics.scored_parts).
DESCRIBED = "{description}"


@dataclass(frozen=True)
class LabelWords:
    """Words for labels: `names[file][raw label]` for labels that are codes, `descriptions[label phrase]`."""

    names: dict[str, dict[str, str]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)


def read_label_words(path: Path | str = "") -> LabelWords:
    """Label names and descriptions from a JSON file (`names`, `descriptions`); the shipped one when empty."""
    path = Path(path) if path else SHIPPED_DESCRIPTIONS
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TopicliError(f"label descriptions {path}: cannot read it as JSON ({error})") from None
    names, descriptions = document.get("names", {}), document.get("descriptions", {})
    good_names = isinstance(names, dict) and all(
        isinstance(m, dict) and all(isinstance(v, str) for v in m.values()) for m in names.values()
    )
    if (
        not good_names
        or not isinstance(descriptions, dict)
        or not all(isinstance(v, str) for v in descriptions.values())
    ):
        raise TopicliError(
            f"label descriptions {path}: `names` must map file names to {{label: words}} and `descriptions` "
            "label names to text"
        )
    phrases = {topic_phrase(label): text.strip() for label, text in descriptions.items() if text.strip()}
    return LabelWords(names={f: {str(k): v for k, v in m.items()} for f, m in names.items()}, descriptions=phrases)


def _first_present(columns: Sequence[str], wanted: Sequence[str], kind: str, path: Path) -> str:
    for name in wanted:
        if name in columns:
            return name
    raise TopicliError(f"{path}: none of the {kind} columns {', '.join(wanted)}; columns are {', '.join(columns)}")


def load_labelled(
    paths: Sequence[Path],
    text_columns: Sequence[str],
    label_columns: Sequence[str],
    drop_labels: Sequence[str] = (),
    names: Mapping[str, Mapping[str, str]] | None = None,
) -> pd.DataFrame:
    """Columns text, label (as words), source; each file uses the first named column it has.

    `names[file name]` renames that file's labels (AG News's class indices 1-4 to world, sports, ...).
    """
    frames = []
    for path in paths:
        table = read_table(Path(path))
        text = _first_present(list(table.columns), text_columns, "text", path)
        label = _first_present(list(table.columns), label_columns, "label", path)
        frame = pd.DataFrame({"text": table[text].astype(str), "label": table[label].astype(str)})
        frame = frame[~frame["label"].isin(drop_labels) & (frame["text"].str.strip() != "")]
        renames = (names or {}).get(Path(path).name, {})
        frame["label"] = frame["label"].map(lambda raw, renames=renames: topic_phrase(renames.get(raw, raw)))
        frame["source"] = Path(path).name
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    if data.empty or data.groupby("source")["label"].nunique().min() < 2:
        raise TopicliError("training data needs at least two labels in each file, with non-empty texts")
    return data


def balanced_rows(
    sources: np.ndarray, labels: np.ndarray, rows: np.ndarray, rng: np.random.Generator, most: int | None = None
) -> np.ndarray:
    """Of `rows`, the same number from every source (the smallest source's count, or `most` if fewer), spread evenly
    over each source's labels (a label with fewer texts gives all it has); sorted."""
    size = min(int(np.sum(sources[rows] == s)) for s in np.unique(sources[rows]))
    size = size if most is None else min(size, most)
    kept = []
    for source in np.unique(sources[rows]):
        members = rng.permutation(rows[sources[rows] == source])
        rank = pd.Series(labels[members]).groupby(labels[members]).cumcount().to_numpy()
        kept.append(members[np.argsort(rank, kind="stable")[:size]])
    return np.sort(np.concatenate(kept))


@dataclass
class LabelSpace:
    """Every label with its source, name vector, described vector and near-duplicates."""

    names: list[str]
    sources: list[str]
    vectors: np.ndarray  # the bare name in the template
    described: np.ndarray  # the description (DESCRIBED) in the template; the bare name's vector where none is known
    duplicate: np.ndarray  # (labels, labels) bool, the diagonal included

    def same_source(self, i: int) -> np.ndarray:
        return np.array([s == self.sources[i] for s in self.sources])


def label_space(
    data: pd.DataFrame,
    text_vectors: np.ndarray,
    embed: Embed,
    template: str,
    threshold: float,
    descriptions: Mapping[str, str] | None = None,
) -> LabelSpace:
    """Labels keyed by (source, name), with name vectors, described vectors and the near-duplicate relation."""
    keys = sorted(set(zip(data["source"], data["label"], strict=True)))
    sources, names = [k[0] for k in keys], [k[1] for k in keys]
    vectors = embed([template.format(topic=name) for name in names])
    described, descriptions = vectors.copy(), descriptions or {}
    known = [i for i, name in enumerate(names) if descriptions.get(name)]
    if known:
        texts = [DESCRIBED.format(name=names[i], description=descriptions[names[i]]) for i in known]
        described[known] = embed([template.format(topic=text) for text in texts])
    index = {key: i for i, key in enumerate(keys)}
    owner = np.array([index[k] for k in zip(data["source"], data["label"], strict=True)])
    centroids = np.vstack([text_vectors[owner == i].mean(axis=0) for i in range(len(keys))])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    words = [set(re.findall(r"\w+", name)) - {"the", "and", "of"} for name in names]
    contained = np.array([[bool(a) and bool(b) and (a <= b or b <= a) for b in words] for a in words])
    duplicate = (vectors @ vectors.T >= threshold) | (centroids @ centroids.T >= CENTROID_DUPLICATE) | contained
    same = np.equal.outer(np.array(sources), np.array(sources))
    return LabelSpace(names=names, sources=sources, vectors=vectors, described=described, duplicate=duplicate & same)


def make_pairs(
    owners: np.ndarray,
    text_vectors: np.ndarray,
    space: LabelSpace,
    allowed: np.ndarray,
    negatives: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text index, label index, target) rows: each text with its label and `negatives` others.

    Half the negatives are the labels whose names are nearest the text (hard: those cosine
    zero-shot would give it), the rest drawn at random, all among `allowed` labels of the same
    source that are not near-duplicates of the true label.
    """
    text_rows, label_rows, targets = [], [], []
    hard = negatives // 2
    for label in np.unique(owners):
        pool = np.flatnonzero(allowed & space.same_source(label) & ~space.duplicate[label])
        texts = np.flatnonzero(owners == label)
        nearest = np.argsort(-(text_vectors[texts] @ space.vectors[pool].T), axis=1, kind="stable")
        for text, order in zip(texts, nearest, strict=True):
            chosen = list(pool[order[:hard]])
            rest = pool[order[hard:]]
            if len(rest):
                chosen += list(rng.choice(rest, size=min(negatives - len(chosen), len(rest)), replace=False))
            text_rows += [text] * (1 + len(chosen))
            label_rows += [label, *chosen]
            targets += [1] + [0] * len(chosen)
    order = np.argsort(np.array(text_rows), kind="stable")  # rows by text, as the texts came
    return np.array(text_rows)[order], np.array(label_rows)[order], np.array(targets, dtype=np.float32)[order]


def pair_topics(space: LabelSpace, labels: np.ndarray, described_share: float, rng: np.random.Generator) -> np.ndarray:
    """The topic vector of each pair: the described label with probability `described_share`, else the bare name."""
    described = rng.random(len(labels)) < described_share
    return np.where(described[:, None], space.described[labels], space.vectors[labels])


def _top1(scores: np.ndarray, owners: np.ndarray, candidates: np.ndarray, space: LabelSpace) -> float:
    """Share of texts whose best-scored candidate label is their label or a near-duplicate of it."""
    best = candidates[np.argmax(scores, axis=1)]
    return float(np.mean(space.duplicate[owners, best]))


def _accuracy_over(
    model: PairClassifier,
    text_vectors: np.ndarray,
    owners: np.ndarray,
    space: LabelSpace,
    allowed: np.ndarray,
    forms: Sequence[np.ndarray],
) -> dict[str, float]:
    """Top-1 of the model and of cosine zero-shot, each text against the allowed labels of its source, a label
    scoring the best of its `forms` (the bare names' vectors; and the descriptions', as a run scores a topic)."""
    hits_model, hits_cosine, total = 0.0, 0.0, 0
    for source in sorted(set(space.sources)):
        candidates = np.flatnonzero(allowed & (np.array(space.sources) == source))
        rows = np.flatnonzero(np.isin(owners, candidates))
        if len(rows) == 0 or len(candidates) < 2:
            continue
        vectors = text_vectors[rows]
        scores = np.max([model.predict_proba(vectors, form[candidates]) for form in forms], axis=0)
        cosine = np.max([vectors @ form[candidates].T for form in forms], axis=0)
        hits_model += _top1(scores, owners[rows], candidates, space) * len(rows)
        hits_cosine += _top1(cosine, owners[rows], candidates, space) * len(rows)
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


@dataclass(frozen=True)
class Recipe:
    """How the pairs are made: negatives per text, the near-duplicate threshold, the share of labels held out
    for the figures, the share of pairs whose topic is the described label, and whether sources are balanced."""

    negatives: int = 6
    near_duplicate: float = 0.8
    held_out_share: float = 0.2
    described_share: float = 0.5
    balance: bool = True


def train_classifier(
    data: pd.DataFrame,
    text_vectors: np.ndarray,
    embed: Embed,
    template: str,
    model: PairClassifier,
    recipe: Recipe,
    descriptions: Mapping[str, str] | None = None,
) -> tuple[PairClassifier, dict[str, Any]]:
    """Held-out figures first (texts and whole labels kept out), then the model refit on everything."""
    rng = np.random.default_rng(model.seed)
    space = label_space(data, text_vectors, embed, template, recipe.near_duplicate, descriptions)
    index = {key: i for i, key in enumerate(zip(space.sources, space.names, strict=True))}
    owners = np.array([index[k] for k in zip(data["source"], data["label"], strict=True)])
    sources = data["source"].to_numpy()

    def fit(trained: PairClassifier, rows: np.ndarray, allowed: np.ndarray) -> tuple[PairClassifier, int]:
        if recipe.balance:
            rows = balanced_rows(sources, owners, rows, rng)
        t, lab, y = make_pairs(owners[rows], text_vectors[rows], space, allowed, recipe.negatives, rng)
        trained.fit(text_vectors[rows][t], pair_topics(space, lab, recipe.described_share, rng), y)
        return trained, len(y)

    unseen = held_out_labels(space, recipe.held_out_share, rng)
    seen = ~unseen
    test_text = rng.random(len(owners)) < 0.2
    test_rows = np.flatnonzero(seen[owners] & test_text)
    unseen_rows = np.flatnonzero(unseen[owners])
    trial, _ = fit(clone(model), np.flatnonzero(seen[owners] & ~test_text), seen)

    t, lab, y = make_pairs(owners[test_rows], text_vectors[test_rows], space, seen, recipe.negatives, rng)
    pair_scores = trial.decision_function(text_vectors[test_rows][t], space.vectors[lab])
    pair_cosine = np.sum(text_vectors[test_rows][t] * space.vectors[lab], axis=1)
    metrics: dict[str, Any] = {
        "pair_roc_auc": float(roc_auc_score(y, pair_scores)),
        "pair_roc_auc_cosine": float(roc_auc_score(y, pair_cosine)),
    }
    described = any(not np.array_equal(a, b) for a, b in zip(space.vectors, space.described, strict=True))
    for suffix, forms in [("", [space.vectors]), ("_described", [space.vectors, space.described])][: 1 + described]:
        seen_top1 = _accuracy_over(trial, text_vectors[test_rows], owners[test_rows], space, seen, forms)
        unseen_top1 = _accuracy_over(trial, text_vectors[unseen_rows], owners[unseen_rows], space, unseen, forms)
        metrics |= {
            f"top1_seen_labels{suffix}": seen_top1["model"],
            f"top1_seen_labels{suffix}_cosine": seen_top1["cosine"],
            f"top1_unseen_labels{suffix}": unseen_top1["model"],
            f"top1_unseen_labels{suffix}_cosine": unseen_top1["cosine"],
        }
    metrics |= {
        "held_out_texts": len(test_rows),
        "unseen_label_texts": len(unseen_rows),
        "unseen_labels": [space.names[i] for i in np.flatnonzero(unseen)],
    }

    model, pairs = fit(model, np.arange(len(owners)), np.ones(len(space.names), dtype=bool))
    duplicates = sorted(
        {(space.names[i], space.names[j]) for i, j in zip(*np.nonzero(space.duplicate), strict=True) if i < j}
    )
    summary = {
        "metrics": metrics,
        "training": {
            "texts": len(data),
            "labels": len(space.names),
            "described_labels": int(sum(bool((descriptions or {}).get(n)) for n in space.names)),
            "pairs": pairs,
            "sources": {s: int(n) for s, n in data["source"].value_counts().sort_index().items()},
            "recipe": {
                "negatives": recipe.negatives,
                "near_duplicate": recipe.near_duplicate,
                "held_out_share": recipe.held_out_share,
                "described_share": recipe.described_share,
                "balance": recipe.balance,
            },
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
    """`topicli train-classifier`: read, embed, train, evaluate, save; returns its card."""
    s = settings.classifier
    words = read_label_words(s.descriptions)
    data = load_labelled(paths, text_columns, label_columns, drop_labels, words.names)
    texts = [text[: settings.input.max_chars] for text in data["text"]]  # as posts are cut before encoding
    encoder = choose_encoder(settings.encoder.name, texts)
    embedder = Embedder(encoder, settings.encoder.batch_size, settings.encoder.cache_dir)
    with progress("embedding training texts", len(set(texts))) as advance:
        vectors = embedder(texts, advance)
    model = PairClassifier(hidden=s.hidden, epochs=s.epochs, seed=s.seed)
    recipe = Recipe(s.negatives, s.near_duplicate, s.held_out_labels, s.described_share, s.balance)
    model, summary = train_classifier(data, vectors, embedder, s.topic_template, model, recipe, words.descriptions)
    card = {
        "encoder": embedder.identity,
        "encoder_name": encoder,
        "template": s.topic_template,
        "described": DESCRIBED,
        "data": [str(p) for p in paths],
        "text_columns": list(text_columns),
        "label_columns": list(label_columns),
        "dropped_labels": list(drop_labels),
        **summary,
    }
    save_classifier(model, output, card)
    return card
