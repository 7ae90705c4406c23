"""Rich tables for what the commands produce: every table the CLI prints is built here."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

    from topicli.method.records import ClusterRun, FeedCounts


def _shorten(text: str, width: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def classifier_metrics(console: Console, card: dict[str, Any], folder: Path) -> None:
    m, training = card["metrics"], card["training"]
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


def cross_encoder_metrics(console: Console, card: dict[str, Any], folder: Path) -> None:
    m, training = card["metrics"], card["training"]
    table = Table(title="cross-encoder held-out figures (topics described)")
    table.add_column("figure")
    table.add_column("cross-encoder", justify="right")
    table.add_column("cosine zero-shot", justify="right")
    table.add_column("texts", justify="right")
    for figure, key, count in (
        ("top-1, labels seen in training", "top1_seen_labels_described", "held_out_texts"),
        ("top-1, labels held out of training", "top1_unseen_labels_described", "unseen_label_texts"),
    ):
        table.add_row(figure, f"{m[key]:.3f}", f"{m[key + '_cosine']:.3f}", str(m[count]))
    console.print(table)
    console.print(
        f"trained on {training['texts']} texts, {training['labels']} labels, {training['pairs']} pairs in "
        f"{training['seconds']:.0f} s; weights {card['weights_bytes'] / 1e6:.1f} MB (fp16); saved to {folder}"
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


WIDE = 120  # from this many columns, tables show the columns an 80-column terminal has no room for


def topic_table(
    console: Console, table: pd.DataFrame, over_time_counts: pd.DataFrame | None = None, min_posts: int = 1
) -> None:
    """The topics with at least `min_posts` posts (the rest folded into one line), then the unmatched clusters
    (topics the list may be missing), then trends over time.

    At 80 columns: topic, posts, confidence and keywords, wrapped; from WIDE columns also the posts
    from noise, the runner-up and an example.
    """
    kind = table["kind"] if "kind" in table.columns else None
    topics = table if kind is None else table[kind == "topic"]
    small = topics[topics["size"] < min_posts]
    topics = topics[topics["size"] >= min_posts]
    wide = console.width >= WIDE
    shown = Table(title="topics", expand=wide)
    shown.add_column("topic", ratio=2, min_width=26 if wide else 14)
    shown.add_column("posts", justify="right")
    if wide:
        shown.add_column("from noise", justify="right")
    shown.add_column("conf.", justify="right")
    if wide:
        shown.add_column("runner-up", ratio=2)
    shown.add_column("keywords", ratio=3, min_width=16)
    if wide:
        shown.add_column("example", ratio=4, no_wrap=True, overflow="ellipsis")
    for row in topics.itertuples():
        cells = [escape(str(row.topic)), str(row.size)]
        cells += [str(row.from_noise)] if wide else []
        cells += [f"{row.confidence:.2f}"]
        cells += [escape(str(row.runner_up))] if wide else []
        cells += [escape(_keywords(row))]
        cells += [escape(_shorten(row.example_1, 200))] if wide else []
        shown.add_row(*cells)
    console.print(shown)
    if len(small):
        posts = int(small["size"].sum())
        console.print(
            f"{len(small)} more topics with fewer than {min_posts} posts each ({posts:,} posts; every row is in the "
            "topic table file)",
            style="dim",
        )
    if kind is not None and (kind == "unmatched").any():
        unmatched(console, table[kind == "unmatched"])
    if over_time_counts is not None:
        from topicli.method.timeline import trends

        over_time(console, trends(over_time_counts), over_time_counts.attrs.get("period", "period"))


def feed(console: Console, counts: FeedCounts, min_confidence: float) -> None:
    """What the run shows and what it holds back, in posts: at any width."""
    share = f"{counts.coverage:.0%}"
    parts = [f"shown with a topic: {counts.shown:,} of {counts.posts:,} posts ({share}, the coverage)"]
    if counts.unsure:
        parts.append(
            f"unsure: {counts.unsure:,} (confidence below {min_confidence:g}; their topic is in topic_runner_up)"
        )
    if counts.unmatched:
        parts.append(f"no topic fits: {counts.unmatched:,} (in clusters no topic of the list fits)")
    if counts.noise:
        parts.append(f"noise: {counts.noise:,} in no cluster ({counts.noise / max(counts.posts, 1):.0%})")
    console.print("; ".join(parts))


def _keywords(row: Any) -> str:
    words = getattr(row, "keywords", "")
    return "" if not isinstance(words, str) else words


def unmatched(console: Console, rows: pd.DataFrame) -> None:
    """Clusters no topic of the list fits: their keywords as a suggested name, size, nearest topic, an example."""
    wide = console.width >= WIDE
    table = Table(title="topics your list may be missing (clusters no topic fits)", expand=wide)
    table.add_column("cluster", justify="right")
    table.add_column("keywords (suggested name) and an example", ratio=3, min_width=24)
    table.add_column("posts", justify="right")
    table.add_column("closest topic", ratio=1, min_width=12)
    table.add_column("conf.", justify="right")
    width = 150 if wide else 60
    for row in rows.itertuples():
        example = escape(_shorten(row.example_1, width))
        table.add_row(
            str(row.clusters),
            f"[bold]{escape(_keywords(row))}[/bold]\n[dim]{example}[/dim]",
            str(row.size),
            escape(str(row.runner_up)),
            f"{row.confidence:.2f}",
        )
    console.print(table)


def over_time(console: Console, trends: pd.DataFrame, period: str, n: int = 5) -> None:
    """The topics whose share of the posts changed beyond chance, with the test, the change's 95% interval and
    the Holm-adjusted p-value; a line saying so when none did."""
    from topicli.method.timeline import TREND_LEVEL, TREND_MIN_POSTS, TREND_TEST

    if trends.empty:
        console.print(f"topics over time: too few dated posts per topic to test (by {period})")
        return
    test = f"{TREND_TEST}, p < {TREND_LEVEL:g} over {len(trends)} topics with {TREND_MIN_POSTS}+ dated posts"
    shown = trends[trends["trend"] != ""]
    if shown.empty:
        console.print(f"topics over time (by {period}): no topic grows or shrinks beyond chance ({test})")
        return
    table = Table(title=f"topics over time: share of the posts with a topic, by half of the {period}s")
    table.add_column("", style="bold")
    table.add_column("topic", ratio=1, min_width=14)
    table.add_column("posts", justify="right")
    table.add_column("1st ½", justify="right")
    table.add_column("2nd ½", justify="right")
    table.add_column("change [95%]", justify="right", no_wrap=True)
    table.add_column("p", justify="right", no_wrap=True)
    growing = shown[shown["change"] > 0].head(n)
    shrinking = shown[shown["change"] < 0].iloc[::-1].head(n)
    for label, rows in (("grows", growing), ("shrinks", shrinking)):
        for i, row in enumerate(rows.itertuples()):
            table.add_row(
                label if i == 0 else "",
                escape(str(row.topic)),
                str(row.posts),
                f"{row.first:.0f}%",
                f"{row.last:.0f}%",
                f"{row.change:+.0f} [{row.low:+.0f}, {row.high:+.0f}]",
                f"{row.p_adjusted:.1g}",
            )
    console.print(table)
    console.print(f"[dim]{escape(test)}[/dim]")


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
    table.add_column("value", overflow="fold")  # a URL or key is one long word: folded, never cut
    for name, value in values.items():
        table.add_row(name, escape(str(value)))
    console.print(table)


def files(console: Console, folder: Path) -> None:
    """Every file under `folder` with its size, such as an export."""
    table = Table(title=escape(str(folder)), title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("MB", justify="right")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        table.add_row(escape(str(path.relative_to(folder))), f"{path.stat().st_size / 1e6:.1f}")
    console.print(table)


def steps(console: Console, title: str, steps: Iterable[tuple[str, str]]) -> None:
    """What a deployment would do, step by step."""
    table = Table(title=escape(title), title_justify="left")
    table.add_column("step", style="bold")
    table.add_column("what", overflow="fold")
    for step, what in steps:
        table.add_row(escape(step), escape(what))
    console.print(table)
