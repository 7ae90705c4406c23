"""The report's charts as PNG files for slides: the same colours and data as the page, drawn by matplotlib.

Figures are built without pyplot (no global state, no display) at fixed pixel sizes and saved
without a software tag, so the same report gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from topicli.io import atomic_path
from topicli.report.data import NO_TOPIC_COLOUR, PALETTE, Reliability, Report, label_positions

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
WIDTH = 1600
MAP_HEIGHT = 1200
BAR_BASE, BAR_ROW = 160, 30  # pixels: title and axis, then one row per topic
RELIABILITY_SIZE = (1000, 800)


def bar_chart_size(n_topics: int) -> tuple[int, int]:
    """(width, height) in pixels of `topics.png`."""
    return WIDTH, BAR_BASE + BAR_ROW * max(n_topics, 1)


def map_size() -> tuple[int, int]:
    """(width, height) in pixels of `map.png`."""
    return WIDTH, MAP_HEIGHT


def _save(figure: Figure, path: Path) -> None:
    with atomic_path(path) as temp:
        figure.savefig(temp, format="png", dpi=DPI, metadata={"Software": None})


def _bar_chart(report: Report, path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    width, height = bar_chart_size(len(report.listed))
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    top = 1 - 60 / height
    axes = figure.add_axes((0.27, 50 / height, 0.68, top - 50 / height))
    sizes = [t.size for t in report.listed]
    positions = np.arange(len(sizes))
    axes.barh(positions, sizes, color=[t.colour for t in report.listed], height=0.7)
    axes.set_yticks(positions, [t.topic for t in report.listed], fontsize=11)
    axes.set_ylim(len(sizes) - 0.5, -0.5)
    axes.set_xlim(0, max(sizes, default=1) * 1.1)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    for y, size in zip(positions, sizes, strict=True):
        axes.annotate(str(size), (size, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=10)
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_xlabel("posts")
    figure.suptitle(f"Posts per topic: {Path(report.input).name}", x=0.02, y=1 - 20 / height, ha="left", fontsize=16)
    _save(figure, path)


def _map(report: Report, path: Path) -> None:
    from matplotlib import patheffects
    from matplotlib.figure import Figure

    m = report.map
    width, height = map_size()
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    axes = figure.add_axes((0.02, 0.02, 0.96, 0.9))
    axes.set_axis_off()
    none = m.topic < 0
    size = 18 if len(m.xy) <= 2000 else 8
    if none.any():
        axes.scatter(m.xy[none, 0], m.xy[none, 1], s=size, c=NO_TOPIC_COLOUR, linewidths=0)
    colours = [report.topics[t].colour for t in m.topic[~none]]
    axes.scatter(m.xy[~none, 0], m.xy[~none, 1], s=size, c=colours, linewidths=0, alpha=0.85)
    outline = [patheffects.withStroke(linewidth=3, foreground="white")]
    for t, x, y in label_positions(report):
        axes.text(x, y, report.topics[t].topic, fontsize=11, ha="center", va="center", path_effects=outline)
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    shown = f"{len(m.xy):,} of {m.total:,} posts" + (" (random sample)" if len(m.xy) < m.total else "")
    figure.suptitle(
        f"Map of the posts ({m.method}), coloured by topic: {shown}", x=0.02, y=0.97, ha="left", fontsize=16
    )
    _save(figure, path)


def _reliability(r: Reliability, path: Path) -> None:
    """The page's reliability diagram: accuracy per confidence bin on each development set, this run's histogram."""
    from matplotlib.figure import Figure

    width, height = RELIABILITY_SIZE
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    axes = figure.add_axes((0.09, 0.09, 0.86, 0.8))
    counts = np.array(r.histogram, dtype=float)
    axes.bar(np.arange(10) / 10 + 0.05, counts / max(counts.max(), 1) * 0.35, width=0.09, color="#dcdcdc",
             label="this run: posts per confidence bin (own scale)")  # fmt: skip
    axes.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1)
    for (name, bins), colour in zip(r.sets, PALETTE, strict=False):
        axes.plot([b[0] for b in bins], [b[1] for b in bins], marker="o", color=colour, linewidth=2, label=name)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence")
    axes.set_ylabel("share of posts right")
    axes.legend(loc="upper left", fontsize=10, frameon=False)
    what = "calibrated probability" if r.calibrated else "raw scores, not calibrated"
    figure.suptitle(f"How far to trust the confidence ({what})", x=0.02, y=0.97, ha="left", fontsize=16)
    _save(figure, path)


PNG_FILES = ("topics.png", "map.png", "reliability.png")


def write_pngs(report: Report, folder: Path) -> list[Path]:
    """`topics.png` (posts per topic), `map.png` (the map) and `reliability.png` (how far to trust the
    confidence, when the report has it) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / PNG_FILES[0], folder / PNG_FILES[1]]
    _bar_chart(report, paths[0])
    _map(report, paths[1])
    if report.reliability is not None:
        paths.append(folder / PNG_FILES[2])
        _reliability(report.reliability, paths[2])
    return paths
