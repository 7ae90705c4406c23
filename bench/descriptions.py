"""Topic descriptions, with and without, on the development sets: which parts a description adds, by dev figures.

A topics-file line may give a description after a colon (`Fitness & Workouts: gym, training`);
the scorers score a topic by the best of its parts (`topicli.method.scoring.part_vectors`).
This measures, on the development sets only, how the description should become parts:

- none: the name's parts only (`topic_parts`), as before descriptions;
- description: the name's parts and the description as one more part;
- name: description: the name's parts and "name: description" as one more part;
- keywords: the name's parts and each comma-separated keyword as a part;
- name: description alone: "name: description" as the topic's only part;

each with the cosine scorer (per-post argmax of the raw cosine, and topicli's default per-post
smoothed scores: floor, smoothing over the k nearest posts, softmax; what decides a post's topic
with `override_margin = 0`) and with the cls_model scorer (its P, raw and smoothed, no floor, its
own template). The `shipped` row is `part_vectors` itself, whichever variant it implements.
The descriptions (bench/topics/*.txt) were written from what each label means, not from the sets.

Sets: TweetTopic single train_2020 + train_random (6 topics), TweetTopic multi-label dev (19; a
post is right when its topic is any of its gold), SIB-200 English train + dev (7). Encoder
all-MiniLM-L6-v2 (vectors from the embedding cache). `--test` adds, once, the shipped parts with
and without descriptions on TweetTopic single test_2021 and SIB-200 English test.

    python bench/descriptions.py [--test]

writes bench/results/descriptions.md.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from levers import DATA, sib_frame, sib_train_dev, tweet_multi_dev, tweet_single_train
from quality import CACHE, sib, text_posts

from topicli.config import LabellingSettings, load_settings
from topicli.io import file_digest
from topicli.method.classifier import SHIPPED_MODEL, PairClassifier, load_classifier
from topicli.method.clustering import nearest_neighbours
from topicli.method.embedding import DEFAULT_ENCODER, Embedder
from topicli.method.evaluation import score
from topicli.method.languages import E5_SMALL, MULTILINGUAL
from topicli.method.pipeline import Pipeline
from topicli.method.scoring import auto_neighbours, finish_scores, part_vectors, raw_scores, topic_floors
from topicli.method.topics import Topic, read_topics, topic_parts, topic_phrase

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ROOT / "bench" / "topics"
DEFAULTS = LabellingSettings()
Variant = Callable[[Topic], list[str]]


def keywords(description: str) -> list[str]:
    return [word.strip() for word in re.split(r"[,;]", description) if word.strip()]


VARIANTS: dict[str, Variant] = {
    "none": lambda t: topic_parts(t),
    "description": lambda t: [*topic_parts(t), t.description],
    "name: description": lambda t: [*topic_parts(t), f"{topic_phrase(t)}: {t.description}"],
    "keywords": lambda t: [*topic_parts(t), *keywords(t.description)],
    "description, name: description": lambda t: [*topic_parts(t), t.description, f"{topic_phrase(t)}: {t.description}"],
    "name: description alone": lambda t: [f"{topic_phrase(t)}: {t.description}"],
}


class DevSet:
    """One set's vectors, gold, described topics and neighbours, computed once for every variant."""

    def __init__(self, embedder: Embedder, texts: list[str], gold: list[list[str]], topics: list[Topic]) -> None:
        self.embedder, self.texts, self.gold, self.topics = embedder, texts, gold, topics
        assert {g for labels in gold for g in labels} <= set(topics), "a gold label is no topic of the list"
        assert all(t.description for t in topics), "a topic has no description"
        self.vectors = embedder(texts)
        self.neighbours = nearest_neighbours(self.vectors, auto_neighbours(len(texts)))[1]

    def parts(self, variant: Variant | None, template: str) -> tuple[np.ndarray, np.ndarray]:
        """Part vectors and owners: the variant's parts, or `part_vectors`' own (shipped) when None."""
        if variant is None:
            return part_vectors(self.topics, template, self.embedder)
        texts = [(t, part) for t, topic in enumerate(self.topics) for part in variant(topic)]
        return self.embedder([template.format(topic=part) for _, part in texts]), np.array([t for t, _ in texts])

    def f1(self, scores: np.ndarray) -> float:
        return self.f1_of([self.topics[i] for i in np.argmax(scores, axis=1)])

    def f1_of(self, predicted: list[str]) -> float:
        return score(predicted, self.gold, [0] * len(predicted), self.topics)["macro_f1"]

    def figures(self, parts: np.ndarray, owner: np.ndarray, classifier: PairClassifier | None) -> tuple[float, float]:
        """(per-post argmax of the raw scores, per-post argmax of topicli's default smoothed scores)."""
        raw = raw_scores(self.vectors, parts, owner, len(self.topics), classifier)
        floored = raw if classifier else raw - topic_floors(raw, DEFAULTS.floor_quantile, DEFAULTS.floor_weight)
        smoothed = finish_scores(floored, self.neighbours, DEFAULTS.neighbour_weight, cosine=classifier is None)
        return self.f1(raw), self.f1(smoothed)


