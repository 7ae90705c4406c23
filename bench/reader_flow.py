"""The stronger reader inside topicli's flow (issue 28): where all-mpnet-base-v2 and the hashtags' words pay once
the method (clusters, smoothing, the per-run head) runs, and what each lever costs.

Development sets only, as bench/reader.py reads them (instagram_dev accuracy over the posts where a topic fits;
the other sets macro-F1), every figure against the set's best per-post cosine of either encoder (caption
only), with paired bootstrap standard errors. topicli runs with default settings except that nothing is held
back ([labelling] min_confidence = unmatched_below = 0): every method here gives every post a topic.

Levers, each a row:
- topicli with all-MiniLM-L6-v2 (today's default) or all-mpnet-base-v2 as its one encoder;
- + hashtags: every post's vector is the unit sum of its caption's and w x its hashtags' words' vectors
  (`HashtagView`, topicli/method/hashtags.py's split), so clustering, scoring and the head all see them;
- + mpnet cluster vote: each cluster's `--near` posts nearest its centre read by mpnet (+ hashtags, w as
  bench/reader.py chose) against the cluster's top `--top` topics by mean fast score; the mean best
  cosine picks the topic of the members that had the cluster's topic;
- + mpnet re-read of the least sure posts: the share s of posts with the lowest calibrated confidence
  re-read by mpnet (+ hashtags); the post takes the best of (its fast scores, z-scored over the topics) +
  (mpnet's cosine, z-scored). Nothing else changes.

Cost: mpnet's posts read per post of the feed, and the encoders' posts/s on the same captions measured in the
same run; the extra embedding time of a lever is (posts read by mpnet) / (mpnet posts/s) against
(posts) / (MiniLM posts/s).

    python bench/reader_flow.py [--onnx-reader]

writes bench/results/reader_flow.md; `--onnx-reader` writes bench/results/reader_flow_onnx.md instead: the re-read
with mpnet cut at 128 tokens (its training length; bench/token_limit.py) beside mpnet at 384 as `[encoder] name`
runs it, and the share of posts it can re-read within +50 % of the default's embedding time.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from quality import CACHE, TEMPLATE, gain_error, row, settings_for, text_posts
from reader import SPEED_POSTS, DevSet, dev_sets

from topicli.method.embedding import Embedder
from topicli.method.encoders import DEFAULT_ENCODER, Encoder, load_encoder
from topicli.method.hashtags import hashtag_view
from topicli.method.mpnet import MPNET
from topicli.method.pipeline import Pipeline
from topicli.method.scoring import cosine_scores, part_vectors

RESULTS = Path(__file__).resolve().parent / "results" / "reader_flow.md"
TAG_WEIGHT = 0.25  # bench/results/reader.md: the hashtag weight with the best mean per-post gain
SHARES = (0.1, 0.2, 0.3, 0.5)
TOP, NEAR = 3, 8


class HashtagView:
    """An encoder whose vector of a post is the unit sum of its caption's and `weight` x its hashtag words' vectors
    (both from the cached `embedder`); a text with no hashtags keeps its own vector."""

    def __init__(self, embedder: Embedder, weight: float) -> None:
        self.embedder, self.weight = embedder, weight
        self.identity = f"{embedder.identity}+hashtags-{weight:g}"
        self.dimension = embedder.encoder.dimension

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.embedder(texts).copy()
        views, has_tags = hashtag_view(texts)
        if self.weight and has_tags.any():
            tagged = np.flatnonzero(has_tags)
            vectors[tagged] += self.weight * self.embedder([views[i] for i in tagged])
            vectors[tagged] /= np.linalg.norm(vectors[tagged], axis=1, keepdims=True)
        return vectors


def viewed(embedder: Embedder, weight: float) -> Embedder:
    return Embedder(embedder.name, cache_dir=CACHE, encoder=HashtagView(embedder, weight)) if weight else embedder


def topicli_run(dev: DevSet, embedder: Embedder) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per post: topicli's topic index, calibrated confidence, cluster, vector and smoothed scores."""
    with tempfile.TemporaryDirectory() as tmp:
        posts = text_posts(dev.texts, Path(tmp) / "posts.jsonl")
        method = settings_for(DEFAULT_ENCODER).method
        method = replace(method, labelling=replace(method.labelling, min_confidence=0.0, unmatched_below=0.0))
        pipeline = Pipeline(method, topics=dev.topics, embedder=embedder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = pipeline.prepare(posts)
            result = pipeline.label(prepared, pipeline.cluster(prepared))
    index = {str(t): i for i, t in enumerate(dev.topics)}
    rows = prepared.text_index
    topics = np.array([index.get(t, -1) for t in result.posts["topic"].astype(str)])
    fast = np.asarray(prepared.scores.matrix)[rows]
    topics = np.where(topics >= 0, topics, np.argmax(fast, axis=1))
    confidence = np.nan_to_num(result.posts["topic_confidence"].to_numpy(dtype=np.float64), nan=-1.0)
    return topics, confidence, result.posts["cluster"].to_numpy(), np.asarray(prepared.vectors)[rows], fast


def per_post_scores(dev: DevSet, embedder: Embedder) -> np.ndarray:
    """Each post's best cosine to each topic's parts, with `embedder`'s vectors."""
    return cosine_scores(embedder(dev.texts), *part_vectors(dev.topics, TEMPLATE, embedder), len(dev.topics))


def gain_cell(dev: DevSet, chosen: np.ndarray, best: list[str]) -> str:
    """The set's figure for the chosen topic indices, and its gain over `best` with the paired standard error."""
    names = [str(t) for t in dev.topics]
    picked = [names[i] for i in chosen]
    error = gain_error(dev.frame, names, picked, best, dev.figure)
    return f"{dev.measure(picked):.3f} ({dev.measure(picked) - dev.measure(best):+.3f} ± {error:.3f})"


def posts_per_second(encoder: Encoder, texts: list[str]) -> float:
    started = time.perf_counter()
    encoder.encode(texts)
    return len(texts) / (time.perf_counter() - started)


def standardised(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.mean(axis=1, keepdims=True)) / scores.std(axis=1, keepdims=True).clip(1e-9)


def cluster_vote(topics, clusters, vectors, fast, strong) -> tuple[np.ndarray, int]:
    """The clusters' topics as mpnet reads their near-centre posts; and how many posts it read."""
    out, read = topics.copy(), set()
    for cluster in np.unique(clusters[clusters >= 0]):
        members = np.flatnonzero(clusters == cluster)
        sample = members[np.argsort(-(vectors[members] @ vectors[members].mean(axis=0)), kind="stable")[:NEAR]]
        read.update(sample.tolist())
        candidates = np.argsort(-fast[members].mean(axis=0), kind="stable")[:TOP]
        pick = candidates[np.argmax(strong[sample][:, candidates].mean(axis=0))]
        held = np.bincount(topics[members]).argmax()
        out[members[topics[members] == held]] = pick
    return out, len(read)


def reread(topics, confidence, fast, strong, share: float) -> np.ndarray:
    out = topics.copy()
    unsure = np.argsort(confidence, kind="stable")[: round(share * len(topics))]
    out[unsure] = np.argmax(standardised(fast[unsure]) + standardised(strong[unsure]), axis=1)
    return out


def onnx_reader() -> None:
    """The re-read rows with mpnet at 384 tokens (as `[encoder] name` runs it) and at 128 tokens, and their cost."""
    from token_limit import mpnet_encoders

    sets = dev_sets()
    mini = Embedder(DEFAULT_ENCODER, cache_dir=CACHE)
    onnx = list(mpnet_encoders().values())[2]  # exported at 128 tokens
    readers = {
        "384 tokens": Embedder(MPNET, cache_dir=CACHE),
        "ONNX, 128 tokens": Embedder(MPNET, cache_dir=CACHE, encoder=onnx),
    }
    sample = sets[0].texts[:SPEED_POSTS]
    rates = {name: posts_per_second(e, sample) for name, e in (("default", mini.encoder), ("ONNX, 128 tokens", onnx))}
    ratio = rates["default"] / rates["ONNX, 128 tokens"]
    table: dict[str, list[str]] = {}
    for dev in sets:
        topics, confidence, _, _, fast = topicli_run(dev, mini)
        best = max((dev.picks(per_post_scores(dev, e)) for e in (mini, readers["384 tokens"])), key=dev.measure)
        table.setdefault("topicli, all-MiniLM-L6-v2", []).append(gain_cell(dev, topics, best))
        for label, embedder in readers.items():
            strong = per_post_scores(dev, viewed(embedder, TAG_WEIGHT))
            per_post = gain_cell(dev, np.argmax(strong, axis=1), best)
            table.setdefault(f"per-post cosine, mpnet ({label}) + hashtags", []).append(per_post)
            for share in SHARES[:3]:
                again = reread(topics, confidence, fast, strong, share)
                table.setdefault(f"+ mpnet ({label}) re-reads {share:.0%}", []).append(gain_cell(dev, again, best))
        print(f"{dev.name}: done", file=sys.stderr, flush=True)
    lines = [
        "# The re-read of uncertain posts with mpnet as it would run (issue 28)",
        "",
        "Produced by `python bench/reader_flow.py --onnx-reader` (development sets only). ± is the paired bootstrap "
        "standard error of the gain over the set's best per-post cosine (caption only, either encoder).",
        "",
        row("lever", *[dev.name for dev in sets]),
        row(*["---"] * (len(sets) + 1)),
        *[row(name, *cells) for name, cells in table.items()],
        "",
        f"Cost, same run, first {SPEED_POSTS} instagram_dev captions: all-MiniLM-L6-v2 {rates['default']:.1f} posts/s, "
        f"mpnet ONNX at 128 tokens {rates['ONNX, 128 tokens']:.1f} posts/s ({ratio:.1f}x slower). Within +50 % of "
        f"the default's embedding time it can re-read {0.5 / ratio:.0%} of the posts.",
        "",
    ]
    RESULTS.with_name("reader_flow_onnx.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    if sys.argv[1:] == ["--onnx-reader"]:
        onnx_reader()
        return
    sets = dev_sets()
    mini = Embedder(DEFAULT_ENCODER, cache_dir=CACHE)
    mpnet = Embedder(MPNET, cache_dir=CACHE)
    sample = sets[0].texts[:SPEED_POSTS]
    speed = {name: posts_per_second(load_encoder(name), sample) for name in (DEFAULT_ENCODER, MPNET)}
    ratio = speed[DEFAULT_ENCODER] / speed[MPNET]
    table: dict[str, list[str]] = {}
    costs: dict[str, list[float]] = {}
    for dev in sets:
        plain = {embedder.name: per_post_scores(dev, embedder) for embedder in (mini, mpnet)}
        strong = per_post_scores(dev, viewed(mpnet, TAG_WEIGHT))
        best = max((dev.picks(s) for s in plain.values()), key=dev.measure)

        def add(name: str, topics: np.ndarray, mpnet_share: float, dev: DevSet = dev, best: list[str] = best) -> None:
            table.setdefault(name, []).append(gain_cell(dev, topics, best))
            costs.setdefault(name, []).append(mpnet_share)

        for encoder, scores in plain.items():
            add(f"per-post cosine, {encoder}", np.argmax(scores, axis=1), 1.0 if encoder == MPNET else 0.0)
        add(f"per-post cosine, {MPNET} + hashtags", np.argmax(strong, axis=1), 1.0)
        for embedder in (mini, mpnet):
            share = 1.0 if embedder.name == MPNET else 0.0
            for weight in (0.0, TAG_WEIGHT):
                topics = topicli_run(dev, viewed(embedder, weight))[0]
                add(f"topicli, {embedder.name}" + (f" + {weight:g} x hashtags" if weight else ""), topics, share)
        topics, confidence, clusters, vectors, fast = topicli_run(dev, mini)
        voted, read = cluster_vote(topics, clusters, vectors, fast, strong)
        add(f"topicli, {DEFAULT_ENCODER} + mpnet cluster vote", voted, read / len(topics))
        for share in SHARES:
            again = reread(topics, confidence, fast, strong, share)
            add(f"topicli, {DEFAULT_ENCODER} + mpnet re-reads {share:.0%}", again, share)
        print(f"{dev.name}: done", file=sys.stderr, flush=True)
    names = [dev.name for dev in sets]
    lines = [
        "# The stronger reader in topicli's flow (issue 28)",
        "",
        "Produced by `python bench/reader_flow.py` (development sets only; see its docstring). ± is the paired "
        "bootstrap standard error of the gain over the set's best per-post cosine (caption only, either encoder).",
        "",
        row("lever", *names),
        row(*["---"] * (len(names) + 1)),
        *[row(name, *cells) for name, cells in table.items()],
        "",
        f"## Cost (posts/s on {SPEED_POSTS} instagram captions, this machine, 2 cores, same run)",
        "",
        f"all-MiniLM-L6-v2 {speed[DEFAULT_ENCODER]:.1f} posts/s, all-mpnet-base-v2 {speed[MPNET]:.1f} posts/s: "
        f"mpnet reads a caption {ratio:.1f}x slower. Extra embedding time of each lever, as a share of the "
        "MiniLM embedding of the whole feed (mpnet's posts read x the ratio; the hashtags' words add their own "
        "short texts, not counted):",
        "",
        row("lever", *[f"{n} (mpnet reads / posts)" for n in names], "extra embedding"),
        row(*["---"] * (len(names) + 2)),
        *[
            row(name, *[f"{s:.2f}" for s in shares], f"+{np.mean(shares) * ratio:.0%}")
            for name, shares in costs.items()
        ],
        "",
    ]
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
