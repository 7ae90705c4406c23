"""Streaming: posts embedded chunk by chunk into one memory-mapped vectors file, read back without copies."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable, Sequence
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import topicli.method.embedding as embedding
from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import read_posts
from topicli.method.embedding import (
    POSTS_FOLDER,
    Embedder,
    EmbeddingCache,
    embed,
    embed_to_disk,
    text_key,
    text_keys,
)
from topicli.method.pipeline import Pipeline
from topicli.method.scoring import finish_scores

from .conftest import EXAMPLES

TEXTS = [f"post {i % 13} about {'pasta' if i % 13 % 2 else 'running shoes'}{'!' * (i % 13 % 5)}" for i in range(40)]


class CountingEncoder:
    """A real or fake encoder, counting the texts it is asked to embed; fails on call `fail_on` if set."""

    def __init__(self, encoder: embedding.Encoder, fail_on: int = -1) -> None:
        self.encoder = encoder
        self.identity = encoder.identity
        self.dimension = encoder.dimension
        self.calls: list[int] = []
        self.fail_on = fail_on

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(self.calls) == self.fail_on:
            raise KeyboardInterrupt
        self.calls.append(len(texts))
        return self.encoder.encode(texts)


class HashEncoder:
    """Unit vectors drawn from each text's key: fast, deterministic, no model."""

    identity = "hash-encoder-test"
    dimension = 384

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = [
            np.random.default_rng(int.from_bytes(text_key(t)[:8], "little")).standard_normal(self.dimension)
            for t in texts
        ]
        out = np.array(rows, dtype=np.float32).reshape(len(texts), self.dimension)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def posts_files(cache: EmbeddingCache) -> list[Path]:
    return sorted((cache.folder / POSTS_FOLDER).glob("*"))


def test_vectors_file_is_a_read_only_memmap_equal_bit_for_bit_to_embedding_in_memory(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedding, "CHUNK", 4)  # 13 distinct texts: four chunks, the last one short
    cache = EmbeddingCache(tmp_path, embedder.identity)
    counting = CountingEncoder(embedder.encoder)
    vectors = embed_to_disk(TEXTS, counting, cache)
    assert isinstance(vectors, np.memmap) and not vectors.flags.writeable
    assert vectors.filename is not None and Path(vectors.filename) in posts_files(cache)
    assert counting.calls == [4, 4, 4, 1], "each distinct text embedded once, a chunk at a time"
    in_memory = embed(TEXTS, embedder.encoder)  # no cache: the same chunks, computed again
    assert type(in_memory) is np.ndarray
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    assert vectors.tobytes() == in_memory.tobytes()
    assert np.array_equal(vectors[0], vectors[13]), "a repeated post gets its text's vector"


def test_second_run_maps_the_file_and_lost_file_is_rebuilt_from_chunks(tmp_path: Path) -> None:
    first = CountingEncoder(HashEncoder())
    vectors = np.array(embed_to_disk(TEXTS, first, EmbeddingCache(tmp_path, first.identity)))
    again = CountingEncoder(HashEncoder())
    cache = EmbeddingCache(tmp_path, again.identity)
    assert embed_to_disk(TEXTS, again, cache).tobytes() == vectors.tobytes()
    assert again.calls == []
    for file in posts_files(cache):
        file.unlink()
    rebuilt = embed_to_disk(TEXTS, again, EmbeddingCache(tmp_path, again.identity))
    assert again.calls == [], "every text is in the cached chunks"
    assert rebuilt.tobytes() == vectors.tobytes()
    other = embed_to_disk(TEXTS[::-1], again, EmbeddingCache(tmp_path, again.identity))
    assert again.calls == [] and len(posts_files(cache)) == 2, "posts in another order: a file of their own"
    assert other.tobytes() == vectors[::-1].tobytes()


