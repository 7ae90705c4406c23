"""The entry of the Azure ML serverless Spark job (`topicli.cloud.pipeline_jobs.spark_job`).

Run by Spark as a script: `job.py --posts URI --output URI (--run URI | --bundle URI)`. Settings
come from the TOPICLI_* variables the job sets on the driver and executors. Without a bundle it
is `run --engine spark` and copies the run folder (clustering, bundle, sample) to `--run`; with
one it scores every post by that bundle, the batch scoring of millions of posts without an endpoint.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any


def copy_tree(spark: Any, source: str, target: str) -> None:
    """Copy a folder between any two file systems Spark's Hadoop layer reaches (file://, abfss://, ...)."""
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()
    src, dst = jvm.org.apache.hadoop.fs.Path(source), jvm.org.apache.hadoop.fs.Path(target)
    jvm.org.apache.hadoop.fs.FileUtil.copy(src.getFileSystem(conf), src, dst.getFileSystem(conf), dst, False, conf)


def main(argv: list[str] | None = None) -> None:
    if __package__ in (None, ""):  # run as a script: the staged code folder holds the topicli package
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from topicli.config import load_settings
    from topicli.serving.bundle import find_bundle
    from topicli.spark.engine import run_spark, score_spark

    parser = argparse.ArgumentParser(prog="topicli-spark-job")
    parser.add_argument("--posts", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--run")
    parser.add_argument("--bundle")
    args = parser.parse_args(argv)
    settings = load_settings(None)
    spark = _active_session()
    local = Path(tempfile.mkdtemp(prefix="topicli-spark-"))
    if args.bundle:
        copy_tree(spark, args.bundle, f"file://{local / 'bundle'}")
        score_spark(spark, settings, args.posts, find_bundle(local / "bundle"), args.output)
        return
    run_spark(spark, settings, args.posts, local / "run", args.output)
    if args.run:
        copy_tree(spark, f"file://{(local / 'run').resolve()}", args.run)


def _active_session() -> Any:
    """The session the Spark job runs in (Azure ML starts it; `getOrCreate` joins it)."""
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate()


if __name__ == "__main__":
    main()
