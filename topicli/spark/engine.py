"""The driver's side of `--engine spark`: embed in tasks, fit on a sample here, assign every post in tasks.

1. The posts are read by Spark (CSV, JSON lines, JSON or Parquet; the text column found as a
   run finds it), each given an increasing `_id`, and embedded in `mapInPandas` tasks: one ONNX
   encoder per Python worker. The posts with their vectors are written as Parquet partitions
   (`vectors.parquet/` in the run folder).
2. The driver takes `[scale] sample` non-empty posts (all of them when there are no more; else
   the lowest seeded hashes of `_id`), their vectors only, and runs today's method on them,
   unchanged: `Pipeline.prepare` (the vectors come from the tasks, not computed again), `cluster`,
   `label`, and the bundle. The driver never holds more vectors than the sample's.
3. The bundle's files are broadcast, and every post is assigned in tasks by the bundle's own rule
   (`BundleModel.assign_vectors`). The posts with `cluster`, `topic` and `topic_confidence` are written as
   partitioned Parquet or CSV.

With a sample of every post, step 2 is the single-process run itself, so every post gets the
single-process run's topic (tests/test_spark.py); with a smaller sample, posts outside it get the
topic a served bundle would give them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import FORMATS, Posts, find_text_column, write_table
from topicli.method.embedding import Embedder
from topicli.method.encoders import AUTO, Encoder, choose_encoder, load_encoder
from topicli.method.pipeline import LabelledPosts, Pipeline
from topicli.method.records import OUTPUT_COLUMNS, RUNNER_UP_COLUMN, ClusterRun
from topicli.progress import ProgressFactory, no_progress
from topicli.runs.folder import bundle_folder
from topicli.runs.service import RunWriter
from topicli.serving.bundle import MANIFEST, Manifest, read_bundle
from topicli.spark.tasks import ID, TEXT, VECTOR, assign_partition, bundle_files, embed_partition, score_partition

VECTORS_FOLDER = "vectors.parquet"
SAMPLE_FILE = "sample.parquet"
AUTO_SAMPLE = 2000  # posts `auto` reads to choose the encoder, as a run does


@dataclass
class SparkRun:
    """What `run --engine spark` did: where things went, how many posts, and the sample's labelled result."""

    run_folder: Path
    output: Path | str
    posts: int
    sample: int
    clustering: ClusterRun
    labelled: LabelledPosts
    topic_sizes: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class SparkScore:
    output: Path | str
    posts: int
    bundle_id: str
    topic_sizes: dict[str, int]


class KnownVectors:
    """An encoder that answers with the vectors Spark tasks computed for the sample's texts, and runs the real
    `encoder` only on other texts (the topic names). Same identity, so the bundle records the real encoder."""

    def __init__(self, encoder: Encoder, texts: Sequence[str], vectors: np.ndarray) -> None:
        self.encoder = encoder
        self.known = dict(zip(texts, vectors, strict=True))
        self.identity = encoder.identity
        self.dimension = encoder.dimension

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        missing = []
        for i, text in enumerate(texts):
            vector = self.known.get(text)
            if vector is None:
                missing.append(i)
            else:
                out[i] = vector
        if missing:
            out[missing] = self.encoder.encode([texts[i] for i in missing])
        return out


def _is_remote(source: str) -> bool:
    return "://" in source


def _absolute(path: str | Path | None) -> Any:
    """A local path made absolute (Spark resolves relative ones against the folder its JVM started in, which
    need not be this process's); a URI as it is."""
    if path is None or _is_remote(str(path)):
        return path
    return str(Path(path).absolute()) if isinstance(path, str) else Path(path).absolute()


def check_source(source: str) -> str:
    """The posts' format (csv, jsonl, json, parquet), refused before Spark starts when it cannot be read from here.

    A local path must exist. An `azureml://` URI names workspace storage that only Azure ML mounts:
    a Spark job there reads it (`topicli train --on azureml`), Spark here cannot.
    """
    suffix = Path(source.split("?")[0].rstrip("/")).suffix.lower()
    fmt = FORMATS.get(suffix)
    if fmt is None:
        raise TopicliError(f"{source}: unknown format {suffix or '(no suffix)'!r}; use .csv, .jsonl, .json or .parquet")
    if source.startswith("azureml:"):
        raise TopicliError(
            f"{source} is workspace storage that Spark here cannot reach; run it in Azure "
            "(`topicli train --on azureml`) or download it first (`az ml data download`)"
        )
    if not _is_remote(source) and not Path(source).exists():
        raise TopicliError(f"{source} does not exist")
    return fmt


