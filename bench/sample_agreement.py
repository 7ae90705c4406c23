"""How far a Spark run fitted on a sample agrees with the single-process run fitted on every post.

`--posts` real posts (bench/run.py's `real_posts`, with an `id`), the shipped 100 topics, all-MiniLM-L6-v2:
the single-process `Pipeline` (prepare, cluster, label; vectors from the embedding cache) is the baseline;
then `run_spark` with local[2] and `[scale] sample = --sample` embeds every post in Spark tasks, fits on the
sample on the driver and assigns every post by the bundle. Agreement: the share of posts given the same topic
(and the same "no topic"). No gold: these posts have none (macro-F1 both ways on development tweets is in
bench/results/scale.md).

    python bench/sample_agreement.py [--posts 100000] [--sample 20000]

writes bench/results/sample_agreement.md.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import DATA, real_posts

from topicli.config import load_settings
from topicli.method.pipeline import Pipeline, load_posts

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=100_000, help="posts in both runs")
    parser.add_argument("--sample", type=int, default=20_000, help="posts the Spark run is fitted on")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} is absent: this benchmark reads the shared data beside the clone")
    folder = Path(tempfile.mkdtemp(prefix="topicli-agreement-"))
    posts = folder / "posts.csv"
    pd.read_csv(real_posts(args.posts), dtype=str, keep_default_na=False).to_csv(posts, index_label="id")
    overrides = {
        "encoder": {"name": "all-MiniLM-L6-v2", "cache_dir": str(ROOT / ".topicli-cache")},
        "input": {"text_column": "text"},
        "scale": {"sample": args.sample, "executors": 2},
    }
    settings = load_settings(None, overrides=overrides)
    started = time.perf_counter()
    pipeline = Pipeline(settings.method)
    prepared = pipeline.prepare(load_posts(posts, settings))
    alone = pipeline.label(prepared, pipeline.cluster(prepared)).posts
    single_seconds = time.perf_counter() - started
    print(f"single process: {single_seconds:.0f} s", flush=True)

    from topicli.spark.engine import run_spark
    from topicli.spark.session import spark_session

    spark = spark_session(settings.scale)
    started = time.perf_counter()
    done = run_spark(spark, settings, str(posts), folder / "spark")
    spark_seconds = time.perf_counter() - started
    spread = pd.read_parquet(done.output).astype({"id": int}).sort_values("id")
    spark.stop()
    ours = alone.assign(id=alone["id"].astype(int)).sort_values("id")
    same = ours["topic"].fillna("").to_numpy() == spread["topic"].fillna("").to_numpy()
    lines = [
        "# A Spark run fitted on a sample against the single-process run on every post",
        "",
        f"`python bench/sample_agreement.py --posts {args.posts} --sample {args.sample}`: {args.posts:,} real posts,",
        "the shipped 100 topics, all-MiniLM-L6-v2, default settings.",
        "",
        "| run | fitted on | seconds | same topic as the single-process run |",
        "|---|---|---|---|",
        f"| single process (vectors from the cache) | {args.posts:,} | {single_seconds:.0f} | - |",
        f"| spark local[2] (embeds every post) | {done.sample:,} | {spark_seconds:.0f} | {np.mean(same):.2%} |",
        "",
        f"Topics used: {ours['topic'].replace('', np.nan).nunique()} (single), "
        f"{spread['topic'].replace('', np.nan).nunique()} (spark). "
        f"Peak memory of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB.",
    ]
    out = ROOT / "bench" / "results" / "sample_agreement.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
