"""cls_model, retrained, against the shipped cls_model and cosine: held-out-label figures and development figures.

1. Trains cls_model the way `topicli train-classifier` does (`topicli.method.training.train_classifier`) on
   ../shared/data/train (HuffPost, CLINC150 by domain, 20 Newsgroups train by subject; not AG News, whose
   licence is non-commercial),
   once with the default recipe (described labels, balanced sources, text-nearest hard negatives) and once
   per lever turned off, and reports each one's held-out-label figures (labels kept out of training) beside
   the shipped model's (as recorded in its manifest when it was trained).
2. Scores the development sets with each model as the run's scorer, through `Pipeline.prepare` (the code a
   run uses) with `[labelling] scorer = "cls_model"` against `"cosine"`:
   - per post: each post's best raw topic score (cosine: no floor; cls_model: its P);
   - the run's scorer: each post's best smoothed score, which is its topic with `override_margin = 0`, with the
     per-run adaptation off (`adapt_rounds = 0`: the scorer alone) and as the defaults have it ("adapted");
   - what-if (not shipped code): cls_model's logits less the cosine scorer's topic floor, then smoothed.
   Sets: TweetTopic single train_2020 + train_random (6 topics), TweetTopic multi dev (19), SIB-200 English
   train + dev (7), all-MiniLM-L6-v2 (vectors from the embedding cache). No test file is read.

    python bench/classifier.py [--save] [--baseline FOLDER]

writes bench/results/classifier.md; `--save` writes the default recipe's model to topicli/models/cls_model once
the shipped one is measured; `--baseline` compares with another cls_model folder (the one shipped before).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pandas as pd
from quality import text_posts

from topicli.config import Settings, load_settings
from topicli.method.classifier import SHIPPED_MODEL, PairClassifier, load_classifier, save_classifier
from topicli.method.embedding import DEFAULT_ENCODER, Embedder
from topicli.method.evaluation import score
from topicli.method.pipeline import Pipeline
from topicli.method.scoring import finish_scores, topic_floors
from topicli.method.topics import read_topics
from topicli.method.training import DESCRIBED, Recipe, load_labelled, read_label_words, train_classifier

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
EVAL = SHARED / "eval"
CACHE = ROOT / ".topicli-cache"
# AG News is left out: its licence is academic and non-commercial, and the shipped model is part of a product
TRAIN_FILES = ("huffpost.csv", "clinc150.csv", "20newsgroups/train.jsonl")
TEXT_COLUMNS = ("text", "subject")
LABEL_COLUMNS = ("label_name", "domain", "label")
DROP = ("oos",)
DEFAULT = Recipe()
VARIANTS = {
    "retrained (default recipe)": DEFAULT,
    "- descriptions (bare names only)": replace(DEFAULT, described_share=0.0),
    "- balance (every text)": replace(DEFAULT, balance=False),
}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


DESCRIBED_TOPICS = {  # the development sets' topics with descriptions (written for bench/descriptions.py)
    "TweetTopic single train (6)": ROOT / "bench" / "topics" / "tweet_single.txt",
    "TweetTopic multi dev (19)": ROOT / "bench" / "topics" / "tweet_multi.txt",
    "SIB-200 eng train+dev (7)": ROOT / "bench" / "topics" / "sib200.txt",
}


def dev_sets() -> dict[str, tuple[list[str], list[list[str]]]]:
    single = [
        r for n in ("train_2020", "train_random") for r in jsonl(EVAL / "tweet_topic_single" / f"{n}.single.json")
    ]
    multi = jsonl(EVAL / "tweet_topic_multi_en_dev.jsonl")
    folder = EVAL / "sib200" / "eng_Latn"
    sib = pd.concat(
        [pd.read_csv(folder / f"{s}.tsv", sep="\t", dtype=str, keep_default_na=False) for s in ("train", "dev")]
    )
    return {
        "TweetTopic single train (6)": ([r["text"] for r in single], [[r["label_name"]] for r in single]),
        "TweetTopic multi dev (19)": ([r["text"] for r in multi], [r["topics"] for r in multi]),
        "SIB-200 eng train+dev (7)": (sib["text"].tolist(), [[c] for c in sib["category"]]),
    }


def settings(scorer: str, model: Path | None, adapt: bool) -> Settings:
    base = load_settings(None, environ={})
    labelling = (
        replace(base.labelling, scorer=scorer) if adapt else replace(base.labelling, scorer=scorer, adapt_rounds=0)
    )
    return replace(
        base,
        encoder=replace(base.encoder, name=DEFAULT_ENCODER, cache_dir=str(CACHE)),
        labelling=labelling,
        classifier=replace(base.classifier, path=str(model or "")),
    )


def dev_figures(
    texts: list[str], gold: list[list[str]], scorer: str, model: Path | None, tmp: Path, topics: list[str] | None
) -> dict:
    """Macro-F1 per post, as the run's scorer without and with the per-run adaptation, and the floored what-if for
    cls_model; `topics`: the gold labels as bare names when None."""
    topics = topics or sorted({g for labels in gold for g in labels})
    path = tmp / "posts.jsonl"
    posts = text_posts(texts, path)
    prepared = {}
    for adapt in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared[adapt] = Pipeline(settings(scorer, model, adapt).method, topics=topics).prepare(posts)
    plain = prepared[False]

    def f1(matrix: np.ndarray) -> float:
        rows = plain.text_index  # every post's row of distinct texts
        predicted = [str(topics[i]) for i in np.argmax(matrix[rows], axis=1)]
        return score(predicted, gold, [0] * len(gold), topics)["macro_f1"]

    figures = {
        "per post": f1(plain.raw_scores + plain.topic_floors),  # no adaptation: the scorer's own raw scores
        "run's scorer": f1(plain.scores.matrix),
        "run's scorer, adapted": f1(prepared[True].scores.matrix),
    }
    if scorer == "cls_model":
        s = load_settings(None, environ={}).labelling
        p = np.clip(plain.raw_scores, 1e-6, 1 - 1e-6)
        logits = np.log(p / (1 - p))
        logits -= topic_floors(logits, s.floor_quantile, s.floor_weight)
        figures["what-if: logits floored"] = f1(finish_scores(logits, plain.neighbours, s.neighbour_weight, False))
    return figures


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def f3(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def held_out_rows(name: str, metrics: dict, seconds: float | None) -> str:
    cells = [
        metrics.get("pair_roc_auc"),
        metrics.get("pair_roc_auc_cosine"),
        metrics.get("top1_seen_labels"),
        metrics.get("top1_seen_labels_cosine"),
        metrics.get("top1_unseen_labels"),
        metrics.get("top1_unseen_labels_cosine"),
        metrics.get("top1_unseen_labels_described"),
        metrics.get("top1_unseen_labels_described_cosine"),
    ]
    took = "-" if seconds is None else f"{seconds:.0f}"
    return f"| {name} | " + " | ".join(f3(c) for c in cells) + f" | {len(metrics.get('unseen_labels', []))} | {took} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", action="store_true", help="write the default recipe's model to the shipped folder")
    parser.add_argument("--epochs", type=int, default=3, help="training passes over the pairs")
    parser.add_argument(
        "--baseline", type=Path, default=SHIPPED_MODEL, help="the cls_model to compare with (default: the shipped one)"
    )
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} is absent: the shared data folder sits beside the clone")
    base = load_settings(None, environ={}).classifier
    embedder = Embedder(DEFAULT_ENCODER, cache_dir=CACHE)
    words = read_label_words()
    paths = [SHARED / "train" / name for name in TRAIN_FILES]
    data = load_labelled(paths, TEXT_COLUMNS, LABEL_COLUMNS, DROP, words.names)
    started = time.perf_counter()
    vectors = embedder([text[:5000] for text in data["text"]])
    print(f"{len(data)} training texts embedded in {time.perf_counter() - started:.0f} s", flush=True)

    _, shipped_manifest = load_classifier(args.baseline)
    held = [
        "| model | pair ROC-AUC | cosine | top-1 seen | cosine | top-1 unseen | cosine "
        "| top-1 unseen, described | cosine | unseen labels | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        held_out_rows("shipped (its manifest; other data and split)", shipped_manifest["metrics"], None),
    ]
    models: dict[str, Path | None] = {"cosine": None, "shipped cls_model": args.baseline}
    with TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name, recipe in VARIANTS.items():
            started = time.perf_counter()
            model = PairClassifier(hidden=base.hidden, epochs=args.epochs, seed=base.seed)
            model, summary = train_classifier(
                data, vectors, embedder, base.topic_template, model, recipe, words.descriptions
            )
            seconds = time.perf_counter() - started
            held.append(held_out_rows(name, summary["metrics"], seconds))
            print(held[-1], flush=True)
            manifest = {
                "encoder": embedder.identity,
                "encoder_name": DEFAULT_ENCODER,
                "template": base.topic_template,
                "described": DESCRIBED,
                "data": [str(Path("..") / p.relative_to(ROOT.parent)) for p in paths],
                "text_columns": list(TEXT_COLUMNS),
                "label_columns": list(LABEL_COLUMNS),
                "dropped_labels": list(DROP),
                **summary,
            }
            folder = tmp / f"model{len(models)}"
            save_classifier(model, folder, manifest)
            models[name] = folder
            if args.save and name == next(iter(VARIANTS)):
                retrained = (model, manifest)  # written over the shipped model once that is measured

        sets = dev_sets()
        columns = ["per post", "run's scorer", "run's scorer, adapted", "what-if: logits floored"]
        header = ["| model | " + " | ".join(f"{s}: {c}" for s in sets for c in columns[:3]) + " |"]
        header.append("|---|" + "---|" * (3 * len(sets)))
        dev, described = list(header), list(header)
        what_if = ["| model | topics | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
        results: dict[str, dict[str, dict]] = {}
        for name, folder in models.items():
            scorer = "cosine" if folder is None else "cls_model"
            for table, topics in ((dev, None), (described, DESCRIBED_TOPICS)):
                figures = {
                    s: dev_figures(*data_set, scorer, folder, tmp, topics and read_topics(topics[s]))
                    for s, data_set in sets.items()
                }
                results[name if topics is None else f"{name}, described"] = figures
                table.append(f"| {name} | " + " | ".join(f3(figures[s][c]) for s in sets for c in columns[:3]) + " |")
                print(table[-1], flush=True)
                if folder is not None:
                    kind = "bare names" if topics is None else "described"
                    what_if.append(
                        f"| {name} | {kind} | " + " | ".join(f3(figures[s][columns[3]]) for s in sets) + " |"
                    )
    if args.save:
        save_classifier(retrained[0], SHIPPED_MODEL, retrained[1])
    best = next(iter(VARIANTS))
    diffs = ["| difference | " + " | ".join(f"{s}: {c}" for s in sets for c in columns[:3]) + " |"]
    diffs.append("|---|" + "---|" * (3 * len(sets)))
    for kind in ("", ", described"):
        for against in ("cosine", "shipped cls_model"):
            cells = [results[best + kind][s][c] - results[against + kind][s][c] for s in sets for c in columns[:3]]
            diffs.append(f"| {best} - {against}{kind} | " + " | ".join(f"{d:+.3f}" for d in cells) + " |")

    lines = [
        "# cls_model: retrained with descriptions, hard negatives and balanced sources",
        "",
        "Produced by `python bench/classifier.py`"
        + (" --save" if args.save else "")
        + ("" if args.baseline == SHIPPED_MODEL else " --baseline PREVIOUS_MODEL")
        + f" ({args.epochs} epochs, {DEFAULT_ENCODER}); training data: "
        + ", ".join(TRAIN_FILES)
        + f" ({len(data)} texts; label columns {', '.join(LABEL_COLUMNS)}; CLINC150 by domain, `oos` dropped).",
        "",
        "## Held-out-label figures",
        "",
        "Labels kept out of training (a fifth of each source's, whole near-duplicate groups), top-1 among the held-out"
        " labels of the text's source; *described*: a label scores the best of its bare name and its description,"
        " as a run scores a described topic. The shipped model's row"
        " is what its manifest recorded (HuffPost, CLINC150 intents, 20NG; its own split), so only the retrained rows"
        " compare like for like.",
        "",
        *held,
        "",
        "## Development sets: macro-F1 (Pipeline.prepare)",
        "",
        "Bare topic names (the gold labels):",
        "",
        *dev,
        "",
        "Described topics (bench/topics/*.txt: `Name: description`; a run scores the description as one more part):",
        "",
        *described,
        "",
        *diffs,
        "",
        "What-if, not shipped code: cls_model's logits less the cosine scorer's topic floor"
        " (0.75 x 5th percentile), smoothed, best topic:",
        "",
        *what_if,
        "",
        f"Peak memory (RSS) {peak_mb():.0f} MB.",
    ]
    out = ROOT / "bench" / "results" / "classifier.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
