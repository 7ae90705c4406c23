"""What the report of a run shows, gathered from the run: topics, a map of the posts, the clusterings compared.

Everything comes from the run folder (`clustering.json`, `clusters.npy`, the outputs it
records) and the posts output with its topic table; the map re-embeds a sample of the posts,
which the embedding cache makes free after a run. `topicli.report.html` and
`topicli.report.png` draw it.
"""

from __future__ import annotations

import colorsys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import encodable, read_table
from topicli.method.base import Candidate
from topicli.method.calibration import ConfidenceCalibrator
from topicli.method.embedding import Embedder
from topicli.method.encoders import choose_encoder
from topicli.method.records import OUTPUT_COLUMNS, RUNNER_UP_COLUMN, ClusterRun
from topicli.method.timeline import read_over_time, trends
from topicli.progress import ProgressFactory, no_progress
from topicli.report import MAP_POINTS
from topicli.runs.folder import bundle_folder
from topicli.runs.outputs import OVER_TIME_FILE, find_posts_output, topic_table_path
from topicli.serving.bundle import MANIFEST, read_bundle

UMAP_POINTS = (50, 5000)
"""UMAP lays out between these many drawn posts, PCA outside: UMAP needs enough posts for a
neighbourhood graph, and its time grows with the posts (about 15 s for 5000 on 2 cores, 10 of
them compiling), where PCA takes a second for any number."""
UMAP_NEIGHBOURS = 15  # UMAP's count: the post itself and its 14 nearest
SEED = 0
EXAMPLES = 5
MAP_LABELS = 15  # the largest topics are named on the map
TIMELINE_TOPICS = 10  # the largest topics get a line of their own in the chart over time
TRENDS = 5  # growing and shrinking topics listed (those that beat chance), largest change first
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
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class UnmatchedView:
    """A cluster no topic of the list fits: a topic the list may be missing."""

    name: str  # suggested from its keywords
    cluster: str
    size: int
    closest: str  # the topic it would have had
    confidence: float
    keywords: tuple[str, ...]
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Trend:
    """A topic whose share of the posts with a topic changed beyond chance (`topicli.method.timeline.trends`): its
    share (%) over the first and the second half of the periods, the change in points with its 95% interval, and
    the Holm-adjusted p-value of Fisher's exact test."""

    topic: str
    posts: int
    first: float
    last: float
    change: float
    low: float
    high: float
    p_adjusted: float


@dataclass(frozen=True)
class OverTime:
    """Posts per period, in all and for the largest topics, and the topics that grow and shrink beyond chance."""

    period: str  # day, week or month
    periods: tuple[str, ...]  # first day of each period
    totals: tuple[int, ...]  # dated posts with a topic per period
    topics: tuple[tuple[str, tuple[int, ...]], ...]  # the TIMELINE_TOPICS largest topics: posts per period
    growing: tuple[Trend, ...]
    shrinking: tuple[Trend, ...]
    tested: int  # topics with enough dated posts to test: the family of the Holm adjustment


@dataclass(frozen=True)
class Reliability:
    """How far the run's confidence can be read as a probability: the calibrator's development reliability
    (per set, each confidence bin's mean confidence, accuracy and posts) and this run's posts per bin."""

    calibrated: bool  # the run's topic_confidence is the calibrator's probability (`[labelling] calibrate`)
    sets: tuple[tuple[str, tuple[tuple[float, float, int], ...]], ...]  # development set -> its bins
    histogram: tuple[int, ...]  # this run's posts with a topic per tenth of confidence, 0-0.1 first


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
    unsure: int  # posts held back below [labelling] min_confidence (their topic in topic_runner_up)
    min_posts: int  # topics with fewer posts are folded into one line
    topics: tuple[TopicView, ...]
    map: PostMap
    candidates: tuple[Candidate, ...]
    chosen: Candidate
    reason: str
    unmatched: tuple[UnmatchedView, ...] = ()
    over_time: OverTime | None = None
    reliability: Reliability | None = None

    @property
    def coverage(self) -> float:
        """Share of the posts shown with a topic."""
        return (self.posts - self.empty - self.without_topic) / max(self.posts, 1)

    @property
    def listed(self) -> tuple[TopicView, ...]:
        """The topics listed one by one: those with at least `min_posts` posts."""
        return tuple(t for t in self.topics if t.size >= self.min_posts)

    @property
    def folded(self) -> tuple[TopicView, ...]:
        """The topics folded into one line: fewer than `min_posts` posts each."""
        return tuple(t for t in self.topics if t.size < self.min_posts)

    @property
    def noise_share(self) -> float:
        return self.noise / max(self.posts - self.empty, 1)


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
            "text": [encodable(t) if isinstance(t, str) else "" for t in frame[text_column]],  # HTML is UTF-8
            "topic": frame["topic"].fillna("").astype(str),
            "confidence": pd.to_numeric(frame["topic_confidence"], errors="coerce"),
            "suggested": (frame[RUNNER_UP_COLUMN].fillna("").astype(str) if RUNNER_UP_COLUMN in frame.columns else ""),
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


