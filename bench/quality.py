"""Topic quality per language: each encoder's per-post cosine and topicli with `auto` and with each encoder, on
every shared SIB-200 language, on mixes of languages (with the clusters' language purity), on the English
tweets, and on the examples' 93 %-English set; and each encoder's speed, measured in the same run.

Every method sees the same posts and the same candidate topics (the gold label set).

- per-post cosine: each post takes the topic whose "This post is about {topic}." is nearest;
- topicli: `Pipeline` with default settings and the named encoder (`auto`: its own choice);
- mixes: SIB-200 is parallel (one index_id, one sentence in every language), so a mix gives each
  sentence once, in a language drawn for it (seeded): its topics are those of the single-language
  sets, and the grouping by topic alone is known. Language purity is the size-weighted mean of
  each cluster's largest language share (1/L for L balanced languages is perfect, 1.0 is one
  cluster per language);
- `--dev` measures on development data only (SIB-200 dev + the first 101 train sentences of each
  language) what chose the settings: the per-language cosine figures behind `auto`'s choice
  (topicli/method/languages.py `MEASURED`) and the lever of removing each language's mean vector
  (`[encoder] centre_languages`, on by default since), on an 8-language mix and on the examples.

Test files are read only by the default mode, once, for the report.

    python bench/quality.py [--dev] [--quick]

writes bench/results/quality.md (or quality_dev.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from topicli.config import Settings, load_settings
from topicli.errors import TopicliError
from topicli.io import Posts
from topicli.method.classifier import load_classifier
from topicli.method.embedding import Embedder
from topicli.method.encoders import load_encoder
from topicli.method.evaluation import accuracy_at, expected_calibration_error, score
from topicli.method.languages import DEFAULT_ENCODER, E5_SMALL, MULTILINGUAL, detect_languages
from topicli.method.pipeline import Pipeline
from topicli.method.tokens import read_languages
from topicli.method.topics import read_topics, topic_phrase

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "eval"
CACHE = ROOT / ".topicli-cache"
ENCODERS = (DEFAULT_ENCODER, MULTILINGUAL, E5_SMALL)
TEMPLATE = "This post is about {topic}."
MIX8 = ("eng_Latn", "deu_Latn", "spa_Latn", "ell_Grek", "ben_Beng", "tha_Thai", "ukr_Cyrl", "vie_Latn")
SPEED_POSTS = 192
SEED = 0
BOOTSTRAP_DRAWS = 300


def sib(language: str, split: str) -> pd.DataFrame:
    """A SIB-200 split (`dev` is dev + the first 101 train sentences) as text, gold, index_id, language."""
    folder = DATA / "sib200" / language

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(folder / f"{name}.tsv", sep="\t", dtype=str, keep_default_na=False)

    frame = pd.concat([read("dev"), read("train").head(101)]) if split == "dev" else read(split)
    return pd.DataFrame(
        {
            "text": frame["text"].to_numpy(),
            "gold": [[c] for c in frame["category"]],
            "index_id": frame["index_id"].to_numpy(),
            "language": language,
        }
    )


def mix(languages: Sequence[str], split: str) -> pd.DataFrame:
    """Each sentence once, in a language drawn for it (seeded, balanced)."""
    frames = {lang: sib(lang, split).set_index("index_id") for lang in languages}
    ids = frames[languages[0]].index.to_numpy()
    drawn = np.random.default_rng(SEED).permutation(np.arange(len(ids)) % len(languages))
    rows = [frames[languages[d]].loc[i] for i, d in zip(ids, drawn, strict=True)]
    return pd.DataFrame(rows).reset_index(names="index_id")


def tweets() -> pd.DataFrame:
    """The TweetTopic single-label test files."""
    return labelled(("test_2021.single.json", "test_random.single.json"))


def mostly_english() -> pd.DataFrame:
    """The English posts of examples/posts.csv and 20 of its Spanish, Portuguese, French and German ones."""
    frame = pd.read_csv(ROOT / "examples" / "posts.csv", dtype=str, keep_default_na=False)
    frame = frame[frame["caption"].str.strip() != ""]
    language = detect_languages(frame["caption"].tolist(), sample=len(frame))
    frame = frame.assign(language=["en" if lang == "en" else "other" for lang in language])
    other = frame[frame["language"] == "other"]
    other = other[[lang in ("es", "pt", "fr", "de") for lang in np.array(language)[frame["language"] == "other"]]]
    frame = pd.concat([frame[frame["language"] == "en"], other.head(20)])
    return pd.DataFrame(
        {"text": frame["caption"], "gold": [[t] for t in frame["intended_topic"]], "language": frame["language"]}
    )


def text_posts(texts: Sequence[str], path: Path) -> Posts:
    """The texts as a posts file (JSONL, one `text` each) at `path`, read back as a run reads its posts."""
    pd.DataFrame({"text": list(texts)}).to_json(path, orient="records", lines=True, force_ascii=False)
    return Posts(frame=pd.read_json(path, lines=True, dtype=False), text_column="text", path=path)


def settings_for(encoder: str) -> Settings:
    base = load_settings(None, environ={})
    return replace(base, encoder=replace(base.encoder, name=encoder, cache_dir=str(CACHE)))


def cosine_topics(frame: pd.DataFrame, topics: list[str], encoder: str) -> list[str]:
    """Each post's topic by per-post cosine to the topic names."""
    embedder = Embedder(encoder, cache_dir=CACHE)
    vectors = embedder(frame["text"].tolist())
    names = embedder([TEMPLATE.format(topic=topic_phrase(t)) for t in topics])
    return [topics[i] for i in np.argmax(vectors @ names.T, axis=1)]


