"""The method end to end: embed, search clusterings, name clusters, give every post a topic.

`cluster` leaves a run folder (`clustering.json` + `clusters.npy`) that `label` picks up,
so the two can run apart; `run` does both. Nothing here prints: progress goes through the
`progress` factory the caller passes (the CLI gives rich bars).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from topicli import __version__
from topicli.classifier import load_classifier
from topicli.clustering import MIN_SAMPLES_GRID, Candidate, ClusterSearch, nearest_neighbours
from topicli.config import Settings
from topicli.embedding import AUTO, Embedder, choose_encoder
from topicli.errors import TopicliError
from topicli.evaluation import FIGURES, gold_topics, read_gold, score
from topicli.io import Posts, atomic_path, file_digest, read_posts, table_format, write_table
from topicli.labelling import ClusteringScorer, ClusterLabeller, read_topics
from topicli.progress import ProgressFactory, no_progress
from topicli.scoring import (
    TopicScores,
    auto_neighbours,
    finish_scores,
    part_vectors,
    raw_scores,
    topic_floors,
)

OUTPUT_COLUMNS = ("cluster", "topic", "topic_confidence")


@dataclass
class ClusterRun:
    """A chosen clustering of a posts file: what `cluster` leaves for `label`."""

    input: str
    input_sha256: str
    text_column: str
    encoder: str
    labels: np.ndarray  # per post; -1 is noise or an empty post
    core: np.ndarray  # per post; True for DBSCAN core points (HDBSCAN: cluster members)
    candidates: list[Candidate]
    chosen: Candidate
    reason: str

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in (("clusters.npy", self.labels), ("core.npy", self.core)):
            with atomic_path(folder / name) as temp, open(temp, "wb") as handle:
                np.save(handle, array)
        document = {
            "topicli_version": __version__,
            "input": self.input,
            "input_sha256": self.input_sha256,
            "text_column": self.text_column,
            "encoder": self.encoder,
            "candidates": [c.to_dict() for c in self.candidates],
            "chosen": self.chosen.to_dict(),
            "reason": self.reason,
        }
        with atomic_path(folder / "clustering.json") as temp:
            temp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> ClusterRun:
        manifest, labels = folder / "clustering.json", folder / "clusters.npy"
        if not manifest.is_file() or not labels.is_file():
            raise TopicliError(f"{folder} holds no clustering; run `topicli cluster POSTS` first")
        document = json.loads(manifest.read_text(encoding="utf-8"))
        return cls(
            input=document["input"],
            input_sha256=document["input_sha256"],
            text_column=document["text_column"],
            encoder=document["encoder"],
            labels=np.load(labels),
            core=np.load(folder / "core.npy"),
            candidates=[Candidate(**c) for c in document["candidates"]],
            chosen=Candidate(**document["chosen"]),
            reason=document["reason"],
        )


@dataclass
class LabelledPosts:
    """What `label` produces: posts with their topics, and the topic table."""

    posts: pd.DataFrame
    topic_table: pd.DataFrame
    coverage: float
    labeller: ClusterLabeller


def default_run_folder(settings: Settings, posts_path: Path) -> Path:
    return Path(settings.output.dir) / Path(posts_path).stem


def latest_run_folder(settings: Settings) -> Path:
    """The run folder under the output dir whose clustering was written last."""
    found = sorted(Path(settings.output.dir).glob("*/clustering.json"), key=lambda p: (p.stat().st_mtime, str(p)))
    if not found:
        raise TopicliError(f"no clustering under {settings.output.dir}; run `topicli cluster POSTS` first")
    return found[-1].parent


def topic_table_path(output: Path) -> Path:
    """The topic table's file beside the posts output: `posts.csv` → `posts.topics.csv`."""
    return output.with_name(f"{output.stem}.topics{output.suffix}")


@dataclass
class Prepared:
    """What both steps (and the bundle) need of a posts file, computed once."""

    posts: Posts
    rows: np.ndarray  # the non-empty posts
    vectors: np.ndarray
    distances: np.ndarray  # to each post's nearest posts, enough for the eps grid
    indices: np.ndarray  # of those nearest posts
    neighbours: np.ndarray  # the first k of them, which smooth a post's scores
    raw_scores: np.ndarray  # with the topic floors taken off
    topic_floors: np.ndarray
    topic_parts: np.ndarray
    part_owner: np.ndarray
    scores: TopicScores


