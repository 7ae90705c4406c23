"""Tiny topics and "no topic fits": how `topicli run` spreads posts over topics, and where to draw two lines.

Sets (never test data): examples/posts.csv (its `intended_topic`, the shipped 100 topics), the
TweetTopic *train* files (2,000 posts, the 6 gold topics), TweetTopic multi-label *dev* (the 19
gold topics) and SIB-200 English *train* (the 7 gold categories).

1. Tiny topics. Topics used against clusters, where the posts of each topic came from (its
   clusters, a post's own override, noise), the size distribution, and what folding topics under
   a minimum size into each post's best remaining topic does to accuracy and macro-F1.
2. Unmatched clusters. A quarter of the gold topics is taken off the list (3 seeded draws per
   set), the run is made again, and a cluster counts as truly unmatched when most of its posts
   have a removed gold topic. For each threshold on the cluster confidence (the voters' mean
   probability of the cluster's topic, the current confidence), precision and recall of
   "confidence < threshold" over those clusters, counted in posts; and on the full lists, the
   share of posts a threshold takes a right topic from.

    python bench/tiny_topics.py        # writes bench/results/tiny_topics.md
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from topicli.config import Settings, load_settings
from topicli.io import Posts
from topicli.method.pipeline import LabelledPosts, Pipeline
from topicli.method.topics import read_topics, topic_phrase

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MIN_SIZES = (0, 3, 5, 10, 20)
THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.05, 0.95, 0.05))
DRAWS = 3


@dataclass
class DevSet:
    name: str
    frame: pd.DataFrame  # text, gold (a list of topic names per post)
    topics: list[str]


def tweet_single() -> DevSet:
    rows = []
    for name in ("train_2020.single.json", "train_random.single.json"):
        path = DATA / "eval/tweet_topic_single" / name
        rows += [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    frame = pd.DataFrame({"text": [r["text"] for r in rows], "gold": [[r["label_name"]] for r in rows]})
    frame = frame.sample(n=2000, random_state=0).reset_index(drop=True)
    return DevSet("TweetTopic single train (2,000)", frame, sorted({g[0] for g in frame["gold"]}))


def tweet_multi() -> DevSet:
    rows = [json.loads(x) for x in (DATA / "eval/tweet_topic_multi_en_dev.jsonl").read_text().splitlines() if x]
    frame = pd.DataFrame({"text": [r["text"] for r in rows], "gold": [r["topics"] for r in rows]})
    return DevSet("TweetTopic multi dev (200)", frame, sorted({t for g in frame["gold"] for t in g}))


def sib200() -> DevSet:
    raw = pd.read_csv(DATA / "eval/sib200/eng_Latn/train.tsv", sep="\t")
    frame = pd.DataFrame({"text": raw["text"], "gold": [[c] for c in raw["category"]]})
    return DevSet("SIB-200 eng train (701)", frame, sorted(raw["category"].unique()))


def examples() -> DevSet:
    raw = pd.read_csv(ROOT / "examples/posts.csv", dtype=str, keep_default_na=False)
    raw = raw[raw["caption"].str.strip() != ""]
    frame = pd.DataFrame({"text": raw["caption"].tolist(), "gold": [[t] for t in raw["intended_topic"]]})
    return DevSet("examples/posts.csv (shipped 100 topics)", frame, read_topics())


def labelled(dev: DevSet, topics: list[str], base: Settings) -> tuple[LabelledPosts, int]:
    pipeline = Pipeline(base.method, topics=topics)
    path = ROOT / "bench" / "results" / "tmp" / "tiny_topics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    dev.frame[["text"]].to_csv(path, index=False)
    prepared = pipeline.prepare(Posts(dev.frame[["text"]], "text", path))
    run = pipeline.cluster(prepared)
    return pipeline.label(prepared, run), run.chosen.n_clusters


def scores(predicted: np.ndarray, gold: list[list[str]]) -> tuple[float, float]:
    """Accuracy and macro-F1 as `topicli evaluate` counts them (a post is right when its topic is one of its gold)."""
    wanted = [{topic_phrase(t) for t in g} for g in gold]
    right = np.array([p in g for p, g in zip(predicted, wanted, strict=True)])
    effective = [p if ok else topic_phrase(g[0]) for p, g, ok in zip(predicted, gold, right, strict=True)]
    return float(right.mean()), float(f1_score(effective, list(predicted), average="macro", zero_division=0))


def fold(result: LabelledPosts, min_size: int) -> np.ndarray:
    """Each post's topic after topics with fewer than `min_size` posts give their posts to each post's best
    remaining topic (one pass), as topic phrases."""
    prepared = result.prepared
    names = result.posts["topic"].to_numpy()
    counts = pd.Series(names[names != ""]).value_counts()
    tiny = set(counts[counts < min_size].index)
    allowed = np.array([name not in tiny and name in counts.index for name in result.topics])
    out = names.copy()
    if tiny and allowed.any():
        rows = np.flatnonzero(np.isin(names, list(tiny)))
        probabilities = prepared.scores(prepared.text_index[rows])
        out[rows] = [result.topics[i] for i in np.argmax(np.where(allowed, probabilities, -1), axis=1)]
    return np.array([topic_phrase(t) if t else "" for t in out])


def spread(result: LabelledPosts, n_clusters: int) -> dict[str, object]:
    table = result.topic_table
    sizes = table["size"].to_numpy()
    from_clusters = (table["clusters"].fillna("").astype(str) != "").sum()
    labeller = result.labeller
    cluster_topic = {c.cluster: c.topic for c in labeller.cluster_topics_}
    posts = result.posts
    topic_index = {name: i for i, name in enumerate(result.topics)}
    in_cluster = posts["cluster"].to_numpy() >= 0
    own = np.array([topic_index.get(t, -1) for t in posts["topic"]])
    voted = np.array([cluster_topic.get(c, -2) for c in posts["cluster"]])
    total = len(posts)
    return {
        "clusters": n_clusters,
        "topics": len(table),
        "topics from clusters": int(from_clusters),
        "topics only from single posts": int(len(table) - from_clusters),
        "posts: cluster topic": f"{np.mean(in_cluster & (own == voted)):.0%}",
        "posts: override": f"{np.mean(in_cluster & (own != voted)):.0%}",
        "posts: noise": f"{np.mean(~in_cluster):.0%}",
        "size min/median/max": f"{sizes.min()}/{int(np.median(sizes))}/{sizes.max()}",
        "topics < 5 posts": int((sizes < 5).sum()),
        "posts in topics < 5": f"{sizes[sizes < 5].sum() / max(total, 1):.1%}",
    }


def unmatched_curve(result: LabelledPosts, gold: list[list[str]], removed: set[str]) -> list[tuple[float, int, bool]]:
    """(confidence, posts, truly unmatched) per cluster: unmatched when most of its posts' gold was removed."""
    clusters = result.posts["cluster"].to_numpy()
    out = []
    for info in result.labeller.cluster_topics_:
        members = np.flatnonzero(clusters == info.cluster)
        missing = np.mean([all(g in removed for g in gold[i]) for i in members]) if len(members) else 0.0
        out.append((info.confidence, len(members), missing > 0.5))
    return out


