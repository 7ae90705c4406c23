"""The report as one HTML page a marketer can read: topic sizes, a map of the posts, examples, candidates.

The page is one file with its styles, SVG charts and a few lines of script inline, so it
opens anywhere without a network. Every piece of data goes through `escape`; the script is
fixed text.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np

from topicli import __version__
from topicli.io import atomic_path
from topicli.report.data import NO_TOPIC, NO_TOPIC_COLOUR, UMAP_POINTS, PostMap, Report, TopicView, label_positions

BAR_ROW, BAR_LABEL, BAR_AREA = 24, 300, 560
MAP_SIZE, MAP_PAD = (960, 640), 10

STYLE = """
body{margin:0;background:#fff;color:#222;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1000px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{margin:36px 0 8px;font-size:20px}
.sub,.note{color:#666;font-size:13px}
.figures{display:flex;flex-wrap:wrap;gap:12px;margin:20px 0}
.figure{flex:1 1 0;border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:150px}
.figure b{display:block;font-size:24px}
svg text{font-size:12px;fill:#333}
svg.bars g.bar{cursor:pointer}svg.bars g.bar:hover rect{opacity:.75}
svg.bars.focus g.bar{opacity:.3}svg.bars.focus g.bar.on{opacity:1}
svg.map{border:1px solid #ddd;background:#fcfcfc;width:100%;height:auto}
svg.map circle{fill-opacity:.8}svg.map.focus circle{opacity:.07}svg.map.focus circle.on{opacity:1}
svg.map text.label{text-anchor:middle;font-size:13px;pointer-events:none}
svg.map text.label{paint-order:stroke;stroke:#fff;stroke-width:3px}svg.map.focus text.label{opacity:.3}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{border-bottom:1px solid #eee;padding:6px 8px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.chosen{background:#e9f6e9;font-weight:600}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px}
ol.examples{margin:0;padding-left:20px;color:#444}
input#filter{font:inherit;padding:5px 8px;margin:6px 0 10px;width:280px}
"""

SCRIPT = """
(function () {
  var bars = document.querySelector("svg.bars"), map = document.querySelector("svg.map"), current = null;
  function focus(t) {
    current = current === t ? null : t;
    [bars, map].forEach(function (svg) {
      if (!svg) { return; }
      svg.classList.toggle("focus", current !== null);
      svg.querySelectorAll("[data-t]").forEach(function (el) {
        el.classList.toggle("on", el.getAttribute("data-t") === current);
      });
    });
  }
  if (bars) {
    bars.querySelectorAll("g.bar").forEach(function (bar) {
      bar.addEventListener("click", function () { focus(bar.getAttribute("data-t")); });
    });
  }
  var box = document.getElementById("filter");
  if (box) {
    box.addEventListener("input", function () {
      var query = box.value.toLowerCase();
      document.querySelectorAll("#topics tbody tr").forEach(function (row) {
        row.hidden = query !== "" && row.textContent.toLowerCase().indexOf(query) < 0;
      });
    });
  }
})();
"""


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _bars(topics: tuple[TopicView, ...]) -> str:
    """Horizontal bars, one per topic, largest first; a click highlights the topic on the map."""
    largest = max((t.size for t in topics), default=1)
    rows = []
    for i, t in enumerate(topics):
        y, width = i * BAR_ROW, max(1.0, t.size / largest * BAR_AREA)
        rows.append(
            f'<g class="bar" data-t="{i}" data-topic="{escape(t.topic)}" data-size="{t.size}">'
            f"<title>{escape(t.topic)}: {t.size} posts</title>"
            f'<text x="{BAR_LABEL - 8}" y="{y + 16}" text-anchor="end">{escape(_shorten(t.topic, 42))}</text>'
            f'<rect x="{BAR_LABEL}" y="{y + 4}" width="{width:.1f}" height="{BAR_ROW - 8}" fill="{t.colour}"/>'
            f'<text x="{BAR_LABEL + width + 6:.1f}" y="{y + 16}">{t.size}</text></g>'
        )
    width, height = BAR_LABEL + BAR_AREA + 60, max(len(topics), 1) * BAR_ROW
    return (
        f'<svg class="bars" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="posts per topic">{"".join(rows)}</svg>'
    )


def _map(report: Report) -> str:
    """The posts as dots coloured by topic, posts without a topic underneath."""
    m, topics = report.map, report.topics
    (width, height), pad = MAP_SIZE, MAP_PAD
    radius = 3.5 if len(m.xy) <= 2000 else 2.5

    def point(x: float, y: float) -> tuple[float, float]:
        return pad + x * (width - 2 * pad), pad + (1 - y) * (height - 2 * pad)

    marks = []
    for i in np.argsort(m.topic >= 0, kind="stable"):
        t = int(m.topic[i])
        name, colour = (topics[t].topic, topics[t].colour) if t >= 0 else (NO_TOPIC, NO_TOPIC_COLOUR)
        x, y = point(m.xy[i, 0], m.xy[i, 1])
        marks.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colour}" data-t="{t}">'
            f"<title>{escape(name)}: {escape(_shorten(m.texts[i], 160))}</title></circle>"
        )
    for t, *at in label_positions(report):
        x, y = point(*at)
        marks.append(f'<text class="label" x="{x:.1f}" y="{y:.1f}">{escape(topics[t].topic)}</text>')
    return (
        f'<svg class="map" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="map of the posts">{"".join(marks)}</svg>'
    )


def map_note(m: PostMap) -> str:
    """What the map shows, in words: how many posts, sampled or not, and how it was laid out."""
    sampled = ""
    if len(m.xy) < m.total:
        sampled = f", a random sample (at most {m.cap:,} are drawn: `topicli report --max-points`)"
    return (
        f"Showing {len(m.xy):,} of {m.total:,} posts{sampled}. Layout: {m.method} of the {m.encoder} embeddings "
        f"(UMAP for {UMAP_POINTS[0]:,} to {UMAP_POINTS[1]:,} drawn posts, PCA otherwise); nearby dots are posts "
        "about similar things, and the axes have no meaning of their own."
    )


def _figures(report: Report) -> str:
    from_noise = sum(t.from_noise for t in report.topics)
    figures = (
        ("posts", f"{report.posts:,}", f"{report.empty:,} empty" if report.empty else "none empty"),
        ("topics", f"{len(report.topics)}", f"from {report.chosen.n_clusters} clusters"),
        ("coverage", f"{report.coverage:.0%}", f"of non-empty posts have a topic ({report.without_topic:,} without)"),
        (
            "noise",
            f"{report.noise_share:.0%}",
            f"fell in no cluster; {from_noise:,} of them got a topic of their own",
        ),
    )
    return "".join(
        f'<div class="figure" data-figure="{name}">{escape(name)}<b>{escape(value)}</b>'
        f'<span class="note">{escape(note)}</span></div>'
        for name, value, note in figures
    )


def _topic_rows(report: Report) -> str:
    total = max(report.posts - report.empty, 1)
    rows = []
    for i, t in enumerate(report.topics):
        examples = "".join(f"<li>{escape(_shorten(text, 280))}</li>" for text in t.examples)
        rows.append(
            f'<tr data-t="{i}"><td class="topic"><span class="swatch" style="background:{t.colour}"></span>'
            f'{escape(t.topic)}</td><td class="n">{t.size:,}</td><td class="n">{t.size / total:.1%}</td>'
            f'<td class="n">{t.confidence:.2f}</td><td>{escape(t.runner_up)}</td><td class="n">{t.from_noise:,}</td>'
            f'<td><ol class="examples">{examples}</ol></td></tr>'
        )
    return "".join(rows)


def _candidate_rows(report: Report) -> str:
    """Scored candidates best first, then those outside the topic range, by cluster count."""
    ordered = sorted(report.candidates, key=lambda c: (not c.scores, -c.score if c.scores else c.n_clusters))
    rows = []
    for c in ordered:
        first = f"{c.eps:g}" if c.algorithm == "dbscan" else str(c.min_cluster_size)
        cells = [first, str(c.min_samples), str(c.n_clusters), f"{c.coverage:.2f}"]
        if c.scores:
            agreement = c.scores.get("agreement", float("nan"))
            cells += [f"{agreement:.2f}", str(c.scores.get("topics_used", "")), f"{c.score:.3f}"]
        else:
            cells += ["", "", "outside range" if not c.in_range else ""]
        chosen = c == report.chosen
        rows.append(
            ('<tr class="chosen">' if chosen else "<tr>")
            + "".join(f'<td class="n">{escape(cell)}</td>' for cell in cells)
            + f"<td>{'chosen' if chosen else ''}</td></tr>"
        )
    return "".join(rows)


def render_html(report: Report) -> str:
    """The whole page as one string: no external scripts, styles, fonts or images."""
    first = "eps" if report.chosen.algorithm == "dbscan" else "min cluster size"
    without = f" {report.without_topic:,} non-empty posts have no topic." if report.without_topic else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>Topics in {escape(Path(report.input).name)}</title><style>{STYLE}</style></head>
<body><main>
<h1>Topics in {escape(Path(report.input).name)}</h1>
<div class="sub">{escape(report.input)} · run {escape(str(report.run_folder))} ·
posts {escape(str(report.posts_path))} · encoder {escape(report.encoder)} · topicli {escape(__version__)}</div>
<div class="figures">{_figures(report)}</div>
<h2>Posts per topic</h2>
<p class="note">Click a bar to pick out its posts on the map; click it again to see all.{escape(without)}</p>
{_bars(report.topics)}
<h2>Map of the posts</h2>
<p class="note" id="map-note">{escape(map_note(report.map))}</p>
{_map(report)}
<h2>Topics</h2>
<p class="note">Confidence: the mean probability the scorer gives the topic over its posts. Runner-up: the topic that
came second for the largest cluster. From noise: posts in no cluster that got this topic by the noise policy.
Examples: the posts most confidently about the topic.</p>
<input id="filter" type="search" placeholder="filter topics and examples">
<table id="topics"><thead><tr><th>topic</th><th class="n">posts</th><th class="n">share</th>
<th class="n">confidence</th><th>runner-up</th><th class="n">from noise</th><th>examples</th></tr></thead>
<tbody>{_topic_rows(report)}</tbody></table>
<h2>Clusterings compared</h2>
<p class="note">{escape(report.reason)}</p>
<table id="candidates"><thead><tr><th class="n">{first}</th><th class="n">min samples</th><th class="n">clusters</th>
<th class="n">coverage</th><th class="n">agreement</th><th class="n">topics used</th><th class="n">score</th><th></th>
</tr></thead><tbody>{_candidate_rows(report)}</tbody></table>
</main><script>{SCRIPT}</script></body></html>
"""


def write_page(report: Report, path: Path) -> None:
    """The page, written atomically."""
    with atomic_path(path) as temp:
        temp.write_text(render_html(report), encoding="utf-8")