class Pipeline:
    """The encoder, cls_model and topic list of one set of settings, loaded when first needed."""

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
        self._prepared: Prepared | None = None
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

    def embed_posts(self, posts: Posts) -> tuple[np.ndarray, np.ndarray]:
        """(indices of non-empty posts, their unit vectors, memory-mapped from the embedding cache).

        `prepare` never copies them whole: neighbours and topic scores read them in blocks
        of rows (bench/run.py `streaming` measures the peak).
        """
        all_texts = posts.texts
        rows = np.array([i for i, text in enumerate(all_texts) if text.strip()], dtype=np.int64)
        texts = [all_texts[i] for i in rows]
        del all_texts
        if self.encoder_name == AUTO:
            self.encoder_name = choose_encoder(AUTO, texts)
        with self.progress("embedding posts", len(set(texts))) as advance:
            vectors = self.embedder.on_disk(texts, advance)
        return rows, vectors

    def neighbours(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances and indices of each post's nearest posts: enough for smoothing and the eps grid."""
        k = max(self.settings.labelling.neighbours or auto_neighbours(len(vectors)), max(MIN_SAMPLES_GRID))
        with self.progress("finding neighbours", None) as advance:
            found = nearest_neighbours(vectors, k)
            advance(1)
        return found

    def raw_scores(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Unsmoothed topic scores of the posts, less the topic floors; the floors, the topic-part
        vectors and the topic of each part. cls_model's probabilities keep no floor (zeros)."""
        s = self.settings.labelling
        model, template = None, s.topic_template
        if s.scorer == "cls_model":
            model, manifest = self._checked_classifier()
            template = manifest["template"]
        parts, owner = part_vectors(self.topics, template, self.embedder)
        raw = raw_scores(vectors, parts, owner, len(self.topics), model)
        floors = topic_floors(raw, s.floor_quantile, 0.0 if model else s.floor_weight)
        raw -= floors
        return raw, floors, parts, owner

    def prepare(self, posts: Posts) -> Prepared:
        """Vectors, neighbours and topic scores of the posts, computed once for `cluster` and `label` alike.

        A post's topic probabilities are its raw scores smoothed over its k nearest posts.
        """
        if self._prepared is None or self._prepared.posts is not posts:
            rows, vectors = self.embed_posts(posts)
            distances, indices = self.neighbours(vectors)
            raw, floors, parts, owner = self.raw_scores(vectors)
            s = self.settings.labelling
            k = s.neighbours or auto_neighbours(len(vectors))
            matrix = finish_scores(raw, indices[:, :k], s.neighbour_weight, s.scorer != "cls_model")
            self._prepared = Prepared(
                posts,
                rows,
                vectors,
                distances,
                indices,
                indices[:, :k],
                raw,
                floors,
                parts,
                owner,
                TopicScores(vectors, matrix),
            )
        return self._prepared

    def cluster(self, posts: Posts) -> ClusterRun:
        prepared = self.prepare(posts)
        rows, vectors = prepared.rows, prepared.vectors
        s = self.settings.clustering
        search = ClusterSearch(s.algorithm, s.min_topics, s.max_topics, s.eps, s.min_samples)
        scorer = ClusteringScorer(prepared.scores, self.settings.labelling.k, s.eval_sample, s.seed)
        with self.progress("searching clusterings", None) as advance:
            search.fit(vectors, scorer, advance, prepared.distances, prepared.indices)
        labels = np.full(len(posts.frame), -1, dtype=np.int64)
        labels[rows] = search.labels_
        core = np.zeros(len(posts.frame), dtype=bool)
        core[rows] = search.core_
        return ClusterRun(
            input=str(posts.path),
            input_sha256=file_digest(posts.path),
            text_column=posts.text_column,
            encoder=self.embedder.identity,
            labels=labels,
            core=core,
            candidates=search.candidates_,
            chosen=search.best_,
            reason=_reason(search),
        )

    def label(self, posts: Posts, run: ClusterRun) -> LabelledPosts:
        if file_digest(posts.path) != run.input_sha256:
            raise TopicliError(f"{posts.path} changed since it was clustered; run `topicli cluster` on it again")
        prepared = self.prepare(posts)
        if self.embedder.identity != run.encoder:
            raise TopicliError(
                f"{posts.path} was clustered with encoder {run.encoder}, not {self.embedder.identity}; "
                "label with the same [encoder] name or cluster again"
            )
        rows, vectors, probabilities = prepared.rows, prepared.vectors, prepared.scores
        labels = run.labels[rows]
        s = self.settings.labelling
        labeller = ClusterLabeller(s.k, s.noise_policy, s.noise_distance, s.override_margin)
        labeller.fit(vectors, labels, probabilities)
        clusters, topics, confidence = labeller.assign(vectors, labels, probabilities)
        frame = posts.frame.copy()
        taken = [c for c in OUTPUT_COLUMNS if c in frame.columns]
        if taken:
            raise TopicliError(f"{posts.path} already has column(s) {', '.join(taken)}; rename them and rerun")
        frame["cluster"] = -1
        frame["topic"] = ""
        frame["topic_confidence"] = np.nan
        frame.loc[rows, "cluster"] = clusters
        frame.loc[rows, "topic"] = [self.topics[t] if t >= 0 else "" for t in topics]
        frame.loc[rows, "topic_confidence"] = np.round(confidence, 4)
        all_texts = posts.texts
        texts = [all_texts[i] for i in rows]
        table = self._topic_table(labeller, texts, labels, topics, confidence)
        return LabelledPosts(frame, table, float(np.mean(topics >= 0)) if len(topics) else 0.0, labeller)

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


def write_outputs(result: LabelledPosts, output: Path) -> Path:
    """Posts and topic table, each written atomically; returns the topic table's path."""
    table_format(output)
    write_table(result.posts, output)
    table_path = topic_table_path(output)
    write_table(result.topic_table, table_path)
    return table_path


def load_posts(path: Path, settings: Settings) -> Posts:
    return read_posts(path, settings.input.text_column)


def evaluate_posts(
    posts: Posts, gold_column: str, settings: Settings, progress: ProgressFactory, use_gold_topics: bool
) -> dict[str, float]:
    """`topicli evaluate`: the whole pipeline, scored against gold; the gold labels are the topics unless given."""
    started = time.perf_counter()
    gold = read_gold(posts.frame, gold_column, str(posts.path))
    pipeline = Pipeline(settings, progress, topics=gold_topics(gold) if use_gold_topics else None)
    clustering = pipeline.cluster(posts)
    result = pipeline.label(posts, clustering)
    figures = score(result.posts["topic"].tolist(), gold, result.posts["cluster"].tolist(), pipeline.topics)
    figures["n_clusters"] = clustering.chosen.n_clusters
    figures["seconds"] = round(time.perf_counter() - started, 2)
    return {name: figures[name] for name in FIGURES}
