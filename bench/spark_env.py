"""How long the serverless Spark job's packages take to install (Azure caps a Spark session's installs at 15 minutes).

Installs `topicli.cloud.pipeline_jobs.SPARK_PIP` from the package registry itself (no local
wheels, no pip cache) into a fresh virtual environment, `RUNS` times. This machine has CPython
3.11, not the runtime's 3.10: the same pins, their cp311 wheels (the pins' cp310 wheels are
checked by tests/test_jobs_pipeline.py). The old list (every topicli dependency, PyTorch among
them) is not timed: its PyTorch CPU build comes from an index this machine cannot reach.
Writes bench/results/spark_env.md.

    nice -n 10 python bench/spark_env.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from topicli.cloud.pipeline_jobs import SPARK_PIP

RESULTS = Path(__file__).parent / "results" / "spark_env.md"
RUNS = 2


def install(packages: list[str]) -> tuple[float, int]:
    """Seconds to install `packages` into a new venv from the registry, and the count of packages installed."""
    with tempfile.TemporaryDirectory(prefix="spark-env-") as folder:
        subprocess.run([sys.executable, "-m", "venv", folder], check=True)
        pip = str(Path(folder) / "bin" / "pip")
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
        start = time.perf_counter()
        subprocess.run([pip, "install", "--isolated", "--no-cache-dir", "--quiet", *packages], check=True, env=env)
        seconds = time.perf_counter() - start
        listed = subprocess.run([pip, "list", "--format=freeze"], capture_output=True, text=True, env=env).stdout
    return seconds, len(listed.split())


def main() -> None:
    runs = [install(list(SPARK_PIP)) for _ in range(RUNS)]
    spark = [seconds for seconds, _ in runs]
    lines = [
        "# Spark job environment: install time",
        "",
        "`nice -n 10 python bench/spark_env.py` (fresh venv, no pip cache, from the package registry; CPython "
        f"{sys.version_info.major}.{sys.version_info.minor}, {os.cpu_count()} cores).",
        "",
        "| packages list | pins | installed | seconds (median of runs) | runs |",
        "|---|---|---|---|---|",
        f"| SPARK_PIP (this job's) | {len(SPARK_PIP)} | {runs[0][1]} | {statistics.median(spark):.1f} | "
        + ", ".join(f"{s:.1f}" for s in spark)
        + " |",
        "",
        f"Share of Azure's 15-minute (900 s) cap on a Spark session's installs: {statistics.median(spark) / 900:.1%}.",
    ]
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
