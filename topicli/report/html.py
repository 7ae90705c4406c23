"""The report as one HTML page a marketer can read: topic sizes, a map of the posts, topics with their keywords
and examples, the topics the list may be missing, topics over time, candidates.

It reads on a phone as on a desktop: charts scale to the width, and below 640 px the tables
become one card per row; no element is wider than the viewport (tests/test_report.py checks it
in Chromium at 1280 and 390 px).

The page is one file with its styles, SVG charts and a few lines of script inline, so it
opens anywhere without a network. Every piece of data goes through `escape`; the script is
fixed text.
"""

from __future__ import annotations

import textwrap
from html import escape
from pathlib import Path

import numpy as np

from topicli import __version__
from topicli.io import atomic_path
from topicli.method.base import Candidate
from topicli.method.timeline import TREND_LEVEL, TREND_MIN_POSTS
from topicli.report.data import (
    NO_TOPIC,
    NO_TOPIC_COLOUR,
    PALETTE,
    UMAP_POINTS,
    OverTime,
    PostMap,
    Reliability,
    Report,
    TopicView,
    Trend,
    label_positions,
)

BAR_ROW, BAR_LABEL, BAR_AREA = 24, 300, 560
PHONE_BAR_WIDTH, PHONE_LINE, PHONE_NAME_CHARS = 360, 15, 48  # the phone chart: drawn 1:1 on a 390 px screen
PERIOD_WIDTH, VOLUME_HEIGHT, SPARK_HEIGHT = 10, 100, 28  # a period's width in the time charts' own units
MAP_LABEL_CHAR = 7.5  # about the width of a 13 px character: the map keeps its labels inside
CANDIDATE_LABELS = ("parameter", "min samples", "clusters", "coverage", "agreement", "topics used", "score")
MAP_SIZE, MAP_PAD = (960, 640), 10
RELIABILITY_SIZE, RELIABILITY_PAD = (440, 330), (46, 14, 40, 14)  # left, top, bottom, right

STYLE = """
body{margin:0;background:#fff;color:#222;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1000px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{margin:36px 0 8px;font-size:20px}
.sub,.note{color:#666;font-size:13px}
.figures{display:flex;flex-wrap:wrap;gap:12px;margin:20px 0}
.figure{flex:1 1 0;border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:150px}
.figure b{display:block;font-size:24px}
svg text{font-size:12px;fill:#333}
g.bar{cursor:pointer}g.bar:hover rect{opacity:.75}
svg.focus g.bar{opacity:.3}svg.focus g.bar.on{opacity:1}
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
input#filter{font:inherit;padding:5px 8px;margin:6px 0 10px;width:280px;max-width:100%;box-sizing:border-box}
svg.bars,svg.bars-phone,svg.map,svg.reliability{max-width:100%;height:auto;display:block}
ul.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:2px 16px;font-size:13px}
svg.bars-phone{display:none}
.sub,.note,li,td.kw,td.name,.keywords{overflow-wrap:anywhere}td.n,th.n{white-space:nowrap}
.keywords,td.kw{color:#555;font-size:13px}td.kw{min-width:9em}td.topic{min-width:9em}ol.examples{min-width:18em}
.keywords b{color:#222}
ul.trend{margin:0;padding-left:20px}
.lines{margin:10px 0}
.line{display:flex;align-items:center;gap:10px;margin:2px 0}
.line .name{flex:0 0 230px;font-size:14px;overflow-wrap:anywhere}
.line svg{flex:1 1 auto;min-width:0;height:28px}.line svg.volume{height:120px}
.line .ticks{flex:1 1 auto;min-width:0;position:relative;height:18px;font-size:12px;color:#555}
.ticks span{position:absolute;top:0;white-space:nowrap}
details{margin:8px 0}summary{cursor:pointer;color:#444}
.line .n{flex:0 0 48px;text-align:right;font-variant-numeric:tabular-nums;font-size:13px;color:#555}
.columns{display:flex;flex-wrap:wrap;gap:24px}.columns>div{flex:1 1 280px;min-width:0}
@media (max-width:640px){
main{padding:12px}h1{font-size:21px}
.figure{min-width:0;flex-basis:40%}
table.cards thead{display:none}
table.cards,table.cards tbody,table.cards tr,table.cards td{display:block}
table.cards tr{border-bottom:1px solid #ddd;padding:8px 0}
table.cards td{border:0;padding:2px 0;text-align:left}ol.examples{min-width:0}
table.cards td[data-label]::before{content:attr(data-label) ": ";color:#777}
.line{flex-wrap:wrap;gap:2px 8px}.line .name{flex:1 1 100%}
svg.bars{display:none}svg.bars-phone{display:block}
}
"""

