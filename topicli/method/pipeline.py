"""The method end to end: embed, search clusterings, name clusters, give every post a topic.

`cluster` returns a `ClusterRun` that a run folder keeps (`topicli.method.runs`) for `label`,
so the two can run apart; `run` does both. Nothing here prints: progress goes through the
`progress` factory the caller passes (the CLI gives rich bars).

Posts with the same text are embedded, scored and clustered once, as one row standing for
its copies (`PreparedPosts.weights`); every post gets its text's cluster and topic back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import Posts, file_digest, read_posts
from topicli.method.classifier import load_classifier
from topicli.method.clustering import MIN_SAMPLES_GRID, ClusterSearch, nearest_neighbours
from topicli.method.embedding import Embedder, distinct_texts
from topicli.method.encoders import AUTO, choose_encoder
from topicli.method.evaluation import FIGURES, gold_topics, read_gold, score
from topicli.method.labelling import ClusteringScorer, ClusterLabeller
from topicli.method.runs import ClusterRun, check_output_columns, with_topics
from topicli.method.scoring import TopicScores, auto_neighbours, finish_scores, part_vectors, raw_scores, topic_floors
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
    raw_scores: np.ndarray  # with the topic floors taken off
    topic_floors: np.ndarray
    topic_parts: np.ndarray
    part_owner: np.ndarray
    template: str  # the topic template the parts were embedded with (cls_model's own for that scorer)
    scores: TopicScores


@dataclass
class LabelledPosts:
    """What `label` produces: posts with their topics, the topic table, and all a bundle is built from."""

    posts: pd.DataFrame
    topic_table: pd.DataFrame
    coverage: float
    labeller: ClusterLabeller
    topics: list[str]
    prepared: PreparedPosts

    @property
    def cut(self) -> int:
        """Posts cut to [input] max_chars before encoding."""
        return self.prepared.cut


class Pipeline:
    """The encoder, cls_model and topic list of one set of settings, loaded when first needed.

    `prepare` embeds the posts and scores them; `cluster` and `label` take what it returns, so
    `topicli run` prepares once for both steps.
    """

    def __init__(
        self,
        settings: Settings,
        progress: ProgressFactory = no_progress,
        topics: list[str] | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        """`embedder` replaces the one the settings name (tests and benchmarks pass their own)."""
        self.settings = settings
        self.progress = progress
        self.encoder_name = settings.encoder.name if embedder is None else embedder.name
        if topics is not None:
            self.topics = topics
        if embedder is not None:
            self.embedder = embedder

    @cached_property
    def embedder(self) -> Embedder:
        """The encoder named in the settings; for `auto`, the one chosen when the posts were embedded."""
        if self.encoder_name == AUTO:
            raise RuntimeError("the auto encoder is chosen from the posts: embed them first")
        s = self.settings.encoder
        return Embedder(self.encoder_name, s.batch_size, s.cache_dir)

    @cached_property
    def classifier(self) -> tuple[Any, dict[str, Any]]:
        return load_classifier(self.settings.classifier.path)

    @cached_property
    def topics(self) -> list[str]:
        """The topic list of the settings, unless the caller gave one."""
        return read_topics(self.settings.labelling.topics)

    def _checked_classifier(self) -> tuple[Any, dict[str, Any]]:
        model, manifest = self.classifier
        if manifest.get("encoder") != self.embedder.identity:
            raise TopicliError(
                f"cls_model was trained on encoder {manifest.get('encoder_name', manifest.get('encoder'))!r}, not "
                f'{self.encoder_name!r}; train one for this encoder or set [labelling] scorer = "cosine"'
            )
        return model, manifest

    def embed_posts(self, posts: Posts) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(each post's distinct text: `PreparedPosts.text_index`, the first post of each, their unit vectors
        memory-mapped from the embedding cache, how many posts were cut to [input] max_chars).

        A post is encoded from its first max_chars characters: encoders read a few hundred
        tokens anyway, and the whole of a megabyte post took gigabytes to tokenise and encode.
        `prepare` never copies the vectors whole: neighbours and topic scores read them in
        blocks of rows (bench/run.py `streaming` measures the peak).
        """
        limit = self.settings.input.max_chars
        all_texts = posts.texts
        rows = np.array([i for i, text in enumerate(all_texts) if text.strip()], dtype=np.int64)
        texts = [all_texts[i][:limit] for i in rows]
        cut = sum(len(all_texts[i]) > limit for i in rows)
        del all_texts
        if self.encoder_name == AUTO:
            self.encoder_name = choose_encoder(AUTO, texts)
        distinct, inverse = distinct_texts(texts)
        del texts
        text_index = np.full(len(posts.frame), -1, dtype=np.int64)
        text_index[rows] = inverse
        first = rows[np.unique(inverse, return_index=True)[1]]
        with self.progress("embedding posts", len(distinct)) as advance:
            vectors = self.embedder.on_disk(distinct, advance)
        return text_index, first, vectors, cut

    def neighbours(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances and indices of each text's nearest other texts: enough for smoothing and the eps grid."""
        k = max(self.settings.labelling.neighbours or auto_neighbours(len(vectors)), max(MIN_SAMPLES_GRID))
        with self.progress("finding neighbours", None) as advance:
            found = nearest_neighbours(vectors, k)
            advance(1)
        return found

    def template(self) -> str:
        """The topic template: cls_model's own (it was trained with it) for that scorer, else the setting."""
        s = self.settings.labelling
        return self._checked_classifier()[1]["template"] if s.scorer == "cls_model" else s.topic_template

    def raw_scores(self, vectors: np.ndarray, template: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Unsmoothed topic scores of the posts, less the topic floors; the floors, the topic-part
        vectors and the topic of each part. cls_model's probabilities keep no floor (zeros)."""
        s = self.settings.labelling
        model = self._checked_classifier()[0] if s.scorer == "cls_model" else None
        parts, owner = part_vectors(self.topics, template, self.embedder)
        raw = raw_scores(vectors, parts, owner, len(self.topics), model)
        floors = topic_floors(raw, s.floor_quantile, 0.0 if model else s.floor_weight)
        raw -= floors
        return raw, floors, parts, owner

    def prepare(self, posts: Posts) -> PreparedPosts:
        """Vectors, neighbours and topic scores of the posts, for `cluster` and `label` alike.

        A post's topic probabilities are its raw scores smoothed over the k texts nearest its own (its
        copies are not its neighbours: they would only repeat its scores).
        """
        text_index, rows, vectors, cut = self.embed_posts(posts)
        distances, indices = self.neighbours(vectors)
        template = self.template()
        s = self.settings.labelling
        k = s.neighbours or auto_neighbours(len(vectors))
        with self.progress("scoring topics", None) as advance:
            raw, floors, parts, owner = self.raw_scores(vectors, template)
            matrix = finish_scores(raw, indices[:, :k], s.neighbour_weight, s.scorer != "cls_model")
            advance(1)
        return PreparedPosts(
            posts=posts,
            input_sha256=file_digest(posts.path),
            encoder_name=self.encoder_name,
            encoder_identity=self.embedder.identity,
            rows=rows,
            text_index=text_index,
            weights=np.bincount(text_index[text_index >= 0], minlength=len(rows)),
            cut=cut,
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
        )

    def cluster(self, prepared: PreparedPosts) -> ClusterRun:
        """Search clusterings of the prepared posts and keep the best (`ClusterRun`)."""
        posts, vectors, weights = prepared.posts, prepared.vectors, prepared.weights
        s = self.settings.clustering
        search = ClusterSearch(
            algorithm=s.algorithm,
            min_topics=s.min_topics,
            max_topics=s.max_topics,
            eps=s.eps,
            min_samples=s.min_samples,
        )
        scorer = ClusteringScorer(prepared.scores, self.settings.labelling.k, s.eval_sample, s.seed, weights)
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
        s = self.settings.labelling
        labeller = ClusterLabeller(
            k=s.k, noise_policy=s.noise_policy, noise_distance=s.noise_distance, override_margin=s.override_margin
        )
        with self.progress("labelling clusters", None) as advance:
            labeller.fit(vectors, labels, probabilities, prepared.weights)
            clusters, topics, confidence = labeller.assign(vectors, labels, probabilities)
            advance(1)
        check_output_columns(posts.frame, posts.path)
        rows = np.flatnonzero(prepared.text_index >= 0)  # every non-empty post, and the row of its text below
        text = prepared.text_index[rows]
        labels, clusters, topics, confidence = labels[text], clusters[text], topics[text], confidence[text]
        names = [self.topics[t] if t >= 0 else "" for t in topics]
        frame = with_topics(posts.frame, rows, clusters, names, confidence)
        all_texts = posts.texts
        texts = [all_texts[i] for i in rows]
        table = self._topic_table(labeller, texts, labels, topics, confidence)
        coverage = float(np.mean(topics >= 0)) if len(topics) else 0.0
        return LabelledPosts(frame, table, coverage, labeller, list(self.topics), prepared)

    def _topic_table(
        self,
        labeller: ClusterLabeller,
        texts: list[str],
        labels: np.ndarray,
        topics: np.ndarray,
        confidence: np.ndarray,
    ) -> pd.DataFrame:
        """One row per topic used: the clusters voted to it, size, confidence, runner-up, three example posts.

        The examples are the topic's most confident posts (distinct texts); the runner-up is that of
        the largest cluster voted to the topic, empty when none was (all its posts came one by one).
        """
        rows = []
        for topic in sorted(set(topics.tolist()) - {-1}):
            mine = [c for c in labeller.cluster_topics_ if c.topic == topic]
            posts = np.flatnonzero(topics == topic)
            from_noise = posts[labels[posts] < 0]
            ranked = posts[np.lexsort((posts, -confidence[posts]))]
            examples = list(dict.fromkeys(texts[i] for i in ranked))[:3]
            runner_up = self.topics[max(mine, key=lambda c: (c.size, -c.cluster)).runner_up] if mine else ""
            rows.append(
                {
                    "topic": self.topics[topic],
                    "clusters": " ".join(str(c.cluster) for c in mine),
                    "size": len(posts),
                    "from_noise": len(from_noise),
                    "confidence": round(float(np.mean(confidence[posts])), 4),
                    "runner_up": runner_up,
                    **{f"example_{i + 1}": (examples[i] if i < len(examples) else "") for i in range(3)},
                }
            )
        table = pd.DataFrame(
            rows,
            columns=[
                "topic",
                "clusters",
                "size",
                "from_noise",
                "confidence",
                "runner_up",
                "example_1",
                "example_2",
                "example_3",
            ],
        )
        return table.sort_values(["size", "topic"], ascending=[False, True], kind="stable").reset_index(drop=True)


def _reason(search: ClusterSearch) -> str:
    best = search.best_
    params = (
        f"eps={best.eps:g}, min_samples={best.min_samples}"
        if best.algorithm == "dbscan"
        else (f"min_cluster_size={best.min_cluster_size}, min_samples={best.min_samples}")
    )
    in_range = [c for c in search.candidates_ if c.in_range]
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


def load_posts(path: Path, settings: Settings) -> Posts:
    return read_posts(path, settings.input.text_column)


def evaluate_posts(
    posts: Posts, gold_column: str, settings: Settings, progress: ProgressFactory, use_gold_topics: bool
) -> dict[str, float]:
    """`topicli evaluate`: the whole pipeline, scored against gold; the gold labels are the topics unless given."""
    started = time.perf_counter()
    gold = read_gold(posts.frame, gold_column, str(posts.path))
    pipeline = Pipeline(settings, progress, topics=gold_topics(gold) if use_gold_topics else None)
    prepared = pipeline.prepare(posts)
    clustering = pipeline.cluster(prepared)
    result = pipeline.label(prepared, clustering)
    figures = score(result.posts["topic"].tolist(), gold, result.posts["cluster"].tolist(), pipeline.topics)
    figures["n_clusters"] = clustering.chosen.n_clusters
    figures["seconds"] = round(time.perf_counter() - started, 2)
    return {name: figures[name] for name in FIGURES}
