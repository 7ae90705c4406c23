"""`--engine spark` against the single-process run, and the assignment stage at up to 1M posts.

Two parts, each configuration in a fresh process so that its peak memory is its own:

1. **End to end** on `--posts` real posts (`bench/run.py`'s `real_posts`, from ../shared/data): the single-process
   `Pipeline` (prepare, cluster, label, with an empty embedding cache) as the baseline, then
   `run_spark` with local[1] and local[2] (`[scale] sample` = `--sample`). posts/s, and peak memory
   of the driver (Python), of the JVM, and of the largest Python worker (an executor's task slot).
2. **Assignment** (the stage every post goes through after the fit) at each of `--assign-sizes`, on
   vectors made from the real ones (each a real post's vector plus small noise, unit length),
   generated in Spark tasks and written as Parquet partitions, never on the driver; assigned by the
   bundle of the local[2] run with local[1] and local[2]. The driver's peak is shown per size: it
   holds the bundle, never the vectors.

Writes bench/results/scale.md.

    python bench/scale.py [--posts 10000] [--sample 5000] [--assign-sizes 100000,1000000]

`--captions` runs part 1 only, on caption-like posts (bench/million.py's: real texts joined to instagram_dev's
caption lengths, 10 % copies), and writes bench/results/scale_captions.md with the 100M projection from its
embedding rate and the assignment rate of scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TWEETS = ROOT.parent / "shared" / "data" / "eval" / "tweet_topic_single" / "train_2020.single.json"
RESULTS = ROOT / "bench" / "results"
DS3_V2_CORES = 4  # [infra] compute_vm_size default, Standard_DS3_v2: 4 vCPUs, 14 GiB


NOTES = [
    "Assumptions of the projection: throughput scales with cores (Spark tasks share nothing but the broadcast",
    "bundle); a DS3_v2 vCPU embeds as fast as a core here did; reading and writing Parquet on Azure storage",
    "keeps up; the fit on the driver does not grow with the posts (it sees the sample only). Embedding is",
    "nearly all of the work, so the node count follows from the embedding rate.",
    "",
    "In local mode the JVM is driver and executors at once; 'driver MB' is the Python driver, which holds the",
    "sample and the bundle, never the posts' vectors.",
]


class PeakMemory:
    """Peak RSS of this process, of the JVM and of the largest Python worker, sampled every 0.2 s."""

    def __init__(self) -> None:
        import psutil

        self.me = psutil.Process()
        self.peaks = {"driver": 0, "jvm": 0, "worker": 0, "workers": 0}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self.stop.is_set():
            try:
                children = self.me.children(recursive=True)
                jvm = sum(c.memory_info().rss for c in children if "java" in c.name())
                workers = [c.memory_info().rss for c in children if "python" in c.name()]
            except psutil.Error:
                continue
            sample = {
                "driver": self.me.memory_info().rss,
                "jvm": jvm,
                "worker": max(workers, default=0),
                "workers": len(workers),
            }
            self.peaks = {k: max(v, sample[k]) for k, v in self.peaks.items()}
            time.sleep(0.2)

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        self.thread.join()


def posts_file(n: int, folder: Path) -> Path:
    """n real short texts (bench/run.py's `real_posts`: headlines, requests, subjects, tweets; duplicates kept)."""
    from run import real_posts  # bench/ is this script's folder

    path = folder / f"posts-{n}.csv"
    pd.read_csv(real_posts(n), dtype=str, keep_default_na=False).rename(columns={"text": "caption"}).to_csv(
        path, index=False
    )
    return path


def settings_for(folder: Path, sample: int, executors: int) -> Any:
    from topicli.config import load_settings

    return load_settings(
        None,
        overrides={
            "encoder": {"name": "all-MiniLM-L6-v2", "cache_dir": str(folder / "cache")},
            "scale": {"sample": sample, "executors": executors, "partition_posts": 2500},
        },
    )


def one_single(posts: Path, folder: Path, sample: int) -> dict[str, Any]:
    from topicli.method.pipeline import Pipeline, load_posts

    settings = settings_for(folder, sample, 1)
    with PeakMemory() as memory:
        started = time.perf_counter()
        pipeline = Pipeline(settings.method)
        prepared = pipeline.prepare(load_posts(posts, settings))
        clustering = pipeline.cluster(prepared)
        pipeline.label(prepared, clustering)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, **memory.peaks, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def one_spark(posts: Path, folder: Path, sample: int, executors: int) -> dict[str, Any]:
    from topicli.spark.engine import run_spark
    from topicli.spark.session import spark_session

    settings = settings_for(folder, sample, executors)
    spark = spark_session(settings.scale)
    with PeakMemory() as memory:
        started = time.perf_counter()
        done = run_spark(spark, settings, str(posts), folder / f"run-{executors}")
        seconds = time.perf_counter() - started
    spark.stop()
    return {"seconds": seconds, "stages": done.seconds, "sample": done.sample, **memory.peaks}


def one_assign(vectors: Path, bundle: Path, sizes: list[int], executors: int, base: Path) -> dict[str, Any]:
    """Make `max(sizes)` vectors in Spark tasks (once), then assign the first n of them for each n."""
    from pyspark.sql import functions as F

    from topicli.config import ScaleSettings
    from topicli.spark.engine import _assigned, _write
    from topicli.spark.session import spark_session
    from topicli.spark.tasks import ID, TEXT, VECTOR, assign_partition

    spark = spark_session(ScaleSettings(executors=executors))
    if not vectors.exists():
        real = np.load(base)
        shared = spark.sparkContext.broadcast(real)

        def make(frames: Any) -> Any:
            for frame in frames:
                ids = frame["id"].to_numpy()
                rng = np.random.default_rng(int(ids[0]))
                v = shared.value[ids % len(shared.value)] + rng.normal(0, 0.02, (len(ids), real.shape[1]))
                v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
                yield frame.assign(**{ID: ids, TEXT: [f"post {i}" for i in ids], VECTOR: list(v)}).drop(columns="id")

        schema = f"{ID} long, {TEXT} string, {VECTOR} array<float>"
        spark.range(max(sizes), numPartitions=max(2, max(sizes) // 10000)).mapInPandas(make, schema).write.parquet(
            str(vectors)
        )
    found = {}
    for n in sizes:
        frame = spark.read.parquet(str(vectors)).where(F.col(ID) < n)
        with PeakMemory() as memory:
            started = time.perf_counter()
            _write(_assigned(spark, frame, bundle, assign_partition, [ID]), base.parent / f"out-{n}", "parquet")
            seconds = time.perf_counter() - started
        found[str(n)] = {"seconds": seconds, **memory.peaks}
    spark.stop()
    return found


def tweets_file(folder: Path, n: int) -> Path:
    """The first `n` development tweets (TweetTopic train_2020, 6 topics) as posts with a gold column."""
    frame = pd.read_json(TWEETS, lines=True).head(n)
    frame = pd.DataFrame({"caption": frame["text"], "gold": frame["label_name"].str.replace("_", " ")})
    path = folder / "tweets.csv"
    frame.to_csv(path, index_label="id")
    return path


def one_agreement(posts: Path, folder: Path, fraction: float) -> dict[str, Any]:
    """Topics of the single-process run, of Spark with every post sampled, and of Spark with `fraction` of them:
    agreement with the single-process run and macro-F1 against gold, each."""
    from topicli.method.evaluation import score
    from topicli.method.pipeline import Pipeline, load_posts
    from topicli.spark.engine import run_spark
    from topicli.spark.session import spark_session

    frame = pd.read_csv(posts)
    gold = [[g] for g in frame["gold"]]
    topics = sorted(set(frame["gold"]))
    settings = settings_for(folder, len(frame), 2)
    pipeline = Pipeline(settings.method, topics=topics)
    prepared = pipeline.prepare(load_posts(posts, settings))
    alone = pipeline.label(prepared, pipeline.cluster(prepared)).posts["topic"].tolist()
    spark = spark_session(settings.scale)
    found: dict[str, Any] = {"posts": len(frame)}
    for name, sample in (("all", len(frame)), ("part", int(len(frame) * fraction))):
        run = settings_for(folder, sample, 2)
        done = run_spark(spark, run, str(posts), folder / f"agree-{name}", topics=topics)
        spread = pd.read_parquet(done.output).astype({"id": int}).sort_values("id")["topic"].tolist()
        found[name] = {
            "sample": done.sample,
            "agreement": float(np.mean([a == b for a, b in zip(alone, spread, strict=True)])),
            "macro_f1": score(spread, gold, [0] * len(gold), topics)["macro_f1"],
        }
    found["single_macro_f1"] = score(alone, gold, [0] * len(gold), topics)["macro_f1"]
    spark.stop()
    return found


def child(args: list[str]) -> Any:
    """Run one configuration in a fresh Python; its JSON result."""
    done = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(args)], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=5_000)
    parser.add_argument("--assign-sizes", default="100000,1000000")
    parser.add_argument("--fraction", type=float, default=0.2, help="sample share for the agreement figures")
    parser.add_argument("--tweets", type=int, default=100_000, help="development tweets for the agreement figures")
    parser.add_argument("--captions", action="store_true", help="end to end only, on caption-like posts")
    parser.add_argument("--one")
    options = parser.parse_args()
    if options.one:
        kind, *rest = json.loads(options.one)
        call = {"single": one_single, "spark": one_spark, "assign": one_assign, "agreement": one_agreement}[kind]
        paths = [Path(r) if isinstance(r, str) else r for r in rest]
        print(json.dumps(call(*paths)))
        return
    sizes = [int(s) for s in options.assign_sizes.split(",")]
    options.load = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="topicli-scale-"))
    if options.captions:
        captions(options, folder)
        return
    posts = posts_file(options.posts, folder)
    tweets = tweets_file(folder, options.tweets)
    agreement = child(["agreement", str(tweets), str(folder / "agreement"), options.fraction])
    rows = {"single process": child(["single", str(posts), str(folder / "single"), options.sample])}
    for executors in (1, 2):
        rows[f"spark local[{executors}]"] = child(["spark", str(posts), str(folder), options.sample, executors])
    # the real vectors of the local[2] run seed the generated ones; its bundle assigns them
    vectors = pd.read_parquet(folder / "run-2" / "vectors.parquet", columns=["vector"])["vector"]
    base = folder / "assign" / "base.npy"
    base.parent.mkdir()
    np.save(base, np.stack(vectors.dropna().to_numpy()).astype(np.float32))
    bundle = folder / "run-2" / "bundle"
    assign = {
        e: child(["assign", str(folder / "assign" / "vectors.parquet"), str(bundle), sizes, e, str(base)])
        for e in (1, 2)
    }
    write(rows, assign, agreement, options)