def test_crash_mid_embedding_leaves_no_file_and_resumes(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedding, "CHUNK", 3)
    failing = CountingEncoder(embedder.encoder, fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        embed_to_disk(TEXTS, failing, EmbeddingCache(tmp_path, failing.identity))
    cache = EmbeddingCache(tmp_path, failing.identity)
    assert posts_files(cache) == [], "no vectors file, and no temporary file, after a crash"
    resumed = CountingEncoder(embedder.encoder)
    vectors = embed_to_disk(TEXTS, resumed, cache)
    assert sum(resumed.calls) == 13 - 6, "the two chunks saved before the crash are not embedded again"
    assert vectors.tobytes() == embed(TEXTS, embedder.encoder).tobytes()


def test_embedding_to_disk_allocates_a_small_share_of_the_matrix(tmp_path: Path) -> None:
    """tracemalloc sees numpy's buffers but not mapped file pages: a copy of the vectors would show."""
    texts = [f"synthetic post {i % 25000}" for i in range(30000)]
    matrix = len(texts) * HashEncoder.dimension * 4

    def traced_peak(run: Callable[[], object]) -> float:
        """The most memory allocated at once while `run` ran, in matrices."""
        tracemalloc.start()
        try:
            run()
            return tracemalloc.get_traced_memory()[1] / matrix
        finally:
            tracemalloc.stop()

    def cache() -> EmbeddingCache:
        return EmbeddingCache(tmp_path, HashEncoder.identity)

    cold = traced_peak(lambda: embed_to_disk(texts, HashEncoder(), cache()))
    [vectors_file] = posts_files(cache())
    vectors_file.unlink()
    from_chunks = traced_peak(lambda: embed_to_disk(texts, HashEncoder(), cache()))
    in_memory = traced_peak(lambda: embed(texts, HashEncoder(), cache()))
    assert in_memory > 0.95, "the measurement sees a matrix held in memory"
    assert cold < 0.4 and from_chunks < 0.4, f"peaks of {cold:.2f} and {from_chunks:.2f} matrices"


def test_cache_index_finds_keys_and_reads_a_key_held_twice_from_the_file_sorted_last(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "test")
    keys = text_keys(["a", "b", "c"])
    cache.add(keys[:2], np.ones((2, 3), dtype=np.float32))
    cache.add(keys[1:], np.full((2, 3), 2.0, dtype=np.float32))
    found = EmbeddingCache(tmp_path, "test").lookup([text_key(t) for t in ("a", "b", "c", "d")])
    assert found[3] is None
    assert float(found[0][0]) == 1.0 and float(found[2][0]) == 2.0
    stems = {
        hashlib.sha256(part.tobytes()).hexdigest()[:20]: value for part, value in ((keys[:2], 1.0), (keys[1:], 2.0))
    }
    assert float(found[1][0]) == stems[max(stems)], "as before streaming: the chunk file sorted last wins"


@pytest.mark.heavy
def test_pipeline_works_from_the_memmap_and_gives_what_vectors_in_memory_give(
    isolated: Path, cache_dir: Path, embedder: Embedder
) -> None:
    posts = read_posts(EXAMPLES)
    results = []
    # a cache of its own: vectors another test cached from other batches may differ in the last bit
    for folder in (str(isolated / "cache"), ""):
        pipeline = Pipeline(Settings().method, embedder=Embedder(cache_dir=folder, encoder=embedder.encoder))
        prepared = pipeline.prepare(posts)
        assert isinstance(prepared.vectors, np.memmap) == bool(folder)
        assert prepared.scores.vectors is prepared.vectors, "scores read the same vectors, not a copy"
        labelled = pipeline.label(prepared, pipeline.cluster(prepared))
        results.append((np.array(prepared.vectors), labelled))
    (mapped, on_disk), (held, in_memory) = results
    assert mapped.tobytes() == held.tobytes()
    pd.testing.assert_frame_equal(on_disk.posts, in_memory.posts)
    pd.testing.assert_frame_equal(on_disk.topic_table, in_memory.topic_table)


@pytest.mark.parametrize("cosine", [True, False])
@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_scores_finished_in_blocks_equal_one_call_bit_for_bit(cosine: bool, weight: float) -> None:
    rng = np.random.default_rng(0)
    raw = rng.random((1000, 17), dtype=np.float32)
    neighbours = rng.integers(0, 1000, size=(1000, 9))
    whole = finish_scores(raw, neighbours, weight, cosine)
    blocks = finish_scores(raw, neighbours, weight, cosine, block=64)
    assert blocks.dtype == whole.dtype and blocks.tobytes() == whole.tobytes()


def test_csv_read_from_the_file_equals_the_whole_text_read_and_names_a_late_bad_line(tmp_path: Path) -> None:
    data = '\ufeffid,caption\r\n1,"two\r\nlines"\r\n2,"say ""hi"""\r\n3,\r\n4,NA\r\n5,café 😀\r\n'.encode()
    path = tmp_path / "posts.csv"
    path.write_bytes(data)
    whole = pd.read_csv(StringIO(data.decode("utf-8-sig")), dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(read_posts(path).frame, whole)
    path.write_bytes(b"caption\n" + b"fine\n" * 300_000 + b"caf\xe9\n")
    with pytest.raises(TopicliError, match="invalid UTF-8 on line 300002"):
        read_posts(path)


@pytest.mark.parametrize("damage", ["truncated", "emptied", "NaN", "another shape"])
def test_a_damaged_posts_file_is_rebuilt_from_the_chunks_with_a_warning(tmp_path: Path, damage: str) -> None:
    vectors = np.array(embed_to_disk(TEXTS, HashEncoder(), EmbeddingCache(tmp_path, HashEncoder.identity)))
    [path] = posts_files(EmbeddingCache(tmp_path, HashEncoder.identity))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "emptied":
        path.write_bytes(b"")
    elif damage == "NaN":
        spoiled = np.load(path)
        spoiled[5, 0] = np.inf
        np.save(path, spoiled)
    else:
        np.save(path, np.zeros((len(TEXTS), 10), dtype=np.float32))
    again = CountingEncoder(HashEncoder())
    with pytest.warns(embedding.CacheDamagedWarning, match=f"{path} is damaged.*always safe"):
        rebuilt = embed_to_disk(TEXTS, again, EmbeddingCache(tmp_path, again.identity))
    assert again.calls == [], "rebuilt from the cached chunks"
    assert rebuilt.tobytes() == vectors.tobytes()
    assert np.load(path).tobytes() == vectors.tobytes()


def test_copies_of_a_text_are_one_row_of_the_vectors_file_weighing_as_many_posts(tmp_path: Path) -> None:
    texts = [*TEXTS, "", "   ", TEXTS[0]]
    path = tmp_path / "posts.csv"
    pd.DataFrame({"id": range(len(texts)), "caption": texts}).to_csv(path, index=False)
    pipeline = Pipeline(Settings().method, embedder=Embedder(cache_dir=tmp_path / "cache", encoder=HashEncoder()))
    prepared = pipeline.prepare(read_posts(path))
    distinct = list(dict.fromkeys(t for t in texts if t.strip()))
    assert prepared.vectors.shape == (len(distinct), HashEncoder.dimension) and len(prepared.rows) == len(distinct)
    assert [texts[i] for i in prepared.rows] == distinct, "each text's first post"
    assert prepared.text_index.tolist() == [distinct.index(t) if t.strip() else -1 for t in texts]
    assert prepared.weights.tolist() == [sum(t == d for t in texts) for d in distinct]
    assert prepared.vectors.tobytes() == HashEncoder().encode(distinct).tobytes()
    assert (prepared.indices != np.arange(len(distinct))[:, None]).all(), "a text is not its own neighbour"
