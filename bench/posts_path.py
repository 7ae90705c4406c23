"""The posts' path through the code: which modules `topicli run` passes through and how often the CLI
takes control back between library steps.

    python bench/posts_path.py [POSTS]

Runs `topicli run POSTS` (default examples/posts.csv) in this process under `sys.setprofile` and
records every call of a topicli function. It counts:

- the topicli modules called (the posts' path touches each of them at least once);
- the library calls the CLI makes: each call from a `topicli.cli` frame into a topicli module outside
  `topicli.cli` hands control to the library and gets it back when it returns (calls made while
  rendering, which only read what a step returned, and dunder methods are left out). Calls into the leaves
  that only read settings (`topicli.config`) are counted apart, as they carry no posts.

The table goes to stdout and to bench/results/posts_path.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "posts_path.md"
RENDERING = "topicli.cli.render"


def _module(frame: FrameType) -> str:
    return frame.f_globals.get("__name__", "")


def trace_run(posts: Path) -> tuple[Counter[str], list[str], int]:
    """(calls per topicli module, the library functions the CLI called in order, calls into config)."""
    from typer.testing import CliRunner

    from topicli.cli.app import app

    modules: Counter[str] = Counter()
    handed: list[str] = []
    settings_calls = 0

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        nonlocal settings_calls
        if event != "call":
            return
        module = _module(frame)
        if not module.startswith("topicli"):
            return
        modules[module] += 1
        caller = frame.f_back
        if caller is None or not _module(caller).startswith("topicli.cli") or module.startswith("topicli.cli"):
            return
        if _module(caller) == RENDERING or frame.f_code.co_name.startswith("__"):
            return  # rendering reads what a step returned; a dunder is a value's own method
        if module == "topicli.config":
            settings_calls += 1
        else:
            handed.append(f"{module}.{frame.f_code.co_name}")

    with tempfile.TemporaryDirectory() as out:
        os.environ["TOPICLI_OUTPUT_DIR"] = out
        sys.setprofile(profile)
        try:
            result = CliRunner().invoke(app, ["run", str(posts)])
        finally:
            sys.setprofile(None)
    if result.exit_code != 0:
        raise SystemExit(f"topicli run failed: {result.output}")
    return modules, handed, settings_calls


def main() -> None:
    posts = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "examples" / "posts.csv"
    modules, handed, settings_calls = trace_run(posts)
    library = sorted(m for m in modules if not m.startswith("topicli.cli"))
    lines = [
        "# The posts' path through `topicli run`",
        "",
        f"`python bench/posts_path.py` on {posts.name}: every topicli call traced with `sys.setprofile`.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| topicli modules called | {len(modules)} ({len(library)} outside the CLI) |",
        f"| library calls made by the CLI (control back to the CLI after each) | {len(handed)} |",
        f"| calls into topicli.config by the CLI (settings, no posts) | {settings_calls} |",
        "",
        "Library calls the CLI made, in order:",
        "",
        *[f"{i}. `{name}`" for i, name in enumerate(handed, 1)],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
