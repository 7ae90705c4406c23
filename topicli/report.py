"""A run as one page a marketer can read: topic sizes, a map of the posts, examples, the clusterings compared.

Everything comes from the run folder (`clustering.json`, `clusters.npy`) and the posts
output with its topic table; the map re-embeds a sample of the posts, which the embedding
cache makes free after a run. The page is one HTML file with its styles, SVG charts and a
few lines of script inline, so it opens anywhere without a network.
"""

from __future__ import annotations

import colorsys
import warnings
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from topicli import __version__
from topicli.clustering import Candidate
from topicli.config import Settings
from topicli.embedding import Embedder, choose_encoder
from topicli.errors import TopicliError
from topicli.io import atomic_path, read_table
from topicli.pipeline import OUTPUT_COLUMNS, ClusterRun, topic_table_path
from topicli.progress import ProgressFactory, no_progress

MAP_POINTS = 5000
UMAP_POINTS = (50, 5000)
"""UMAP lays out between these many drawn posts, PCA outside: UMAP needs enough posts for a
neighbourhood graph, and its time grows with the posts (about 15 s for 5000 on 2 cores, 10 of
them compiling), where PCA takes a second for any number."""
UMAP_NEIGHBOURS = 15  # UMAP's count: the post itself and its 14 nearest
SEED = 0
EXAMPLES = 5
MAP_LABELS = 15  # the largest topics are named on the map
NO_TOPIC = "(no topic)"
NO_TOPIC_COLOUR = "#b5b5b5"
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#17becf",
    "#1f3b73", "#bcbd22", "#8c2d04", "#2ca02c", "#9467bd", "#d62728", "#e377c2", "#637939", "#ad494a", "#006d2c",
)  # fmt: skip


@dataclass(frozen=True)
class TopicView:
    """One topic as the page shows it."""

    topic: str
    size: int
    from_noise: int
    confidence: float
    runner_up: str
    clusters: str
    colour: str
    examples: tuple[str, ...]


@dataclass(frozen=True)
class PostMap:
    """The posts drawn on the map: coordinates in [0, 1], and each one's topic (index into the topics, -1: none)."""

    xy: np.ndarray
    topic: np.ndarray
    texts: tuple[str, ...]
    total: int  # posts that could be drawn (the non-empty ones)
    cap: int
    method: str
    encoder: str


@dataclass(frozen=True)
class Report:
    """What the page says about one run."""

    run_folder: Path
    posts_path: Path
    input: str
    encoder: str
    posts: int
    empty: int
    without_topic: int  # non-empty posts left without a topic
    noise: int  # non-empty posts the clustering left in no cluster
    topics: tuple[TopicView, ...]
    map: PostMap
    candidates: tuple[Candidate, ...]
    chosen: Candidate
    reason: str

    @property
    def coverage(self) -> float:
        """Share of the non-empty posts that have a topic."""
        return 1 - self.without_topic / max(self.posts - self.empty, 1)

    @property
    def noise_share(self) -> float:
        return self.noise / max(self.posts - self.empty, 1)


def find_posts_output(folder: Path, posts: Path | None = None) -> Path:
    """The posts output of a run: `posts` when given, else the newest `posts.*` in the run folder."""
    if posts is not None:
        if not posts.is_file():
            raise TopicliError(f"{posts}: no such file; give --posts the file `topicli run -o` wrote")
        return posts
    found = [p for p in folder.glob("posts.*") if not p.name.startswith("posts.topics.")]
    if not found:
        raise TopicliError(f"no posts output (posts.*) in {folder}; pass --posts PATH with the file given to -o")
    return max(found, key=lambda p: (p.stat().st_mtime, p.name))


def colours(n: int) -> list[str]:
    """n distinct colours: a fixed palette, then golden-angle hues at three lightnesses."""
    extra = []
    for i in range(max(n - len(PALETTE), 0)):
        red, green, blue = colorsys.hls_to_rgb((i * 0.618034) % 1, (0.35, 0.5, 0.65)[i % 3], 0.6)
        extra.append(f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}")
    return [*PALETTE, *extra][:n]


def project(vectors: np.ndarray) -> tuple[np.ndarray, str]:
    """2-D coordinates in [0, 1] for the map, and the method that made them (seeded, so reruns agree)."""
    n = len(vectors)
    if UMAP_POINTS[0] <= n <= UMAP_POINTS[1]:
        import umap

        # Exact neighbours from scikit-learn: at this size they take a second, and they spare UMAP compiling
        # pynndescent (about 40 s on 2 cores above 4096 posts). The layout never transforms new posts.
        found = NearestNeighbors(n_neighbors=UMAP_NEIGHBOURS - 1, metric="cosine").fit(vectors)
        distances, indices = found.kneighbors()  # without the post itself, which UMAP wants first
        knn = (np.hstack([np.arange(n)[:, None], indices]), np.hstack([np.zeros((n, 1)), distances]), None)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="n_jobs value|precomputed_knn", category=UserWarning)
            model = umap.UMAP(
                n_neighbors=UMAP_NEIGHBOURS, metric="cosine", random_state=SEED, n_jobs=1, precomputed_knn=knn
            )
            xy, method = model.fit_transform(vectors), "UMAP"
    elif n >= 2:
        xy, method = PCA(n_components=2, random_state=SEED).fit_transform(vectors), "PCA"
    else:
        xy, method = np.zeros((n, 2)), "PCA"
    low, span = xy.min(axis=0), np.ptp(xy, axis=0)
    return np.where(span > 0, (xy - low) / np.where(span > 0, span, 1), 0.5), method


