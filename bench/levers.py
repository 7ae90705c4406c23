"""Scoring levers on development splits only: topic floor, smoothing, prototypes, calibration, ensembles.

With `override_margin = 0` (the default) every post ends with its own best smoothed topic, so
topicli's topic quality is that of its smoothed scores; this measures them directly, with the
same functions as a run (`topicli.method.scoring`) and exact neighbours. Sets: TweetTopic single
*train* files (6 topics), SIB-200 English *train + dev* (7 topics), and the TweetTopic
multi-label *dev* file (19 topics; it has no other split); and, for the floor with the
multilingual encoder, every SIB-200 language's *train + dev*. No test file is read.

Levers (each on top of the defaults; the default floor is in every row but the floor's own):
- topic floor: a times each topic's q-quantile cosine over the posts taken off its scores
  (`topicli.method.scoring.topic_floors`; a=0 is no floor);
- smoothing weight w, k = m x the default k (sqrt(n)/3, 5-30), and r rounds of smoothing;
- prototype refinement: each topic's centroid of the posts weighted by their topic
  probability, its cosine added (x beta) to the raw scores, then smoothed again (t rounds);
  with shrinkage, a topic's beta is scaled by n / (n + m), n its summed probability, so a
  topic few posts take keeps its name;
- centring: each topic's mean score over the posts taken from its scores (a topic that is
  close to every post stops taking them all), or the posts' mean vector taken from every post;
- prior re-estimation (EM, Saerens et al. 2002): topic priors fitted to the posts and the
  probabilities re-weighted by them;
- prior matching: per-topic offsets moved until the count of posts whose best topic each is
  equals the topic's summed probability (argmax no longer piles posts onto the likeliest topics);
- hubness correction (CSLS, Conneau et al. 2018): each topic's mean cosine to its K nearest posts
  taken off its scores, wholly or half, instead of the floor;
- a template ensemble: each topic part's vector is the mean over five templates, not one;
- an encoder ensemble: the log-probabilities of all-MiniLM-L6-v2 and the multilingual encoder
  (USE) averaged: twice the embedding.

Two ceilings read gold, to show how far any of these can go: per-topic offsets fitted to gold
(what a perfect calibration lever would find), and a supervised classifier on SIB's train split.

    python bench/levers.py

writes bench/results/levers.md.
"""

from __future__ import annotations

import json
import sys
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors

from topicli.config import LabellingSettings
from topicli.method.embedding import DEFAULT_ENCODER, Embedder
from topicli.method.evaluation import score
from topicli.method.scoring import (
    COSINE_SCALE,
    auto_neighbours,
    cosine_scores,
    part_vectors,
    smooth,
    softmax,
    topic_floors,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "eval"
TEMPLATE = "This post is about {topic}."
TEMPLATES = (TEMPLATE, "{topic}", "A post about {topic}.", "Topic: {topic}.", "Something about {topic}.")
CSLS_NEIGHBOURS = 10  # Conneau et al.'s K
DEFAULTS = LabellingSettings()


def tweet_single_train() -> tuple[list[str], list[list[str]]]:
    rows = []
    for name in ("train_2020.single.json", "train_random.single.json"):
        path = DATA / "tweet_topic_single" / name
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["text"] for r in rows], [[r["label_name"]] for r in rows]


def tweet_multi_dev() -> tuple[list[str], list[list[str]]]:
    path = DATA / "tweet_topic_multi_en_dev.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["text"] for r in rows], [r["topics"] for r in rows]


def sib_frame(language: str, *splits: str) -> pd.DataFrame:
    folder = DATA / "sib200" / language
    return pd.concat([pd.read_csv(folder / f"{s}.tsv", sep="\t", dtype=str, keep_default_na=False) for s in splits])


def sib_train_dev(language: str = "eng_Latn") -> tuple[list[str], list[list[str]]]:
    frame = sib_frame(language, "train", "dev")
    return frame["text"].tolist(), [[c] for c in frame["category"]]