def main() -> None:
    if not DATA.exists():
        sys.exit(f"{DATA} is absent: this benchmark reads the shared data beside the clone")
    tracemalloc.start()
    started = time.perf_counter()
    base = load_settings(None, environ={})
    sets = [examples(), tweet_single(), tweet_multi(), sib200()]
    lines = [
        "# Tiny topics and unmatched clusters",
        "",
        f"`python bench/tiny_topics.py`; sets: {', '.join(s.name for s in sets)}.",
    ]
    spreads, folds, curves, false_alarms = {}, [], [], []
    for dev in sets:
        gold = dev.frame["gold"].tolist()
        result, n_clusters = labelled(dev, dev.topics, base)
        spreads[dev.name] = spread(result, n_clusters)
        print(dev.name, spreads[dev.name], flush=True)
        accuracy0, f1_0 = scores(fold(result, 0), gold)
        for m in MIN_SIZES:
            predicted = fold(result, m)
            accuracy, f1 = scores(predicted, gold)
            used = len(set(predicted) - {""})
            folds.append((dev.name, m, used, accuracy, accuracy - accuracy0, f1, f1 - f1_0))
        # on the full list: a flagged cluster loses its posts' topics; how many of them were right?
        right = np.array(
            [
                topic_phrase(t) in {topic_phrase(g) for g in gs}
                for t, gs in zip(result.posts["topic"], gold, strict=True)
            ]
        )
        clusters = result.posts["cluster"].to_numpy()
        confidence = {c.cluster: c.confidence for c in result.labeller.cluster_topics_}
        post_confidence = np.array([confidence.get(c, np.inf) for c in clusters])
        false_alarms.append((dev.name, [float(np.mean((post_confidence < t) & right)) for t in THRESHOLDS]))
        rng = np.random.default_rng(0)
        gold_topics = sorted({t for g in gold for t in g})
        for draw in range(DRAWS):
            removed = set(rng.choice(gold_topics, size=max(1, len(gold_topics) // 4), replace=False).tolist())
            kept = [t for t in dev.topics if t not in removed]
            reduced, _ = labelled(dev, kept, base)
            curves.append((dev.name, draw, unmatched_curve(reduced, gold, removed)))
            print(dev.name, "draw", draw, "removed", sorted(removed), flush=True)
    lines += ["", "## How posts spread over topics (full topic lists)", ""]
    keys = list(next(iter(spreads.values())))
    lines += ["| set | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(str(v[k]) for k in keys) + " |" for name, v in spreads.items()]
    lines += ["", "## Folding topics under a minimum size into each post's best remaining topic", ""]
    lines += ["| set | min size | topics used | accuracy | Δ | macro-F1 | Δ |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {n} | {m} | {u} | {a:.3f} | {da:+.3f} | {f:.3f} | {df:+.3f} |" for n, m, u, a, da, f, df in folds]
    lines += ["", "## Unmatched clusters: a quarter of the gold topics removed, 3 draws per set", ""]
    lines += [
        "Precision/recall in posts of `cluster confidence < threshold` at finding clusters whose posts' topic was "
        "removed; `right lost`: on the full lists, share of all posts that had a right topic and lose it.",
        "",
    ]
    header = (
        "| threshold | "
        + " | ".join(f"{name} P/R" for name in spreads)
        + " | pooled P/R/F1 | "
        + " | ".join(f"{name} right lost" for name in spreads)
        + " |"
    )
    lines += [header, "|---" * (2 * len(spreads) + 2) + "|"]
    for j, threshold in enumerate(THRESHOLDS):
        cells, pooled = [], np.zeros(3)
        for name in spreads:
            counts = np.zeros(3)  # flagged & true, flagged, true
            for set_name, _, curve in curves:
                if set_name != name:
                    continue
                for conf, posts, true in curve:
                    counts += [posts * (conf < threshold and true), posts * (conf < threshold), posts * true]
            pooled += counts
            cells.append(f"{counts[0] / max(counts[1], 1):.2f}/{counts[0] / max(counts[2], 1):.2f}")
        p, r = pooled[0] / max(pooled[1], 1), pooled[0] / max(pooled[2], 1)
        f = 2 * p * r / max(p + r, 1e-9)
        lost = [f"{alarms[j]:.1%}" for _, alarms in false_alarms]
        lines.append(
            f"| {threshold:.2f} | " + " | ".join(cells) + f" | {p:.2f}/{r:.2f}/{f:.2f} | " + " | ".join(lost) + " |"
        )
    _, peak = tracemalloc.get_traced_memory()
    lines += ["", f"{time.perf_counter() - started:.0f} s; peak traced Python memory {peak / 1e6:.0f} MB."]
    out = ROOT / "bench" / "results" / "tiny_topics.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
