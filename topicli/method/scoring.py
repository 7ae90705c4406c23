"""Every post's score for every topic: zero-shot or cls_model, then smoothed over neighbours.

Two things moved topic quality most on the development sets (bench/results/quality.md):

* a topic name is scored by its parts: "Food & Dining" is the better of "food" and
  "dining", so a post about either part is about the topic;
* a post's scores are blended with the mean scores of its k nearest posts, so dense
  neighbourhoods (what density clustering finds) vote together while a post keeps half of
  its own say.

Cosine scores also lose part of each topic's floor (`topic_floors`) before smoothing.

Scores end as probabilities over the topic list (a softmax of scaled cosines for the
zero-shot scorer; cls_model's own P for the cls_model scorer).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from topicli.method.base import Embed
from topicli.method.classifier import PairClassifier
from topicli.method.topics import scored_parts

COSINE_SCALE = 20.0  # softmax(20 x cosine): turns cosine gaps of ~0.1 into clear probabilities
FLOOR_MIN_POSTS = 100  # below this a low percentile is one or two posts' scores: no floor is taken off


def auto_neighbours(n_posts: int) -> int:
    """k for smoothing when not set: about a third of the square root of the post count, 5 to 30."""
    return int(np.clip(round(np.sqrt(n_posts) / 3), 5, 30))


class TopicScores:
    """A (posts, topics) matrix of probabilities, read by row: `scores(indices)`."""

    def __init__(self, vectors: np.ndarray, matrix: np.ndarray) -> None:
        self.vectors = vectors
        self.matrix = matrix

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        return self.matrix[np.asarray(indices, dtype=np.int64)]


def part_vectors(topics: Sequence[str], template: str, embed: Embed) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of every topic part put into the template, and the topic each part belongs to.

    A topic's parts are its name's and, when the topics file gave one, its description (`scored_parts`).
    """
    parts = [(t, part) for t, topic in enumerate(topics) for part in scored_parts(topic)]
    vectors = embed([template.format(topic=part) for _, part in parts])
    return vectors, np.array([t for t, _ in parts])


def cosine_scores(vectors: np.ndarray, parts: np.ndarray, owner: np.ndarray, n_topics: int) -> np.ndarray:
    """Per post and topic, the best cosine between the post and the topic's parts."""
    out = np.full((len(vectors), n_topics), -1.0, dtype=np.float32)
    for start in range(0, len(vectors), 65536):
        block = vectors[start : start + 65536] @ parts.T
        for t in range(n_topics):
            out[start : start + len(block), t] = block[:, owner == t].max(axis=1)
    return out


def topic_floors(raw: np.ndarray, quantile: float, weight: float) -> np.ndarray:
    """Per topic, `weight` x its `quantile` score over the posts: what is taken off that topic's cosine scores.

    Some topic names sit near every post of a set (`travel` among encyclopaedia sentences,
    `arts` among tweets) and take posts that are about something else. A low percentile of a
    topic's scores is what it gives posts that are not about it, whatever share of the posts
    is truly its own, so taking it off evens the topics out without favouring small ones the
    way subtracting a topic's mean score does (bench/results/levers.md). Zeros when `weight`
    is 0 or there are fewer than FLOOR_MIN_POSTS posts.
    """
    floors = np.zeros(raw.shape[1], dtype=np.float32)
    if weight and len(raw) >= FLOOR_MIN_POSTS:
        for t in range(raw.shape[1]):  # a column at a time: one (posts, topics) copy is 400 MB at 1M posts
            floors[t] = weight * np.quantile(raw[:, t], quantile)
    return floors


def classifier_scores(
    vectors: np.ndarray, parts: np.ndarray, owner: np.ndarray, n_topics: int, model: PairClassifier
) -> np.ndarray:
    """Per post and topic, cls_model's best P over the topic's parts."""
    probabilities = model.predict_proba(vectors, parts)
    return np.stack([probabilities[:, owner == t].max(axis=1) for t in range(n_topics)], axis=1)


def raw_scores(
    vectors: np.ndarray, parts: np.ndarray, owner: np.ndarray, n_topics: int, classifier: PairClassifier | None
) -> np.ndarray:
    """Unsmoothed topic scores: cls_model's when there is a classifier, cosine zero-shot otherwise."""
    if classifier is not None:
        return classifier_scores(vectors, parts, owner, n_topics, classifier)
    return cosine_scores(vectors, parts, owner, n_topics)


def smooth(
    scores: np.ndarray, neighbours: np.ndarray, weight: float, source: np.ndarray | None = None, chunk: int = 16384
) -> np.ndarray:
    """Blend each row with the mean of its neighbours' rows: (1 - weight) own + weight neighbours.

    `neighbours` index rows of `source` (the scores themselves unless given: a served post's
    neighbours are run posts). Rows are done in chunks: the gathered (posts, k, topics) block
    would be 12 GB at 1M posts.
    """
    source = scores if source is None else source
    blended = np.empty_like(scores)
    for start in range(0, len(scores), chunk):
        rows = slice(start, start + chunk)
        blended[rows] = (1.0 - weight) * scores[rows] + weight * source[neighbours[rows]].mean(axis=1)
    return blended


def finish_scores(
    raw: np.ndarray,
    neighbours: np.ndarray,
    weight: float,
    cosine: bool,
    source: np.ndarray | None = None,
    block: int = 16384,
) -> np.ndarray:
    """Topic probabilities: raw scores smoothed over the neighbours, then (cosine scorer) a scaled softmax.

    A block of posts at a time: a post's probabilities depend only on its own raw row and its
    neighbours' rows of `source` (the whole `raw` unless given), so blocks give the same bits as
    one pass while the softmax's temporaries are a block's, not four more (posts, topics) arrays.
    """
    source = raw if source is None else source
    out = np.empty(raw.shape, dtype=np.float32)
    for start in range(0, len(raw), block):
        rows = slice(start, start + block)
        part = raw[rows]
        if weight and neighbours.shape[1]:
            part = smooth(part, neighbours[rows], weight, source)
        out[rows] = softmax(part, COSINE_SCALE) if cosine else part
    return out


def softmax(scores: np.ndarray, scale: float) -> np.ndarray:
    shifted = scale * (scores - scores.max(axis=1, keepdims=True))
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
