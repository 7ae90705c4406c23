"""The exported ONNX pipeline in onnxruntime against the bundle's own scoring, on the same posts.

The bundle comes from `topicli run examples/posts.csv` with all-MiniLM-L6-v2; it is exported
with `topicli export onnx`. Three paths score the same new posts (the TweetTopic test files,
which the bundle never saw) in 64-post batches, as requests would come, alternating batch by
batch so all see the same load from whatever else runs on the machine:

- the exported graphs in onnxruntime (`OnnxPipeline`);
- the bundle (`BundleModel.predict`), whose encoder runs in ONNX Runtime as topicli's default
  does, then numpy and scikit-learn;
- baseline: the same run written with `--include-encoder`, so the bundle serves the
  sentence-transformers copy it carries in torch.

Also reported: how often they agree, and the memory each adds to the process once loaded.
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

from topicli.serving.bundle import BundleModel
from topicli.serving.onnx import OnnxPipeline, export_onnx

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
    bundles = {}
    for name, options in (("bundle", []), ("torch", ["--include-encoder"])):
        (tmp / name).mkdir(exist_ok=True)
        command = [sys.executable, "-m", "topicli", "run", str(examples), *options]
        subprocess.run(command, cwd=tmp / name, env=env, check=True, capture_output=True)
        bundles[name] = tmp / name / "topicli-out" / "posts" / "bundle"
    texts = []
    for name in ("test_2021.single.json", "test_random.single.json"):
        texts += [json.loads(line)["text"] for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line]
    texts = texts[: args.posts]
    batches = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]

    exported = export_onnx(bundles["bundle"], tmp / "onnx")
    loaders = {
        "onnx": lambda: OnnxPipeline(exported),
        "bundle": lambda: BundleModel.load(bundles["bundle"]),
        "torch": lambda: BundleModel.load(bundles["torch"]),
    }
    models, added_mb = {}, {}
    for name, load in loaders.items():  # the torch bundle last: its imports are not charged to the others
        before = rss_mb()
        models[name] = load()
        added_mb[name] = rss_mb() - before
        models[name].predict(batches[0])  # warm-up: first calls pay for lazy initialisation

    seconds = dict.fromkeys(models, 0.0)
    topics: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for batch in batches:
        for name, model in models.items():
            started = time.perf_counter()
            topics[name].append(model.predict(batch).topics)
            seconds[name] += time.perf_counter() - started
    same = {
        name: float(np.mean(np.concatenate(found) == np.concatenate(topics["torch"]))) for name, found in topics.items()
    }
    rate = {name: len(texts) / s for name, s in seconds.items()}
    lines = [
        "# Exported ONNX pipeline (onnxruntime) vs the bundle's own scoring",
        "",
        f"Bundle: `topicli run examples/posts.csv`, all-MiniLM-L6-v2, scorer "
        f"{models['bundle'].manifest['scoring']['scorer']}. Posts: the first {len(texts):,} of the TweetTopic test "
        f"files, in {BATCH}-post batches, alternating. onnxruntime {version('onnxruntime')}, torch "
        f"{version('torch')}; {os.cpu_count()} cores. Command: `python bench/onnx_pipeline.py --posts {args.posts}`.",
        "",
        "| path | posts/s | x baseline | memory added by loading, imports included (MB) | same topic as baseline |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "onnx": "exported graphs in onnxruntime (`topicli export onnx`)",
        "bundle": "bundle, encoder in ONNX Runtime (topicli's default)",
        "torch": "bundle carrying its encoder, in torch (`--include-encoder`): baseline",
    }
    for name, label in labels.items():
        ratio = rate[name] / rate["torch"]
        lines.append(f"| {label} | {rate[name]:.0f} | {ratio:.2f} | {added_mb[name]:.0f} | {same[name]:.4f} |")
    out = ROOT / "bench" / "results" / "onnx_pipeline.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
