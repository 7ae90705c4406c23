"""Trends over time: how often randomly dated posts report a trend, and how often a planted one is found.

Sets: examples/posts.csv under its 25 intended topics (325 posts) and instagram_dev's real
captions under their first acceptable topic (367 posts; none-fits posts left out). Dates are
drawn uniformly over a year (weekly periods), one seeded draw per run.

1. No change (the null): every topic's posts are dated at random, so no share changes. A run
   "reports" when any topic's Holm-adjusted p-value is below the level: the family-wise rate,
   which the test bounds by the level.
2. A planted change: the largest topic's posts fall in the second half of the year with a
   given probability (0.5 is no change), the rest as in 1. Power: the share of runs that report
   that topic as growing; false: the share of runs that report any other topic.

    python bench/trends.py [--seeds 1000]   # writes bench/results/trends.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from topicli.method.timeline import TREND_LEVEL, over_time, trends

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LEVELS = (TREND_LEVEL, 0.05)
LATE = (0.6, 0.7, 0.8, 0.9, 1.0)  # probability that a planted topic's post falls in the second half
START, DAYS = pd.Timestamp("2026-01-05"), 364


def sets() -> dict[str, pd.Series]:
    """Each set's topics, one per post."""
    examples = pd.read_csv(ROOT / "examples" / "posts.csv", dtype=str, keep_default_na=False)
    folder = DATA / "eval" / "instagram_dev"
    captions = pd.read_json(folder / "captions.jsonl", lines=True).merge(
        pd.read_json(folder / "labels.jsonl", lines=True), on="id"
    )
    captions = captions[captions["topics"].map(len) > 0].reset_index(drop=True)
    return {
        "examples/posts.csv (25 intended topics)": examples["intended_topic"],
        "instagram_dev (first acceptable topic)": captions["topics"].map(lambda t: t[0]),
    }


def run(topics: pd.Series, seed: int, planted: str = "", late: float = 0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day = rng.uniform(0, DAYS, len(topics))
    mine = (topics == planted).to_numpy()
    second = rng.random(mine.sum()) < late
    day[mine] = np.where(second, rng.uniform(DAYS / 2, DAYS, mine.sum()), rng.uniform(0, DAYS / 2, mine.sum()))
    dates = (START + pd.to_timedelta(day, unit="D")).strftime("%Y-%m-%d %H:%M")
    counts = over_time(pd.DataFrame({"date": dates}), topics.reset_index(drop=True))
    assert counts is not None
    return trends(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "trends.md")
    args = parser.parse_args()
    seeds = args.seeds
    began = time.monotonic()
    null_rows, power_rows = [], []
    for name, topics in sets().items():
        found = [run(topics, seed) for seed in range(seeds)]
        tested = np.mean([len(f) for f in found])
        for level in LEVELS:
            runs = [int((f["p_adjusted"] < level).sum()) for f in found]
            null_rows.append(
                f"| {name} | {tested:.1f} | {level:g} | {np.mean(np.array(runs) > 0):.1%} | {np.mean(runs):.3f} |"
            )
        largest = topics.value_counts().index[0]
        for late in LATE:
            found = [run(topics, seed, largest, late) for seed in range(seeds // 5)]
            shown = [f[f["p_adjusted"] < TREND_LEVEL] for f in found]
            power = np.mean([(s["topic"] == largest).any() and (s["trend"] == "grows").any() for s in shown])
            false = np.mean([(s["topic"] != largest).any() for s in shown])
            power_rows.append(
                f"| {name} | {largest} ({(topics == largest).sum()} posts) | {late:.0%} | {power:.1%} | {false:.1%} |"
            )
    lines = [
        "# Trends over time: false and found",
        "",
        f"`python bench/trends.py --seeds {seeds}` ({time.monotonic() - began:.0f} s). Dates uniform over a year "
        "(weekly periods); the test: Fisher's exact test of a topic's share of the posts with a topic, first half "
        f"against second half of the periods, Holm-adjusted across the topics with 5+ posts; reported below "
        f"{TREND_LEVEL:g} (topicli's level).",
        "",
        f"## No change: randomly dated posts ({seeds} runs a set)",
        "",
        "| set | topics tested | level | runs reporting any trend | trends a run |",
        "|---|---|---|---|---|",
        *null_rows,
        "",
        f"## A planted change ({seeds // 5} runs a row, level {TREND_LEVEL:g})",
        "",
        "| set | planted topic | its posts in the second half | runs reporting it growing | runs reporting another |",
        "|---|---|---|---|---|",
        *power_rows,
        "",
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
