"""The method end to end: embed, search clusterings, name clusters, give every post a topic.

`cluster` returns a `ClusterRun` that a run folder keeps (`topicli.runs`) for `label`,
so the two can run apart; `run` does both. Nothing here prints: progress goes through the
`progress` factory the caller passes (the CLI gives rich bars).

Posts with the same text are embedded, scored and clustered once, as one row standing for
its copies (`PreparedPosts.weights`); every post gets its text's cluster and topic back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from topicli.config import MethodSettings, Settings
from topicli.errors import TopicliError
from topicli.io import Posts, file_digest, read_posts
from topicli.method.adaptation import ScoreAdapter
from topicli.method.calibration import ConfidenceCalibrator, calibrator_for
from topicli.method.classifier import load_classifier
from topicli.method.clustering import MIN_SAMPLES_GRID, ClusterSearch, nearest_neighbours
from topicli.method.embedding import Embedder, distinct_texts
from topicli.method.encoders import encoder_choice
from topicli.method.evaluation import FIGURES, gold_topics, read_gold, score
from topicli.method.keywords import keywords, stop_words, suggested_name
from topicli.method.labelling import ClusteringScorer, ClusterLabeller
from topicli.method.languages import (
    MULTILINGUAL_ENCODERS,
    EncoderChoice,
    LanguageMeans,
    language_means,
    read_languages,
    warn_languages,
)
from topicli.method.records import RUNNER_UP_COLUMN, ClusterRun, FeedCounts, check_output_columns, with_topics
from topicli.method.scoring import TopicScores, auto_neighbours, finish_scores, part_vectors, raw_scores, topic_floors
from topicli.method.timeline import over_time
from topicli.method.topics import read_topics
from topicli.progress import ProgressFactory, no_progress


@dataclass
class PreparedPosts:
    """What clustering, labelling and the bundle need of a posts file: computed once by `Pipeline.prepare`."""

    posts: Posts
    input_sha256: str
    encoder_name: str  # the one `auto` chose, when it was `auto`
    encoder_identity: str
    rows: np.ndarray  # the first post of each distinct non-empty text: one per row of `vectors` and the arrays below
    text_index: np.ndarray  # each post's row of `vectors` (the copies of a text share one), -1 for an empty post
    weights: np.ndarray  # how many posts each row stands for
    cut: int  # posts cut to [input] max_chars before encoding
    vectors: np.ndarray
    distances: np.ndarray  # to each text's nearest other texts, enough for the eps grid
    indices: np.ndarray  # of those nearest texts
    neighbours: np.ndarray  # the first k of them, which smooth a text's scores
    raw_scores: np.ndarray  # with the topic floors taken off and the per-run head's correction added
    topic_floors: np.ndarray
    topic_parts: np.ndarray
    part_owner: np.ndarray
    template: str  # the topic template the parts were embedded with (cls_model's own for that scorer)
    scores: TopicScores
    encoder_choice: EncoderChoice | None = None  # why this encoder, and the languages read
    language_means: LanguageMeans | None = None  # removed from `vectors` and the topic parts in a mixed-language run
    adapter: ScoreAdapter | None = None  # the per-run head whose correction `raw_scores` include


@dataclass
class LabelledPosts:
    """What `label` produces: posts with their topics, the topic table, and all a bundle is built from."""

    posts: pd.DataFrame
    topic_table: pd.DataFrame
    coverage: float
    labeller: ClusterLabeller
    topics: list[str]
    prepared: PreparedPosts
    cluster_keywords: dict[int, list[str]] | None = None  # c-TF-IDF keywords of each cluster
    over_time: pd.DataFrame | None = None  # topic counts per period (topicli.method.timeline), when dated
    calibrator: ConfidenceCalibrator | None = None  # what made topic_confidence a probability (none: raw)
    counts: FeedCounts | None = None  # what is shown and what is held back

    @property
    def cut(self) -> int:
        """Posts cut to [input] max_chars before encoding."""
        return self.prepared.cut


@dataclass
class EmbeddedPosts:
    """The posts' vectors and what reading them decided: `Pipeline.embed_posts`' value."""

    text_index: np.ndarray  # each post's row of `vectors` (the copies of a text share one), -1 for an empty post
    rows: np.ndarray  # the first post of each distinct non-empty text
    vectors: np.ndarray  # unit vectors, memory-mapped from the embedding cache
    cut: int  # posts cut to [input] max_chars before encoding
    choice: EncoderChoice  # the encoder used and why (`auto`'s choice from the posts' languages)
    embedder: Embedder  # that encoder, with its cache


@dataclass
class Centring:
    """Each language's mean vector, and the language of every row, for a mixed-language run."""

    means: LanguageMeans
    languages: list[str]