SCRIPT = """
(function () {
  var charts = document.querySelectorAll("svg.bars, svg.bars-phone, svg.map"), current = null;
  function focus(t) {
    current = current === t ? null : t;
    charts.forEach(function (svg) {
      svg.classList.toggle("focus", current !== null);
      svg.querySelectorAll("[data-t]").forEach(function (el) {
        el.classList.toggle("on", el.getAttribute("data-t") === current);
      });
    });
  }
  document.querySelectorAll("svg.bars g.bar, svg.bars-phone g.bar").forEach(function (bar) {
    bar.addEventListener("click", function () { focus(bar.getAttribute("data-t")); });
  });
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
    width, height = BAR_LABEL + BAR_AREA + 40, max(len(topics), 1) * BAR_ROW
    return (
        f'<svg class="bars" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="posts per topic">{"".join(rows)}</svg>'
    )


def _phone_bars(topics: tuple[TopicView, ...]) -> str:
    """The same bars for narrow screens: each name whole on its own lines (wrapped, never cut) above its bar, so
    that names stay legible at 390 px instead of shrinking with the wide chart."""
    largest = max((t.size for t in topics), default=1)
    area = PHONE_BAR_WIDTH - 40  # room for the count after the longest bar
    rows, y = [], 0
    for i, t in enumerate(topics):
        lines = textwrap.wrap(t.topic, PHONE_NAME_CHARS, break_long_words=True) or [""]
        name = "".join(
            f'<tspan x="2" dy="{0 if j == 0 else PHONE_LINE}">{escape(line)}</tspan>' for j, line in enumerate(lines)
        )
        top, width = y + PHONE_LINE * len(lines) + 4, max(1.0, t.size / largest * area)
        rows.append(
            f'<g class="bar" data-t="{i}" data-topic="{escape(t.topic)}" data-size="{t.size}">'
            f"<title>{escape(t.topic)}: {t.size} posts</title>"
            f'<text class="name" x="2" y="{y + 12}">{name}</text>'
            f'<rect x="0" y="{top}" width="{width:.1f}" height="12" fill="{t.colour}"/>'
            f'<text x="{width + 6:.1f}" y="{top + 11}">{t.size}</text></g>'
        )
        y = top + 22
    return (
        f'<svg class="bars-phone" viewBox="0 0 {PHONE_BAR_WIDTH} {max(y, BAR_ROW)}" width="{PHONE_BAR_WIDTH}" '
        f'height="{max(y, BAR_ROW)}" role="img" aria-label="posts per topic">{"".join(rows)}</svg>'
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
        half = len(topics[t].topic) * MAP_LABEL_CHAR / 2  # the label's half width: kept inside the map, not cut
        x = min(max(x, pad + half), width - pad - half) if 2 * (pad + half) < width else width / 2
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
    folded = f"; {len(report.folded)} with fewer than {report.min_posts} posts folded" if report.folded else ""
    figures = (
        ("posts", f"{report.posts:,}", f"{report.empty:,} empty" if report.empty else "none empty"),
        ("topics", f"{len(report.topics)}", f"from {report.chosen.n_clusters} clusters{folded}"),
        ("coverage", f"{report.coverage:.0%}", f"of posts shown with a topic ({report.without_topic:,} without)"),
        (
            "unsure",
            f"{report.unsure:,}",
            "posts held back, their topic below the confidence threshold (kept in topic_runner_up)",
        ),
        (
            "noise",
            f"{report.noise_share:.0%}",
            f"fell in no cluster; {from_noise:,} of them got a topic of their own",
        ),
        (
            "unmatched",
            f"{len(report.unmatched)}",
            f"clusters no topic fits ({sum(u.size for u in report.unmatched):,} posts): topics the list may miss",
        ),
    )
    return "".join(
        f'<div class="figure" data-figure="{name}">{escape(name)}<b>{escape(value)}</b>'
        f'<span class="note">{escape(note)}</span></div>'
        for name, value, note in figures
    )


def _keywords(words: tuple[str, ...]) -> str:
    return f'<div class="keywords">{escape(", ".join(words))}</div>' if words else ""


def _folded(report: Report) -> str:
    """The one line that stands for the topics of fewer than `min_posts` posts."""
    if not report.folded:
        return ""
    posts = sum(t.size for t in report.folded)
    return (
        f'<p class="note" id="folded">{len(report.folded)} more topics with fewer than {report.min_posts} posts each '
        f"({posts:,} posts; every topic is in the topic table file)</p>"
    )


def _topic_rows(report: Report) -> str:
    total = max(report.posts - report.empty, 1)
    rows = []
    for i, t in enumerate(report.listed):
        examples = "".join(f"<li>{escape(_shorten(text, 280))}</li>" for text in t.examples)
        rows.append(
            f'<tr data-t="{i}"><td class="topic"><span class="swatch" style="background:{t.colour}"></span>'
            f"{escape(t.topic)}</td>"
            f'<td class="n" data-label="posts">{t.size:,}</td>'
            f'<td class="n" data-label="share">{t.size / total:.1%}</td>'
            f'<td class="n" data-label="confidence">{t.confidence:.2f}</td>'
            f'<td data-label="runner-up">{escape(t.runner_up)}</td>'
            f'<td class="n" data-label="from noise">{t.from_noise:,}</td>'
            f'<td class="kw" data-label="keywords">{escape(", ".join(t.keywords))}</td>'
            f'<td><ol class="examples">{examples}</ol></td></tr>'
        )
    return "".join(rows)


def _unmatched(report: Report) -> str:
    """The clusters no topic fits, named by their keywords: topics the list may be missing."""
    if not report.unmatched:
        return '<p class="note" id="no-unmatched">Every cluster fits a topic of the list.</p>'
    rows = []
    for u in report.unmatched:
        examples = "".join(f"<li>{escape(_shorten(text, 280))}</li>" for text in u.examples)
        rows.append(
            f'<tr><td class="name"><b>{escape(u.name)}</b>{_keywords(u.keywords)}</td>'
            f'<td class="n" data-label="posts">{u.size:,}</td>'
            f'<td class="n" data-label="cluster">{escape(u.cluster)}</td>'
            f'<td data-label="closest topic">{escape(u.closest)} ({u.confidence:.2f})</td>'
            f'<td><ol class="examples">{examples}</ol></td></tr>'
        )
    return (
        '<table id="unmatched" class="cards"><thead><tr><th>suggested name and keywords</th><th class="n">posts</th>'
        '<th class="n">cluster</th><th>closest topic (confidence)</th><th>examples</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _time_bar(i: int, count: int, largest: int, height: int, title: str = "") -> str:
    """Period i's bar, PERIOD_WIDTH wide: the volume chart and every topic's strip share this x scale and the same
    row layout (a name, the chart, a count), so that a period sits at the same x in all of them."""
    bar = count / largest * height
    return (
        f'<rect x="{i * PERIOD_WIDTH + 1}" y="{height - bar:.1f}" width="{PERIOD_WIDTH - 2}" height="{bar:.1f}">'
        + (f"<title>{escape(title)}</title>" if title else "")
        + "</rect>"
    )


def _volume(over: OverTime) -> str:
    """Posts with a topic per period, as bars, the first, middle and last period named under them."""
    n, largest = len(over.periods), max(max(over.totals, default=1), 1)
    bars = "".join(
        _time_bar(i, total, largest, VOLUME_HEIGHT, f"{period}: {total} posts")
        for i, (period, total) in enumerate(zip(over.periods, over.totals, strict=True))
    )
    ticks = []
    for i in sorted({0, n // 2, n - 1}):
        at = "left:0" if i == 0 else "right:0" if i == n - 1 else f"left:{(i + 0.5) / n:.2%};transform:translateX(-50%)"
        ticks.append(f'<span style="{at}">{escape(over.periods[i])}</span>')
    return (
        f'<div class="line" id="volume"><span class="name">posts with a topic</span>'
        f'<svg class="volume" viewBox="0 0 {n * PERIOD_WIDTH} {VOLUME_HEIGHT}" preserveAspectRatio="none" role="img" '
        f'aria-label="posts per {escape(over.period)}"><g fill="#4e79a7">{bars}</g></svg>'
        f'<span class="n">{sum(over.totals):,}</span></div>'
        f'<div class="line"><span class="name"></span><div class="ticks">{"".join(ticks)}</div><span class="n"></span>'
        "</div>"
    )


def _spark(counts: tuple[int, ...], colour: str, largest: int) -> str:
    bars = "".join(_time_bar(i, c, largest, SPARK_HEIGHT) for i, c in enumerate(counts))
    return (
        f'<svg viewBox="0 0 {max(len(counts), 1) * PERIOD_WIDTH} {SPARK_HEIGHT}" preserveAspectRatio="none" '
        f'aria-hidden="true"><g fill="{colour}">{bars}</g></svg>'
    )


def _trend_list(trends: tuple[Trend, ...]) -> str:
    if not trends:
        return '<p class="note">None beats chance.</p>'
    items = "".join(
        f"<li><b>{escape(t.topic)}</b>: {t.first:.0f}% → {t.last:.0f}% of the posts with a topic "
        f"({t.change:+.1f} points, 95% interval {t.low:+.1f} to {t.high:+.1f}; p = {t.p_adjusted:.2g} after Holm; "
        f"{t.posts:,} posts)</li>"
        for t in trends
    )
    return f'<ul class="trend">{items}</ul>'


def _over_time(report: Report) -> str:
    over = report.over_time
    if over is None:
        return (
            '<p class="note" id="no-dates">The posts have no date column (date, timestamp, created_at, taken_at, '
            "published, or <code>[input] date_column</code>), so there is nothing over time.</p>"
        )
    colour = {t.topic: t.colour for t in report.topics}
    largest = max((max(c, default=0) for _, c in over.topics), default=1) or 1
    lines = "".join(
        f'<div class="line" data-topic="{escape(name)}"><span class="name">{escape(name)}</span>'
        f'{_spark(counts, colour.get(name, NO_TOPIC_COLOUR), largest)}<span class="n">{sum(counts):,}</span></div>'
        for name, counts in over.topics
    )
    period = escape(over.period)
    return f"""<p class="note">Posts with a topic per {period}, {escape(over.periods[0])} to
{escape(over.periods[-1])}; then the largest topics, each on the same scale.</p>
{_volume(over)}
<div class="lines" id="lines">{lines}</div>
<p class="note" id="trend-test">A topic grows or shrinks here only when the change of its share beats chance: its
share of the posts with a topic over the first half of the {period}s against the second half, by Fisher's exact
test, the p-values Holm-adjusted across the {over.tested} topics with {TREND_MIN_POSTS} or more dated posts and
reported below {TREND_LEVEL:g} (a run whose topics do not change shows a trend at most once in
{round(1 / TREND_LEVEL)}). A share, so that a busy {period} does not make every topic grow. The interval is the
change's 95% interval.</p>
<div class="columns"><div id="growing"><h3>Growing</h3>{_trend_list(over.growing)}</div>
<div id="shrinking"><h3>Shrinking</h3>{_trend_list(over.shrinking)}</div></div>"""


def _reliability_chart(r: Reliability) -> str:
    """Accuracy against confidence per development set (the diagonal is a calibrated probability), over this
    run's posts per tenth of confidence (grey bars, on their own scale)."""
    (width, height), (left, top, bottom, right) = RELIABILITY_SIZE, RELIABILITY_PAD
    area_w, area_h = width - left - right, height - top - bottom

    def point(x: float, y: float) -> tuple[float, float]:
        return left + x * area_w, top + (1 - y) * area_h

    largest = max(max(r.histogram, default=0), 1)
    marks = []
    for i, count in enumerate(r.histogram):
        bar = count / largest * area_h * 0.35
        marks.append(
            f'<rect class="run" x="{left + i * area_w / 10 + 1:.1f}" y="{top + area_h - bar:.1f}" '
            f'width="{area_w / 10 - 2:.1f}" height="{bar:.1f}" fill="#dcdcdc">'
            f"<title>this run: {count:,} posts at confidence {i / 10:.1f}-{(i + 1) / 10:.1f}</title></rect>"
        )
    (x0, y0), (x1, y1) = point(0, 0), point(1, 1)
    marks.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#999" stroke-dasharray="4 4"/>')
    for tick in (0.0, 0.5, 1.0):
        x, y = point(tick, tick)
        marks.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">{tick:g}</text>')
        marks.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    marks.append(f'<text x="{left + area_w / 2:.1f}" y="{height - 6}" text-anchor="middle">confidence</text>')
    marks.append(f'<text x="12" y="{top + area_h / 2:.1f}" transform="rotate(-90 12 {top + area_h / 2:.1f})" '
                 'text-anchor="middle">share right</text>')  # fmt: skip
    marks.append(f'<rect x="{left}" y="{top}" width="{area_w}" height="{area_h}" fill="none" stroke="#ccc"/>')
    for (name, bins), colour in zip(r.sets, PALETTE, strict=False):
        points = [point(c, a) for c, a, _ in bins]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        marks.append(f'<polyline class="set" points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        marks += [
            f'<rect class="bin" x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{colour}"><title>'
            f"{escape(name)}: {n:,} posts at mean confidence {c:.2f}, {a:.0%} right</title></rect>"
            for (x, y), (c, a, n) in zip(points, bins, strict=True)
        ]
    legend = "".join(
        f'<li><span class="swatch" style="background:{colour}"></span>{escape(name)}</li>'
        for (name, _), colour in zip(r.sets, PALETTE, strict=False)
    )
    legend += '<li><span class="swatch" style="background:#dcdcdc"></span>this run: posts per confidence bin</li>'
    return (
        f'<svg class="reliability" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="reliability diagram">{"".join(marks)}</svg><ul class="legend">{legend}</ul>'
    )