def described(name: str) -> list[Topic]:
    """A bench/topics file: the gold label names of a set with the descriptions written for them."""
    return read_topics(TOPICS / name)


def examples() -> tuple[list[str], list[list[str]]]:
    """examples/posts.csv's captions and their intended topic (one of the shipped list)."""
    frame = pd.read_csv(ROOT / "examples" / "posts.csv", dtype=str, keep_default_na=False)
    frame = frame[frame["caption"].str.strip() != ""]
    return frame["caption"].tolist(), [[t] for t in frame["intended_topic"]]


def plain(topics: list[Topic]) -> list[Topic]:
    return [Topic(str(t)) for t in topics]


def run_rows(sets: dict[str, DevSet]) -> list[str]:
    """Macro-F1 of full `Pipeline` runs (prepare, cluster, label; default settings, MiniLM) without and with
    the descriptions, with each scorer."""
    lines = ["", "## Full runs (`Pipeline`, default settings but the encoder and scorer)", ""]
    lines += ["| set | scorer | without | with | with / without |", "|---|---|---|---|---|"]
    base = load_settings(None, environ={})
    base = replace(base, encoder=replace(base.encoder, name=DEFAULT_ENCODER, cache_dir=str(CACHE)))
    with tempfile.TemporaryDirectory() as folder:
        for name, dev in sets.items():
            path = Path(folder) / "posts.jsonl"
            posts = text_posts(dev.texts, path)
            for scorer in ("cosine", "cls_model"):
                # calibration moves confidence, not topics; off so the runs need no calibrator file
                settings = replace(base, labelling=replace(base.labelling, scorer=scorer, calibrate=False))
                figures = []
                for topics in (plain(dev.topics), dev.topics):
                    pipeline = Pipeline(settings.method, topics=topics)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        prepared = pipeline.prepare(posts)
                        result = pipeline.label(prepared, pipeline.cluster(prepared))
                    figures.append(dev.f1_of(result.posts["topic"].tolist()))
                lines.append(
                    f"| {name} | {scorer} | {figures[0]:.3f} | {figures[1]:.3f} | {figures[1] / figures[0]:.3f} |"
                )
                print(lines[-1], flush=True)
    return lines


def multilingual_rows() -> list[str]:
    """Per SIB-200 language (dev + the first 101 train sentences, as `bench/quality.py --dev`), each multilingual
    encoder's per-post smoothed cosine without (`none`) and with the (English) descriptions (`shipped`), and
    every variant's gain over `none` across the (language, encoder) pairs."""
    lines = ["", "## SIB-200 languages, multilingual encoders, smoothed cosine (dev + first 101 train)", ""]
    encoders = (MULTILINGUAL, E5_SMALL)
    lines += ["| language | " + " | ".join(f"{e}: without | {e}: with" for e in encoders) + " |"]
    lines += ["|---|" + "---|---|" * len(encoders)]
    topics = described("sib200.txt")
    embedders = [Embedder(e, cache_dir=CACHE) for e in encoders]
    variants: dict[str, Variant | None] = {**VARIANTS, "shipped (part_vectors)": None}
    figures: dict[str, list[float]] = {name: [] for name in variants}
    for language in sorted(p.name for p in (DATA / "sib200").iterdir() if p.is_dir()):
        frame = sib(language, "dev")
        for embedder in embedders:
            dev = DevSet(embedder, frame["text"].tolist(), frame["gold"].tolist(), topics)
            for name, variant in variants.items():
                figures[name].append(dev.figures(*dev.parts(variant, DEFAULTS.topic_template), None)[1])
        shown = zip(figures["none"][-2:], figures["shipped (part_vectors)"][-2:], strict=True)
        cells = [f for pair in shown for f in pair]
        lines.append(f"| {language} | " + " | ".join(f"{f:.3f}" for f in cells) + " |")
        print(lines[-1], flush=True)
    lines += ["", "| parts | mean | gain over none: mean | worst | pairs worse by > 0.01 |", "|---|---|---|---|---|"]
    for name, row in figures.items():
        gains = np.array(row) - np.array(figures["none"])
        lines.append(
            f"| {name} | {np.mean(row):.3f} | {gains.mean():+.3f} | {gains.min():+.3f} | {int((gains < -0.01).sum())} |"
        )
    return lines


