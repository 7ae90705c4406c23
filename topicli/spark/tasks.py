"""What runs inside Spark tasks: embedding a partition, and assigning its posts by the bundle's own rule.

A Python worker keeps what it loaded between tasks (Spark reuses workers), so each worker loads
the ONNX encoder once and each bundle once, whatever the number of partitions it works through.
The bundle reaches executors as a broadcast of its files (`bundle_files`): they are written once per
worker machine into a folder named by the bundle's id, then loaded and checked as any bundle is.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from topicli.io import atomic_folder
from topicli.method.embedding import distinct_texts
from topicli.method.encoders import Encoder, OnnxEncoder, load_encoder
from topicli.method.records import RUNNER_UP_COLUMN
from topicli.serving.bundle import MANIFEST, BundleModel, Predictions

ID = "_id"  # each post's place in the input (increasing in file order), kept while Spark works
TEXT = "_text"  # the post's text, "" when missing
VECTOR = "vector"  # the post's unit vector, null for an empty post

_encoders: dict[tuple[str, int], Encoder] = {}
_bundles: dict[str, BundleModel] = {}


def executor_encoder(name: str, batch_size: int) -> Encoder:
    """The encoder `name`, loaded once per Python worker. An ONNX encoder gets one session of one
    thread: Spark gives each task slot one core, and a worker per slot already fills the cores."""
    key = (name, batch_size)
    if key not in _encoders:
        encoder = load_encoder(name, batch_size)
        if isinstance(encoder, OnnxEncoder) and len(encoder.sessions) > 1:
            encoder = OnnxEncoder(encoder.folder, encoder.identity, encoder.dimension, encoder.batch_size, workers=1)
        _encoders[key] = encoder
    return _encoders[key]


def embed_texts(encoder: Encoder, texts: pd.Series, max_chars: int | None) -> list[np.ndarray | None]:
    """Each text's unit vector (cut to `max_chars` first, as a run does), None for an empty one; copies of a
    text are embedded once."""
    out: list[np.ndarray | None] = [None] * len(texts)
    rows = [i for i, text in enumerate(texts) if text.strip()]
    if rows:
        distinct, inverse = distinct_texts([texts.iat[i][:max_chars] for i in rows])
        vectors = encoder.encode(distinct)
        for row, index in zip(rows, inverse, strict=True):
            out[row] = vectors[index]
    return out


def embed_partition(
    frames: Iterator[pd.DataFrame], encoder_name: str, batch_size: int, max_chars: int
) -> Iterator[pd.DataFrame]:
    """`mapInPandas`: the posts with their `vector` column added."""
    encoder = executor_encoder(encoder_name, batch_size)
    for frame in frames:
        yield frame.assign(**{VECTOR: embed_texts(encoder, frame[TEXT], max_chars)})


def bundle_files(folder: Path) -> dict[str, bytes]:
    """Every file of a bundle by its path inside it: what the driver broadcasts."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def bundle_model(files: dict[str, bytes], bundle_id: str) -> BundleModel:
    """The broadcast bundle, written once per machine under the temp folder and loaded once per worker."""
    if bundle_id not in _bundles:
        folder = Path(tempfile.gettempdir()) / "topicli-spark-bundles" / bundle_id
        if not (folder / MANIFEST).is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                with atomic_folder(folder) as staging:
                    for name, data in files.items():
                        (staging / name).parent.mkdir(parents=True, exist_ok=True)
                        (staging / name).write_bytes(data)
            except OSError:  # another worker published it first
                if not (folder / MANIFEST).is_file():
                    raise
        _bundles[bundle_id] = BundleModel.load(folder)
    return _bundles[bundle_id]


def topic_columns(model: BundleModel, vectors: list[Any], texts: pd.Series) -> dict[str, Any]:
    """The output columns of posts with these encoder vectors (None: an empty post, no cluster and no topic),
    by the bundle's own rule (`BundleModel.assign_vectors`)."""
    answered = Predictions.none(len(vectors))
    rows = np.array([i for i, v in enumerate(vectors) if v is not None], dtype=np.int64)
    if len(rows):
        matrix = np.stack([np.asarray(vectors[i], dtype=np.float32) for i in rows])
        limit = model.limits.encoded_chars
        answered.put(rows, model.assign_vectors(matrix, [texts.iat[i][:limit] for i in rows]))
    columns = {
        "cluster": answered.clusters,
        "topic": [model.topics[t] if t >= 0 else "" for t in answered.topics],
        "topic_confidence": np.round(answered.confidence, 4),
    }
    labeller = model.labeller
    if labeller.unmatched_below > 0 or labeller.min_confidence > 0:  # as in a run's: the column follows the settings
        columns[RUNNER_UP_COLUMN] = [model.topics[t] if t >= 0 else "" for t in answered.suggested]
    return columns


def assign_partition(
    frames: Iterator[pd.DataFrame], files: Any, bundle_id: str, keep: list[str]
) -> Iterator[pd.DataFrame]:
    """`mapInPandas`: the columns `keep` of each post, then its cluster, topic and confidence."""
    model = bundle_model(files.value, bundle_id)
    for frame in frames:
        yield frame[keep].assign(**topic_columns(model, list(frame[VECTOR]), frame[TEXT]))


def score_partition(
    frames: Iterator[pd.DataFrame], files: Any, bundle_id: str, keep: list[str]
) -> Iterator[pd.DataFrame]:
    """`mapInPandas` for `score --engine spark`: embed with the bundle's own encoder, then assign."""
    model = bundle_model(files.value, bundle_id)
    limit = model.limits.encoded_chars  # as many characters as the run encoded; absent: no cut
    for frame in frames:
        vectors = embed_texts(model.encoder, frame[TEXT], limit)
        yield frame[keep].assign(**topic_columns(model, vectors, frame[TEXT]))
