"""Topic quality, side by side: topicli against the baselines a user would compare it with.

Every method sees the same posts, the same encoder and the same candidate topics (the gold
label set). Methods: majority topic (a floor that peeks at gold), zero-shot cosine per post
(post vs "This post is about {topic}."), the shipped cls_model per post (all-MiniLM-L6-v2
only: it was trained on that encoder), BERTopic 0.17 with `zeroshot_topic_list`, and
topicli (`topicli evaluate`, default settings) with ablations on the English sets (no topic
floor; on the tweet sets also no neighbour smoothing, and the cls_model scorer).
Nothing is tuned on these files: the tweet *test* files, the multi-label *dev* file (it has
no other split) and the SIB-200 *test* files.

    python bench/quality.py [--quick]

writes bench/results/quality.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from topicli.config import Settings, load_settings
from topicli.errors import TopicliError
from topicli.io import Posts
from topicli.method.classifier import load_classifier
from topicli.method.embedding import Embedder
from topicli.method.evaluation import score
from topicli.method.pipeline import evaluate_posts
from topicli.method.topics import topic_phrase
from topicli.progress import no_progress

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "eval"
MINILM, MULTILINGUAL = "all-MiniLM-L6-v2", "multilingual"
TEMPLATE = "This post is about {topic}."


def tweet_single() -> pd.DataFrame:
    rows = []
    for name in ("test_2021.single.json", "test_random.single.json"):
        path = DATA / "tweet_topic_single" / name
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame({"text": [r["text"] for r in rows], "gold": [[r["label_name"]] for r in rows]})


def tweet_multi() -> pd.DataFrame:
    path = DATA / "tweet_topic_multi_en_dev.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame({"text": [r["text"] for r in rows], "gold": [r["topics"] for r in rows]})


def sib(language: str) -> pd.DataFrame:
    frame = pd.read_csv(DATA / "sib200" / language / "test.tsv", sep="\t", dtype=str, keep_default_na=False)
    return pd.DataFrame({"text": frame["text"], "gold": [[c] for c in frame["category"]]})


def settings_for(encoder: str, **labelling: object) -> Settings:
    base = load_settings(None, environ={})
    return replace(base, encoder=replace(base.encoder, name=encoder), labelling=replace(base.labelling, **labelling))


def per_post(frame: pd.DataFrame, topics: list[str], encoder: str) -> dict[str, dict[str, float]]:
    """Majority, cosine zero-shot, cls_model and BERTopic predictions, scored."""
    embedder = Embedder(encoder, cache_dir=ROOT / ".topicli-cache")
    vectors = embedder(frame["text"].tolist())
    names = embedder([TEMPLATE.format(topic=topic_phrase(t)) for t in topics])
    gold = frame["gold"].tolist()
    no_clusters = [0] * len(frame)
    majority = pd.Series([g[0] for g in gold]).value_counts().index[0]
    results = {
        "majority topic": score([majority] * len(frame), gold, no_clusters, topics),
        "zero-shot cosine per post": score(
            [topics[i] for i in np.argmax(vectors @ names.T, axis=1)], gold, no_clusters, topics
        ),
    }
    if encoder == MINILM:
        model, _ = load_classifier()
        probabilities = model.predict_proba(vectors, names)
        best = [topics[i] for i in np.argmax(probabilities, axis=1)]
        results["cls_model per post"] = score(best, gold, no_clusters, topics)
    results["BERTopic 0.17 zero-shot"] = bertopic(frame["text"].tolist(), vectors, topics, embedder, gold)
    return results


def bertopic(texts: list[str], vectors: np.ndarray, topics: list[str], embedder: Embedder, gold: list) -> dict:
    """BERTopic with the same encoder and the topic names as its zero-shot list; keyword topics count as misses."""
    from bertopic import BERTopic
    from bertopic.backend import BaseEmbedder
    from umap import UMAP

    class SameEncoder(BaseEmbedder):
        def embed(self, documents: list[str], verbose: bool = False) -> np.ndarray:
            return embedder(list(documents))

    names = [topic_phrase(t) for t in topics]
    model = BERTopic(
        embedding_model=SameEncoder(),
        zeroshot_topic_list=names,
        zeroshot_min_similarity=0.3,
        umap_model=UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=0),
        min_topic_size=5,
    )
    assigned, _ = model.fit_transform(texts, vectors)
    labels = model.get_topic_info().set_index("Topic")["Name"].to_dict()
    by_name = dict(zip(names, topics, strict=True))
    predicted = [by_name.get(model.topic_labels_.get(t, labels.get(t, "")), "") for t in assigned]
    return score(predicted, gold, list(assigned), topics)


def topicli(frame: pd.DataFrame, topics: list[str], settings: Settings, tmp: Path) -> dict[str, float]:
    """`topicli evaluate`'s figures; NaN where no clustering had min_topics..max_topics clusters."""
    path = tmp / "posts.jsonl"
    frame.to_json(path, orient="records", lines=True, force_ascii=False)
    settings = replace(settings, encoder=replace(settings.encoder, cache_dir=str(ROOT / ".topicli-cache")))
    posts = Posts(frame=pd.read_json(path, lines=True, dtype=False), text_column="text", path=path)
    try:
        return evaluate_posts(posts, "gold", settings, no_progress, use_gold_topics=True)
    except TopicliError as error:
        print(f"topicli: {error}", file=sys.stderr)
        return {"accuracy": float("nan"), "macro_f1": float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="SIB-200 English and German only")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} is absent: this benchmark reads the shared data beside the clone")
    tmp = ROOT / "bench" / "results" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    languages = sorted(p.name for p in (DATA / "sib200").iterdir() if p.is_dir())
    if args.quick:
        languages = ["deu_Latn", "eng_Latn"]
    sets = [
        ("TweetTopic single, test (6 topics)", tweet_single(), [MINILM]),
        ("TweetTopic multi-label, dev (19 topics)", tweet_multi(), [MINILM]),
    ]
    sets += [(f"SIB-200 {lang}, test (7 topics)", sib(lang), [MINILM, MULTILINGUAL]) for lang in languages]
    rows = []
    for name, frame, encoders in sets:
        topics = sorted({t for g in frame["gold"] for t in g})
        for encoder in encoders:
            started = time.perf_counter()
            results = per_post(frame, topics, encoder)
            results["topicli"] = topicli(frame, topics, settings_for(encoder), tmp)
            if encoder == MINILM and ("SIB" not in name or "eng_Latn" in name):
                results["topicli, no topic floor"] = topicli(
                    frame, topics, settings_for(encoder, floor_weight=0.0), tmp
                )
            if encoder == MINILM and "SIB" not in name:
                results["topicli, no neighbour smoothing"] = topicli(
                    frame, topics, settings_for(encoder, neighbour_weight=0.0), tmp
                )
                results["topicli, cls_model scorer"] = topicli(
                    frame, topics, settings_for(encoder, scorer="cls_model"), tmp
                )
            if encoder == MINILM:
                cosine = results["zero-shot cosine per post"]["macro_f1"]
            for method, figures in results.items():
                f1 = figures["macro_f1"]
                rows.append((name, encoder, method, figures["accuracy"], f1, f1 - cosine))
            print(f"{name} / {encoder}: {time.perf_counter() - started:.0f} s", flush=True)
        if "SIB" in name:
            figures = topicli(frame, topics, settings_for("auto"), tmp)
            rows.append(
                (
                    name,
                    "auto",
                    "topicli (default)",
                    figures["accuracy"],
                    figures["macro_f1"],
                    figures["macro_f1"] - cosine,
                )
            )
    lines = [
        "# Topic quality",
        "",
        "Same posts, encoder and candidate topics (the gold label set) for every method. A multi-label post is",
        "right when its topic is any of its gold topics. `Δ F1` is macro-F1 minus that of zero-shot cosine with",
        "all-MiniLM-L6-v2 on the same set. The `auto` encoder is topicli's default (all-MiniLM-L6-v2 when 90 % of",
        "posts are English, multilingual otherwise). `nan`: no clustering had 20-100 clusters (topicli stops and",
        "says so rather than fall back).",
        "Produced by `python bench/quality.py`.",
        "",
        "| set | encoder | method | accuracy | macro-F1 | Δ F1 vs cosine |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {s} | {e} | {m} | {a:.3f} | {f:.3f} | {d:+.3f} |" for s, e, m, a, f, d in rows]
    out = ROOT / "bench" / "results" / "quality.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
