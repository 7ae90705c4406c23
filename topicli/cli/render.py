"""Rich tables for what the commands produce: every table the CLI prints is built here."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from topicli.method.pipeline import LabelledPosts
    from topicli.method.runs import ClusterRun


def _shorten(text: str, width: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def classifier_metrics(console: Console, manifest: dict[str, Any], folder: Path) -> None:
    m, training = manifest["metrics"], manifest["training"]
    table = Table(title="cls_model held-out figures")
    table.add_column("figure")
    table.add_column("cls_model", justify="right")
    table.add_column("cosine zero-shot", justify="right")
    table.add_column("texts", justify="right")
    table.add_row("pair ROC-AUC (held-out texts)", f"{m['pair_roc_auc']:.3f}", "", str(m["held_out_texts"]))
    table.add_row(
        "top-1, labels seen in training",
        f"{m['top1_seen_labels']:.3f}",
        f"{m['top1_seen_labels_cosine']:.3f}",
        str(m["held_out_texts"]),
    )
    table.add_row(
        "top-1, labels held out of training",
        f"{m['top1_unseen_labels']:.3f}",
        f"{m['top1_unseen_labels_cosine']:.3f}",
        str(m["unseen_label_texts"]),
    )
    console.print(table)
    console.print(
        f"trained on {training['texts']} texts, {training['labels']} labels, {training['pairs']} pairs; "
        f"{len(training['near_duplicates'])} near-duplicate label pairs kept apart from negatives; saved to {folder}"
    )


def candidates(console: Console, run: ClusterRun, folder: Path) -> None:
    """The scored candidates, best first; the rest summed up in one line."""
    dbscan = run.chosen.algorithm == "dbscan"
    table = Table(title=f"candidate clusterings ({run.chosen.algorithm}), best first")
    first = "eps" if dbscan else "min_cluster_size"
    for column in (first, "min_samples", "clusters", "coverage", "agreement", "topics", "score"):
        table.add_column(column, justify="right")
    scored = sorted((c for c in run.candidates if c.scores), key=lambda c: -c.score)
    for c in scored:
        table.add_row(
            f"{c.eps:g}" if dbscan else str(c.min_cluster_size),
            str(c.min_samples),
            str(c.n_clusters),
            f"{c.coverage:.2f}",
            f"{c.scores['agreement']:.2f}",
            str(c.scores["topics_used"]),
            f"{c.score:.3f}",
            style="bold green" if c == run.chosen else None,
        )
    console.print(table)
    others = [c.n_clusters for c in run.candidates if not c.scores]
    if others:
        console.print(
            f"{len(others)} other candidates had {min(others)} to {max(others)} clusters, outside the range",
            style="dim",
        )
    console.print(run.reason)
    console.print(f"clustering saved to {folder}")


def topic_table(console: Console, result: LabelledPosts) -> None:
    table = Table(title="topics")
    for column in ("topic", "size", "from noise", "confidence", "runner-up"):
        table.add_column(column, justify="right" if column in ("size", "from noise", "confidence") else "left")
    table.add_column("example", no_wrap=True, overflow="ellipsis", max_width=48)
    for row in result.topic_table.itertuples():
        table.add_row(
            row.topic,
            str(row.size),
            str(row.from_noise),
            f"{row.confidence:.2f}",
            row.runner_up,
            _shorten(row.example_1),
        )
    console.print(table)


def figures(console: Console, figures: dict[str, float], posts: Path) -> None:
    table = Table(title=f"evaluation of {posts}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)


def values(console: Console, title: str, values: dict[str, Any]) -> None:
    """Names and values, such as Terraform's outputs; the title is plain text, not markup."""
    table = Table(title=escape(title), title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("value")
    for name, value in values.items():
        table.add_row(name, escape(str(value)))
    console.print(table)


def files(console: Console, folder: Path) -> None:
    """Every file under `folder` with its size, such as an export."""
    table = Table(title=escape(str(folder)), title_justify="left")
    table.add_column("file")
    table.add_column("MB", justify="right")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        table.add_row(escape(str(path.relative_to(folder))), f"{path.stat().st_size / 1e6:.1f}")
    console.print(table)


def steps(console: Console, title: str, steps: Iterable[tuple[str, str]]) -> None:
    """What a deployment would do, step by step."""
    table = Table(title=escape(title), title_justify="left")
    table.add_column("step", style="bold")
    table.add_column("what")
    for step, what in steps:
        table.add_row(escape(step), escape(what))
    console.print(table)
