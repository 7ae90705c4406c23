"""Embedding posts through an on-disk cache, so that no text is ever embedded twice.

The cache is a folder per encoder holding chunks written as embedding goes on (keys and
vectors, each an `.npy` renamed into place), so an interrupted run resumes where it
stopped and a second command reuses what the first computed.

Posts are embedded into one more `.npy` there (`posts/`, a row per post, `embed_to_disk`),
filled chunk by chunk and read back memory-mapped: the pipeline works from that file, so
memory holds the vectors at most once, as pages the kernel can drop, never as copies.

The cache heals: a chunk whose keys do not hash to its name, whose vectors file is cut short
or of the wrong shape, or whose vectors hold NaN or infinity when read, is deleted with a
`CacheDamagedWarning` and its texts embedded again; a damaged posts file is rebuilt. Temporary
files a crashed run left behind are removed once an hour old (a posts file being filled is
touched after every chunk).
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from topicli.errors import TopicliError
from topicli.io import atomic_path, remove
from topicli.method.encoders import DEFAULT_ENCODER, Encoder, load_encoder
from topicli.progress import Advance

CHUNK = 1024
KEY_BYTES = 16
KEY_DTYPE = np.dtype(f"S{KEY_BYTES}")  # a text_key, compared and sorted as raw bytes
POSTS_FOLDER = "posts"  # in an encoder's cache folder: one vectors file per sequence of posts
STALE_SECONDS = 3600  # a temporary file untouched this long was left by a crashed run
VALUE_CHECK_ROWS = 65536  # rows of a posts file checked for NaN at a time


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).digest()


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """`text_key` of every text, as one array of fixed-width byte strings (16 bytes a text, no Python object each)."""
    buffer = bytearray(KEY_BYTES * len(texts))
    for i, text in enumerate(texts):
        buffer[i * KEY_BYTES : (i + 1) * KEY_BYTES] = text_key(text)
    return np.frombuffer(buffer, dtype=KEY_DTYPE)


def distinct_texts(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The distinct texts in order of first appearance, and for every text its place among them."""
    import pandas as pd

    codes, uniques = pd.factorize(np.asarray(texts, dtype=object).reshape(len(texts)))
    return uniques.tolist(), codes.astype(np.int64, copy=False)


class CacheDamagedWarning(UserWarning):
    """A damaged file of the embedding cache was deleted; its texts are embedded again."""


def _warn_damaged(path: Path, why: str, root: Path) -> None:
    warnings.warn(
        f"embedding cache file {path} is damaged ({why}); dropped it: what it held is computed again. "
        f"Deleting the cache folder {root} is always safe",
        CacheDamagedWarning,
        stacklevel=2,
    )


