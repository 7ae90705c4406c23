"""Performance of topicli beside the obvious alternatives, each measured in the same run.

    python bench/run.py [--sizes 50k,100k] [--cases ann,cluster,labelling,embedding,e2e,streaming] [--posts 2000]
                        [--rounds 3] [--stream-sizes 100k,1m]

Every case runs in a child process of its own, so its peak RSS (`ru_maxrss`) is its own.
Posts at scale are synthetic: real all-MiniLM-L6-v2 embeddings of 10,000 HuffPost
headlines and the 6,798 TweetTopic test tweets (../shared/data), each synthetic post a
random one of them plus Gaussian noise of norm ~0.5, re-normalised (cosine ~0.89 to its
source). The end-to-end case (`e2e`) uses real text instead (`real_posts`). Tables go to
stdout and are merged into bench/results/perf.md: sections and rows not rerun are kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / ".topicli-cache"
RESULTS = ROOT / "bench" / "results" / "perf.md"
PREAMBLE = ("# topicli performance", "", "2 cores; each ratio is against a baseline run in the same call.", "")
EXACT_MAX = 50_000  # exact sklearn DBSCAN above this is O(n^2): 42 s at 50k, hours at 1M


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def base_texts() -> list[str]:
    """The distinct real texts whose embeddings synthetic posts are made from."""
    import pandas as pd

    texts = pd.read_csv(DATA / "train" / "huffpost.csv", dtype=str, keep_default_na=False)["text"].tolist()[:10_000]
    for name in ("test_2021.single.json", "test_random.single.json"):
        lines = (DATA / "eval" / "tweet_topic_single" / name).read_text(encoding="utf-8").splitlines()
        texts += [json.loads(line)["text"] for line in lines if line.strip()]
    return list(dict.fromkeys(texts))


def base_vectors(embedder: Any = None) -> np.ndarray:
    from topicli.method.embedding import Embedder

    return (embedder or Embedder("all-MiniLM-L6-v2", cache_dir=CACHE))(base_texts())


def synthetic(n: int, seed: int = 0) -> np.ndarray:
    base = base_vectors()
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        rows = min(100_000, n - start)
        block = base[rng.integers(len(base), size=rows)]
        block += rng.standard_normal(block.shape, dtype=np.float32) * (0.5 / np.sqrt(base.shape[1]))
        out[start : start + rows] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, exact, strict=True)]))


def case_ann(n: int, library: str) -> dict:
    """k=30 neighbour lists of n posts by one library; recall@30 on 1,000 posts against exact."""
    vectors = synthetic(n)
    k = 30
    started = time.perf_counter()
    if library == "topicli (hnswlib, 1-thread build)":
        from topicli.method.clustering import approximate_neighbours

        _, indices = approximate_neighbours(vectors, k)
    elif library == "sklearn exact (brute)":
        from sklearn.neighbors import NearestNeighbors

        indices = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(vectors).kneighbors(vectors)[1][:, 1:]
    elif library == "faiss IVF-Flat (nprobe 16)":
        import faiss

        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(384), 384, n // 256, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[:: max(1, n // (n // 256 * 40))])
        index.add(vectors)
        index.nprobe = 16
        indices = index.search(vectors, k + 1)[1][:, 1:]
    elif library == "faiss HNSW (2 threads)":
        import faiss

        index = faiss.IndexHNSWFlat(384, 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction, index.hnsw.efSearch = 100, 64
        index.add(vectors)
        indices = index.search(vectors, k + 1)[1][:, 1:]
    elif library == "hnswlib (2-thread build, not deterministic)":
        import hnswlib

        index = hnswlib.Index(space="ip", dim=384)
        index.init_index(max_elements=n, ef_construction=100, M=16, random_seed=0)
        index.add_items(vectors, num_threads=2)
        index.set_ef(64)
        indices = index.knn_query(vectors, k=k + 1, num_threads=2)[0][:, 1:]
    else:  # pynndescent
        from pynndescent import NNDescent

        indices = NNDescent(vectors, metric="cosine", n_neighbors=k + 1, random_state=0).neighbor_graph[0][:, 1:]
    seconds = time.perf_counter() - started
    sample = np.random.default_rng(1).choice(n, 1000, replace=False)
    exact = np.argsort(-(vectors[sample] @ vectors.T), axis=1)[:, 1 : k + 1]
    return {"seconds": seconds, "recall@30": recall(indices[sample], exact)}


def case_labelling(_: int) -> dict:
    """100 clusters x 20 voters x 100 topics: one vectorised vote against a per-cluster loop."""
    from topicli.method.labelling import vote
    from topicli.method.scoring import TopicScores

    rng = np.random.default_rng(0)
    probabilities = TopicScores(None, rng.dirichlet(np.ones(100), size=100_000).astype(np.float32))
    voters = [rng.choice(100_000, 20, replace=False) for _ in range(100)]
    sizes = np.full(100, 20)
    started = time.perf_counter()
    for _ in range(50):
        loop = [np.argmax(probabilities(rows).mean(axis=0)) for rows in voters]
    baseline = (time.perf_counter() - started) / 50
    started = time.perf_counter()
    for _ in range(50):
        ours = vote(voters, sizes, probabilities)
    seconds = (time.perf_counter() - started) / 50
    assert [info.topic for info in ours] == [int(t) for t in loop]
    return {"seconds": seconds, "baseline s": baseline}


EMBEDDING_BASELINE = "SentenceTransformer.encode, batch 32 (its default): baseline"
EMBEDDING_PATHS = (
    EMBEDDING_BASELINE,
    "SentenceTransformer.encode, batch 64 (topicli's batch for PyTorch encoders)",
    "SentenceTransformer.encode, batch 16",
    "all-MiniLM-L6-v2-int8 (ONNX Runtime, batches of 4: topicli)",
    "all-MiniLM-L6-v2 in ONNX Runtime, one 2-thread session, batches of 8 (before)",
    "all-MiniLM-L6-v2 in ONNX Runtime (fp32 export, batches of 4 on one 1-thread session per core): topicli's default",
)


def case_embedding(n: int, rounds: str = "1") -> dict:
    """posts/s of each encoder path on n TweetTopic training tweets (longest first), in interleaved rounds:
    each round times every path once, so a ratio compares paths timed side by side."""
    from topicli.method.embedding import (
        DEFAULT_ENCODER,
        INT8_ENCODER,
        ONNX_ENCODER_FILE,
        load_encoder,
        onnx_session,
        shipped_encoder_folder,
    )

    lines = (DATA / "eval" / "tweet_topic_single" / "train_random.single.json").read_text().splitlines()
    texts = sorted((json.loads(line)["text"] for line in lines if line.strip()), key=len, reverse=True)[:n]
    fp32, int8 = load_encoder(str(shipped_encoder_folder())), load_encoder(INT8_ENCODER)  # a folder: PyTorch
    onnx, onnx_before = load_encoder(DEFAULT_ENCODER), load_encoder(DEFAULT_ENCODER)
    onnx_before.batch_size = 8
    onnx_before.sessions = [onnx_session(onnx.folder / ONNX_ENCODER_FILE, 2)]
    runs = {
        EMBEDDING_PATHS[0]: lambda: fp32.model.encode(texts, batch_size=32, normalize_embeddings=True),
        EMBEDDING_PATHS[1]: lambda: fp32.model.encode(texts, batch_size=64, normalize_embeddings=True),
        EMBEDDING_PATHS[2]: lambda: fp32.model.encode(texts, batch_size=16, normalize_embeddings=True),
        EMBEDDING_PATHS[3]: lambda: int8.encode(texts),
        EMBEDDING_PATHS[4]: lambda: onnx_before.encode(texts),
        EMBEDDING_PATHS[5]: lambda: onnx.encode(texts),
    }
    fp32.encode(texts[:64]), int8.encode(texts[:64]), onnx_before.encode(texts[:64]), onnx.encode(texts[:64])
    seconds: dict[str, list[float]] = {path: [] for path in runs}
    cosine: dict[str, float] = {}
    for _ in range(int(rounds)):
        vectors = {}
        for path, run in runs.items():
            started = time.perf_counter()
            vectors[path] = run()
            seconds[path].append(time.perf_counter() - started)
        reference = vectors[EMBEDDING_BASELINE]
        for path, found in vectors.items():
            cosine[path] = min(cosine.get(path, 1.0), float(np.sum(reference * found, axis=1).min()))
    return {"seconds": seconds, "min cosine": cosine}


def real_posts(n: int) -> Path:
    """n real short texts in one CSV (`text`), shuffled (seed 0): HuffPost headlines, CLINC150 requests,
    20 Newsgroups subjects (train + test), AG News titles and descriptions, TweetTopic tweets (4 splits),
    SIB-200 English; duplicates kept, as in real posts."""
    import pandas as pd

    def jsonl(path: Path, column: str) -> list[str]:
        return [json.loads(line)[column] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def read(name: str, column: str) -> list[str]:
        return pd.read_csv(DATA / name, dtype=str, keep_default_na=False)[column].tolist()

    texts = read("train/huffpost.csv", "text") + read("train/clinc150.csv", "text")
    texts += read("train/ag_news_test.csv", "Title") + read("train/ag_news_test.csv", "Description")
    for split in ("train", "test"):
        texts += jsonl(DATA / "train" / "20newsgroups" / f"{split}.jsonl", "subject")
    for name in ("train_2020", "train_random", "test_2021", "test_random"):
        texts += jsonl(DATA / "eval" / "tweet_topic_single" / f"{name}.single.json", "text")
    texts += jsonl(DATA / "eval" / "tweet_topic_multi_en_dev.jsonl", "text")
    for split in ("train", "dev", "test"):
        texts += pd.read_csv(DATA / "eval" / "sib200" / "eng_Latn" / f"{split}.tsv", sep="\t", dtype=str)[
            "text"
        ].tolist()
    texts = [text for text in texts if text.strip()]
    if len(texts) < n:
        raise SystemExit(f"only {len(texts)} texts in {DATA}, fewer than {n}")
    chosen = [texts[i] for i in np.random.default_rng(0).permutation(len(texts))[:n]]
    path = ROOT / "bench" / "results" / "tmp" / f"posts-{n}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": chosen}).to_csv(path, index=False)
    return path


def case_e2e(n: int, tool: str) -> dict:
    """`topicli run` (a child process, cache warm) or BERTopic `fit_transform` on the same posts and vectors."""
    import pandas as pd

    from topicli.method.embedding import Embedder, text_key

    path = real_posts(n)
    texts = pd.read_csv(path, dtype=str, keep_default_na=False)["text"].tolist()
    if tool == "embedding":  # fills the cache: what a cold run spends before clustering
        embedder = Embedder("all-MiniLM-L6-v2", cache_dir=CACHE)
        missing = sum(hit is None for hit in embedder.cache.lookup([text_key(t) for t in dict.fromkeys(texts)]))
        started = time.perf_counter()
        embedder(texts)
        return {"seconds": time.perf_counter() - started, "embedded": missing, "distinct": len(set(texts))}
    if tool == "topicli run":
        command = [
            str(Path(sys.executable).with_name("topicli")),
            "run",
            str(path),
            "--output",
            str(path.with_suffix(".out.csv")),
        ]
        started = time.perf_counter()
        subprocess.run(
            command,
            cwd=ROOT,
            check=True,
            capture_output=True,
            env={**os.environ, "TOPICLI_ENCODER_NAME": "all-MiniLM-L6-v2"},
        )
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        topics = pd.read_csv(path.with_suffix(".out.csv"), dtype=str, keep_default_na=False)["topic"]
        return {"seconds": seconds, "peak RSS GiB": peak, "topics": topics[topics != ""].nunique()}
    from bertopic import BERTopic

    vectors = Embedder("all-MiniLM-L6-v2", cache_dir=CACHE)(texts)
    started = time.perf_counter()
    assigned, _ = BERTopic().fit_transform(texts, vectors)
    return {"seconds": time.perf_counter() - started, "topics": len(set(assigned) - {-1})}


STREAM_DIR = ROOT / "bench" / "results" / "tmp" / "streaming"
STREAM_VARIANTS = (
    "in RAM (embed as of f7e5989), cold cache",
    "streaming (memory-mapped), cold cache",
    "streaming (memory-mapped), warm: vectors file cached",
)


class MixtureEncoder:
    """Vectors of synthetic posts without running a model, as fast as numpy writes them.

    A synthetic post is `"<base text> #<id>"`: its vector is the real all-MiniLM-L6-v2 vector of
    the base text plus Gaussian noise of norm ~0.5 drawn from the id, re-normalised (as
    `synthetic`). Any other text (topic names) goes to the real encoder.
    """

    identity = "synthetic-mixture-v1"
    dimension = 384

    def __init__(self, texts: list[str], vectors: np.ndarray, real: Any) -> None:
        self.source = {text: j for j, text in enumerate(texts)}
        self.vectors = vectors
        self.real = real
        noise = np.random.default_rng(0).standard_normal((2, 8192, self.dimension), dtype=np.float32)
        self.noise = noise * np.float32(0.5 / np.sqrt(2 * self.dimension))

    def encode(self, texts: Any) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        parsed = [(i, *text.rpartition(" #")) for i, text in enumerate(texts)]
        mine = [(i, self.source[head], int(tail)) for i, head, _, tail in parsed if head in self.source]
        others = [i for i, head, _, _ in parsed if head not in self.source]
        if mine:
            rows, sources, ids = (np.array(column) for column in zip(*mine, strict=True))
            block = self.vectors[sources] + self.noise[0][ids % 8191] + self.noise[1][(ids // 8191) % 8192]
            out[rows] = block / np.linalg.norm(block, axis=1, keepdims=True)
        if others:
            out[others] = self.real.encode([texts[i] for i in others])
        return out


def stream_posts(n: int) -> Path:
    """n synthetic posts (`id`, `text`) in a CSV: a base text (whitespace collapsed) + ` #<id>`; ~10 % repeat an
    earlier post, as real posts do."""
    import pandas as pd

    path = STREAM_DIR / f"posts-{n}.csv"
    if path.exists():
        return path
    texts = [" ".join(text.split()) for text in base_texts()]
    rng = np.random.default_rng(0)
    ids = np.arange(n)
    repeats = rng.random(n) < 0.1
    ids[repeats] = rng.integers(0, n, int(repeats.sum()))
    sources = rng.integers(len(texts), size=n)[ids]
    frame = pd.DataFrame({"id": ids, "text": [f"{texts[j]} #{i}" for j, i in zip(sources, ids, strict=True)]})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path.with_suffix(".tmp"), index=False)
    path.with_suffix(".tmp").replace(path)
    return path


class StageTimer:
    """A progress factory (`topicli.progress`) that shows nothing and keeps when each block began and ended.

    `Pipeline` opens one block per stage ("embedding posts", "finding neighbours",
    "searching clusterings"), so passing this times the shipped stages without wiring them by hand.
    """

    def __init__(self) -> None:
        self.spans: dict[str, tuple[float, float]] = {}

    @contextmanager
    def __call__(self, description: str, total: int | None = None) -> Iterator[Any]:
        started = time.perf_counter()
        try:
            yield lambda n=1: None
        finally:
            self.spans[description] = (started, time.perf_counter())


def mixture_embedder(cache: Path) -> Any:
    """An `Embedder` of the default encoder's name whose posts are `MixtureEncoder` look-ups (`stream_posts`),
    caching in `cache`; topic names still go through the real all-MiniLM-L6-v2."""
    from topicli.method.embedding import DEFAULT_ENCODER, Embedder

    real = Embedder(DEFAULT_ENCODER, cache_dir=CACHE)
    encoder = MixtureEncoder([" ".join(t.split()) for t in base_texts()], base_vectors(real), real.encoder)
    return Embedder(DEFAULT_ENCODER, cache_dir=cache, encoder=encoder)


CLUSTER_DIR = ROOT / "bench" / "results" / "tmp" / "cluster"


def case_cluster(n: int) -> dict:
    """The shipped `Pipeline` (prepare -> cluster -> label, default settings) on n synthetic posts (`stream_posts`).

    Stages are timed through the progress blocks `Pipeline` opens (`StageTimer`): neighbours is its
    block; scores is from its end to the start of the search (topic-part vectors, raw scores, topic
    floors, smoothing, the input's digest); search is its block; label is `Pipeline.label`. Embedding
    is a `MixtureEncoder` look-up into a cold cache, not a model: reported apart, left out of total.
    Topic-part vectors are cached before timing, as after any first run.
    """
    import shutil

    from topicli.config import Settings
    from topicli.io import read_posts
    from topicli.method.pipeline import Pipeline
    from topicli.method.scoring import part_vectors

    cache = CLUSTER_DIR / f"cache-{n}"
    shutil.rmtree(cache, ignore_errors=True)
    try:
        embedder = mixture_embedder(cache)
        timer = StageTimer()
        pipeline = Pipeline(Settings().method, progress=timer, embedder=embedder)
        part_vectors(pipeline.topics, pipeline.template(), embedder)
        posts = read_posts(stream_posts(n))
        prepared = pipeline.prepare(posts)
        run = pipeline.cluster(prepared)
        started = time.perf_counter()
        pipeline.label(prepared, run)
        ended = time.perf_counter()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    embedding, neighbours = timer.spans["embedding posts"], timer.spans["finding neighbours"]
    search = timer.spans["searching clusterings"]
    result: dict[str, Any] = {
        "seconds": ended - embedding[1],
        "embedding s": embedding[1] - embedding[0],
        "neighbours s": neighbours[1] - neighbours[0],
        "scores s": search[0] - neighbours[1],
        "search s": search[1] - search[0],
        "label s": ended - started,
        "peak RSS GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # before exact DBSCAN's
        "n_clusters": run.chosen.n_clusters,
        "eps": run.chosen.eps,
        "min_samples": run.chosen.min_samples,
        "candidates": len(run.candidates),
    }
    if n <= EXACT_MAX:
        from sklearn.cluster import DBSCAN
        from sklearn.metrics import adjusted_rand_score

        vectors, labels = np.asarray(prepared.vectors), run.labels[prepared.rows]
        started = time.perf_counter()
        exact = DBSCAN(eps=run.chosen.eps, min_samples=run.chosen.min_samples, metric="cosine")
        exact.fit(vectors, sample_weight=prepared.weights)  # a repeated post counts as often as it is posted
        result["exact DBSCAN s (one eps)"] = time.perf_counter() - started
        result["ARI vs exact"] = adjusted_rand_score(exact.labels_, labels)
    return result


class PeakMemory:
    """Peak resident memory of this process while the block runs, sampled from /proc/self/status every 2 ms:
    VmRSS (all), RssAnon (heap: what copies cost) and RssFile (mapped file pages, the kernel may drop them)."""

    FIELDS = ("VmRSS", "RssAnon", "RssFile")

    def __init__(self) -> None:
        import threading

        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.start = self.read()
        self.peak = dict(self.start)

    @classmethod
    def read(cls) -> dict[str, int]:
        found = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in cls.FIELDS:
                found[name] = int(value.split()[0]) * 1024
        return found

    def _sample(self) -> None:
        while not self.stop.wait(0.002):
            for name, value in self.read().items():
                self.peak[name] = max(self.peak[name], value)

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()
        for name, value in self.read().items():
            self.peak[name] = max(self.peak[name], value)


# The baseline's own constants, frozen as of f7e5989 (and equal to the shipped ones today): a baseline that
# read topicli's live CHUNK and text_key would move whenever the shipped code does.
LEGACY_CHUNK = 1024


def legacy_text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def legacy_embed(texts: list[str], encoder: Any, folder: Path, progress: Any = None) -> np.ndarray:
    """The baseline: `embed` and `EmbeddingCache` as they were before streaming (topicli f7e5989), condensed.

    The whole (distinct texts x dim) array in RAM, a dict entry per cached text, every chunk
    embedded in this run kept in RAM by the cache, and a gathered copy per post at the end.
    """
    from topicli.io import atomic_path

    index: dict[bytes, tuple[int, int]] = {}
    chunks: list[np.ndarray] = []
    for keys_file in sorted(folder.glob("*.keys.npy")):
        vectors_file = keys_file.with_name(keys_file.name.replace(".keys.npy", ".vectors.npy"))
        if vectors_file.exists():
            chunks.append(np.load(vectors_file, mmap_mode="r"))
            index.update({key.tobytes(): (len(chunks) - 1, row) for row, key in enumerate(np.load(keys_file))})
    unique = list(dict.fromkeys(texts))
    keys = [legacy_text_key(text) for text in unique]
    found = (index.get(key) for key in keys)
    cached = [None if hit is None else np.asarray(chunks[hit[0]][hit[1]]) for hit in found]
    vectors = np.zeros((len(unique), encoder.dimension), dtype=np.float32)
    missing = []
    for i, vector in enumerate(cached):
        if vector is None:
            missing.append(i)
        else:
            vectors[i] = vector
    for start in range(0, len(missing), LEGACY_CHUNK):
        chunk = missing[start : start + LEGACY_CHUNK]
        ordered = sorted(chunk, key=lambda i: (-len(unique[i]), i))
        computed = encoder.encode([unique[i] for i in ordered])
        vectors[ordered] = computed
        chunk_keys = [keys[i] for i in ordered]
        folder.mkdir(parents=True, exist_ok=True)
        stem = hashlib.sha256(b"".join(chunk_keys)).hexdigest()[:20]
        with atomic_path(folder / f"{stem}.vectors.npy") as temp, open(temp, "wb") as handle:
            np.save(handle, computed.astype(np.float32))
        with atomic_path(folder / f"{stem}.keys.npy") as temp, open(temp, "wb") as handle:
            np.save(handle, np.frombuffer(b"".join(chunk_keys), dtype=np.uint8).reshape(len(chunk_keys), -1))
        chunks.append(np.asarray(computed, dtype=np.float32))
        index.update({key: (len(chunks) - 1, row) for row, key in enumerate(chunk_keys)})
        if progress is not None:
            progress(len(chunk))
    position = {text: i for i, text in enumerate(unique)}
    return vectors[[position[text] for text in texts]]


def case_streaming(n: int, variant: str) -> dict:
    """Peak memory of reading n synthetic posts (`stream_posts`) and `Pipeline.prepare` on them (embed with
    `MixtureEncoder`, neighbours, topic scores), beside the size of their embedding matrix."""
    import gc

    from topicli.config import Settings
    from topicli.io import read_posts
    from topicli.method.pipeline import Pipeline

    path, cache = stream_posts(n), STREAM_DIR / f"cache-{n}"
    embedder = mixture_embedder(cache)
    encoder = embedder.encoder
    if variant.startswith("in RAM"):
        folder = cache / encoder.identity
        embedder.on_disk = lambda texts, progress=None: legacy_embed(texts, encoder, folder, progress)  # type: ignore[method-assign]
    embedder(["warm up the real encoder"])
    gc.collect()
    with PeakMemory() as memory:
        started = time.perf_counter()
        posts = read_posts(path)
        after_read = dict(memory.peak)
        read_s = time.perf_counter() - started
        prepared = Pipeline(Settings().method, embedder=embedder).prepare(posts)
        seconds = time.perf_counter() - started
    matrix = n * encoder.dimension * 4
    return {
        "seconds": seconds,
        "read s": read_s,
        "memmap": isinstance(prepared.vectors, np.memmap),
        "matrix GiB": matrix / 2**30,
        "start RSS GiB": memory.start["VmRSS"] / 2**30,
        "peak RSS GiB": memory.peak["VmRSS"] / 2**30,
        "peak anon GiB": memory.peak["RssAnon"] / 2**30,
        "peak file GiB": memory.peak["RssFile"] / 2**30,
        "read peak growth GiB": (after_read["VmRSS"] - memory.start["VmRSS"]) / 2**30,
        "growth / matrix": (memory.peak["VmRSS"] - memory.start["VmRSS"]) / matrix,
        "anon growth / matrix": (memory.peak["RssAnon"] - memory.start["RssAnon"]) / matrix,
    }


CASES = {
    "ann": case_ann,
    "cluster": case_cluster,
    "labelling": case_labelling,
    "embedding": case_embedding,
    "e2e": case_e2e,
    "streaming": case_streaming,
}
ANN_LIBRARIES = (
    "topicli (hnswlib, 1-thread build)",
    "hnswlib (2-thread build, not deterministic)",
    "faiss HNSW (2 threads)",
    "faiss IVF-Flat (nprobe 16)",
    "pynndescent",
    "sklearn exact (brute)",
)


def child(case: str, size: int, variant: str) -> None:
    result = CASES[case](size, variant) if variant else CASES[case](size)
    result.setdefault("peak RSS GiB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    print(json.dumps(result))


def run_child(case: str, size: int, variant: str = "") -> dict:
    command = [sys.executable, __file__, "--child", case, "--size", str(size), "--variant", variant]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def fmt(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def table(title: str, header: list[str], rows: list[list[object]]) -> list[str]:
    """A markdown table under a heading."""
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows), ""]


def sections(text: str) -> dict[str, list[str]]:
    """The `## ` sections of a results file by title, each its lines (heading included)."""
    found: dict[str, list[str]] = {}
    title = ""
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:]
            found[title] = []
        if title:
            found[title].append(line)
    return found


def first_cell(row: str) -> str:
    return row.split("|")[1].strip()


def merge(old: list[str], new: list[str]) -> list[str]:
    """A section rerun: the new table's rows, plus the old rows whose first cell it did not measure again.

    Old rows stay where they were (a rerun row takes its old row's place; new keys go last);
    a changed header drops the old rows.
    """
    if old[:4] != new[:4]:
        return new
    fresh = {first_cell(line): line for line in new[4:] if line.startswith("|")}
    rows = [fresh.pop(first_cell(line), line) for line in old[4:] if line.startswith("|")]
    return [*new[:4], *rows, *fresh.values(), ""]


def write_results(lines: list[str]) -> None:
    """perf.md with the sections just run merged in: sections and rows not rerun are kept."""
    kept = sections(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    for title, fresh in sections("\n".join(lines)).items():
        kept[title] = merge(kept[title], fresh) if title in kept else fresh
    text = "\n".join([*PREAMBLE, *("\n".join(section).strip("\n") + "\n" for section in kept.values())])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def ann_section(n: int) -> list[str]:
    rows = {library: run_child("ann", n, library) for library in ANN_LIBRARIES}
    base = rows["sklearn exact (brute)"].get("seconds")
    body = [
        [
            name,
            r.get("seconds", r.get("error")),
            base / r["seconds"] if base and "seconds" in r else "n/a",
            r.get("recall@30"),
            r.get("peak RSS GiB"),
        ]
        for name, r in rows.items()
    ]
    header = ["library", "s", "x faster than sklearn exact", "recall@30", "peak RSS GiB"]
    return table(f"k-NN lists (k=30), {n:,} synthetic posts", header, body)


def cluster_section(sizes: list[int]) -> list[str]:
    body = []
    for n in sizes:
        r = run_child("cluster", n)
        if "error" in r:
            body.append([f"{n:,}", r["error"]])
            continue
        body.append(
            [
                f"{n:,}",
                r["seconds"],
                r["embedding s"],
                r["neighbours s"],
                r["scores s"],
                r["search s"],
                r["label s"],
                r["candidates"],
                r["n_clusters"],
                f"{r['eps']} / {r['min_samples']}",
                r.get("exact DBSCAN s (one eps)", "not run: O(n^2)"),
                r.get("ARI vs exact", "n/a"),
                r["peak RSS GiB"],
            ]
        )
    header = ["posts", "total s (embedding excluded)", "embedding s (look-up, no model)", "neighbours s", "scores s"]
    header += ["search s", "label s", "candidates", "clusters", "eps / min_samples"]
    header += ["exact sklearn DBSCAN s (chosen eps only)", "ARI vs exact", "peak RSS GiB (before exact DBSCAN)"]
    title = "Clustering search + labelling: shipped `Pipeline` on synthetic posts (bench/run.py stream_posts)"
    return table(title, header, body)


def labelling_section() -> list[str]:
    r = run_child("labelling", 0)
    body = [
        ["per-cluster loop (baseline)", r["baseline s"] * 1000, 1],
        ["topicli `vote`, one (clusters, k, topics) pass", r["seconds"] * 1000, r["baseline s"] / r["seconds"]],
    ]
    return table("Cluster votes: 100 clusters x 20 posts x 100 topics", ["path", "ms", "x faster"], body)


def embedding_section(n: int, rounds: int) -> list[str]:
    r = run_child("embedding", n, str(rounds))
    if "error" in r:
        return table(f"Embedding {n:,} tweets, longest first", ["path", "error"], [["all", r["error"]]])
    base = np.array(r["seconds"][EMBEDDING_BASELINE])
    body = []
    for path, seconds in r["seconds"].items():
        ratios = base / np.array(seconds)
        spread = f"{ratios.min():.2f}-{ratios.max():.2f}" if len(ratios) > 1 else f"{ratios[0]:.2f}"
        body.append([path, n / float(np.median(seconds)), float(np.median(ratios)), spread, r["min cosine"][path]])
    header = ["path", "posts/s (median)", f"x baseline (median of {rounds} interleaved rounds)", "x baseline (range)"]
    return table(f"Embedding {n:,} tweets, longest first", [*header, "min cosine to fp32"], body)


def e2e_section(n: int) -> list[str]:
    rows = {tool: run_child("e2e", n, tool) for tool in ("embedding", "topicli run", "BERTopic fit_transform")}
    embedding = rows.pop("embedding")
    base = rows["BERTopic fit_transform"].get("seconds")
    body = [
        [
            f"{tool}, {n:,} posts",
            r.get("seconds", r.get("error")),
            base / r["seconds"] if base and "seconds" in r else "n/a",
            r.get("topics"),
            r.get("peak RSS GiB"),
        ]
        for tool, r in rows.items()
    ]
    body.append(
        [
            f"embedding, cold ({embedding.get('embedded')} of {embedding.get('distinct')} distinct texts not cached)",
            embedding.get("seconds", embedding.get("error")),
            "n/a",
            "n/a",
            embedding.get("peak RSS GiB"),
        ]
    )
    header = ["path (embeddings cached: warm)", "s", "x faster than BERTopic", "topics", "peak RSS GiB"]
    return table(f"End to end, {n:,} real posts (bench/run.py real_posts)", header, body)


def streaming_section(sizes: list[int]) -> list[str]:
    """Each variant in a child of its own; cold variants start from an empty cache folder."""
    import shutil

    body = []
    for n in sizes:
        stream_posts(n)
        cache = STREAM_DIR / f"cache-{n}"
        for variant in STREAM_VARIANTS:
            if "cold" in variant:
                shutil.rmtree(cache, ignore_errors=True)
            r = run_child("streaming", n, variant)
            if "error" in r:
                body.append([f"{variant}, {n:,} posts", r["error"]])
                continue
            body.append(
                [
                    f"{variant}, {n:,} posts",
                    r["seconds"],
                    r["read s"],
                    r["start RSS GiB"],
                    r["peak RSS GiB"],
                    r["peak anon GiB"],
                    r["matrix GiB"],
                    r["growth / matrix"],
                    r["anon growth / matrix"],
                    "yes" if r["memmap"] else "no",
                ]
            )
        shutil.rmtree(cache, ignore_errors=True)
    header = ["path, posts", "s", "read s", "start RSS GiB", "peak RSS GiB", "peak anon GiB", "matrix GiB"]
    header += ["(peak - start) RSS / matrix", "(peak - start) anon / matrix", "vectors memory-mapped"]
    title = "Streaming: read + embed + prepare (neighbours, topic scores), synthetic posts (bench/run.py stream_posts)"
    return table(title, header, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50k,100k", help="posts for the clustering case, e.g. 100k,300k,1m")
    parser.add_argument("--ann-size", default="50k", help="posts for the neighbour-library comparison")
    parser.add_argument("--posts", type=int, default=2000, help="tweets for the embedding case")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved timing rounds of the embedding case")
    parser.add_argument("--e2e-size", default="100k", help="real posts for `topicli run` against BERTopic")
    parser.add_argument("--stream-sizes", default="100k", help="synthetic posts for the streaming case, e.g. 100k,1m")
    parser.add_argument("--cases", default="ann,cluster,labelling,embedding,e2e,streaming")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.size, args.variant)
        return
    cases = args.cases.split(",")
    lines = list(PREAMBLE)
    if "ann" in cases:
        lines += ann_section(parse_size(args.ann_size))
    if "cluster" in cases:
        lines += cluster_section([parse_size(size) for size in args.sizes.split(",")])
    if "labelling" in cases:
        lines += labelling_section()
    if "embedding" in cases:
        lines += embedding_section(args.posts, args.rounds)
    if "e2e" in cases:
        lines += e2e_section(parse_size(args.e2e_size))
    if "streaming" in cases:
        lines += streaming_section([parse_size(size) for size in args.stream_sizes.split(",")])
    sys.stdout.write("\n".join(lines) + "\n")
    write_results(lines)


if __name__ == "__main__":
    main()