def read_posts_frame(spark: Any, source: str, text_column: str) -> tuple[Any, str]:
    """The posts as a Spark DataFrame with `_id` and `_text` added, and the name of the text column."""
    from pyspark.sql import functions as F

    fmt = check_source(source)
    reader = spark.read
    try:
        if fmt == "csv":  # quoted fields may hold line breaks, as pandas writes them
            frame = reader.csv(source, header=True, multiLine=True, escape='"')
        elif fmt == "parquet":
            frame = reader.parquet(source)
        else:
            frame = reader.json(source, multiLine=fmt == "json")
    except Exception as error:  # Spark's AnalysisException: path unreachable, unreadable file
        raise TopicliError(f"Spark cannot read {source} ({' '.join(str(error).split())[:200]})") from None
    column = find_text_column(frame.columns, text_column, Path(source))
    taken = [c for c in (*OUTPUT_COLUMNS, RUNNER_UP_COLUMN) if c in frame.columns]
    if taken:
        raise TopicliError(f"{source} already has column(s) {', '.join(taken)}; rename them and rerun")
    text = F.coalesce(F.col(f"`{column}`").cast("string"), F.lit(""))
    return frame.withColumn(ID, F.monotonically_increasing_id()).withColumn(TEXT, text), column


def _partitions(count: int, settings: Settings) -> int:
    return max(settings.scale.executors, -(-count // settings.scale.partition_posts))


def _encoder_name(settings: Settings, posts: Any) -> str:
    """The encoder to embed with; `auto` chooses from a seeded sample of the texts, as a run chooses."""
    if settings.encoder.name != AUTO:
        return settings.encoder.name
    from pyspark.sql import functions as F

    rows = posts.where(F.trim(F.col(TEXT)) != "").orderBy(F.xxhash64(ID)).limit(AUTO_SAMPLE).select(TEXT).collect()
    return choose_encoder(AUTO, [row[0] for row in rows])


def embed_posts(spark: Any, settings: Settings, posts: Any, encoder_name: str, folder: Path) -> Any:
    """Embed every post in tasks; the posts with their vectors written as Parquet partitions under `folder`."""
    from pyspark.sql.types import ArrayType, FloatType, StructField, StructType

    schema = StructType([*posts.schema.fields, StructField(VECTOR, ArrayType(FloatType()), True)])
    task = partial(
        embed_partition,
        encoder_name=encoder_name,
        batch_size=settings.encoder.batch_size,
        max_chars=settings.input.max_chars,
    )
    parts = _partitions(posts.count(), settings)
    posts.repartition(parts).mapInPandas(task, schema).write.mode("overwrite").parquet(str(folder))
    return spark.read.parquet(str(folder))


def sample_frame(vectors: Any, settings: Settings) -> pd.DataFrame:
    """The sample the clustering is fitted on, collected to the driver in file order: every post when there
    are no more than `[scale] sample` non-empty ones, else that many by the seeded hash of `_id`."""
    from pyspark.sql import functions as F

    scale = settings.scale
    posted = vectors.where(F.col(VECTOR).isNotNull())
    chosen = vectors if posted.count() <= scale.sample else posted.orderBy(F.xxhash64(ID, F.lit(scale.seed)))
    if chosen is not vectors:
        chosen = chosen.limit(scale.sample)
    frame = chosen.toPandas()
    return frame.sort_values(ID, kind="stable").reset_index(drop=True)


def fit_sample(
    settings: Settings,
    frame: pd.DataFrame,
    columns: list[str],
    text_column: str,
    encoder_name: str,
    path: Path,
    progress: ProgressFactory,
    topics: list[str] | None,
) -> tuple[ClusterRun, LabelledPosts]:
    """Today's method on the sample (written to `path` first, the file the clustering records): prepare,
    cluster, label. The sample's vectors are the tasks' own; only the topic names are embedded here."""
    write_table(frame[columns], path)
    posts = Posts(frame=frame[columns].reset_index(drop=True), text_column=text_column, path=path)
    posted = frame[VECTOR].notna().to_numpy()
    limit = settings.input.max_chars
    texts = [text[:limit] for text in frame[TEXT][posted]]
    vectors = np.stack(frame[VECTOR][posted].to_numpy()).astype(np.float32, copy=False)
    known = KnownVectors(load_encoder(encoder_name, settings.encoder.batch_size), texts, vectors)
    embedder = Embedder(encoder_name, settings.encoder.batch_size, "", encoder=known)
    pipeline = Pipeline(settings.method, progress, topics, embedder=embedder)
    prepared = pipeline.prepare(posts)
    clustering = pipeline.cluster(prepared)
    return clustering, pipeline.label(prepared, clustering)


def _write(frame: Any, output: Path, fmt: str) -> None:
    """A folder of parts in `fmt`: csv, jsonl (one JSON object per line, what Spark's json writer gives) or parquet."""
    writer = frame.write.mode("overwrite")
    if fmt == "csv":
        writer.option("header", True).option("escape", '"').csv(str(output))
    elif fmt in ("json", "jsonl"):
        writer.json(str(output))
    else:
        writer.parquet(str(output))


def _topic_sizes(frame: Any) -> dict[str, int]:
    return {row["topic"]: int(row["count"]) for row in frame.groupBy("topic").count().collect()}


def _assigned(spark: Any, frame: Any, bundle: Path, manifest: Manifest, task: Any, keep: list[str]) -> Any:
    """`frame`'s posts (their `keep` columns) with the topic columns, from tasks holding the broadcast bundle
    (`manifest`: its manifest, as `read_bundle` checked it)."""
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    files = spark.sparkContext.broadcast(bundle_files(bundle))
    fields = [f for f in frame.schema.fields if f.name in keep]
    schema = StructType(
        [
            *fields,
            StructField("cluster", LongType(), False),
            StructField("topic", StringType(), False),
            StructField("topic_confidence", DoubleType(), True),
        ]
    )
    labeller = manifest.labeller
    if labeller.unmatched_below > 0 or labeller.min_confidence > 0:  # what a post shown with no topic would have had
        schema.add(StructField(RUNNER_UP_COLUMN, StringType(), False))
    bundle_id = manifest.bundle_id
    return frame.mapInPandas(partial(task, files=files, bundle_id=bundle_id, keep=keep), schema)


@contextmanager
def _stage(seconds: dict[str, float], name: str, progress: ProgressFactory) -> Iterator[None]:
    started = time.perf_counter()
    with progress(name, None) as advance:
        yield
        advance(1)
    seconds[name] = round(time.perf_counter() - started, 2)


def run_spark(
    spark: Any,
    settings: Settings,
    source: str,
    run_folder: Path,
    output: Path | str | None = None,
    topics: list[str] | None = None,
    progress: ProgressFactory = no_progress,
) -> SparkRun:
    """`topicli run --engine spark`: embed in tasks, fit on the sample, assign every post in tasks.

    Everything goes into a new attempt of `run_folder` (clustering, bundle, the sample, the vectors,
    and the posts with topics unless `output` names another place), published whole at the end.
    """
    seconds: dict[str, float] = {}
    source, output = _absolute(source), _absolute(output)
    posts, text_column = read_posts_frame(spark, source, settings.input.text_column)
    columns = [c for c in posts.columns if c not in (ID, TEXT)]
    fmt = settings.scale.format
    with RunWriter(run_folder).open() as writer:
        attempt = writer.attempt.resolve()
        with _stage(seconds, "embedding posts in Spark tasks", progress):
            encoder_name = _encoder_name(settings, posts)
            vectors = embed_posts(spark, settings, posts, encoder_name, attempt / VECTORS_FOLDER)
        with _stage(seconds, "collecting the sample", progress):
            frame = sample_frame(vectors, settings)
        fitted = replace(settings, encoder=replace(settings.encoder, name=encoder_name))
        started = time.perf_counter()
        clustering, labelled = fit_sample(
            fitted, frame, columns, text_column, encoder_name, attempt / SAMPLE_FILE, progress, topics
        )
        seconds["fitting on the sample"] = round(time.perf_counter() - started, 2)
        writer.clustering(clustering)
        write_table(labelled.topic_table, attempt / "sample.topics.csv")
        writer.bundle(labelled, clustering, fitted, include_encoder=False)
        bundle = bundle_folder(attempt)
        target = output if output is not None else attempt / f"posts.{fmt}"
        with _stage(seconds, "assigning every post in Spark tasks", progress):
            manifest = read_bundle(bundle).manifest
            assigned = _assigned(spark, vectors, bundle, manifest, assign_partition, [*columns, ID])
            assigned = assigned.sortWithinPartitions(ID).drop(ID)
            _write(assigned, target, fmt)
            written = spark.read.parquet(str(target)) if fmt == "parquet" else None
            sizes = _topic_sizes(written if written is not None else assigned)
    shown = run_folder / target.name if output is None else target
    return SparkRun(run_folder, shown, sum(sizes.values()), len(frame), clustering, labelled, sizes, seconds)


def score_spark(spark: Any, settings: Settings, source: str, bundle: Path, output: Path | str) -> SparkScore:
    """`topicli score --engine spark`: every post embedded and assigned in tasks by the bundle, no endpoint."""
    if not (bundle / MANIFEST).is_file():
        raise TopicliError(f"{bundle} is not a model bundle; `topicli run POSTS` or `topicli train` writes one")
    source, output = _absolute(source), _absolute(output)
    posts, _ = read_posts_frame(spark, source, settings.input.text_column)
    columns = [c for c in posts.columns if c not in (ID, TEXT)]
    posts = posts.repartition(_partitions(posts.count(), settings))
    manifest = read_bundle(bundle).manifest
    assigned = _assigned(spark, posts, bundle, manifest, score_partition, [*columns, ID, TEXT])
    assigned = assigned.sortWithinPartitions(ID).drop(ID, TEXT)
    _write(assigned, output, settings.scale.format)
    sizes = _topic_sizes(spark.read.parquet(str(output)) if settings.scale.format == "parquet" else assigned)
    return SparkScore(output, sum(sizes.values()), manifest.bundle_id, sizes)