def macro_f1(frame: pd.DataFrame, topics: list[str], predicted: list[str]) -> float:
    """Macro-F1 of the posts' topics against the frame's gold."""
    return score(predicted, frame["gold"].tolist(), [0] * len(frame), topics)["macro_f1"]


def cosine(frame: pd.DataFrame, topics: list[str], encoder: str) -> float:
    """Macro-F1 of per-post cosine to the topic names."""
    return macro_f1(frame, topics, cosine_topics(frame, topics, encoder))


def gain_error(
    frame: pd.DataFrame, topics: list[str], predicted: list[str], baseline: list[str], figure: str = "macro_f1"
) -> float:
    """The standard error of a gain (in macro-F1, or another `score` figure) over a baseline on the same posts: the
    standard deviation of the gain over BOOTSTRAP_DRAWS seeded resamples of the posts (paired: both methods see the
    same resample)."""
    gold = frame["gold"].tolist()
    rng = np.random.default_rng(SEED)
    gains = []
    for _ in range(BOOTSTRAP_DRAWS):
        rows = rng.integers(0, len(frame), len(frame))
        g, zeros = [gold[i] for i in rows], [0] * len(rows)
        ours = score([predicted[i] for i in rows], g, zeros, topics)[figure]
        gains.append(ours - score([baseline[i] for i in rows], g, zeros, topics)[figure])
    return float(np.std(gains))


def topicli(
    frame: pd.DataFrame,
    topics: list[str],
    encoder: str,
    tmp: Path,
    centre: bool = True,
    labelling: dict | None = None,
) -> dict:
    """topicli's figures on the frame (by language too), its clusters' language purity, the encoder it used,
    and each post's confidence and whether its topic is right; `centre`: [encoder] centre_languages (each
    language's mean vector removed in a mix); `labelling`: [labelling] settings to change."""
    path = tmp / "posts.jsonl"
    posts = text_posts(frame["text"], path)
    settings = settings_for(encoder)
    settings = replace(settings, encoder=replace(settings.encoder, centre_languages=centre))
    settings = replace(settings, labelling=replace(settings.labelling, **(labelling or {})))
    pipeline = Pipeline(settings.method, topics=topics)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            prepared = pipeline.prepare(posts)
            result = pipeline.label(prepared, pipeline.cluster(prepared))
        except TopicliError as error:
            print(f"topicli: {error}", file=sys.stderr)
            return {"macro_f1": float("nan"), "accuracy": float("nan"), "encoder": encoder}
    return {
        **judged(frame, topics, result.posts["topic"].tolist(), result.posts["cluster"].to_numpy()),
        "encoder": prepared.encoder_name,
        "confidence": result.posts["topic_confidence"].to_numpy(dtype=np.float64),
    }


def judged(frame: pd.DataFrame, topics: list[str], predicted: list[str], clusters: np.ndarray) -> dict:
    """Figures of the posts' topics against gold: macro-F1 and the rest, by language, the clusters' purity."""
    right = np.array([p in g for p, g in zip(predicted, frame["gold"], strict=True)])
    by_language = {
        lang: float(right[(frame["language"] == lang).to_numpy()].mean()) for lang in frame["language"].unique()
    }
    return {
        **score(predicted, frame["gold"].tolist(), clusters.tolist(), topics),
        "purity": purity(clusters, frame["language"].to_numpy()),
        "by_language": by_language,
        "right": right,
        "predicted": predicted,
        "clusters": clusters,
    }


