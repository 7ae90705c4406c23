"""Peak memory of `topicli run` on examples/posts.csv plus one very long post, with the multilingual encoder.

Each run is a fresh process (`python -m topicli run`) with a fresh embedding cache, so the long
post is encoded every time; the checkout it imports is the one named (`--before` for another
checkout, e.g. a worktree of the commit before the cut; this checkout is "after"). The peak
RSS is GNU time's "Maximum resident set size"; a watchdog kills a run whose process tree
passes `--limit-gb` and reports it as exceeding that. Writes bench/results/long_posts.md.

    git worktree add --detach /tmp/h20base <commit>
    python bench/long_posts.py --before /tmp/h20base
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "posts.csv"
RESULTS = ROOT / "bench" / "results" / "long_posts.md"
GIB = 1024**3


def posts_with_a_long_one(folder: Path, chars: int) -> Path:
    """examples/posts.csv, plus (when `chars`) one post of that many characters: the examples' captions, repeated."""
    frame = pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)
    if chars:
        captions = " ".join(frame["caption"])
        long_post = (captions * (chars // len(captions) + 1))[:chars]
        frame = pd.concat([frame, pd.DataFrame([{"id": "long", "caption": long_post}])], ignore_index=True)
    path = folder / f"posts-{chars}.csv"
    frame.to_csv(path, index=False)
    return path


def peak_run(checkout: Path, posts: Path, folder: Path, limit: float) -> tuple[str, float, str]:
    """(peak RSS in GiB as text, or "> limit" when the watchdog stopped it; seconds; how the run ended)."""
    cache = Path(tempfile.mkdtemp(dir=folder, prefix="cache-"))
    (folder / "topicli.toml").write_text(f'[encoder]\nname = "multilingual"\ncache_dir = "{cache}"\n')
    environment = {**os.environ, "PYTHONPATH": str(checkout)}
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "topicli", "run", str(posts), "-o", "out/posts.csv"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=folder, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watched, killed = psutil.Process(process.pid), False
    while process.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            rss = sum(p.memory_info().rss for p in tree if p.is_running())
        except psutil.Error:
            rss = 0
        if rss > limit * GIB:
            for p in reversed(watched.children(recursive=True)):
                p.kill()
            killed = True
            break
        time.sleep(0.05)
    _, err = process.communicate()
    seconds = time.perf_counter() - started
    if killed:
        return f"> {limit:g} (stopped)", seconds, "stopped by the watchdog"
    text = err.decode(errors="replace")
    peak_kb = next(int(line.split(":")[1]) for line in text.splitlines() if "Maximum resident set size" in line)
    outcome = "exit 0" if process.returncode == 0 else f"exit {process.returncode}: {text[-2000:]}"
    return f"{peak_kb / 1024**2:.2f}", seconds, outcome


def commit(checkout: Path) -> str:
    """The commit a checkout is at, with "+ changes" when its working tree differs from it."""
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(checkout), "diff", "--quiet", "HEAD"], capture_output=True).returncode
    return head.stdout.strip() + (" + uncommitted changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout of topicli before the cut (runs it too)")
    parser.add_argument("--limit-gb", type=float, default=8.0, help="stop a run whose RSS passes this")
    args = parser.parse_args()
    checkouts = ([("before", args.before)] if args.before else []) + [("after", ROOT)]
    lines = [
        "# Long posts: peak memory of `topicli run`",
        "",
        "examples/posts.csv (328 posts) plus one post of the given length (the examples' captions repeated),",
        '`[encoder] name = "multilingual"`, a fresh embedding cache per run, 2 cores. Peak RSS by',
        "`/usr/bin/time -v`; a run whose process tree passes the limit is stopped. Command:",
        "`python bench/long_posts.py --before /tmp/h20base` (a worktree of the commit before the cut).",
        "",
        *(f"{name}: commit {commit(checkout)}.  " for name, checkout in checkouts),
        "After: `[input] max_chars` = 5000 (the default) cuts the long post before encoding.",
        "Seconds are wall time on two cores shared with other work: only the memory is the measurement.",
        "",
        "| code | long post (characters) | peak RSS GiB | seconds |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="long-posts-") as scratch:
        folder = Path(scratch)
        for name, checkout in checkouts:
            for chars in (0, 1_000_000, 10_000_000):
                peak, seconds, outcome = peak_run(checkout, posts_with_a_long_one(folder, chars), folder, args.limit_gb)
                print(f"{name} {chars:,}: {peak} GiB, {seconds:.0f} s; {outcome}", flush=True)
                lines.append(f"| {name} | {chars:,} | {peak} | {seconds:.0f} |")
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
