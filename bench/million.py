"""`topicli run` end to end on up to a million caption-like posts, from a cold embedding cache, in one process.

The posts (issue 30): real texts of ../shared/data (`bench/run.py`'s `real_posts` pool: headlines, requests,
newsgroup subjects, news descriptions, tweets, SIB-200 sentences) and the 400 instagram_dev captions, made into
captions: each post joins real texts, drawn at random, until it reaches a length drawn from instagram_dev's
caption lengths (in characters), so that the feed's length distribution follows real captions' (the table gives
both); then 10 % of the posts are replaced by copies of other posts, as real feeds repeat. Seeded.

The run is `topicli.runs.run_posts` (what `topicli run` calls) in a child process with an empty cache, default
settings; its progress factory records each stage's seconds (reading the posts file, embedding, neighbours,
scores, adaptation, search, labelling, keywords, writing), and the parent samples the child's RSS every
0.2 s for the peak.

    python bench/million.py [--posts 1000000]

writes bench/results/million-<posts>.md (the full size: bench/results/million.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
INSTAGRAM = ROOT.parent / "shared" / "data" / "eval" / "instagram_dev" / "captions.jsonl"
RESULTS = ROOT / "bench" / "results"
REPEATS = 0.10
SEED = 0


def captions() -> list[str]:
    """instagram_dev's captions (read by lines: a caption may hold U+2028, which `str.splitlines` would split at)."""
    with INSTAGRAM.open(encoding="utf-8") as lines:
        return [json.loads(line)["caption"] for line in lines if line.strip()]


def caption_lengths() -> np.ndarray:
    return np.array([len(caption) for caption in captions()])


def caption_like_posts(n: int, path: Path) -> pd.DataFrame:
    """`n` posts of joined real texts with instagram_dev's caption lengths, 10 % of them copies; written to `path`."""
    sys.path.insert(0, str(ROOT / "bench"))
    from run import real_posts

    pool = pd.read_csv(real_posts(60_000), dtype=str, keep_default_na=False)["text"].tolist()
    pool += captions()
    rng = np.random.default_rng(SEED)
    targets = rng.choice(caption_lengths(), n)
    picks = iter(rng.integers(0, len(pool), n * 8))  # numpy ints: 64 MB at 1M posts, not a list of 8M objects
    posts = []
    for target in targets:
        parts, size = [], 0
        while size < target:
            text = pool[next(picks, int(rng.integers(0, len(pool))))]
            parts.append(text)
            size += len(text) + 1
        posts.append(" ".join(parts)[: max(int(target), 1)])
    copies = rng.choice(n, int(REPEATS * n), replace=False)
    originals = rng.integers(0, n, len(copies))
    for copy, original in zip(copies, originals, strict=True):
        posts[copy] = posts[original]
    frame = pd.DataFrame({"id": np.arange(n), "caption": posts})
    frame.to_csv(path, index=False)
    return frame


def child(posts: str, out: str, cache: str, report: str) -> None:
    """In the child process: `run_posts` with default settings, recording each stage's seconds."""
    from dataclasses import replace

    from topicli.config import load_settings
    from topicli.runs import run_posts

    stages: list[tuple[str, float]] = []

    @contextmanager
    def timed(description: str, total: int | None = None) -> Iterator:
        started = time.perf_counter()
        yield lambda n=1: None
        stages.append((description, time.perf_counter() - started))

    settings = load_settings(None, environ={})
    settings = replace(settings, encoder=replace(settings.encoder, cache_dir=cache))
    settings = replace(settings, output=replace(settings.output, dir=out))
    started = time.perf_counter()
    run_posts(settings, Path(posts), progress=timed)
    total = time.perf_counter() - started
    Path(report).write_text(json.dumps({"stages": stages, "seconds": total}), encoding="utf-8")


def peak_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    import psutil

    process = psutil.Process(pid)
    while not stop.is_set():
        try:
            rss = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))
        except psutil.Error:
            break
        peak[0] = max(peak[0], rss)
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=RESULTS) as scratch:
        folder = Path(scratch)
        posts = folder / f"captions-{args.posts}.csv"
        made = time.perf_counter()
        frame = caption_like_posts(args.posts, posts)
        made = time.perf_counter() - made
        report = folder / "report.json"
        command = [
            sys.executable,
            __file__,
            "--child",
            str(posts),
            str(folder / "out"),
            str(folder / "cache"),
            str(report),
        ]
        started = time.perf_counter()
        process = subprocess.Popen(command)
        stop, peak = threading.Event(), [0]
        watcher = threading.Thread(target=peak_rss, args=(process.pid, stop, peak), daemon=True)
        watcher.start()
        if process.wait():
            raise SystemExit(f"the run failed (exit {process.returncode})")
        wall = time.perf_counter() - started
        stop.set()
        result = json.loads(report.read_text(encoding="utf-8"))
        lengths = frame["caption"].str.len().to_numpy()
        write(args.posts, wall, peak[0], result, lengths, made, frame["caption"].nunique())


def write(n: int, wall: float, peak: int, result: dict, lengths: np.ndarray, made: float, distinct: int) -> None:
    from quality import row

    quantiles = (10, 50, 90, 99)
    real = caption_lengths()
    stages = result["stages"]
    lines = [
        f"# `topicli run` on {n:,} caption-like posts, cold cache, one process",
        "",
        f"Produced by `python bench/million.py --posts {n}` on this machine (2 cores, AVX2, 24 GiB), default "
        f"settings, an empty embedding cache. Posts: real texts joined to instagram_dev's caption lengths, 10 % "
        f"copies ({distinct:,} distinct texts), made in {made:.0f} s (not counted).",
        "",
        row("length (characters)", *[f"p{q}" for q in quantiles], "mean"),
        row(*["---"] * (len(quantiles) + 2)),
        row("these posts", *[f"{np.percentile(lengths, q):.0f}" for q in quantiles], f"{lengths.mean():.0f}"),
        row("instagram_dev captions", *[f"{np.percentile(real, q):.0f}" for q in quantiles], f"{real.mean():.0f}"),
        "",
        row("stage", "seconds", "share"),
        row("---", "---", "---"),
        *[row(name, f"{seconds:.1f}", f"{seconds / result['seconds']:.0%}") for name, seconds in stages],
        row(
            "reading, writing and the rest",
            f"{result['seconds'] - sum(s for _, s in stages):.1f}",
            f"{1 - sum(s for _, s in stages) / result['seconds']:.0%}",
        ),
        "",
        f"Wall time {wall:.0f} s ({wall / 60:.1f} min, the child process from start to exit), "
        f"{n / wall:.0f} posts/s, peak RSS {peak / 1024**3:.2f} GiB (the process tree, sampled every 0.2 s).",
        "",
    ]
    name = "million.md" if n == 1_000_000 else f"million-{n}.md"
    (RESULTS / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:6])
    else:
        main()