def _reliability(report: Report) -> str:
    r = report.reliability
    if r is None:
        return ""
    if r.calibrated:
        note = (
            "A post's confidence is the probability that its topic is right, as fitted on labelled development "
            "sets: of the posts at 0.8, about 8 in 10 have the right topic. Lines: the share of posts right "
            "per confidence bin on each development set (on the dashed diagonal, confidence means what it says)."
        )
    else:
        note = (
            "This run kept the raw confidence (<code>[labelling] calibrate = false</code>): it ranks posts from "
            "least to most certain but is not a probability."
        )
    return f"""<h2>How far to trust the confidence</h2>
<p class="note" id="reliability-note">{note} Grey bars: this run's posts per tenth of confidence.</p>
{_reliability_chart(r)}"""


def _candidate_rows(candidates: list[Candidate], chosen: Candidate) -> str:
    rows = []
    for c in candidates:
        first = f"{c.eps:g}" if c.algorithm == "dbscan" else str(c.min_cluster_size)
        cells = [first, str(c.min_samples), str(c.n_clusters), f"{c.coverage:.2f}"]
        if c.scores:
            agreement = c.scores.get("agreement", float("nan"))
            cells += [f"{agreement:.2f}", str(c.scores.get("topics_used", "")), f"{c.score:.3f}"]
        else:
            cells += ["", "", "outside range" if not c.in_range else ""]
        rows.append(
            ('<tr class="chosen">' if c == chosen else "<tr>")
            + "".join(
                f'<td class="n" data-label="{label}">{escape(cell)}</td>'
                for label, cell in zip(CANDIDATE_LABELS, cells, strict=True)
            )
            + f"<td>{'chosen' if c == chosen else ''}</td></tr>"
        )
    return "".join(rows)