def _words(value: object) -> tuple[str, ...]:
    return tuple(w for w in str(value).split(", ") if w) if isinstance(value, str) else ()


def _topic_views(posts: pd.DataFrame, table: pd.DataFrame, table_path: Path) -> tuple[TopicView, ...]:
    if "kind" in table.columns:
        table = table[table["kind"] == "topic"]
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
            keywords=_words(row.get("keywords")),
        )
        for (_, row), name, colour in zip(table.iterrows(), names, colours(len(names)), strict=True)
    )


def _unmatched_views(table: pd.DataFrame) -> tuple[UnmatchedView, ...]:
    """The unmatched clusters of the topic table, with the posts nearest their centres as examples."""
    if "kind" not in table.columns:
        return ()
    return tuple(
        UnmatchedView(
            name=str(row["topic"]),
            cluster=str(row["clusters"]),
            size=int(row["size"]),
            closest=str(row["runner_up"]) if pd.notna(row["runner_up"]) else "",
            confidence=float(row["confidence"]),
            keywords=_words(row.get("keywords")),
            examples=tuple(
                str(row[f"example_{i}"])
                for i in (1, 2, 3)
                if isinstance(row[f"example_{i}"], str) and row[f"example_{i}"]
            ),
        )
        for _, row in table[table["kind"] == "unmatched"].iterrows()
    )


def _over_time(folder: Path, topics: tuple[TopicView, ...]) -> OverTime | None:
    """The run's topics over time, when it wrote them (its posts had dates)."""
    path = Path(folder) / OVER_TIME_FILE
    if not path.is_file():
        return None
    counts = read_over_time(path)
    periods = tuple(sorted(set(counts["period"].astype(str))))
    by_topic = counts.pivot(index="period", columns="topic", values="posts").reindex(periods, fill_value=0)
    totals = tuple(int(v) for v in by_topic.sum(axis=1))  # posts with a topic per period
    largest = [t.topic for t in topics if t.topic in by_topic.columns][:TIMELINE_TOPICS]
    ranked = trends(counts)
    rows = [
        Trend(str(r.topic), int(r.posts), *(float(v) for v in (r.first, r.last, r.change, r.low, r.high, r.p_adjusted)))
        for r in ranked[ranked["trend"] != ""].itertuples()
    ]
    return OverTime(
        period=str(counts.attrs["period"]),
        periods=periods,
        totals=totals,
        topics=tuple((name, tuple(int(v) for v in by_topic[name])) for name in largest),
        growing=tuple(t for t in rows if t.change > 0)[:TRENDS],
        shrinking=tuple(t for t in reversed(rows) if t.change < 0)[:TRENDS],
        tested=len(ranked),
    )


def _reliability(folder: Path, confidence: pd.Series) -> Reliability:
    """The bundle's calibrator's development reliability (none when the run kept raw confidence) and the run's
    confidence histogram."""
    bundle = bundle_folder(folder)
    calibrator = ConfidenceCalibrator.from_bundle(read_bundle(bundle)) if (bundle / MANIFEST).is_file() else None
    sets: tuple[tuple[str, tuple[tuple[float, float, int], ...]], ...] = ()
    if calibrator is not None:
        sets = calibrator.development_bins()
    values = confidence.dropna().to_numpy(dtype=float)
    counts = np.bincount(np.clip((values * 10).astype(int), 0, 9), minlength=10)
    return Reliability(calibrator is not None, sets, tuple(int(c) for c in counts))


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
    encoded = [text[: settings.input.max_chars] for text in texts]  # as the run encoded them
    with progress("embedding posts for the map", len(set(encoded))) as advance:
        vectors = embedder(encoded, advance)
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
    table = read_table(table_path)
    topics = _topic_views(frame, table, table_path)
    filled = (frame["text"].str.strip() != "").to_numpy()
    unmatched = _unmatched_views(table)
    in_unmatched = np.isin(run.labels, [int(u.cluster) for u in unmatched])
    suggested = (frame["suggested"] != "").to_numpy()
    return Report(
        run_folder=folder,
        posts_path=posts_path,
        input=run.input,
        encoder=run.encoder,
        posts=len(frame),
        empty=int((~filled).sum()),
        without_topic=int((filled & (frame["topic"] == "").to_numpy()).sum()),
        noise=int((filled & (run.labels < 0)).sum()),
        unsure=int((filled & (frame["topic"] == "").to_numpy() & suggested & ~in_unmatched).sum()),
        min_posts=settings.output.min_posts,
        topics=topics,
        map=_post_map(frame, topics, settings, max_points, progress),
        candidates=tuple(run.candidates),
        chosen=run.chosen,
        reason=run.reason,
        unmatched=unmatched,
        over_time=_over_time(folder, topics),
        reliability=_reliability(folder, frame["confidence"]),
    )
