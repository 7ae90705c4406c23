"""Embedding levers of issue 30 for the default encoder, on speed and on quality, against today in the same run.

all-MiniLM-L6-v2 was trained on sequences of at most 128 tokens; the shipped configuration reads up to
256. Levers, each an `OnnxEncoder` over the shipped export (`shipped_encoder`), changed only where named:
- today: 256 tokens, graph optimisation as ONNX Runtime sets it (all), one 1-thread session per core;
- 128 tokens (the training length);
- 128 tokens with basic graph optimisation only;
- 128 tokens, one session of two threads;
and, for the stronger reader's cost (issue 28), all-mpnet-base-v2 exported the same way (`write_encoder_files`,
128 tokens: its training length too) against all-mpnet-base-v2 as `[encoder] name` runs it today (PyTorch).

Speed: posts/s on the same posts, each lever timed in interleaved rounds (the machine is noisy): the 400
instagram_dev captions (real, a median of ~90 tokens, 24 % over 128) and 400 tweets. Quality: per-post
cosine and topicli (default settings) on every development set of bench/reader.py, with the lever's
vectors; a lever keeps only if no set loses more than 0.005.

    python bench/token_limit.py [--rounds N]

writes bench/results/token_limit.md.
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from quality import CACHE, TEMPLATE, row
from reader import dev_sets
from reader_flow import posts_per_second, topicli_run

from topicli.io import atomic_folder
from topicli.method.embedding import Embedder
from topicli.method.encoder_export import ONNX_ENCODER_FILE, write_encoder_files
from topicli.method.encoders import (
    DEFAULT_ENCODER,
    Encoder,
    OnnxEncoder,
    SentenceTransformerEncoder,
    load_encoder,
    shipped_encoder,
)
from topicli.method.mpnet import MPNET, mpnet_folder
from topicli.method.scoring import cosine_scores, part_vectors

READER_POSTS = 96
RESULTS = Path(__file__).resolve().parent / "results" / "token_limit.md"


@dataclass
class Lever:
    name: str
    tokens: int
    optimisation: str = "all"
    threads: int = 1  # intra-op threads of each session; 1: one session per core

    def encoder(self, base: OnnxEncoder) -> OnnxEncoder:
        import onnxruntime

        encoder = OnnxEncoder(base.folder, f"{base.identity}-lever-{self.tokens}", base.dimension, base.batch_size)
        encoder.tokenizer.enable_truncation(self.tokens)
        if self.optimisation != "all" or self.threads != 1:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.log_severity_level = 3
            level = onnxruntime.GraphOptimizationLevel
            options.graph_optimization_level = (
                level.ORT_ENABLE_BASIC if self.optimisation == "basic" else level.ORT_ENABLE_ALL
            )
            path = str(base.folder / ONNX_ENCODER_FILE)
            count = 1 if self.threads > 1 else len(encoder.sessions)
            encoder.sessions = [onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
                                for _ in range(count)]  # fmt: skip
        return encoder


LEVERS = (
    Lever("today: 256 tokens", 256),
    Lever("128 tokens", 128),
    Lever("128 tokens, basic graph optimisation", 128, "basic"),
    Lever("128 tokens, one 2-thread session", 128, threads=2),
)


def mpnet_encoders() -> dict[str, Encoder]:
    """all-mpnet-base-v2 in PyTorch (as `[encoder] name` ran it before), as `load_encoder` runs it (exported to
    ONNX, 384 tokens), and exported to ONNX at 128 tokens."""
    pytorch = SentenceTransformerEncoder(mpnet_folder(), "mpnet-pytorch")
    folder = CACHE / "mpnet-onnx-128"
    if not (folder / ONNX_ENCODER_FILE).is_file():
        with atomic_folder(folder) as staging:
            pytorch.model.max_seq_length = 128
            write_encoder_files(pytorch.model, staging)
            pytorch.model.max_seq_length = 384
    return {
        f"{MPNET} (PyTorch, 384 tokens)": pytorch,
        f"{MPNET} (ONNX, 384 tokens, as [encoder] name runs it)": load_encoder(MPNET),
        f"{MPNET} (ONNX, 128 tokens)": OnnxEncoder(folder, "mpnet-onnx-128", 768),
    }


def reader_cost(today: Encoder, cut: Encoder, texts: list[str]) -> list[str]:
    """posts/s of the mpnet encoders against the default on the same captions, one round each."""
    encoders = {"all-MiniLM-L6-v2, today": today, "all-MiniLM-L6-v2, 128 tokens": cut, **mpnet_encoders()}
    rates = {name: posts_per_second(encoder, texts) for name, encoder in encoders.items()}
    first = next(iter(rates.values()))
    return [
        "",
        f"The stronger reader's cost (issue 28), on the first {len(texts)} instagram_dev captions, one round:",
        "",
        row("encoder", "posts/s", "x slower than today's default"),
        row("---", "---", "---"),
        *[row(name, f"{rate:.1f}", f"{first / rate:.1f}") for name, rate in rates.items()],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    args = parser.parse_args()
    base = shipped_encoder()
    encoders = {lever.name: lever.encoder(base) for lever in LEVERS}
    sets = dev_sets()
    samples = {"instagram_dev captions": sets[0].texts, "tweets": sets[1].texts[:400]}
    seconds = {(lever, sample): [] for lever in encoders for sample in samples}
    for _ in range(args.rounds):
        for sample, texts in samples.items():
            for name, encoder in encoders.items():
                started = time.perf_counter()
                encoder.encode(texts)
                seconds[(name, sample)].append(time.perf_counter() - started)
    lines = [
        "# Embedding levers of the default encoder: speed and quality (issue 30)",
        "",
        f"Produced by `python bench/token_limit.py --rounds {args.rounds}` on this machine (2 cores, AVX2). "
        "Speed: median posts/s over the interleaved rounds; ratio against today in the same run. "
        "Quality: development sets only (instagram_dev accuracy, the others macro-F1).",
        "",
        row("lever", *[f"{s} posts/s (x today)" for s in samples]),
        row(*["---"] * (len(samples) + 1)),
    ]
    today = LEVERS[0].name
    for name in encoders:
        cells = []
        for sample, texts in samples.items():
            rate = len(texts) / np.median(seconds[(name, sample)])
            cells.append(
                f"{rate:.1f} (x{np.median(seconds[(today, sample)]) / np.median(seconds[(name, sample)]):.2f})"
            )
        lines.append(row(name, *cells))
    lines += reader_cost(encoders[LEVERS[0].name], encoders[LEVERS[1].name], sets[0].texts[:READER_POSTS])
    lines += ["", row("lever", "method", *[dev.name for dev in sets]), row(*["---"] * (len(sets) + 2))]
    for lever in LEVERS[:2]:  # the graph and thread levers compute the same vectors as 128 tokens
        embedder = Embedder(DEFAULT_ENCODER, cache_dir=CACHE, encoder=encoders[lever.name])
        cosine, method = [], []
        for dev in sets:
            parts, owner = part_vectors(dev.topics, TEMPLATE, embedder)
            cosine.append(
                f"{dev.measure(dev.picks(cosine_scores(embedder(dev.texts), parts, owner, len(dev.topics)))):.3f}"
            )
            topics = topicli_run(dev, embedder)[0]
            method.append(f"{dev.measure([str(dev.topics[i]) for i in topics]):.3f}")
        lines += [row(lever.name, "per-post cosine", *cosine), row(lever.name, "topicli", *method)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines += ["", f"Peak RSS of the benchmark: {peak:.0f} MB.", ""]
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