def _candidates(report: Report) -> str:
    """The chosen clustering and those in the topic range, scored best first; the rest, by cluster count, folded
    behind a toggle (on the examples, 46 of 54 rows, a third of the phone page)."""
    ordered = sorted(report.candidates, key=lambda c: (not c.scores, -c.score if c.scores else c.n_clusters))
    shown = [c for c in ordered if c.in_range or c == report.chosen]
    folded = [c for c in ordered if c not in shown]
    first = "eps" if report.chosen.algorithm == "dbscan" else "min cluster size"
    head = (
        f'<thead><tr><th class="n">{first}</th><th class="n">min samples</th><th class="n">clusters</th>'
        '<th class="n">coverage</th><th class="n">agreement</th><th class="n">topics used</th><th class="n">score</th>'
        "<th></th></tr></thead>"
    )
    table = f'<table id="candidates" class="cards">{head}<tbody>{_candidate_rows(shown, report.chosen)}</tbody></table>'
    if not folded:
        return table
    sizes = [c.n_clusters for c in folded]
    return (
        f'{table}<details id="other-candidates"><summary>{len(folded)} more clusterings, with {min(sizes)} to '
        f"{max(sizes)} clusters: outside the topic range</summary>"
        f'<table class="cards">{head}<tbody>{_candidate_rows(folded, report.chosen)}</tbody></table></details>'
    )


