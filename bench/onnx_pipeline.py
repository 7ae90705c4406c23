"""The exported ONNX pipeline in onnxruntime against the bundle's own scoring, on the same posts.

The bundle comes from `topicli run examples/posts.csv` with all-MiniLM-L6-v2; it is exported
with `topicli export onnx`. Both score the same new posts (the TweetTopic test files, which
the bundle never saw) in 64-post batches, as requests would come, alternating batch by batch
so both see the same load from whatever else runs on the machine. Baseline: the bundle
(`BundleModel.predict`: sentence-transformers in torch, then numpy and scikit-learn). Also
reported: how often the two agree, and the memory each adds to the process once loaded.
Writes bench/results/onnx_pipeline.md.

    python bench/onnx_pipeline.py [--posts 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import psutil

from topicli.bundle import BundleModel
from topicli.onnx_export import OnnxPipeline, export_onnx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "eval" / "tweet_topic_single"
BATCH = 64


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000, help="new posts to score")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent: the shared data folder sits beside the clone")
    tmp = ROOT / "bench" / "results" / "tmp" / "onnx"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TOPICLI_ENCODER_NAME": "all-MiniLM-L6-v2"}
    examples = ROOT / "examples" / "posts.csv"
    subprocess.run(
        [sys.executable, "-m", "topicli", "run", str(examples)], cwd=tmp, env=env, check=True, capture_output=True
    )
    bundle = tmp / "topicli-out" / "posts" / "bundle"
    texts = []
    for name in ("test_2021.single.json", "test_random.single.json"):
        texts += [json.loads(line)["text"] for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line]
    texts = texts[: args.posts]
    batches = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]

    before = rss_mb()
    model = BundleModel.load(bundle)
    bundle_mb = rss_mb() - before
    exported = export_onnx(bundle, tmp / "onnx")
    before = rss_mb()
    pipeline = OnnxPipeline(exported)
    onnx_mb = rss_mb() - before
    model.predict(batches[0])  # warm-up: first calls pay for lazy initialisation
    pipeline.predict(batches[0])

    seconds = {"bundle": 0.0, "onnx": 0.0}
    topics = {"bundle": [], "onnx": []}
    for batch in batches:
        for name, predict in (("bundle", model.predict), ("onnx", pipeline.predict)):
            started = time.perf_counter()
            topics[name].append(predict(batch).topics)
            seconds[name] += time.perf_counter() - started
    same = float(np.mean(np.concatenate(topics["bundle"]) == np.concatenate(topics["onnx"])))
    rate = {name: len(texts) / s for name, s in seconds.items()}
    lines = [
        "# Exported ONNX pipeline (onnxruntime) vs the bundle's own scoring",
        "",
        f"Bundle: `topicli run examples/posts.csv`, all-MiniLM-L6-v2, scorer "
        f"{model.manifest['scoring']['scorer']}. Posts: the first {len(texts):,} of the TweetTopic test files, "
        f"in {BATCH}-post batches, alternating. onnxruntime {version('onnxruntime')}, torch {version('torch')}; "
        f"{os.cpu_count()} cores. Command: `python bench/onnx_pipeline.py --posts {args.posts}`.",
        "",
        "| figure | ONNX (onnxruntime) | bundle (baseline) | ratio |",
        "|---|---|---|---|",
        f"| posts/s | {rate['onnx']:.0f} | {rate['bundle']:.0f} | {rate['onnx'] / rate['bundle']:.2f} |",
        f"| memory added by loading, imports included (MB) | {onnx_mb:.0f} | {bundle_mb:.0f} "
        f"| {onnx_mb / max(bundle_mb, 1):.2f} |",
        f"| posts given the same topic | {same:.4f} | | |",
    ]
    out = ROOT / "bench" / "results" / "onnx_pipeline.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