def grouped(frame: pd.DataFrame, topics: list[str], tmp: Path) -> dict:
    """Issue 15's per-encoder-group design: the English posts (as py3langid reads them) in a run of their own
    with all-MiniLM-L6-v2, the others in a run of their own with `auto`'s choice for them; one topic list,
    the outputs joined (each group's clusters kept apart)."""
    english = np.array(read_languages(frame["text"].tolist())) == "en"
    predicted = np.full(len(frame), "", dtype=object)
    clusters = np.full(len(frame), -1, dtype=np.int64)
    encoders = []
    for rows, encoder in ((english, DEFAULT_ENCODER), (~english, "auto")):
        if rows.any():
            r = topicli(frame[rows].reset_index(drop=True), topics, encoder, tmp)
            if "predicted" in r:
                found = np.asarray(r["clusters"])
                predicted[rows] = r["predicted"]
                clusters[rows] = np.where(found >= 0, found + clusters.max() + 1, -1)
            encoders.append(f"{int(rows.sum())} → {r['encoder']}")
    return {**judged(frame, topics, list(predicted), clusters), "encoder": " + ".join(encoders)}


def parallel(languages: Sequence[str], split: str) -> pd.DataFrame:
    """Every sentence in every language: each language's posts in the mix are exactly those of its own run."""
    return pd.concat([sib(lang, split) for lang in languages], ignore_index=True)


def gap(own: pd.Series, mixed: pd.Series) -> tuple[float, float]:
    """A language's accuracy in its own run less its accuracy in the mix, on the same sentences (`own`: right or
    not by index_id; `mixed`: the mix's, by index_id), and the standard error of that paired difference."""
    d = own.loc[mixed.index].to_numpy(dtype=float) - mixed.to_numpy(dtype=float)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def worst_gap(own: dict[str, pd.Series], frame: pd.DataFrame, r: dict) -> str:
    """The largest of the languages' gaps (own run less mix), with its standard error, and how many languages'
    gaps exceed two standard errors."""
    right = pd.Series(r["right"], index=frame["index_id"].to_numpy())
    gaps = {lang: gap(own[lang], right[(frame["language"] == lang).to_numpy()]) for lang in frame["language"].unique()}
    worst = max(gaps, key=lambda lang: gaps[lang][0])
    beyond = sum(g > 2 * se for g, se in gaps.values())
    return f"{gaps[worst][0]:+.3f} ± {gaps[worst][1]:.3f} ({worst}); {beyond} beyond 2 SE"


MIX_DESIGNS = (("one space (auto)", "auto"), ("a group per encoder", "grouped"))


def designs(tmp: Path) -> list[str]:
    """Development figures that choose between one vector space for a mix and a group per encoder."""
    started = time.perf_counter()
    lines = [
        "## One space for every language against a group per encoder (development data)",
        "",
        "`worst gap`: the largest drop of a language's accuracy in the mix below its own run with auto, on the",
        "same sentences, ± its standard error (paired); then how many languages drop by more than two.",
        "",
        "| set | design | encoders | macro-F1 | accuracy | purity | worst gap |",
        "|---|---|---|---|---|---|---|",
    ]
    own = {}
    for lang in MIX8:
        frame = sib(lang, "dev")
        topics = sorted({t for g in frame["gold"] for t in g})
        own[lang] = pd.Series(topicli(frame, topics, "auto", tmp)["right"], index=frame["index_id"].to_numpy())
    for name, frame in (
        ("8 languages, each sentence once", mix(MIX8, "dev")),
        ("8 languages, every sentence in each", parallel(MIX8, "dev")),
    ):
        topics = sorted({t for g in frame["gold"] for t in g})
        for design, how in MIX_DESIGNS:
            r = grouped(frame, topics, tmp) if how == "grouped" else topicli(frame, topics, "auto", tmp)
            cells = (f3(r["macro_f1"]), f3(r["accuracy"]), f3(r["purity"]), worst_gap(own, frame, r))
            lines.append(row(name, design, r["encoder"], *cells))
            print(lines[-1], f"{time.perf_counter() - started:.0f} s", flush=True)
    lines += ["", "## The examples' 93 %-English set (English posts alone: their own run with auto)", ""]
    lines += [
        "| design | encoders | macro-F1 | English accuracy | other accuracy | English gap |",
        "|---|---|---|---|---|---|",
    ]
    frame = mostly_english().reset_index(drop=True)
    topics = sorted({t for g in frame["gold"] for t in g})
    english = (frame["language"] == "en").to_numpy()
    alone = topicli(frame[english].reset_index(drop=True), topics, "auto", tmp)
    lines.append(row("English posts alone", alone["encoder"], f3(alone["macro_f1"]), f3(alone["accuracy"]), "-", "-"))
    for design, how in MIX_DESIGNS:
        r = grouped(frame, topics, tmp) if how == "grouped" else topicli(frame, topics, "auto", tmp)
        g, se = gap(pd.Series(alone["right"]), pd.Series(r["right"][english]))
        cells = (f3(r["macro_f1"]), f3(r["by_language"]["en"]), f3(r["by_language"]["other"]), f"{g:+.3f} ± {se:.3f}")
        lines.append(row(design, r["encoder"], *cells))
        print(lines[-1], flush=True)
    lines += ["", f"Wall time {time.perf_counter() - started:.0f} s; peak memory {peak_mb():.0f} MB."]
    return lines