def floored(cosine: np.ndarray) -> np.ndarray:
    """Cosine scores less the default topic floors."""
    return cosine - topic_floors(cosine, DEFAULTS.floor_quantile, DEFAULTS.floor_weight)


class Scores:
    """One set's vectors, raw cosine scores and neighbours, computed once for every lever."""

    def __init__(self, embedder: Embedder, texts: list[str], gold: list[list[str]]) -> None:
        self.texts = texts
        self.gold = gold
        self.topics = sorted({g for labels in gold for g in labels})
        self.vectors = embedder(texts)
        parts, owner = part_vectors(self.topics, TEMPLATE, embedder)
        self.cosine = cosine_scores(self.vectors, parts, owner, len(self.topics))
        self.raw = floored(self.cosine)
        self.k = auto_neighbours(len(texts))
        search = NearestNeighbors(n_neighbors=min(3 * self.k + 1, len(texts)), metric="cosine").fit(self.vectors)
        self.neighbours = search.kneighbors(self.vectors)[1][:, 1:]

    def macro_f1(
        self, weight: float, k_times: int, rounds: int, beta: float = 0.0, refinements: int = 0, shrink: float = 0.0
    ) -> float:
        neighbours = self.neighbours[:, : self.k * k_times]

        def probabilities(raw: np.ndarray) -> np.ndarray:
            for _ in range(rounds):
                raw = smooth(raw, neighbours, weight)
            return softmax(raw, COSINE_SCALE)

        p = probabilities(self.raw)
        for _ in range(refinements):
            centroids = p.T @ self.vectors
            centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
            taken = p.sum(axis=0)
            scale = beta * taken / (taken + shrink) if shrink else np.full(len(taken), beta)
            p = probabilities(self.raw + scale * (self.vectors @ centroids.T))
        return self.f1(p)

    def f1(self, p: np.ndarray) -> float:
        predicted = [self.topics[i] for i in np.argmax(p, axis=1)]
        return score(predicted, self.gold, [0] * len(predicted), self.topics)["macro_f1"]

    def default(self, raw: np.ndarray) -> np.ndarray:
        return softmax(smooth(raw, self.neighbours[:, : self.k], 0.5), COSINE_SCALE)

    def floor(self, quantile: float, weight: float) -> float:
        return self.f1(self.default(self.cosine - topic_floors(self.cosine, quantile, weight)))

    def topic_centred(self) -> float:
        return self.f1(self.default(self.raw - self.raw.mean(axis=0, keepdims=True)))

    def post_centred(self, embedder: Embedder) -> float:
        centred = self.vectors - self.vectors.mean(axis=0)
        centred /= np.linalg.norm(centred, axis=1, keepdims=True)
        parts, owner = part_vectors(self.topics, TEMPLATE, embedder)
        return self.f1(self.default(floored(cosine_scores(centred.astype(np.float32), parts, owner, len(self.topics)))))

    def prior_em(self, iterations: int = 10) -> float:
        p = self.default(self.raw)
        start = prior = np.full(p.shape[1], 1 / p.shape[1])
        for _ in range(iterations):
            q = p * (prior / start)
            q /= q.sum(axis=1, keepdims=True)
            prior = q.mean(axis=0)
        return self.f1(q)

    def prior_matched(self, steps: int = 200, step: float = 0.002) -> float:
        """Offsets to the smoothed scores, moved a step at a time towards equal argmax counts and summed
        probabilities (no gold read)."""
        smoothed = smooth(self.raw, self.neighbours[:, : self.k], 0.5)
        target = softmax(smoothed, COSINE_SCALE).sum(axis=0)
        offsets = np.zeros(len(self.topics), dtype=np.float32)
        for _ in range(steps):
            counts = np.bincount(np.argmax(smoothed + offsets, axis=1), minlength=len(self.topics))
            offsets += step * np.sign(target - counts) * (np.abs(target - counts) > 0.5)
        return self.f1(smoothed + offsets)

    def hubness_corrected(self, share: float) -> float:
        """`share` of each topic's mean cosine to its CSLS_NEIGHBOURS nearest posts taken off, in place of the floor."""
        hub = np.sort(self.cosine, axis=0)[-CSLS_NEIGHBOURS:].mean(axis=0)
        return self.f1(self.default(self.cosine - share * hub))

    def template_ensemble(self, embedder: Embedder) -> float:
        """Each part's vector the normalised mean of its vectors in TEMPLATES."""
        vectors = np.mean([part_vectors(self.topics, t, embedder)[0] for t in TEMPLATES], axis=0)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        owner = part_vectors(self.topics, TEMPLATE, embedder)[1]
        cosine = cosine_scores(self.vectors, vectors.astype(np.float32), owner, len(self.topics))
        return self.f1(self.default(floored(cosine)))

    def encoder_ensemble(self, other: Embedder) -> float:
        """This set's smoothed log-probabilities averaged with those the `other` encoder gives the same posts."""
        second = Scores(other, self.texts, self.gold)
        return self.f1(np.log(self.default(self.raw) + 1e-9) + np.log(second.default(second.raw) + 1e-9))

    def oracle_bias(self, sweeps: int = 4) -> float:
        """A ceiling, not a method (it reads gold): per-topic offsets to the smoothed scores, fitted by coordinate
        ascent on macro-F1. Every calibration lever (floor, centring, priors) is such an offset found without gold."""
        smoothed = smooth(self.raw, self.neighbours[:, : self.k], 0.5)
        bias, best = np.zeros(len(self.topics)), self.f1(smoothed)
        for _ in range(sweeps):
            for t, step in product(range(len(self.topics)), np.linspace(-0.1, 0.1, 41)):
                trial = bias.copy()
                trial[t] += step
                if (f := self.f1(smoothed + trial)) > best:
                    best, bias = f, trial
        return best