def test_rows(embedder: Embedder, cosine_template: str, classifier: tuple[PairClassifier, str]) -> list[str]:
    """The shipped parts with and without descriptions on the two test files, read once."""
    rows = [json.loads(line) for line in (DATA / "tweet_topic_single" / "test_2021.single.json").open()]
    sib = sib_frame("eng_Latn", "test")
    sets = {
        "TweetTopic single, test_2021": (
            [r["text"] for r in rows],
            [[r["label_name"]] for r in rows],
            described("tweet_single.txt"),
        ),
        "SIB-200 English, test": (sib["text"].tolist(), [[c] for c in sib["category"]], described("sib200.txt")),
    }
    lines = ["", "## Test files (read once, after the choice)", ""]
    lines += [
        "| set | scorer | without: raw | with: raw | without: smoothed | with: smoothed |",
        "|---|---|---|---|---|---|",
    ]
    for name, data in sets.items():
        dev = DevSet(embedder, *data)
        for scorer, template, model in (("cosine", cosine_template, None), ("cls_model", classifier[1], classifier[0])):
            without = dev.figures(*part_vectors(plain(dev.topics), template, embedder), model)
            with_ = dev.figures(*dev.parts(None, template), model)
            lines.append(
                f"| {name} | {scorer} | {without[0]:.3f} | {with_[0]:.3f} | {without[1]:.3f} | {with_[1]:.3f} |"
            )
            print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", action="store_true", help="also the test files, once, for the report")
    arguments = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent: the shared data folder sits beside the clone")
    started = time.perf_counter()
    embedder = Embedder(DEFAULT_ENCODER, cache_dir=CACHE)
    model, manifest = load_classifier()
    cosine_template = DEFAULTS.topic_template
    sets = {
        "TweetTopic single, train (6)": DevSet(embedder, *tweet_single_train(), described("tweet_single.txt")),
        "TweetTopic multi-label, dev (19)": DevSet(embedder, *tweet_multi_dev(), described("tweet_multi.txt")),
        "SIB-200 English, train+dev (7)": DevSet(embedder, *sib_train_dev(), described("sib200.txt")),
        "examples (100)": DevSet(embedder, *examples(), read_topics()),
    }
    names = list(sets)
    lines = [
        "# Topic descriptions on development sets",
        "",
        f"Macro-F1, {DEFAULT_ENCODER}. raw: each post's best raw score; smoothed: each post's best of topicli's",
        "default smoothed scores (cosine: floor, smoothing, softmax; cls_model: smoothing). cls_model: the shipped",
        f"model (weights sha256 {file_digest(SHIPPED_MODEL / 'weights.safetensors')[:12]}, its template "
        f"{manifest['template']!r}). Produced by `python bench/descriptions.py{' --test' * arguments.test}`.",
        "examples: examples/posts.csv's captions against the shipped 100-topic list (topicli/data/topics.txt),",
        "gold their intended topic.",
        "",
        "| scorer | parts | " + " | ".join(f"{n}: raw | {n}: smoothed" for n in names) + " | mean smoothed |",
        "|---|---|" + "---|---|" * len(names) + "---|",
    ]
    for scorer, template, classifier in (
        ("cosine", cosine_template, None),
        ("cls_model", manifest["template"], model),
    ):
        baseline = None
        for variant_name, variant in [*VARIANTS.items(), ("shipped (part_vectors)", None)]:
            figures = [sets[n].figures(*sets[n].parts(variant, template), classifier) for n in names]
            mean = float(np.mean([f[1] for f in figures]))
            baseline = mean if baseline is None else baseline
            cells = " | ".join(f"{raw:.3f} | {smoothed:.3f}" for raw, smoothed in figures)
            lines.append(f"| {scorer} | {variant_name} | {cells} | {mean:.3f} ({mean / baseline:.3f}x none) |")
            print(lines[-1], flush=True)
    lines += run_rows(sets)
    lines += multilingual_rows()
    if arguments.test:
        lines += test_rows(embedder, cosine_template, (model, manifest["template"]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines += ["", f"Took {time.perf_counter() - started:.0f} s; peak memory {peak:.0f} MB."]
    out = ROOT / "bench" / "results" / "descriptions.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