def purity(clusters: np.ndarray, languages: np.ndarray) -> float:
    """Size-weighted mean over clusters (noise left out) of the cluster's largest language share."""
    clustered = clusters >= 0
    if not clustered.any():
        return float("nan")
    table = pd.crosstab(clusters[clustered], languages[clustered])
    return float(table.max(axis=1).sum() / table.to_numpy().sum())


def speed(texts: list[str]) -> dict[str, float]:
    """Posts per second of each encoder on the same texts, no cache (one warm-up call first)."""
    rates = {}
    for name in ENCODERS:
        encoder = load_encoder(name)
        encoder.encode(texts[:8])
        started = time.perf_counter()
        encoder.encode(texts)
        rates[name] = len(texts) / (time.perf_counter() - started)
    return rates


def dev(languages: list[str], tmp: Path) -> list[str]:
    """The development figures that chose `auto`'s rule and the mixing design."""
    lines = [
        "# Development figures (SIB-200 dev + first 101 train sentences)",
        "",
        "Produced by `python bench/quality.py --dev`.",
        "",
    ]
    lines += ["## Per-post cosine macro-F1", ""]
    lines += ["| language | " + " | ".join(ENCODERS) + " |", "|---|" + "---|" * len(ENCODERS)]
    measured = {}
    for lang in languages:
        frame = sib(lang, "dev")
        topics = sorted({t for g in frame["gold"] for t in g})
        measured[lang] = {e: round(cosine(frame, topics, e), 3) for e in ENCODERS}
        lines.append(f"| {lang} | " + " | ".join(f"{measured[lang][e]:.3f}" for e in ENCODERS) + " |")
        print(lang, measured[lang], flush=True)
    lines += ["", "## topicli macro-F1, one language at a time (behind `MEASURED`: what auto chooses by)", ""]
    lines += ["| language | " + " | ".join(ENCODERS) + " |", "|---|" + "---|" * len(ENCODERS)]
    measured = {}
    for lang in languages:
        frame = sib(lang, "dev")
        topics = sorted({t for g in frame["gold"] for t in g})
        measured[lang] = {e: round(topicli(frame, topics, e, tmp)["macro_f1"], 3) for e in ENCODERS}
        lines.append(f"| {lang} | " + " | ".join(f"{measured[lang][e]:.3f}" for e in ENCODERS) + " |")
        print(lines[-1], flush=True)
    (tmp / "measured.json").write_text(json.dumps(measured, indent=1))
    lines += ["", "## 8-language mix: one encoder for all, with and without each language's mean removed", ""]
    lines += ["| encoder | languages' means removed | macro-F1 | accuracy | purity |", "|---|---|---|---|---|"]
    frame = mix(list(MIX8), "dev")
    topics = sorted({t for g in frame["gold"] for t in g})
    for encoder in ENCODERS:
        for centred in (False, True):
            r = topicli(frame, topics, encoder, tmp, centre=centred)
            lines.append(row(encoder, centred, f3(r["macro_f1"]), f3(r["accuracy"]), f3(r.get("purity", np.nan))))
            print(lines[-1], flush=True)
    lines += ["", "## The examples' 93 %-English set: accuracy of the English and the other posts", ""]
    lines += ["| encoder | languages' means removed | English | other |", "|---|---|---|---|"]
    frame = mostly_english()
    topics = sorted({t for g in frame["gold"] for t in g})
    for encoder in ENCODERS:
        for centred in (False, True):
            r = topicli(frame, topics, encoder, tmp, centre=centred)
            lines.append(row(encoder, centred, f3(r["by_language"]["en"]), f3(r["by_language"]["other"])))
            print(lines[-1], flush=True)
    return lines