def label_positions(report: Report) -> list[tuple[int, float, float]]:
    """(topic index, x, y) where the map names each of its largest topics: the median of the topic's drawn posts."""
    found = []
    for t in range(min(MAP_LABELS, len(report.topics))):
        mine = report.map.xy[report.map.topic == t]
        if len(mine):
            x, y = np.median(mine, axis=0)
            found.append((t, float(x), float(y)))
    return found


def _read_posts_output(path: Path, text_column: str, rows: int) -> pd.DataFrame:
    frame = read_table(path)
    missing = [c for c in (text_column, *OUTPUT_COLUMNS) if c not in frame.columns]
    if missing:
        raise TopicliError(
            f"{path} is not the posts output of this run (no column {', '.join(missing)}); pass --posts with that file"
        )
    if len(frame) != rows:
        raise TopicliError(f"{path} has {len(frame)} posts but the run clustered {rows}; pass --posts of this run")
    return pd.DataFrame(
        {
            "text": [t if isinstance(t, str) else "" for t in frame[text_column]],
            "topic": frame["topic"].fillna("").astype(str),
            "confidence": pd.to_numeric(frame["topic_confidence"], errors="coerce"),
        }
    )


def _examples(posts: pd.DataFrame) -> tuple[str, ...]:
    """The most confident posts (ties by file order), each distinct text once."""
    ranked = posts.sort_values("confidence", ascending=False, kind="stable", na_position="last")["text"]
    picked: dict[str, str] = {}
    for text in ranked:
        picked.setdefault(" ".join(text.split()).casefold(), text)
        if len(picked) == EXAMPLES:
            break
    return tuple(picked.values())


def _topic_views(posts: pd.DataFrame, table: pd.DataFrame, table_path: Path) -> tuple[TopicView, ...]:
    names = table["topic"].astype(str).tolist()
    used = set(posts.loc[posts["topic"] != "", "topic"])
    if used != set(names):
        raise TopicliError(f"{table_path} does not list the topics of its posts file; rerun `topicli label`")
    return tuple(
        TopicView(
            topic=name,
            size=int(row["size"]),
            from_noise=int(row["from_noise"]),
            confidence=float(row["confidence"]),
            runner_up=str(row["runner_up"]) if pd.notna(row["runner_up"]) else "",
            clusters=str(row["clusters"]) if pd.notna(row["clusters"]) else "",
            colour=colour,
            examples=_examples(posts[posts["topic"] == name]),
        )
        for (_, row), name, colour in zip(table.iterrows(), names, colours(len(names)), strict=True)
    )


def _post_map(
    posts: pd.DataFrame, topics: tuple[TopicView, ...], settings: Settings, cap: int, progress: ProgressFactory
) -> PostMap:
    """A seeded random sample of at most `cap` non-empty posts, re-embedded and laid out in 2-D."""
    drawable = np.flatnonzero(posts["text"].str.strip() != "")
    shown = drawable
    if len(drawable) > cap:
        shown = np.sort(np.random.default_rng(SEED).choice(drawable, size=cap, replace=False))
    texts = posts["text"].to_numpy()[shown].tolist()
    s = settings.encoder
    embedder = Embedder(choose_encoder(s.name, posts["text"].to_numpy()[drawable].tolist()), s.batch_size, s.cache_dir)
    with progress("embedding posts for the map", len(set(texts))) as advance:
        vectors = embedder(texts, advance)
    with progress("laying out the map", None) as advance:
        xy, method = project(vectors)
        advance(1)
    index = {view.topic: i for i, view in enumerate(topics)}
    topic = np.array([index.get(name, -1) for name in posts["topic"].to_numpy()[shown]], dtype=np.int64)
    return PostMap(xy, topic, tuple(texts), len(drawable), cap, method, embedder.identity)


def build_report(
    folder: Path,
    settings: Settings,
    posts: Path | None = None,
    max_points: int = MAP_POINTS,
    progress: ProgressFactory = no_progress,
) -> Report:
    """Everything the page shows about the run in `folder`; `posts` is its posts output when not in the folder."""
    if max_points < 1:
        raise TopicliError(f"the map needs at least one point; --max-points is {max_points}")
    run = ClusterRun.load(folder)
    posts_path = find_posts_output(folder, posts)
    table_path = topic_table_path(posts_path)
    if not table_path.is_file():
        raise TopicliError(f"no topic table {table_path} beside {posts_path}; rerun `topicli label`")
    frame = _read_posts_output(posts_path, run.text_column, len(run.labels))
    topics = _topic_views(frame, read_table(table_path), table_path)
    filled = (frame["text"].str.strip() != "").to_numpy()
    return Report(
        run_folder=folder,
        posts_path=posts_path,
        input=run.input,
        encoder=run.encoder,
        posts=len(frame),
        empty=int((~filled).sum()),
        without_topic=int((filled & (frame["topic"] == "").to_numpy()).sum()),
        noise=int((filled & (run.labels < 0)).sum()),
        topics=topics,
        map=_post_map(frame, topics, settings, max_points, progress),
        candidates=tuple(run.candidates),
        chosen=run.chosen,
        reason=run.reason,
    )


# The page. Every piece of data goes through `escape`; the script below is fixed text.

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