def _npy_damage(path: Path, rows: int | None = None) -> str | None:
    """What is wrong with the float32 matrix `.npy` at `path` (of `rows` rows, when given), judged by its header and
    size alone; None when nothing is."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = header(handle)
            start, size = handle.tell(), os.fstat(handle.fileno()).st_size
    except (OSError, ValueError, EOFError) as error:
        return f"unreadable: {error}"
    if dtype != np.float32 or len(shape) != 2:
        return f"holds {dtype} {shape}, not a float32 matrix"
    if rows is not None and shape[0] != rows:
        return f"{shape[0]} vectors for {rows} keys"
    if size != start + shape[0] * shape[1] * dtype.itemsize:
        return f"{size} bytes where its header needs {start + shape[0] * shape[1] * dtype.itemsize}"
    return None


def _value_damage(vectors: np.ndarray, dimension: int) -> str | None:
    """What is wrong with vectors read back: their width, or values that are NaN or infinite."""
    if vectors.ndim != 2 or vectors.shape[1] != dimension:
        return f"vectors of width {vectors.shape[-1]}, not {dimension}"
    for start in range(0, len(vectors), VALUE_CHECK_ROWS):
        if not np.isfinite(vectors[start : start + VALUE_CHECK_ROWS]).all():
            return "NaN or infinite values"
    return None


def remove_stale_temporaries(folder: Path, age: float = STALE_SECONDS) -> None:
    """Delete the temporary files (`atomic_path`'s `.*.tmp`) in `folder` untouched for `age` seconds."""
    if not folder.is_dir():
        return
    now = time.time()
    for temp in folder.glob(".*.tmp"):
        try:
            if temp.is_file() and now - temp.stat().st_mtime > age:
                temp.unlink()
        except OSError:  # gone already, or not ours to delete: either way not this run's concern
            continue


class _Occurrences:
    """Where each distinct text occurs among the posts (`inverse`: each post's distinct text)."""

    def __init__(self, inverse: np.ndarray, n_distinct: int) -> None:
        self.order = np.argsort(inverse, kind="stable")
        self.starts = np.searchsorted(inverse[self.order], np.arange(n_distinct + 1))

    def of(self, distinct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(posts holding any of the `distinct` texts, the place in `distinct` of each post's text)."""
        counts = self.starts[distinct + 1] - self.starts[distinct]
        which = np.repeat(np.arange(len(distinct)), counts)
        offsets = np.arange(len(which)) - np.repeat(np.cumsum(counts) - counts, counts)
        return self.order[self.starts[distinct][which] + offsets], which


class EmbeddingCache:
    """Embeddings on disk, keyed by (encoder identity, text).

    The index is numpy arrays (sorted keys, and each key's chunk and row), so a million
    cached texts cost tens of MB, not a Python dict entry each; chunk files are opened one
    at a time when read, never all at once.
    """

    def __init__(self, root: Path, identity: str) -> None:
        self.folder = Path(root) / identity
        self._files: list[Path] | None = None  # the vectors file of each chunk
        self._keys: list[np.ndarray] = []  # the keys of each chunk
        self._index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _chunk_files(self) -> list[Path]:
        """The chunks' vectors files, read once: damaged chunks (`_read_keys`, `_npy_damage`) are deleted and left
        out, and temporary files left by crashed runs removed."""
        if self._files is None:
            self._files = []
            remove_stale_temporaries(self.folder)
            remove_stale_temporaries(self.folder / POSTS_FOLDER)
            for keys_file in sorted(self.folder.glob("*.keys.npy")):
                vectors_file = keys_file.with_name(keys_file.name.replace(".keys.npy", ".vectors.npy"))
                keys, why = _read_keys(keys_file)
                at_fault = keys_file
                if why is None:
                    at_fault = vectors_file
                    why = _npy_damage(vectors_file, len(keys)) if vectors_file.exists() else "missing"
                if why is not None:
                    _drop_chunk(at_fault, why, self.folder.parent)
                    continue
                self._files.append(vectors_file)
                self._keys.append(keys)
        return self._files

    def _sorted_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys sorted, chunk of each, row of each); a key held twice is read from the chunk written last."""
        if self._index is None:
            self._chunk_files()
            keys = np.concatenate([np.empty(0, dtype=KEY_DTYPE), *self._keys])
            chunks = np.repeat(np.arange(len(self._keys)), [len(k) for k in self._keys])
            rows = np.concatenate([np.empty(0, dtype=np.int64), *(np.arange(len(k)) for k in self._keys)])
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            last = np.append(keys[1:] != keys[:-1], True)[: len(keys)]
            self._index = (keys[last], chunks[order][last], rows[order][last])
        return self._index

    def locate(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each key (`text_keys`), the chunk holding its vector (-1: not cached) and its row there."""
        held, chunks, rows = self._sorted_index()
        if not len(held):
            return np.full(len(keys), -1, dtype=np.int64), np.zeros(len(keys), dtype=np.int64)
        place = np.searchsorted(held, keys).clip(max=len(held) - 1)
        hit = held[place] == keys
        return np.where(hit, chunks[place], -1), np.where(hit, rows[place], 0)

    def chunk(self, number: int) -> np.ndarray:
        """The vectors of one chunk, memory-mapped."""
        return np.load(self._chunk_files()[number], mmap_mode="r")

    def read(self, number: int, rows: np.ndarray, dimension: int | None = None) -> np.ndarray | None:
        """Rows of one chunk, checked: None when the chunk proves damaged (unreadable, not `dimension` wide,
        NaN or infinity among the rows), and then it is deleted and no longer found."""
        try:
            vectors = self.chunk(number)[rows]
        except (OSError, ValueError, EOFError) as error:
            why: str | None = f"unreadable: {error}"
        else:
            why = _value_damage(vectors, vectors.shape[-1] if dimension is None else dimension)
        if why is None:
            return vectors
        _drop_chunk(self._chunk_files()[number], why, self.folder.parent)
        self._keys[number] = np.empty(0, dtype=KEY_DTYPE)
        self._index = None
        return None

    def lookup(self, keys: Sequence[bytes]) -> list[np.ndarray | None]:
        """The cached vector of each key, None where it is not cached (or its chunk proved damaged)."""
        chunks, rows = self.locate(np.array(keys, dtype=KEY_DTYPE))
        found: list[np.ndarray | None] = [None] * len(chunks)
        for chunk, part in _groups(chunks):
            vectors = self.read(chunk, rows[part]) if chunk >= 0 else None
            if vectors is not None:
                for place, vector in zip(part, vectors, strict=True):
                    found[place] = vector
        return found

    def add(self, keys: np.ndarray | Sequence[bytes], vectors: np.ndarray) -> None:
        """Write one chunk: vectors first, then keys, so a crash never leaves keys without vectors."""
        keys = np.asarray(keys, dtype=KEY_DTYPE)
        files = self._chunk_files()
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = hashlib.sha256(keys.tobytes()).hexdigest()[:20]
        with atomic_path(self.folder / f"{stem}.vectors.npy") as temp, open(temp, "wb") as handle:
            np.save(handle, vectors.astype(np.float32))
        with atomic_path(self.folder / f"{stem}.keys.npy") as temp, open(temp, "wb") as handle:
            np.save(handle, keys.view(np.uint8).reshape(len(keys), KEY_BYTES))
        files.append(self.folder / f"{stem}.vectors.npy")
        self._keys.append(keys.copy())
        self._index = None


def _read_keys(path: Path) -> tuple[np.ndarray, str | None]:
    """A chunk's keys, and what is wrong with them (None: nothing): they must be 16-byte rows hashing to the
    file's name, as `EmbeddingCache.add` wrote them."""
    empty = np.empty(0, dtype=KEY_DTYPE)
    try:
        raw = np.load(path)
    except (OSError, ValueError, EOFError) as error:
        return empty, f"unreadable: {error}"
    if raw.dtype != np.uint8 or raw.ndim != 2 or raw.shape[1] != KEY_BYTES:
        return empty, f"holds {raw.dtype} {raw.shape}, not rows of {KEY_BYTES} bytes"
    raw = np.ascontiguousarray(raw)
    if hashlib.sha256(raw.tobytes()).hexdigest()[:20] != path.name.removesuffix(".keys.npy"):
        return empty, "its keys do not match its name"
    return raw.view(KEY_DTYPE).reshape(-1), None


def _drop_chunk(path: Path, why: str, root: Path) -> None:
    """Warn that a chunk is damaged (`path`: the file at fault) and delete both its files, keys first: vectors
    without keys are never read. A cache that cannot be written keeps them, and each run leaves them out."""
    _warn_damaged(path, why, root)
    stem = path.name.removesuffix(".keys.npy").removesuffix(".vectors.npy")
    for suffix in (".keys.npy", ".vectors.npy"):
        try:
            remove(path.with_name(stem + suffix))  # a folder in a file's place too
        except OSError:
            return


def _groups(labels: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(label, the positions holding it) for each distinct label, in increasing order of label."""
    order = np.argsort(labels, kind="stable")
    for part in np.split(order, np.flatnonzero(np.diff(labels[order])) + 1):
        if len(part):
            yield int(labels[part[0]]), part


def _fill(
    out: np.ndarray,
    distinct: list[str],
    inverse: np.ndarray,
    encoder: Encoder,
    cache: EmbeddingCache | None,
    progress: Advance | None,
    keys: np.ndarray | None = None,
) -> None:
    """Write every post's vector into its row of `out` (in memory or memory-mapped), a chunk at a time.

    Cached vectors are copied one cache chunk at a time; the other distinct texts are
    embedded `CHUNK` at a time (in order of first appearance, longest first within a chunk:
    less padding), each chunk saved to the cache before the next starts, so an interrupted
    run resumes. Nothing of the size of `out` is held besides `out` itself.
    """
    where = _Occurrences(inverse, len(distinct))
    chunks = np.full(len(distinct), -1, dtype=np.int64)
    rows = np.zeros(len(distinct), dtype=np.int64)
    if cache is not None:
        keys = text_keys(distinct) if keys is None else keys
        chunks, rows = cache.locate(keys)
        for chunk, part in _groups(chunks.copy()):
            vectors = cache.read(chunk, rows[part], out.shape[1]) if chunk >= 0 else None
            if vectors is None:
                chunks[part] = -1  # not cached, or its chunk was damaged: embedded below
                continue
            posts, which = where.of(part)
            out[posts] = vectors[which]
    missing = np.flatnonzero(chunks < 0)
    if progress is not None and len(distinct) - len(missing):
        progress(len(distinct) - len(missing))
    for start in range(0, len(missing), CHUNK):
        chunk = missing[start : start + CHUNK].tolist()
        ordered = np.array(sorted(chunk, key=lambda i: (-len(distinct[i]), i)), dtype=np.int64)
        computed = encoder.encode([distinct[i] for i in ordered])
        posts, which = where.of(ordered)
        out[posts] = computed[which]
        if cache is not None and keys is not None:
            cache.add(keys[ordered], computed)
        if progress is not None:
            progress(len(chunk))


def embed(
    texts: Sequence[str],
    encoder: Encoder,
    cache: EmbeddingCache | None = None,
    progress: Advance | None = None,
) -> np.ndarray:
    """Unit vectors for `texts`, in memory, computing only the texts the cache does not hold.

    Distinct texts are embedded once; for many posts, `embed_to_disk` keeps the vectors on disk.
    """
    distinct, inverse = distinct_texts(texts)
    out = np.empty((len(texts), encoder.dimension), dtype=np.float32)
    _fill(out, distinct, inverse, encoder, cache, progress)
    return out


def posts_vectors_path(cache: EmbeddingCache, keys: np.ndarray) -> Path:
    """Where `embed_to_disk` keeps the vectors of a sequence of posts (`keys`: every post's `text_key`, in order)."""
    return cache.folder / POSTS_FOLDER / f"{hashlib.sha256(keys.tobytes()).hexdigest()[:32]}.npy"


def _open_vectors(path: Path, shape: tuple[int, int], root: Path) -> np.ndarray | None:
    """The memory-mapped vectors file at `path`, or None when it is absent or damaged (then with a warning):
    cut short, not of that shape, or holding NaN or infinity. A folder in its place is removed (with a warning), or
    else refused in one line: the file written next could not replace it."""
    if path.exists() and not path.is_file():
        _warn_damaged(path, "a folder, not a file", root)
        remove(path)
        if path.exists():
            raise TopicliError(f"embedding cache path {path} is a folder that cannot be removed; delete it and rerun")
    if not path.is_file():
        return None
    why = _npy_damage(path, shape[0])
    vectors = None
    if why is None:
        try:
            vectors = np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as error:
            why = f"unreadable: {error}"
        else:
            why = _value_damage(vectors, shape[1])
    if why is None:
        return vectors
    _warn_damaged(path, why, root)
    return None


def embed_to_disk(
    texts: Sequence[str],
    encoder: Encoder,
    cache: EmbeddingCache,
    progress: Advance | None = None,
) -> np.ndarray:
    """`embed`, streamed into one `.npy` of a row per text, returned memory-mapped (read-only).

    The file lives in the cache folder (`posts/`), named by the hash of the posts' keys in
    order, so a second command on the same posts maps it at once. It is written to a
    temporary file, chunk by chunk, and renamed into place only when whole; an interrupted
    run leaves the cached chunks, and the next one embeds only the rest.
    """
    distinct, inverse = distinct_texts(texts)
    keys = text_keys(distinct)
    path = posts_vectors_path(cache, keys[inverse])
    shape = (len(texts), encoder.dimension)
    vectors = _open_vectors(path, shape, cache.folder.parent)
    if vectors is not None:
        if progress is not None and len(distinct):
            progress(len(distinct))
        return vectors
    with atomic_path(path) as temp:

        def advance(done: int) -> None:
            os.utime(temp)  # a live run's file: `remove_stale_temporaries` leaves it alone
            if progress is not None:
                progress(done)

        out = np.lib.format.open_memmap(temp, mode="w+", dtype=np.float32, shape=shape)
        _fill(out, distinct, inverse, encoder, cache, advance, keys)
        out.flush()
        del out
    return np.load(path, mmap_mode="r")


class Embedder:
    """An encoder with its cache: call it with texts, get unit vectors.

    `encoder` replaces the one `name` would load (tests and benchmarks pass their own).
    """

    def __init__(
        self,
        name: str = DEFAULT_ENCODER,
        batch_size: int = 64,
        cache_dir: str | Path = ".topicli-cache",
        encoder: Encoder | None = None,
    ) -> None:
        self.name = name
        self.encoder = encoder if encoder is not None else load_encoder(name, batch_size)
        self.cache = EmbeddingCache(Path(cache_dir), self.encoder.identity) if cache_dir else None

    @property
    def identity(self) -> str:
        return self.encoder.identity

    def __call__(self, texts: Sequence[str], progress: Advance | None = None) -> np.ndarray:
        """Vectors in memory: for a few texts (topic names, a request)."""
        return embed(texts, self.encoder, self.cache, progress)

    def on_disk(self, texts: Sequence[str], progress: Advance | None = None) -> np.ndarray:
        """Vectors memory-mapped from one file in the cache (`embed_to_disk`): for posts, however many.

        Without a cache folder they are held in memory.
        """
        if self.cache is None:
            return embed(texts, self.encoder, None, progress)
        return embed_to_disk(texts, self.encoder, self.cache, progress)