class Pipeline:
    """The method on one set of settings (`MethodSettings`): the encoder, cls_model and topic list, loaded
    when first needed.

    `prepare` embeds the posts and scores them; `cluster` and `label` take what it returns, so
    `topicli run` prepares once for both steps. Every choice a step makes from the posts (the
    encoder `auto` picks, the language means) is in the value it returns, never in the pipeline.
    """

    def __init__(
        self,
        method: MethodSettings,
        progress: ProgressFactory = no_progress,
        topics: list[str] | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        """`embedder` replaces the one the settings name (tests and benchmarks pass their own)."""
        self.method = method
        self.progress = progress
        self._given_embedder = embedder
        if topics is not None:
            self.topics = topics

    @cached_property
    def classifier(self) -> tuple[Any, dict[str, Any]]:
        return load_classifier(self.method.classifier.path)

    @cached_property
    def topics(self) -> list[str]:
        """The topic list of the settings, unless the caller gave one."""
        return read_topics(self.method.labelling.topics)

    def embedder(self, name: str) -> Embedder:
        """The encoder `name` with its cache (the one the caller gave, whatever the name)."""
        if self._given_embedder is not None:
            return self._given_embedder
        return _embedder(name, self.method.encoder.batch_size, self.method.encoder.cache_dir)

    def encoder_name(self) -> str:
        """The encoder the settings name: `auto` until posts are read (`embed_posts` tells which)."""
        return self.method.encoder.name if self._given_embedder is None else self._given_embedder.name

    def _checked_classifier(self, embedder: Embedder) -> tuple[Any, dict[str, Any]]:
        model, card = self.classifier
        if card.get("encoder") != embedder.identity:
            raise TopicliError(
                f"cls_model was trained on encoder {card.get('encoder_name', card.get('encoder'))!r}, not "
                f'{embedder.name!r}; train one for this encoder or set [labelling] scorer = "cosine"'
            )
        return model, card

    def embed_posts(self, posts: Posts) -> EmbeddedPosts:
        """Each post's distinct text, the first post of each, their unit vectors memory-mapped from the
        embedding cache, how many posts were cut to [input] max_chars, and the encoder (`auto`'s choice).

        A post is encoded from its first max_chars characters: encoders read a few hundred
        tokens anyway, and the whole of a megabyte post took gigabytes to tokenise and encode.
        `prepare` never copies the vectors whole: neighbours and topic scores read them in
        blocks of rows (bench/run.py `streaming` measures the peak).
        """
        limit = self.method.input.max_chars
        all_texts = posts.texts
        rows = np.array([i for i, text in enumerate(all_texts) if text.strip()], dtype=np.int64)
        texts = [all_texts[i][:limit] for i in rows]
        cut = sum(len(all_texts[i]) > limit for i in rows)
        del all_texts
        choice = encoder_choice(self.encoder_name(), texts)
        warn_languages(choice)
        embedder = self.embedder(choice.name)
        distinct, inverse = distinct_texts(texts)
        del texts
        text_index = np.full(len(posts.frame), -1, dtype=np.int64)
        text_index[rows] = inverse
        first = rows[np.unique(inverse, return_index=True)[1]]
        with self.progress("embedding posts", len(distinct)) as advance:
            vectors = embedder.on_disk(distinct, advance)
        return EmbeddedPosts(text_index, first, vectors, cut, choice, embedder)

    def centring(self, posts: Posts, embedded: EmbeddedPosts) -> Centring | None:
        """Each language's mean vector, when [encoder] centre_languages is on, the encoder is a multilingual one
        (USE, e5-small) and the posts mix languages (two or more of 1 %+ in the sample `auto` read); None
        otherwise, and the vectors stay as encoded."""
        choice = embedded.choice
        mixed = sum(share >= 0.01 for share in choice.languages.values()) >= 2
        if not self.method.encoder.centre_languages or not mixed or choice.name not in MULTILINGUAL_ENCODERS:
            return None
        limit = self.method.input.max_chars
        all_texts = posts.texts
        with self.progress("reading languages", None) as advance:
            languages = read_languages([all_texts[i][:limit] for i in embedded.rows])
            advance(1)
        text_index = embedded.text_index
        weights = np.bincount(text_index[text_index >= 0], minlength=len(embedded.rows))
        means = language_means(embedded.vectors, languages, weights)
        return None if means is None else Centring(means, languages)

    def neighbours(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances and indices of each text's nearest other texts: enough for smoothing and the eps grid."""
        k = max(self.method.labelling.neighbours or auto_neighbours(len(vectors)), max(MIN_SAMPLES_GRID))
        with self.progress("finding neighbours", None) as advance:
            found = nearest_neighbours(vectors, k)
            advance(1)
        return found

    def template(self, embedder: Embedder) -> str:
        """The topic template: cls_model's own (it was trained with it) for that scorer, else the setting."""
        s = self.method.labelling
        return self._checked_classifier(embedder)[1]["template"] if s.scorer == "cls_model" else s.topic_template

    def raw_scores(
        self, vectors: np.ndarray, template: str, embedder: Embedder, means: LanguageMeans | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Unsmoothed topic scores of the posts, less the topic floors; the floors, the topic-part
        vectors and the topic of each part. cls_model's probabilities keep no floor (zeros). With `means`
        (a mixed-language run), the topic parts lose the overall mean as the posts lost their language's."""
        s = self.method.labelling
        model = self._checked_classifier(embedder)[0] if s.scorer == "cls_model" else None
        parts, owner = part_vectors(self.topics, template, embedder)
        if means is not None:
            parts = means.centre_overall(parts)
        raw = raw_scores(vectors, parts, owner, len(self.topics), model)
        floors = topic_floors(raw, s.floor_quantile, 0.0 if model else s.floor_weight)
        raw -= floors
        return raw, floors, parts, owner

    def prepare(self, posts: Posts) -> PreparedPosts:
        """Vectors, neighbours and topic scores of the posts, for `cluster` and `label` alike.

        A post's topic probabilities are its raw scores smoothed over the k texts nearest its own (its
        copies are not its neighbours: they would only repeat its scores).
        """
        embedded = self.embed_posts(posts)
        embedder, vectors, text_index, rows = embedded.embedder, embedded.vectors, embedded.text_index, embedded.rows
        centring = self.centring(posts, embedded)
        means = None if centring is None else centring.means
        if centring is not None:
            vectors = centring.means.centre(vectors, centring.languages)
        distances, indices = self.neighbours(vectors)
        template = self.template(embedder)
        s = self.method.labelling
        k = s.neighbours or auto_neighbours(len(vectors))
        weights = np.bincount(text_index[text_index >= 0], minlength=len(rows))
        with self.progress("scoring topics", None) as advance:
            raw, floors, parts, owner = self.raw_scores(vectors, template, embedder, means)
            advance(1)

        def finish(scores: np.ndarray) -> np.ndarray:
            return finish_scores(scores, indices[:, :k], s.neighbour_weight, s.scorer != "cls_model")

        adapter = None
        if s.adapt_rounds:
            with self.progress("adapting to the posts", None) as advance:
                seed = self.method.clustering.seed
                adapter = ScoreAdapter(share=s.adapt_share, max_rounds=s.adapt_rounds, seed=seed)
                raw, matrix = adapter.fit_scores(vectors, raw, finish, weights)
                advance(1)
        else:
            matrix = finish(raw)
        return PreparedPosts(
            posts=posts,
            input_sha256=file_digest(posts.path),
            encoder_name=embedded.choice.name,
            encoder_identity=embedder.identity,
            rows=rows,
            text_index=text_index,
            weights=weights,
            cut=embedded.cut,
            vectors=vectors,
            distances=distances,
            indices=indices,
            neighbours=indices[:, :k],
            raw_scores=raw,
            topic_floors=floors,
            topic_parts=parts,
            part_owner=owner,
            template=template,
            scores=TopicScores(vectors, matrix),
            encoder_choice=embedded.choice,
            language_means=means,
            adapter=adapter,
        )

    def cluster(self, prepared: PreparedPosts) -> ClusterRun:
        """Search clusterings of the prepared posts and keep the best (`ClusterRun`)."""
        posts, vectors, weights = prepared.posts, prepared.vectors, prepared.weights
        s = self.method.clustering
        search = ClusterSearch(
            algorithm=s.algorithm,
            min_topics=s.min_topics,
            max_topics=s.max_topics,
            eps=s.eps,
            min_samples=s.min_samples,
            out_of_range=s.out_of_range,
        )
        scorer = ClusteringScorer(prepared.scores, self.method.labelling.k, s.eval_sample, s.seed, weights)
        with self.progress("searching clusterings", None) as advance:
            search.fit(vectors, scorer, advance, prepared.distances, prepared.indices, weights)
        posted = prepared.text_index >= 0
        labels = np.full(len(posts.frame), -1, dtype=np.int64)
        labels[posted] = search.labels_[prepared.text_index[posted]]
        core = np.zeros(len(posts.frame), dtype=bool)
        core[posted] = search.core_[prepared.text_index[posted]]
        return ClusterRun(
            input=str(posts.path),
            input_sha256=prepared.input_sha256,
            text_column=posts.text_column,
            encoder=prepared.encoder_identity,
            labels=labels,
            core=core,
            candidates=search.candidates_,
            chosen=search.best_,
            reason=_reason(search),
        )

    def label(self, prepared: PreparedPosts, run: ClusterRun) -> LabelledPosts:
        """Name each cluster from the topic list and give every post its topic."""
        posts = prepared.posts
        if prepared.input_sha256 != run.input_sha256:
            raise TopicliError(f"{posts.path} changed since it was clustered; run `topicli cluster` on it again")
        if prepared.encoder_identity != run.encoder:
            raise TopicliError(
                f"{posts.path} was clustered with encoder {run.encoder}, not {prepared.encoder_identity}; "
                "label with the same [encoder] name or cluster again"
            )
        vectors, probabilities = prepared.vectors, prepared.scores
        labels = run.labels[prepared.rows]
        s = self.method.labelling
        calibrator = calibrator_for(prepared.encoder_name, s.scorer) if s.calibrate else None
        # what is held back reads the probability that a topic is right: with raw scores (no calibrator for
        # this encoder and scorer, or calibrate off) the thresholds mean nothing, and nothing is held back
        calibrated = calibrator is not None
        labeller = ClusterLabeller(
            k=s.k,
            noise_policy=s.noise_policy,
            noise_distance=s.noise_distance,
            override_margin=s.override_margin,
            unmatched_below=s.unmatched_below if calibrated else 0.0,
            min_confidence=s.min_confidence if calibrated else 0.0,
        )
        with self.progress("labelling clusters", None) as advance:
            labeller.fit(vectors, labels, probabilities, prepared.weights, calibrator)
            clusters, topics, confidence = labeller.assign(vectors, labels, probabilities)
            if calibrator is not None:
                confidence = calibrator.calibrate_posts(confidence, probabilities)
            topics, confidence, withheld = labeller.withhold(topics, confidence)
            advance(1)
        check_output_columns(posts.frame, posts.path)
        rows = np.flatnonzero(prepared.text_index >= 0)  # every non-empty post, and the row of its text below
        text = prepared.text_index[rows]
        labels, clusters, topics, confidence = labels[text], clusters[text], topics[text], confidence[text]
        names = [self.topics[t] if t >= 0 else "" for t in topics]
        runner_up = None  # the column comes with the settings, so that the outputs' columns follow the settings
        if labeller.unmatched_below > 0 or labeller.min_confidence > 0:
            runner_up = [self.topics[t] if t >= 0 else "" for t in labeller.suggested(clusters, withheld[text])]
        frame = with_topics(posts.frame, rows, clusters, names, confidence, runner_up)
        all_texts = posts.texts
        texts = [all_texts[i] for i in rows]
        with self.progress("finding keywords", None) as advance:
            stop = stop_words(texts)
            cluster_keywords = keywords(texts, labels, s.keywords, stop)
            topic_keywords = keywords(texts, topics, s.keywords, stop)
            advance(1)
        voters = [all_texts[i] for i in prepared.rows]
        chance = labeller.cluster_probabilities(calibrator)  # an unmatched cluster's confidence, as flagged
        table = self._topic_table(
            labeller, texts, labels, topics, confidence, topic_keywords, cluster_keywords, voters, chance
        )
        unmatched = labeller.unmatched_best(clusters) >= 0
        counts = FeedCounts(
            posts=len(posts.frame),
            shown=int(np.sum(topics >= 0)),
            unsure=int(np.sum(withheld[text] >= 0)),
            unmatched=int(np.sum(unmatched)),
            noise=int(np.sum(labels < 0)),
        )
        over = over_time(posts.frame, frame["topic"], self.method.input.date_column)
        return LabelledPosts(
            frame, table, counts.coverage, labeller, list(self.topics), prepared, cluster_keywords, over, calibrator,
            counts,
        )  # fmt: skip

    def _topic_table(
        self,
        labeller: ClusterLabeller,
        texts: list[str],
        labels: np.ndarray,
        topics: np.ndarray,
        confidence: np.ndarray,
        topic_keywords: dict[int, list[str]],
        cluster_keywords: dict[int, list[str]],
        voter_texts: list[str],
        cluster_chance: np.ndarray,
    ) -> pd.DataFrame:
        """One row per topic used: the clusters voted to it, size, confidence, runner-up, keywords, three example
        posts; then one row per unmatched cluster (`kind` "unmatched"), named by its first keywords.

        The examples are the topic's most confident posts (distinct texts); the runner-up is that of
        the largest cluster voted to the topic, empty when none was (all its posts came one by one).
        An unmatched cluster's runner-up is the topic it would have had, its confidence the chance that topic
        is right (`cluster_chance`, what flagged it), its examples the posts nearest its centre (`voter_texts`:
        the text of each row the voters index).
        """
        rows = []
        for topic in sorted(set(topics.tolist()) - {-1}):
            mine = [c for c in labeller.cluster_topics_ if c.topic == topic and not c.unmatched]
            posts = np.flatnonzero(topics == topic)
            from_noise = posts[labels[posts] < 0]
            ranked = posts[np.lexsort((posts, -confidence[posts]))]
            runner_up = self.topics[max(mine, key=lambda c: (c.size, -c.cluster)).runner_up] if mine else ""
            rows.append(
                _table_row(
                    self.topics[topic], "topic", " ".join(str(c.cluster) for c in mine), len(posts), len(from_noise),
                    float(np.mean(confidence[posts])), runner_up, topic_keywords.get(topic, []),
                    [texts[i] for i in ranked],
                )
            )  # fmt: skip
        for c in sorted((c for c in labeller.cluster_topics_ if c.unmatched), key=lambda c: (-c.size, c.cluster)):
            words = cluster_keywords.get(c.cluster, [])
            rows.append(
                _table_row(
                    suggested_name(words) or f"cluster {c.cluster}", "unmatched", str(c.cluster),
                    int(np.sum(labels == c.cluster)), 0, float(cluster_chance[c.cluster]), self.topics[c.topic], words,
                    [voter_texts[v] for v in c.voters],
                )
            )  # fmt: skip
        table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
        order = table.assign(unmatched=table["kind"] == "unmatched")
        order = order.sort_values(["unmatched", "size", "topic"], ascending=[True, False, True], kind="stable")
        return table.loc[order.index].reset_index(drop=True)


TABLE_COLUMNS = (
    "topic", "clusters", "size", "from_noise", "confidence", "runner_up", "keywords",
    "example_1", "example_2", "example_3", "kind",
)  # fmt: skip


def _table_row(
    topic: str,
    kind: str,
    clusters: str,
    size: int,
    from_noise: int,
    confidence: float,
    runner_up: str,
    words: list[str],
    ranked_texts: list[str],
) -> dict[str, Any]:
    """A row of the topic table; keywords are joined with ", ", examples are the first 3 distinct texts."""
    examples = list(dict.fromkeys(ranked_texts))[:3]
    return {
        "topic": topic,
        "kind": kind,
        "clusters": clusters,
        "size": size,
        "from_noise": from_noise,
        "confidence": round(confidence, 4),
        "runner_up": runner_up,
        "keywords": ", ".join(words),
        **{f"example_{i + 1}": (examples[i] if i < len(examples) else "") for i in range(3)},
    }


def _reason(search: ClusterSearch) -> str:
    best = search.best_
    params = (
        f"eps={best.eps:g}, min_samples={best.min_samples}"
        if best.algorithm == "dbscan"
        else (f"min_cluster_size={best.min_cluster_size}, min_samples={best.min_samples}")
    )
    in_range = [c for c in search.candidates_ if c.in_range]
    if search.fallback_:
        return (
            f"WARNING: no clustering has {search.min_topics}-{search.max_topics} clusters; took the nearest, "
            f"{params}: {best.n_clusters} clusters (score {best.score:.3f}) among {len(search.candidates_)} candidates"
        )
    if not best.in_range:
        return (
            f"fixed parameters {params} give {best.n_clusters} clusters, outside "
            f"{search.min_topics}-{search.max_topics}; used as given"
        )
    return (
        f"chose {params}: {best.n_clusters} clusters with the highest score {best.score:.3f} "
        f"(coverage {best.coverage:.2f} x topic agreement {best.scores['agreement']:.2f}) among "
        f"{len(in_range)} of {len(search.candidates_)} candidates with {search.min_topics}-{search.max_topics} clusters"
    )


@cache
def _embedder(name: str, batch_size: int, cache_dir: str) -> Embedder:
    """One loaded encoder per (name, batch size, cache) in this process: a run and its serving checks share it."""
    return Embedder(name, batch_size, cache_dir)


def load_posts(path: Path, settings: Settings | MethodSettings) -> Posts:
    return read_posts(path, settings.input.text_column)


def evaluate_posts(
    posts: Posts, gold_column: str, settings: Settings, progress: ProgressFactory, use_gold_topics: bool
) -> dict[str, float]:
    """`topicli evaluate`: the whole pipeline, scored against gold; the gold labels are the topics unless given.

    Accuracy, macro-F1 and NMI read every post's topic, shown or held back (its `topic_runner_up`), so that they
    compare with methods that always answer; `coverage` is the share shown with a topic and `accuracy_shown`
    the accuracy of those."""
    started = time.perf_counter()
    gold = read_gold(posts.frame, gold_column, str(posts.path))
    pipeline = Pipeline(settings.method, progress, topics=gold_topics(gold) if use_gold_topics else None)
    prepared = pipeline.prepare(posts)
    clustering = pipeline.cluster(prepared)
    result = pipeline.label(prepared, clustering)
    shown = result.posts["topic"]
    held = result.posts[RUNNER_UP_COLUMN] if RUNNER_UP_COLUMN in result.posts.columns else ""
    clusters = result.posts["cluster"].tolist()
    figures = score(shown.where(shown != "", held).tolist(), gold, clusters, pipeline.topics)
    on_shown = score(shown.tolist(), gold, clusters, pipeline.topics)
    figures["coverage"] = on_shown["coverage"]
    figures["accuracy_shown"] = on_shown["accuracy"] / on_shown["coverage"] if on_shown["coverage"] else float("nan")
    figures["n_clusters"] = clustering.chosen.n_clusters
    figures["seconds"] = round(time.perf_counter() - started, 2)
    return {name: figures[name] for name in FIGURES}
