"""Performance of topicli beside the obvious alternatives, each measured in the same run.

    python bench/run.py [--sizes 50k,100k] [--cases ann,cluster,labelling,embedding,e2e] [--posts 2000]

Every case runs in a child process of its own, so its peak RSS (`ru_maxrss`) is its own.
Posts at scale are synthetic: real all-MiniLM-L6-v2 embeddings of 10,000 HuffPost
headlines and the 6,798 TweetTopic test tweets (../shared/data), each synthetic post a
random one of them plus Gaussian noise of norm ~0.5, re-normalised (cosine ~0.89 to its
source). The end-to-end case (`e2e`) uses real text instead (`real_posts`). Tables go to
stdout and are merged into bench/results/perf.md: sections and rows not rerun are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

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


def base_vectors() -> np.ndarray:
    import pandas as pd

    from topicli.embedding import Embedder

    texts = pd.read_csv(DATA / "train" / "huffpost.csv", dtype=str, keep_default_na=False)["text"].tolist()[:10_000]
    for name in ("test_2021.single.json", "test_random.single.json"):
        lines = (DATA / "eval" / "tweet_topic_single" / name).read_text(encoding="utf-8").splitlines()
        texts += [json.loads(line)["text"] for line in lines if line.strip()]
    return Embedder("all-MiniLM-L6-v2", cache_dir=CACHE)(list(dict.fromkeys(texts)))


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
        from topicli.clustering import approximate_neighbours

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


def case_cluster(n: int) -> dict:
    """topicli's whole clustering search and labelling on n synthetic posts (no text embedding)."""
    from topicli.clustering import MIN_SAMPLES_GRID, ClusterSearch, nearest_neighbours
    from topicli.embedding import Embedder
    from topicli.labelling import ClusteringScorer, ClusterLabeller, read_topics
    from topicli.scoring import TopicScores, auto_neighbours, finish_scores, part_vectors, raw_scores

    vectors = synthetic(n)
    topics = read_topics()
    parts, owner = part_vectors(topics, "This post is about {topic}.", Embedder(cache_dir=CACHE))
    times = {}
    started = time.perf_counter()
    k = auto_neighbours(n)
    distances, indices = nearest_neighbours(vectors, max(k, max(MIN_SAMPLES_GRID)))
    times["neighbours"] = time.perf_counter() - started
    raw = raw_scores(vectors, parts, owner, len(topics), None)
    scores = TopicScores(vectors, finish_scores(raw, indices[:, :k], 0.5, True))
    times["scores"] = time.perf_counter() - started - sum(times.values())
    search = ClusterSearch().fit(vectors, ClusteringScorer(scores), None, distances, indices)
    times["search"] = time.perf_counter() - started - sum(times.values())
    labeller = ClusterLabeller().fit(vectors, search.labels_, scores)
    labeller.assign(vectors, search.labels_, scores)
    times["label"] = time.perf_counter() - started - sum(times.values())
    result = {"seconds": time.perf_counter() - started, **{f"{k} s": round(v, 1) for k, v in times.items()}}
    result.update(n_clusters=search.best_.n_clusters, eps=search.best_.eps, min_samples=search.best_.min_samples)
    result["candidates"] = len(search.candidates_)
    if n <= EXACT_MAX:
        from sklearn.cluster import DBSCAN
        from sklearn.metrics import adjusted_rand_score

        started = time.perf_counter()
        exact = DBSCAN(eps=search.best_.eps, min_samples=search.best_.min_samples, metric="cosine").fit(vectors)
        result["exact DBSCAN s (one eps)"] = time.perf_counter() - started
        result["ARI vs exact"] = adjusted_rand_score(exact.labels_, search.labels_)
    return result


def case_labelling(_: int) -> dict:
    """100 clusters x 20 voters x 100 topics: one vectorised vote against a per-cluster loop."""
    from topicli.labelling import vote
    from topicli.scoring import TopicScores

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


def case_embedding(n: int) -> dict:
    """posts/s of each encoder path on n TweetTopic training tweets (longest first, batch 64)."""
    from topicli.embedding import INT8_ENCODER, load_encoder

    lines = (DATA / "eval" / "tweet_topic_single" / "train_random.single.json").read_text().splitlines()
    texts = sorted((json.loads(line)["text"] for line in lines if line.strip()), key=len, reverse=True)[:n]
    fp32, int8 = load_encoder("all-MiniLM-L6-v2"), load_encoder(INT8_ENCODER)
    fp32.encode(texts[:64]), int8.encode(texts[:64])
    started = time.perf_counter()
    reference = fp32.model.encode(texts, batch_size=64, normalize_embeddings=True)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    ours = int8.encode(texts)
    seconds = time.perf_counter() - started
    cosine = np.sum(reference * ours, axis=1)
    return {"seconds": seconds, "baseline s": baseline, "posts/s": n / seconds, "min cosine": float(cosine.min())}


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

    from topicli.embedding import Embedder, text_key

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


CASES = {
    "ann": case_ann,
    "cluster": case_cluster,
    "labelling": case_labelling,
    "embedding": case_embedding,
    "e2e": case_e2e,
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
    header = ["posts", "total s", "neighbours s", "scores s", "search s", "label s", "candidates", "clusters"]
    header += ["eps / min_samples", "exact sklearn DBSCAN s (chosen eps only)", "ARI vs exact", "peak RSS GiB"]
    return table("Clustering search + labelling, synthetic posts (embedding excluded)", header, body)


def labelling_section() -> list[str]:
    r = run_child("labelling", 0)
    body = [
        ["per-cluster loop (baseline)", r["baseline s"] * 1000, 1],
        ["topicli `vote`, one (clusters, k, topics) pass", r["seconds"] * 1000, r["baseline s"] / r["seconds"]],
    ]
    return table("Cluster votes: 100 clusters x 20 posts x 100 topics", ["path", "ms", "x faster"], body)


def embedding_section(n: int) -> list[str]:
    r = run_child("embedding", n)
    body = [
        ["SentenceTransformer.encode, fp32 (baseline)", n / r["baseline s"], 1, 1],
        ["all-MiniLM-L6-v2-int8 (ONNX Runtime)", r["posts/s"], r["baseline s"] / r["seconds"], r["min cosine"]],
    ]
    return table(f"Embedding {n:,} tweets, longest first", ["path", "posts/s", "x faster", "min cosine to fp32"], body)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50k,100k", help="posts for the clustering case, e.g. 100k,300k,1m")
    parser.add_argument("--ann-size", default="50k", help="posts for the neighbour-library comparison")
    parser.add_argument("--posts", type=int, default=2000, help="tweets for the embedding case")
    parser.add_argument("--e2e-size", default="100k", help="real posts for `topicli run` against BERTopic")
    parser.add_argument("--cases", default="ann,cluster,labelling,embedding,e2e")
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
        lines += embedding_section(args.posts)
    if "e2e" in cases:
        lines += e2e_section(parse_size(args.e2e_size))
    sys.stdout.write("\n".join(lines) + "\n")
    write_results(lines)


if __name__ == "__main__":
    main()