def end_to_end_rows(rows: dict[str, Any], n: int) -> list[str]:
    """The end-to-end table: each engine's seconds, rate, ratio to the single process, peaks and stages."""
    baseline = rows["single process"]["seconds"]
    lines = [
        "| engine | seconds | posts/s | vs single | driver MB | JVM MB | largest executor worker MB | stages (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        stages = ", ".join(f"{k.split(' ')[0]} {v:.0f}" for k, v in r.get("stages", {}).items()) or "-"
        lines.append(
            f"| {name} | {r['seconds']:.1f} | {n / r['seconds']:,.0f} | {baseline / r['seconds']:.2f}x | "
            f"{mb(r['driver'])} | {mb(r['jvm']) if r['jvm'] else '-'} | "
            f"{mb(r['worker']) if r['worker'] else '-'} | {stages} |"
        )
    return lines


def captions(options: Any, folder: Path) -> None:
    """Part 1 on caption-like posts: the single process, local[1] and local[2]; the 100M projection."""
    from million import caption_like_posts

    posts = folder / f"captions-{options.posts}.csv"
    caption_like_posts(options.posts, posts)
    rows = {"single process": child(["single", str(posts), str(folder / "single"), options.sample])}
    for executors in (1, 2):
        rows[f"spark local[{executors}]"] = child(["spark", str(posts), str(folder), options.sample, executors])
    n = options.posts
    lines = [
        f"# Scale on caption-like posts: `--engine spark` (local) against the single process, {n:,} posts",
        "",
        f"`python bench/scale.py --captions --posts {n} --sample {options.sample}` on this machine "
        f"({os.cpu_count()} cores; load average {options.load:.1f} when it started). Posts: bench/million.py's "
        "(real texts joined to instagram_dev's caption lengths, 10 % copies). Peak RSS sampled every 0.2 s.",
        "",
        *end_to_end_rows(rows, n),
    ]
    embed_rate = n / rows["spark local[1]"]["stages"]["embedding posts in Spark tasks"]
    lines += [
        "",
        "## Projection: 100M captions on N Standard_DS3_v2 nodes (4 vCPU each)",
        "",
        f"Embedding per core, measured here with local[1] on these captions: {embed_rate:,.1f} posts/s. The "
        "assignment stage (bench/results/scale.md, measured at 1M) is a small share beside it, left out.",
        "",
        "| nodes | cores | hours for 100M captions (embedding) |",
        "|---|---|---|",
        *[
            f"| {nodes} | {nodes * DS3_V2_CORES} | {100e6 / (embed_rate * nodes * DS3_V2_CORES) / 3600:,.1f} |"
            for nodes in (1, 4, 16, 64)
        ],
        "",
        *NOTES,
    ]
    (RESULTS / "scale_captions.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def write(rows: dict[str, Any], assign: dict[int, Any], agreement: dict[str, Any], options: Any) -> None:
    n, sample, fraction = options.posts, options.sample, options.fraction
    sizes = [int(s) for s in options.assign_sizes.split(",")]
    lines = [
        "# Scale: `--engine spark` (local) against the single-process run",
        "",
        f"`python bench/scale.py --posts {n} --sample {sample} --assign-sizes {options.assign_sizes} "
        f"--fraction {fraction} --tweets {options.tweets}` on this machine ({os.cpu_count()} cores; load average "
        f"{options.load:.1f} when it started). Peak RSS sampled every 0.2 s.",
        "",
        f"## Agreement: development tweets (TweetTopic train_2020, {agreement['posts']:,} posts, the 6 gold topics)",
        "",
        "| run | sample | same topic as the single-process run | macro-F1 against gold |",
        "|---|---|---|---|",
        f"| single process | all | - | {agreement['single_macro_f1']:.3f} |",
    ]
    for name, label in (("all", "every post"), ("part", f"{fraction:.0%} of the posts")):
        r = agreement[name]
        lines.append(
            f"| spark local[2], sample = {label} | {r['sample']:,} | {r['agreement']:.2%} | {r['macro_f1']:.3f} |"
        )
    lines += [
        "",
        f"## End to end: {n:,} real posts (bench/run.py real_posts; embed, fit on {sample:,}, assign every post)",
        "",
        *end_to_end_rows(rows, n),
    ]
    lines += [
        "",
        f"## Assignment stage at scale (bundle of the local[2] run: {sample:,} sample posts)",
        "",
        "Vectors: each a real post's vector plus N(0, 0.02) noise, unit length, made in Spark tasks.",
        "",
        "| posts | executors | seconds | posts/s | driver MB | JVM MB | largest executor worker MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for executors, found in assign.items():
        for size in sizes:
            r = found[str(size)]
            lines.append(
                f"| {size:,} | {executors} | {r['seconds']:.1f} | {size / r['seconds']:,.0f} | {mb(r['driver'])} | "
                f"{mb(r['jvm'])} | {mb(r['worker'])} |"
            )
    embed_rate = n / rows["spark local[1]"]["stages"]["embedding posts in Spark tasks"]
    assign_rate = sizes[-1] / assign[1][str(sizes[-1])]["seconds"]
    per_core = 1 / (1 / embed_rate + 1 / assign_rate)
    lines += ["", "## Projection: 100M posts on N Standard_DS3_v2 nodes (4 vCPU each)", ""]
    lines.append(
        f"Per core, measured here with local[1]: embedding {embed_rate:,.0f} posts/s, assignment "
        f"{assign_rate:,.0f} posts/s, so {per_core:,.0f} posts/s for both."
    )
    lines += ["", "| nodes | cores | hours for 100M (embed + assign) |", "|---|---|---|"]
    for nodes in (1, 4, 16, 64):
        hours = 100e6 / (per_core * nodes * DS3_V2_CORES) / 3600
        lines.append(f"| {nodes} | {nodes * DS3_V2_CORES} | {hours:,.1f} |")
    hours = 1e6 / embed_rate / 3600
    lines += [
        "",
        *NOTES,
        "",
        f"Not measured: end to end at 1M posts (at the local[1] embedding rate above, {hours:.1f} h of embedding",
        "per configuration on these 2 cores; the assignment stage is measured at 1M above), and Azure ML",
        "serverless Spark itself (no Azure here).",
    ]
    (RESULTS / "scale.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
