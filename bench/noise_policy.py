"""Which noise policy should be the default? Accuracy of `topicli run` under each policy.

Sets (never test data): examples/posts.csv (its `intended_topic`, shipped topic list) and
the TweetTopic *train* files (gold topic names as the topic list). Writes
bench/results/noise_policy.md.

    python bench/noise_policy.py
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from topicli.config import load_settings
from topicli.io import Posts
from topicli.method.pipeline import Pipeline
from topicli.method.topics import topic_phrase

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def tweet_dev(tmp: Path) -> tuple[Path, Path]:
    rows = []
    for name in ("train_2020.single.json", "train_random.single.json"):
        rows += [json.loads(x) for x in (DATA / "eval/tweet_topic_single" / name).read_text().splitlines() if x.strip()]
    frame = pd.DataFrame({"text": [r["text"] for r in rows], "gold": [r["label_name"] for r in rows]})
    frame = frame.sample(n=3000, random_state=0).reset_index(drop=True)
    posts, topics = tmp / "tweet_dev.csv", tmp / "tweet_topics.txt"
    frame.to_csv(posts, index=False)
    topics.write_text("\n".join(sorted(frame["gold"].unique())) + "\n")
    return posts, topics


def main() -> None:
    if not DATA.exists():
        sys.exit(f"{DATA} is absent: this benchmark reads the shared data beside the clone")
    tmp = ROOT / "bench" / "results" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    tweets, tweet_topics = tweet_dev(tmp)
    sets = [
        ("examples/posts.csv", ROOT / "examples/posts.csv", "", "intended_topic"),
        ("TweetTopic train (3,000)", tweets, str(tweet_topics), "gold"),
    ]
    lines = [
        "# Noise policy",
        "",
        "Accuracy over all non-empty posts (an unassigned post counts as wrong).",
        "",
        "| set | method | accuracy | coverage | clusters | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name, path, topics, gold_column in sets:
        base = load_settings(None, environ={})
        base = replace(base, labelling=replace(base.labelling, topics=topics))
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        keep = frame["text" if "text" in frame else "caption"].str.strip() != ""
        gold = frame.loc[keep, gold_column].map(topic_phrase).to_numpy()
        pipeline = Pipeline(base.method)
        posts = Posts(frame, "text" if "text" in frame else "caption", path)
        started = time.perf_counter()
        prepared = pipeline.prepare(posts)
        run = pipeline.cluster(prepared)
        cluster_seconds = time.perf_counter() - started
        for policy in ("unassigned", "nearest", "classify"):
            settings = replace(base, labelling=replace(base.labelling, noise_policy=policy))
            started = time.perf_counter()
            result = Pipeline(settings.method).label(prepared, run)
            seconds = cluster_seconds + time.perf_counter() - started
            predicted = result.posts.loc[keep, "topic"].map(topic_phrase).to_numpy()
            lines.append(
                f"| {name} | run, noise_policy={policy} | {np.mean(predicted == gold):.3f} | "
                f"{np.mean(predicted != ''):.2f} | {run.chosen.n_clusters} | {seconds:.1f} |"
            )
            print(lines[-1], flush=True)
    out = ROOT / "bench" / "results" / "noise_policy.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