def supervised_sib(embedder: Embedder) -> float:
    """Another ceiling: logistic regression on the vectors, trained on SIB-200 English train, scored on its dev."""
    train, dev = sib_frame("eng_Latn", "train"), sib_frame("eng_Latn", "dev")
    model = LogisticRegression(C=10.0, max_iter=2000).fit(embedder(train["text"].tolist()), train["category"])
    predicted = model.predict(embedder(dev["text"].tolist())).tolist()
    return score(predicted, [[c] for c in dev["category"]], [0] * len(dev), sorted(set(train["category"])))["macro_f1"]


def multilingual_floor() -> list[str]:
    """The topic floor with the multilingual encoder, on every SIB-200 language's train + dev splits."""
    embedder = Embedder("multilingual", cache_dir=ROOT / ".topicli-cache")
    languages = sorted(p.name for p in (DATA / "sib200").iterdir() if p.is_dir())
    weights = (0.0, 0.5, DEFAULTS.floor_weight, 1.0)
    lines = [
        "",
        f"## Topic floor with the multilingual encoder (q={DEFAULTS.floor_quantile}), SIB-200 train+dev (7 topics)",
        "",
        "| language | " + " | ".join(f"a={a}" for a in weights) + " |",
        "|---|" + "---|" * len(weights),
    ]
    rows = []
    for language in languages:
        scores = Scores(embedder, *sib_train_dev(language))
        rows.append([scores.floor(DEFAULTS.floor_quantile, a) for a in weights])
        lines.append(f"| {language} | " + " | ".join(f"{f:.3f}" for f in rows[-1]) + " |")
        print(lines[-1], flush=True)
    lines.append("| mean | " + " | ".join(f"{f:.3f}" for f in np.mean(rows, axis=0)) + " |")
    return lines


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent: the shared data folder sits beside the clone")
    embedder = Embedder(DEFAULT_ENCODER, cache_dir=ROOT / ".topicli-cache")
    sets = {
        "TweetTopic single, train (6)": tweet_single_train(),
        "SIB-200 English, train+dev (7)": sib_train_dev(),
        "TweetTopic multi-label, dev (19)": tweet_multi_dev(),
    }
    scores = {name: Scores(embedder, *data) for name, data in sets.items()}
    second = Embedder("multilingual", cache_dir=ROOT / ".topicli-cache")
    rows = [
        ("smoothing", f"w={w}, k={m}x, {r} round(s)", (w, m, r, 0.0, 0))
        for w, m, r in product((0.5, 0.7, 0.9), (1, 2, 3), (1, 2))
    ]
    rows += [
        ("prototype refinement", f"beta={b}, {t} round(s)", (0.5, 1, 1, b, t))
        for b, t in product((0.5, 1.0, 2.0), (1, 3))
    ]
    rows += [
        ("prototype refinement, shrunk", f"beta={b}, m={m}, 1 round", (0.5, 1, 1, b, 1, m))
        for b, m in product((0.5, 1.0), (10, 30, 100))
    ]
    names = list(scores)
    lines = [
        "# Scoring levers on development splits",
        "",
        f"Macro-F1 of each post's best smoothed topic, {DEFAULT_ENCODER}; the default (marked **) is the topic floor",
        f"q={DEFAULTS.floor_quantile}, a={DEFAULTS.floor_weight}, smoothing w=0.5, k=1x, 1 round, no refinement; "
        "every row but the floor's own has the default floor. Produced by `python bench/levers.py`.",
        "",
        "| lever | setting | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]

    def emit(lever: str, setting: str, figures: list[float | None], default: bool = False) -> None:
        mark = "**" if default else ""
        cells = " | ".join("-" if f is None else f"{f:.3f}" for f in figures)
        lines.append(f"| {lever} | {mark}{setting}{mark} | {cells} |")
        print(lines[-1], flush=True)

    for q, a in [(DEFAULTS.floor_quantile, 0.0), *product((0.02, 0.05, 0.1, 0.2), (0.25, 0.5, 0.75, 1.0))]:
        setting = f"q={q}, a={a}" if a else "none (a=0)"
        default = (q, a) == (DEFAULTS.floor_quantile, DEFAULTS.floor_weight)
        emit("topic floor", setting, [scores[n].floor(q, a) for n in names], default)
    for lever, setting, arguments in rows:
        emit(lever, setting, [scores[n].macro_f1(*arguments) for n in names], arguments == (0.5, 1, 1, 0.0, 0))
    others = {
        ("centring", "each topic's mean score over the posts removed"): lambda s: s.topic_centred(),
        ("centring", "the posts' mean vector removed"): lambda s: s.post_centred(embedder),
        ("prior re-estimation", "EM, 10 iterations"): lambda s: s.prior_em(),
        ("prior matching", "argmax counts = summed probabilities"): lambda s: s.prior_matched(),
        ("hubness (CSLS)", f"K={CSLS_NEIGHBOURS} mean taken off, no floor"): lambda s: s.hubness_corrected(1.0),
        ("hubness (CSLS)", f"half the K={CSLS_NEIGHBOURS} mean off, no floor"): lambda s: s.hubness_corrected(0.5),
        ("template ensemble", f"{len(TEMPLATES)} templates"): lambda s: s.template_ensemble(embedder),
        ("encoder ensemble", "+ multilingual (USE), log-probabilities"): lambda s: s.encoder_ensemble(second),
    }
    for (lever, setting), measure in others.items():
        emit(lever, f"{setting} (w=0.5, k=1x)", [measure(scores[n]) for n in names])
    emit("ceiling (reads gold)", "per-topic offsets fitted to gold", [scores[n].oracle_bias() for n in names])
    emit("ceiling (reads gold)", "supervised LR, SIB English train -> dev", [None, supervised_sib(embedder), None])
    lines += multilingual_floor()
    out = ROOT / "bench" / "results" / "levers.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
