"""What the per-run head costs at scale: one `topicli run`-equivalent pipeline (prepare, cluster, label) on N
real posts, each stage timed through the pipeline's own progress hook, so the adaptation stage and the rest
of the run are measured in the same call on the same machine.

    python bench/adaptation.py [--posts 100000]

writes bench/results/adaptation.md. The posts are bench/run.py's `real_posts` (real short texts, duplicates
kept); the encoder is all-MiniLM-L6-v2 with the embedding cache, so a second call times the method, not the
encoder (the first call's table says which it was).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import DATA, real_posts

from topicli.config import load_settings
from topicli.method.embedding import DEFAULT_ENCODER
from topicli.method.pipeline import Pipeline, load_posts

ROOT = Path(__file__).resolve().parents[1]


class StageClock:
    """A progress factory that records each stage's wall seconds, in order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, description: str, total: int | None = None) -> Iterator:
        started = time.perf_counter()
        yield lambda n=1: None
        self.seconds[description] = self.seconds.get(description, 0.0) + time.perf_counter() - started
        print(f"{description}: {self.seconds[description]:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=100_000, help="posts in the run")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} is absent: this benchmark reads the shared data beside the clone")
    path = real_posts(args.posts)
    base = load_settings(None, environ={})
    cache = str(ROOT / ".topicli-cache")
    settings = replace(base, encoder=replace(base.encoder, name=DEFAULT_ENCODER, cache_dir=cache))
    settings = replace(settings, input=replace(settings.input, text_column="text"))
    clock = StageClock()
    pipeline = Pipeline(settings.method, clock)
    started = time.perf_counter()
    prepared = pipeline.prepare(load_posts(path, settings))
    result = pipeline.label(prepared, pipeline.cluster(prepared))
    total = time.perf_counter() - started
    adapting = clock.seconds.get("adapting to the posts", 0.0)
    rest = total - adapting
    summary = prepared.adapter.summary() if prepared.adapter else {}
    lines = [
        "# The per-run head's cost",
        "",
        f"`python bench/adaptation.py --posts {args.posts}`: one pipeline run (prepare, cluster, label) on",
        f"{args.posts:,} real posts ({len(prepared.rows):,} distinct texts), {DEFAULT_ENCODER}, default settings;",
        "the baseline is the same run's other stages, timed in the same call.",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {stage} | {seconds:.1f} |" for stage, seconds in clock.seconds.items()],
        f"| **whole run** | {total:.1f} |",
        "",
        f"Adaptation: {adapting:.1f} s, **{adapting / rest:+.1%}** of the run without it ({rest:.1f} s). "
        f"Rounds kept {summary.get('rounds')}, pseudo-labels {summary.get('pseudo_labels')}, held-out agreement "
        f"{summary.get('heldout_agreement')}, weight {summary.get('weight', 0):.3f}; coverage {result.coverage:.0%}.",
        f"Peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB.",
    ]
    out = ROOT / "bench" / "results" / "adaptation.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
