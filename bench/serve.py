"""What the local inference server adds to scoring: latency of 1- and 64-post requests, and posts/s.

The bundle comes from `topicli run examples/posts.csv`; the server is `topicli deploy local`
(azmlinfsrv, one worker, on 127.0.0.1). Beside each figure, the same requests scored
in-process (`topicli.serving.protocol.handle`: JSON parsing, embedding, scoring). Goal: the server adds
under 20% to in-process cost for 64-post requests. Writes bench/results/serve.md.

    python bench/serve.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from topicli.serving import local_server
from topicli.serving.bundle import BundleModel
from topicli.serving.protocol import handle

ROOT = Path(__file__).resolve().parents[1]
REPEATS = {1: 100, 64: 30}
THROUGHPUT_REQUESTS = 40
IN_FLIGHT = 4


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    tmp = ROOT / "bench" / "results" / "tmp" / "serve"
    tmp.mkdir(parents=True, exist_ok=True)
    examples = ROOT / "examples" / "posts.csv"
    subprocess.run([sys.executable, "-m", "topicli", "run", str(examples)], cwd=tmp, check=True, capture_output=True)
    bundle = tmp / "topicli-out" / "posts" / "bundle"
    texts = [t for t in pd.read_csv(examples, dtype=str, keep_default_na=False)["caption"] if t.strip()]
    bodies = {
        size: [json.dumps({"data": [texts[(i * size + j) % len(texts)] for j in range(size)]}) for i in range(n)]
        for size, n in REPEATS.items()
    }
    batches = [
        json.dumps({"data": [texts[(i * 64 + j) % len(texts)] for j in range(64)]}) for i in range(THROUGHPUT_REQUESTS)
    ]
    model = BundleModel.load(bundle)
    handle(model, bodies[1][0])  # warm-up

    def in_process(body: str) -> None:
        assert handle(model, body)[0] == 200

    server = local_server.start(bundle, tmp / "state", local_server.free_port())
    try:
        with httpx.Client(timeout=120) as http:

            def served(body: str) -> None:
                assert http.post(server.url, content=body).status_code == 200

            served(bodies[1][0])
            rows = []
            for size in REPEATS:
                # Interleaved, so both sides see the same load from whatever else runs on the machine.
                pairs = [(timed(lambda b=b: in_process(b)), timed(lambda b=b: served(b))) for b in bodies[size]]
                local, remote = (np.array(side) * 1000 for side in zip(*pairs, strict=True))
                for q in (50, 95):
                    a, b = np.percentile(remote, q), np.percentile(local, q)
                    rows.append((f"{size}-post request, p{q} latency (ms)", f"{a:.1f}", f"{b:.1f}", f"{a / b:.2f}"))
            with ThreadPoolExecutor(IN_FLIGHT) as pool:
                local_s = timed(lambda: list(pool.map(in_process, batches)))
                remote_s = timed(lambda: list(pool.map(served, batches)))
            posts = 64 * len(batches)
            rows.append(
                (
                    f"posts/s, 64-post requests, {IN_FLIGHT} in flight (in-process: {IN_FLIGHT} threads)",
                    f"{posts / remote_s:.0f}",
                    f"{posts / local_s:.0f}",
                    f"{local_s / remote_s:.2f}",
                )
            )
    finally:
        local_server.stop(tmp / "state")
    lines = [
        "# Local inference server vs in-process scoring",
        "",
        f"Bundle of `topicli run examples/posts.csv` (encoder {model.manifest.encoder.name}); server: "
        f"azmlinfsrv {version('azureml-inference-server-http')}, "
        f"1 worker, 127.0.0.1; machine: {os.cpu_count()} cores. Ratio: server / in-process for latency, "
        "server posts/s / in-process posts/s for throughput.",
        "",
        "| figure | server | in-process | ratio |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
    ]
    out = ROOT / "bench" / "results" / "serve.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