def render_html(report: Report) -> str:
    """The whole page as one string: no external scripts, styles, fonts or images."""
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
{_bars(report.listed)}{_phone_bars(report.listed)}{_folded(report)}
<h2>Map of the posts</h2>
<p class="note" id="map-note">{escape(map_note(report.map))}</p>
{_map(report)}
<h2>Topics</h2>
<p class="note">Confidence: the mean confidence of the topic's posts (how far to trust it: see below). Runner-up: the
topic that came second for the largest cluster. From noise: posts in no cluster that got this topic by the noise policy.
Keywords: the words most particular to the topic's posts (c-TF-IDF). Examples: the posts most confidently about
the topic.</p>
<input id="filter" type="search" placeholder="filter topics, keywords and examples">
<table id="topics" class="cards"><thead><tr><th>topic</th><th class="n">posts</th><th class="n">share</th>
<th class="n">confidence</th><th>runner-up</th><th class="n">from noise</th><th>keywords</th><th>examples</th></tr>
</thead><tbody>{_topic_rows(report)}</tbody></table>
<h2>Topics your list may be missing</h2>
<p class="note">Clusters whose best topic scored below <code>[labelling] unmatched_below</code>: no topic of the list
fits them, so their posts have no topic (the closest one is kept in the <code>topic_runner_up</code> column). Each is
named by its keywords; rename it to a topic with <code>topicli label --rename</code>, or add a topic to the list.</p>
{_unmatched(report)}
<h2>Topics over time</h2>
{_over_time(report)}
{_reliability(report)}
<h2>Clusterings compared</h2>
<p class="note">{escape(report.reason)}</p>
{_candidates(report)}
</main><script>{SCRIPT}</script></body></html>
"""


def write_page(report: Report, path: Path) -> None:
    """The page, written atomically."""
    with atomic_path(path) as temp:
        temp.write_text(render_html(report), encoding="utf-8")
