"""Where the work runs: `--on azureml` (an Azure ML job instead of here) and `--engine spark` (Spark tasks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from topicli.cli import render
from topicli.cli.common import console, err_console, progress_bar
from topicli.config import Settings
from topicli.errors import TopicliError

SPARK_LOG = "spark.log"  # in [output] dir: what Spark's JVM prints

OnOption = Annotated[str, typer.Option("--on", help="local, or azureml: a command job on the [azure] compute cluster")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="with --on azureml: write the job's YAML and validate it; send nothing")
]


def on_azureml(on: str) -> bool:
    """Whether `--on` sends the command to Azure ML; a one-line error for anything but local or azureml."""
    if on not in ("local", "azureml"):
        raise TopicliError(f"--on must be local or azureml, got {on!r}")
    return on == "azureml"


def azureml_job(
    settings: Settings, name: str, arguments: list[str], inputs: dict[str, str | Path], output: str, dry_run: bool
) -> None:
    """Run `topicli NAME ARGUMENTS` as a job on the [azure] compute cluster, or only write its YAML (--dry-run)."""
    from topicli.cloud import azureml

    if dry_run:
        path = azureml.dry_run_job(settings, name, arguments, inputs, output)
        console.print(f"wrote {path} (validated by the Azure ML SDK); submit it with `az ml job create --file {path}`")
        return
    job = azureml.submit_job(settings, name, arguments, inputs, output, azureml.ml_client(settings))
    console.print(f"submitted job {job.name} to {settings.azure.compute}: {job.studio_url}")


EngineOption = Annotated[
    str | None,
    typer.Option("--engine", help="local (one process) or spark (Spark tasks; [scale] master, default local[N])"),
]


def on_spark(settings: Settings, engine: str | None) -> bool:
    """Whether the work runs in Spark: `--engine`, else `[scale] engine`; a one-line error for anything else."""
    chosen = engine or settings.scale.engine
    if chosen not in ("local", "spark"):
        raise TopicliError(f"--engine must be local or spark, got {chosen!r}")
    return chosen == "spark"


def _started_spark(settings: Settings, source: str) -> Any:
    """Spark, started once the source is known to be readable from here (a bad path fails before the JVM)."""
    from topicli.spark.engine import check_source
    from topicli.spark.session import spark_session

    check_source(source)
    log = Path(settings.output.dir) / SPARK_LOG
    with err_console.status(f"starting Spark ({settings.scale.master or f'local[{settings.scale.executors}]'})"):
        spark = spark_session(settings.scale, log=log)
    console.print(f"Spark's own output (the JVM's log and warnings) goes to {log}")
    return spark


def spark_output(
    settings: Settings, posts: str, output: Path | None, skip: Path | None = None, bundle: Path | None = None
) -> tuple[Settings, Path | None]:
    """-o under Spark, by the same suffix rule as everywhere else: .csv, .jsonl (or .json) or .parquet names the
    format. Spark writes a folder of parts, so the folder gets a folder name, the suffix dropped (`s.csv` → `s/`);
    a name without a suffix is that folder, in [scale] format. Checked like every output (`check_writable`): the
    folder is replaced whole, so it may hold no input, no `bundle`, and no file of a run other than `skip` (the run
    folder `run --engine spark` replaces). The settings with the chosen format, and the folder."""
    from dataclasses import replace

    from topicli.io import FORMATS, check_writable
    from topicli.runs.guard import run_files

    if output is None:
        return settings, None
    fmt = FORMATS.get(output.suffix.lower())
    if output.suffix and fmt is None:
        raise TopicliError(
            f"-o {output}: unknown format {output.suffix!r}; use .csv, .jsonl, .json or .parquet (Spark writes a "
            "folder of parts in that format), or a folder name without a suffix for [scale] format"
        )
    folder = output.with_suffix("") if fmt is not None else output
    local = () if "://" in posts or posts.startswith("azureml:") else (Path(posts),)
    keep = run_files(settings, skip=skip)
    if bundle is not None:
        keep[bundle] = f"the bundle {bundle}"
    check_writable(folder, "-o", folder=True, inputs=local, keep=keep)
    if fmt is None:
        return settings, folder
    return replace(settings, scale=replace(settings.scale, format=fmt)), folder


def _parts(path: Path, fmt: str, output: Path | None) -> str:
    """What a Spark output is, for the line that names it: a folder of parts, and the -o that named its format."""
    named = f"; -o {output} named the format" if output is not None and output.suffix else ""
    return f"{path}/ (a folder of {fmt.upper()} parts, as Spark writes them{named})"


def run_on_spark(settings: Settings, posts: str, output: Path | None, topics: list[str] | None) -> Path:
    """`run --engine spark` (and `train --engine spark`): the run folder it wrote; renders what it did."""
    from topicli.runs.folder import bundle_folder, default_run_folder
    from topicli.spark.engine import run_spark

    folder = default_run_folder(settings, Path(posts.rstrip("/")))
    settings, target = spark_output(settings, posts, output, skip=folder)
    spark = _started_spark(settings, posts)
    done = run_spark(spark, settings, posts, folder, target, topics, progress_bar)
    render.candidates(console, done.clustering, folder)
    _topic_sizes(done.topic_sizes)
    stages = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in done.seconds.items())
    console.print(f"fitted on {done.sample:,} of {done.posts:,} posts; {stages}")
    parts = _parts(done.output, settings.scale.format, output)
    console.print(f"wrote {parts}: every post with cluster, topic, topic_confidence")
    console.print(f"model bundle in {bundle_folder(folder)} (serve it with `topicli deploy local`)")
    return folder


def score_on_spark(settings: Settings, posts: str, bundle: Path, output: Path | None) -> None:
    """`score --engine spark`: every post embedded and assigned by the bundle in Spark tasks, no endpoint."""
    from topicli.runs.folder import default_run_folder
    from topicli.spark.engine import score_spark

    settings, target = spark_output(settings, posts, output, bundle=bundle)
    spark = _started_spark(settings, posts)
    path = target or default_run_folder(settings, Path(posts.rstrip("/"))) / f"posts.scored.{settings.scale.format}"
    done = score_spark(spark, settings, posts, bundle, path)
    _topic_sizes(done.topic_sizes)
    parts = _parts(done.output, settings.scale.format, output)
    console.print(f"wrote {parts}: {done.posts:,} posts scored by bundle {done.bundle_id} in Spark tasks")


def _topic_sizes(sizes: dict[str, int]) -> None:
    ranked = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))
    render.values(console, "posts per topic (every post)", {topic or "(no topic)": f"{n:,}" for topic, n in ranked})


def spark_job_on_azureml(settings: Settings, posts: str, bundle: str | None, dry_run: bool) -> None:
    """An Azure ML serverless Spark job: `run --engine spark` there, or batch scoring by `bundle`; --dry-run
    writes its YAML and validates it offline."""
    from topicli.cloud import pipeline_jobs

    if dry_run:
        path = pipeline_jobs.dry_run_spark(settings, posts, bundle)
        console.print(f"wrote {path} (validated by the Azure ML SDK); submit it with `az ml job create --file {path}`")
        return
    from topicli.cloud.azureml import ml_client

    job = pipeline_jobs.submit_spark(settings, posts, ml_client(settings), bundle)
    console.print(f"submitted Spark job {job.name} ({settings.scale.spark_executors} executors): {job.studio_url}")