def test_rows(languages: list[str], tmp: Path, quick: bool) -> list[str]:
    lines = []
    started = time.perf_counter()
    sample = mix(list(languages), "test")["text"].tolist()[:SPEED_POSTS]
    rates = speed(sample)
    lines += ["## Encoder speed (posts/s, same run, no cache, a mixed sample of SIB-200 test sentences)", ""]
    lines += ["| " + " | ".join(ENCODERS) + " |", "|" + "---|" * len(ENCODERS)]
    lines += ["| " + " | ".join(f"{rates[e]:.1f}" for e in ENCODERS) + " |", ""]
    print(lines[-2], flush=True)
    lines += ["## SIB-200 test, one language at a time (7 topics, 204 sentences)", ""]
    header = (
        ["cosine " + e for e in ENCODERS]
        + ["topicli " + e for e in ENCODERS]
        + ["topicli auto", "auto chose", "auto ≥ best cosine"]
    )
    lines += ["| language | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    single: dict[str, dict[str, float]] = {}  # language → encoder → macro-F1
    own: dict[str, dict[str, pd.Series]] = {}  # encoder → language → each sentence right or not, by index_id
    for lang in languages:
        frame = sib(lang, "test")
        topics = sorted({t for g in frame["gold"] for t in g})
        cos = {e: cosine(frame, topics, e) for e in ENCODERS}
        runs = {e: topicli(frame, topics, e, tmp) for e in (*ENCODERS, "auto")}
        single[lang] = {e: r["macro_f1"] for e, r in runs.items()}
        for e, r in runs.items():
            own.setdefault(e, {})[lang] = pd.Series(r["right"], index=frame["index_id"].to_numpy())
        auto = runs["auto"]
        cells = [f"{cos[e]:.3f}" for e in ENCODERS] + [f"{runs[e]['macro_f1']:.3f}" for e in ENCODERS]
        cells += [
            f"{auto['macro_f1']:.3f}",
            auto["encoder"],
            "yes" if auto["macro_f1"] >= max(cos.values()) else "**no**",
        ]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
        print(lines[-1], f"{time.perf_counter() - started:.0f} s", flush=True)
    lines += ["", "## Mixes of SIB-200 test sentences", ""]
    lines += [
        "`each once`: each sentence once, in a language drawn for it; `every sentence in each`: all of them in",
        "every language. `single mean`: mean macro-F1 of the same encoder's single-language runs; `worst gap`:",
        "the largest drop of a language's accuracy in the mix below its own run (auto, and the group design:",
        "against auto's own runs), on the same sentences, ± its standard error (paired), then how many",
        "languages drop by more than two standard errors. `groups`: English posts with all-MiniLM-L6-v2 and",
        "the others with auto, each group in a run of its own (bench/results/quality_designs_dev.md).",
        "",
        "| mix | encoder | macro-F1 | single mean | accuracy | purity | worst gap |",
        "|---|---|---|---|---|---|---|",
    ]
    eight = [lang for lang in MIX8 if lang in languages]
    mixes = [
        ("8 languages, each once", mix(eight, "test")),
        ("8 languages, every sentence in each", parallel(eight, "test")),
    ]
    if not quick:
        mixes.append((f"all {len(languages)} languages, each once", mix(languages, "test")))
    for name, frame in mixes:
        topics = sorted({t for g in frame["gold"] for t in g})
        members = list(frame["language"].unique())
        for encoder in (*ENCODERS, "auto", "groups"):
            r = grouped(frame, topics, tmp) if encoder == "groups" else topicli(frame, topics, encoder, tmp)
            base = "auto" if encoder == "groups" else encoder
            mean = float(np.mean([single[lang][base] for lang in members]))
            label = f"auto → {r['encoder']}" if encoder in ("auto", "groups") else encoder
            cells = (f3(r["macro_f1"]), f3(mean), f3(r["accuracy"]), f3(r["purity"]), worst_gap(own[base], frame, r))
            lines.append(row(name, f"groups: {r['encoder']}" if encoder == "groups" else label, *cells))
            print(lines[-1], flush=True)
    lines += ["", "## English", ""]
    lines += [
        "| set | encoder | macro-F1 | accuracy | English accuracy | other accuracy |",
        "|---|---|---|---|---|---|",
    ]
    sets = [("examples, 93 % English", mostly_english(), (*ENCODERS, "auto", "groups"))]
    if not quick:  # 6,798 tweets: the multilingual encoders would take most of the budget here; auto is the check
        sets.append(("TweetTopic single, test (6 topics)", tweets(), (DEFAULT_ENCODER, "auto")))
    for name, frame, encoders in sets:
        topics = sorted({t for g in frame["gold"] for t in g})
        english = frame[frame["language"] == "en"].reset_index(drop=True)
        for encoder in encoders:
            r = grouped(frame, topics, tmp) if encoder == "groups" else topicli(frame, topics, encoder, tmp)
            other = r["by_language"].get("other", float("nan"))
            label = {"auto": f"auto → {r['encoder']}", "groups": f"groups: {r['encoder']}"}.get(encoder, encoder)
            lines.append(row(name, label, f3(r["macro_f1"]), f3(r["accuracy"]), f3(r["by_language"]["en"]), f3(other)))
            print(lines[-1], flush=True)
        if len(english) < len(frame):
            r = topicli(english, topics, "auto", tmp)
            lines.append(
                row(
                    f"{name}: English posts alone",
                    f"auto → {r['encoder']}",
                    f3(r["macro_f1"]),
                    f3(r["accuracy"]),
                    f3(r["by_language"]["en"]),
                    "-",
                )
            )
    lines += ["", f"Wall time {time.perf_counter() - started:.0f} s; peak memory {peak_mb():.0f} MB."]
    return lines


def labelled(files: Sequence[str]) -> pd.DataFrame:
    """TweetTopic single-label files as text, gold, language."""
    rows = []
    for name in files:
        path = DATA / "tweet_topic_single" / name
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame(
        {"text": [r["text"] for r in rows], "gold": [[r["label_name"]] for r in rows], "language": "en"}
    )


def multi_dev() -> pd.DataFrame:
    """The TweetTopic multi-label dev file (its only split): a post is right when its topic is any of its gold."""
    path = DATA / "tweet_topic_multi_en_dev.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame({"text": [r["text"] for r in rows], "gold": [r["topics"] for r in rows], "language": "en"})


def with_descriptions(names: list[str]) -> list[str]:
    """The dev label sets' names as topics with the descriptions of bench/topics/*.txt (written from what each
    label means, not from the posts)."""
    known = {str(t): t for file in sorted((ROOT / "bench" / "topics").glob("*.txt")) for t in read_topics(file)}
    missing = sorted(set(names) - set(known))
    if missing:
        sys.exit(f"bench/topics/*.txt lack {', '.join(missing)}")
    return [known[name] for name in names]


def described(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The set's gold label set as topics: bare names, and with their descriptions."""
    names = sorted({t for g in frame["gold"] for t in g})
    return names, with_descriptions(names)


LEVERS = (  # (row, encoder scorer, adaptation rounds, descriptions)
    ("topicli, round one's default (no adaptation, names only)", "cosine", 0, False),
    ("+ adaptation", "cosine", 3, False),
    ("+ adaptation + descriptions (default)", "cosine", 3, True),
    ("cls_model scorer (retrained), no adaptation, names only", "cls_model", 0, False),
    ("cls_model scorer + adaptation + descriptions", "cls_model", 3, True),
)


def levers(split: str, tmp: Path) -> list[str]:
    """Issue 16's levers, one at a time, on English sets with all-MiniLM-L6-v2; then every SIB-200 language with
    the encoder `auto` picks, against per-post cosine with that encoder; then calibration figures."""
    started = time.perf_counter()
    if split == "dev":
        sets = [
            ("TweetTopic single, train (6)", labelled(("train_2020.single.json", "train_random.single.json"))),
            ("TweetTopic multi, dev (19)", multi_dev()),
            ("SIB-200 English, dev (7)", sib("eng_Latn", "dev")),
        ]
    else:
        sets = [
            ("TweetTopic single, test (6)", tweets()),
            ("TweetTopic multi, dev (19; no test split)", multi_dev()),
            ("SIB-200 English, test (7)", sib("eng_Latn", "test")),
        ]
    lines = [
        "## Levers on English sets (all-MiniLM-L6-v2; macro-F1, gain over per-post cosine ± its standard error)",
        "",
        f"The standard error is paired: {BOOTSTRAP_DRAWS} seeded bootstrap resamples of the posts, both methods on"
        " each.",
        "",
    ]
    lines += ["| lever | " + " | ".join(name for name, _ in sets) + " |", "|---|" + "---|" * len(sets)]
    results: dict[str, list[str]] = {"per-post cosine (names)": []}
    calibration: list[str] = []
    for name, frame in sets:
        names, topics = described(frame)
        by_cosine = cosine_topics(frame, names, DEFAULT_ENCODER)
        base = macro_f1(frame, names, by_cosine)
        results["per-post cosine (names)"].append(f3(base))
        for label, scorer, rounds, descriptions in LEVERS:
            settings = {"scorer": scorer, "adapt_rounds": rounds}
            r = topicli(frame, topics if descriptions else names, DEFAULT_ENCODER, tmp, labelling=settings)
            error = gain_error(frame, names, r["predicted"], by_cosine)
            results.setdefault(label, []).append(f"{r['macro_f1']:.3f} ({r['macro_f1'] - base:+.3f} ± {error:.3f})")
            if label.endswith("(default)"):
                raw = topicli(frame, topics, DEFAULT_ENCODER, tmp, labelling={"calibrate": False})
                calibration.append(calibration_row(name, raw, r))
            print(name, label, results[label][-1], f"{time.perf_counter() - started:.0f} s", flush=True)
    lines += [row(label, *cells) for label, cells in results.items()]
    lines += ["", "## Calibration of topic_confidence (the default run above)", ""]
    lines += [
        "| set | ECE raw | ECE calibrated | accuracy at >= 0.5 (share) | accuracy at >= 0.8 (share) |",
        "|---|---|---|---|---|",
        *calibration,
    ]
    lines += ["", f"## Every SIB-200 language ({split}): topicli default against per-post cosine, same encoder", ""]
    lines += [
        "| language | auto chose | per-post cosine | names, no adaptation | names + adaptation | default | gain ± SE |",
        "|---" * 7 + "|",
    ]
    languages = sorted(p.name for p in (DATA / "sib200").iterdir() if p.is_dir())
    worse = []
    for lang in languages:
        frame = sib(lang, split)
        names, topics = described(frame)
        r = topicli(frame, topics, "auto", tmp)
        plain = topicli(frame, names, r["encoder"], tmp, labelling={"adapt_rounds": 0})
        adapted = topicli(frame, names, r["encoder"], tmp)
        by_cosine = cosine_topics(frame, names, r["encoder"])
        base = macro_f1(frame, names, by_cosine)
        if r["macro_f1"] < base:
            worse.append(lang)
        runs = (plain, adapted, r)
        gain = f"{r['macro_f1'] - base:+.3f} ± {gain_error(frame, names, r['predicted'], by_cosine):.3f}"
        cells = (f3(base), *(f3(run["macro_f1"]) for run in runs), gain)
        lines.append(row(lang, r["encoder"], *cells))
        print(lines[-1], f"{time.perf_counter() - started:.0f} s", flush=True)
    lines += ["", f"Languages below per-post cosine: {', '.join(worse) or 'none'}."]
    lines += ["", f"Wall time {time.perf_counter() - started:.0f} s; peak memory {peak_mb():.0f} MB."]
    return lines


BASELINE_SETS = (
    ("TweetTopic single, test (6)", lambda: tweets()),
    ("TweetTopic multi, dev (19; no test split)", lambda: multi_dev()),
    ("SIB-200 English, test (7)", lambda: sib("eng_Latn", "test")),
)


def baselines(tmp: Path) -> list[str]:
    """topicli's default against what users compare it with, on the English sets' test files (all-MiniLM-L6-v2)."""
    started = time.perf_counter()
    embedder = Embedder(DEFAULT_ENCODER, cache_dir=CACHE)
    classifier, _ = load_classifier()
    lines = [
        "Same posts, encoder (all-MiniLM-L6-v2) and candidate topics (the gold label set) for every method. The",
        "majority topic peeks at gold (a floor); per-post methods score the bare names in the template; BERTopic",
        "gets the names as its zero-shot list (`zeroshot_min_similarity` 0.3, `min_topic_size` 5, UMAP seeded) and",
        "its keyword-named topics count as misses; topicli is the default run (names with their descriptions).",
        "",
        "| set | method | accuracy | macro-F1 | against per-post cosine |",
        "|---|---|---|---|---|",
    ]
    for name, read in BASELINE_SETS:
        frame = read()
        names, topics = described(frame)
        gold, none = frame["gold"].tolist(), [0] * len(frame)
        vectors = embedder(frame["text"].tolist())
        label_vectors = embedder([TEMPLATE.format(topic=topic_phrase(t)) for t in names])
        majority = pd.Series([g[0] for g in gold]).value_counts().index[0]
        found = {
            "majority topic (peeks at gold)": score([majority] * len(frame), gold, none, names),
            "per-post zero-shot cosine": score(cosine_topics(frame, names, DEFAULT_ENCODER), gold, none, names),
            "per-post cls_model (shipped)": score(
                [names[i] for i in np.argmax(classifier.predict_proba(vectors, label_vectors), axis=1)],
                gold,
                none,
                names,
            ),
            "BERTopic 0.17 zero-shot": bertopic(frame["text"].tolist(), vectors, names, embedder, gold),
            "topicli (default)": topicli(frame, topics, DEFAULT_ENCODER, tmp),
        }
        base = found["per-post zero-shot cosine"]["macro_f1"]
        for method, r in found.items():
            lines.append(row(name, method, f3(r["accuracy"]), f3(r["macro_f1"]), f"{r['macro_f1'] - base:+.3f}"))
            print(lines[-1], f"{time.perf_counter() - started:.0f} s", flush=True)
    lines += ["", f"Wall time {time.perf_counter() - started:.0f} s; peak memory {peak_mb():.0f} MB."]
    return lines


def bertopic(texts: list[str], vectors: np.ndarray, names: list[str], embedder: Embedder, gold: list) -> dict:
    """BERTopic (the `bench` extra) with the same encoder and the topic names as its zero-shot list."""
    from bertopic import BERTopic
    from bertopic.backend import BaseEmbedder
    from umap import UMAP

    class SameEncoder(BaseEmbedder):
        def embed(self, documents: list[str], verbose: bool = False) -> np.ndarray:
            return embedder(list(documents))

    phrases = [topic_phrase(t) for t in names]
    model = BERTopic(
        embedding_model=SameEncoder(),
        zeroshot_topic_list=phrases,
        zeroshot_min_similarity=0.3,
        umap_model=UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=0),
        min_topic_size=5,
    )
    assigned, _ = model.fit_transform(texts, vectors)
    labels = model.get_topic_info().set_index("Topic")["Name"].to_dict()
    by_phrase = dict(zip(phrases, names, strict=True))
    predicted = [by_phrase.get(model.topic_labels_.get(t, labels.get(t, "")), "") for t in assigned]
    return score(predicted, gold, list(assigned), names)


def calibration_row(name: str, raw: dict, calibrated: dict) -> str:
    """ECE before and after calibration, and accuracy and share of posts at the two thresholds."""

    def at(r: dict, threshold: float) -> str:
        accuracy, share = accuracy_at(r["confidence"], r["right"], threshold)
        return f"{accuracy:.3f} ({share:.0%})"

    ece_raw = expected_calibration_error(raw["confidence"], raw["right"])
    ece = expected_calibration_error(calibrated["confidence"], calibrated["right"])
    return row(name, f3(ece_raw), f3(ece), at(calibrated, 0.5), at(calibrated, 0.8))


def row(*cells: object) -> str:
    """A markdown table row."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def f3(value: float) -> str:
    return f"{value:.3f}"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", action="store_true", help="development data only: the figures that chose settings")
    parser.add_argument("--quick", action="store_true", help="the 8 mixed languages only, no tweets")
    parser.add_argument(
        "--baselines", action="store_true", help="English test files: majority, per-post, BERTopic against topicli"
    )
    parser.add_argument(
        "--designs", action="store_true", help="development data: one space for a mix against a group per encoder"
    )
    parser.add_argument(
        "--levers", choices=("dev", "test"), help="issue 16's levers and calibration, on dev (or, once, test) files"
    )
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} is absent: this benchmark reads the shared data beside the clone")
    tmp = ROOT / "bench" / "results" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    languages = sorted(p.name for p in (DATA / "sib200").iterdir() if p.is_dir())
    if args.quick:
        languages = sorted(MIX8)
    if args.levers:
        title = f"# Levers of per-run adaptation, descriptions, scorer and calibration ({args.levers} files)"
        command = f"Produced by `python bench/quality.py --levers {args.levers}`."
        lines = [title, "", command, "", *levers(args.levers, tmp)]
        out = ROOT / "bench" / "results" / f"quality_levers_{args.levers}.md"
    elif args.baselines:
        title = "# topicli against the baselines users compare it with (English test files)"
        lines = [title, "", "Produced by `python bench/quality.py --baselines`.", "", *baselines(tmp)]
        out = ROOT / "bench" / "results" / "quality_baselines.md"
    elif args.designs:
        title = "# Designs for a mix of languages (development files)"
        lines = [title, "", "Produced by `python bench/quality.py --designs`.", "", *designs(tmp)]
        out = ROOT / "bench" / "results" / "quality_designs_dev.md"
    elif args.dev:
        lines, out = dev(languages, tmp), ROOT / "bench" / "results" / "quality_dev.md"
    else:
        lines = [
            "# Topic quality per language",
            "",
            "Every method sees the same posts and candidate topics (the gold label set); figures are macro-F1",
            "unless named. Settings and the design for mixes were chosen on development data",
            "(bench/results/quality_dev.md, quality_designs_dev.md); these are the test files, read once.",
            "Produced by `python bench/quality.py`.",
            "",
        ]
        lines += test_rows(languages, tmp, args.quick)
        out = ROOT / "bench" / "results" / "quality.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
