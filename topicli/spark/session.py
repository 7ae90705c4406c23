"""Starting Spark: a Java runtime found first, a failed start turned into one error that says what to do."""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from topicli.config import ScaleSettings
from topicli.errors import TopicliError


def java_runtime() -> Path:
    """The `java` Spark will start: `$JAVA_HOME/bin/java`, else the one on PATH; refused when there is none."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        if java.is_file() and os.access(java, os.X_OK):
            return java
        raise TopicliError(
            f"JAVA_HOME is {home}, which holds no bin/java; Spark needs Java 17: point JAVA_HOME at a JDK or "
            "unset it to use the java on PATH"
        )
    found = shutil.which("java")
    if not found:
        raise TopicliError(
            "Spark needs a Java runtime (Java 17) and none is on PATH; install one (e.g. openjdk-17-jre-headless) "
            "or set JAVA_HOME, or use --engine local"
        )
    return Path(found)


def master_url(scale: ScaleSettings) -> str:
    return scale.master or f"local[{scale.executors}]"


def _launch_jvm(log: Path) -> None:
    """Start Spark's JVM (the py4j gateway) with its stdout and stderr in `log`: its warnings (native Hadoop, log
    levels, illegal access) and those of the Python workers it forks never reach the terminal. Nothing when this
    process has a JVM already."""
    from pyspark import SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None:
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        SparkContext._ensure_initialized(gateway=launch_gateway(popen_kwargs={"stdout": handle, "stderr": handle}))


def spark_session(scale: ScaleSettings, app_name: str = "topicli", log: Path | None = None) -> Any:
    """A SparkSession on `[scale] master` (default local[executors]); executors run this Python.

    Each local task slot is one Python worker, kept between tasks (`spark.python.worker.reuse`),
    so the encoder and the bundle load once per worker. Arrow batches are capped so one task's
    pandas frame stays a few MB of vectors whatever the partition size. With `log`, the JVM's own
    output goes there (`_launch_jvm`).
    """
    java_runtime()
    # pyspark 4.0 warns at every pandas conversion that it has not certified pandas 3; our tests run both
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName(app_name)
        .master(master_url(scale))
        .config("spark.python.worker.reuse", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "2048")
        .config("spark.sql.shuffle.partitions", str(max(2, scale.executors * 2)))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if master_url(scale).startswith("local"):  # a laptop's Spark talks to itself only
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    try:
        if log is not None:
            _launch_jvm(log)
        session = builder.getOrCreate()
    except Exception as error:  # a JVM that does not start, a master URL Spark cannot parse or reach
        why = " ".join(str(error).split())[:240]
        more = f"; the JVM's output is in {log}" if log is not None else ""
        raise TopicliError(
            f"Spark did not start on {master_url(scale)} ({type(error).__name__}: {why}); check [scale] master "
            f"and the Java runtime (Java 17), or use --engine local{more}"
        ) from None
    session.sparkContext.setLogLevel("ERROR")
    return session
