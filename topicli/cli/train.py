"""`topicli train`: the one step that builds the deployable model (cls_model when configured, cluster, label,
bundle), here, in Spark tasks, or as an Azure ML pipeline job; and `topicli step`, the pipeline's steps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from topicli.cli import render
from topicli.cli.common import (
    ConfigOption,
    PostsArgument,
    TextColumnOption,
    command_group,
    console,
    err_console,
    progress_bar,
    settings_for,
)
from topicli.cli.jobs import (
    DryRunOption,
    EngineOption,
    OnOption,
    on_azureml,
    on_spark,
    run_on_spark,
    spark_job_on_azureml,
)
from topicli.cli.topics import OutputOption, TopicsOption, say_written
from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.runs.guard import run_files

train_app = command_group()
step_app = command_group(
    "The steps of `topicli train --on azureml`, one per pipeline job step: the same library code as a local run."
)
train_app.add_typer(step_app, name="step", hidden=True)

TrainPostsArgument = Annotated[
    str | None,
    typer.Argument(
        help="posts (.csv, .jsonl, .json, .parquet); a local file, an azureml:// URI or azureml:NAME:VERSION "
        "with --on azureml; default [input] posts",
        show_default=False,
    ),
]


def _posts(posts: str | None, settings: Settings) -> str:
    chosen = posts or settings.input.posts
    if not chosen:
        raise TopicliError("no posts: give POSTS or set [input] posts in the config")
    return chosen


def _with_classifier(settings: Settings) -> Settings:
    """Fit cls_model on `[classifier] train_data` when set, and label with it; else the settings as they are."""
    s = settings.classifier
    if not s.train_data:
        return settings
    from topicli.io import check_writable
    from topicli.method.training import fit_classifier

    output = Path(settings.output.dir) / "cls_model"
    check_writable(output, "[output] dir", folder=True, keep=run_files(settings, own=(output,)))
    data = [Path(p.strip()) for p in s.train_data.split(",") if p.strip()]
    with err_console.status("training cls_model on [classifier] train_data"):
        summary = fit_classifier(
            settings, data, s.train_text_column.split(","), s.train_label_column.split(","), [], output, progress_bar
        )
    render.classifier_metrics(console, summary, output)
    return replace(
        settings,
        classifier=replace(s, path=str(output)),
        labelling=replace(settings.labelling, scorer="cls_model"),
    )


@train_app.command()
def train(
    posts: TrainPostsArgument = None,
    text_column: TextColumnOption = None,
    topics: TopicsOption = None,
    output: OutputOption = None,
    engine: EngineOption = None,
    on: OnOption = "local",
    dry_run: DryRunOption = False,
    config: ConfigOption = None,
) -> None:
    """Build the deployable model: cls_model (when [classifier] train_data is set), cluster, label, bundle."""
    settings = settings_for(
        config, input={"text_column": text_column}, labelling={"topics": str(topics) if topics else None}
    )
    source = _posts(posts, settings)
    if on_azureml(on):
        if on_spark(settings, engine):
            spark_job_on_azureml(settings, source, None, dry_run)
        else:
            _train_on_azureml(settings, source, dry_run)
        return
    from topicli.runs.folder import default_run_folder
    from topicli.runs.service import check_run_paths, run_posts

    topic_list = check_run_paths(settings, default_run_folder(settings, Path(source.rstrip("/"))), "[output] dir")
    settings = _with_classifier(settings)
    if on_spark(settings, engine):
        run_on_spark(settings, source, output, topic_list)
        return
    say_written(run_posts(settings, Path(source), output, False, progress_bar, topic_list), settings)


def _train_on_azureml(settings: Settings, source: str, dry_run: bool) -> None:
    """The pipeline job (embed → cluster → label → register), submitted, or written and validated (--dry-run)."""
    from topicli.cloud import pipeline_jobs

    if dry_run:
        path = pipeline_jobs.dry_run_train(settings, source)
        console.print(f"wrote {path} (validated by the Azure ML SDK); submit it with `az ml job create --file {path}`")
        return
    from topicli.cloud.azureml import ml_client

    job = pipeline_jobs.submit_train(settings, source, ml_client(settings))
    console.print(f"submitted pipeline job {job.name} to {settings.azure.compute}: {job.studio_url}")
    console.print(f"the bundle is registered as model {settings.azure.model_name} when the job ends")


CacheOption = Annotated[Path, typer.Option("--cache", help="embedding cache folder (the embed step's output)")]


@step_app.command("embed")
def step_embed(
    posts: PostsArgument,
    cache: CacheOption,
    text_column: TextColumnOption = None,
    config: ConfigOption = None,
) -> None:
    """Embed the posts into an embedding cache folder, as `topicli cluster` does first."""
    from topicli.method.pipeline import Pipeline, load_posts

    settings = settings_for(config, input={"text_column": text_column}, encoder={"cache_dir": str(cache)})
    Pipeline(settings.method, progress_bar).embed_posts(load_posts(posts, settings))
    console.print(f"embedded {posts} into {cache}")


@step_app.command("cluster")
def step_cluster(
    posts: PostsArgument,
    cache: CacheOption,
    run: Annotated[Path, typer.Option("--run", help="folder to write the clustering into (the step's output)")],
    text_column: TextColumnOption = None,
    config: ConfigOption = None,
) -> None:
    """Search clusterings of the posts, their vectors read from the cache, as `topicli cluster` does."""
    from topicli.runs.service import cluster_posts

    settings = settings_for(config, input={"text_column": text_column}, encoder={"cache_dir": str(cache)})
    done = cluster_posts(settings, posts, run, progress_bar, in_place=True)  # a job's fresh output: no attempt links
    render.candidates(console, done.clustering, run)


@step_app.command("label")
def step_label(
    posts: PostsArgument,
    cache: CacheOption,
    run: Annotated[Path, typer.Option("--run", help="folder the cluster step wrote")],
    output: Annotated[Path, typer.Option("--output", "-o", help="run folder to write: posts, topics, bundle")],
    text_column: TextColumnOption = None,
    config: ConfigOption = None,
) -> None:
    """Label the clustering in `--run` from these posts (where this step mounts them, not where cluster did)."""
    from topicli.runs.service import label_run

    settings = settings_for(config, input={"text_column": text_column}, encoder={"cache_dir": str(cache)})
    written = label_run(settings, run, posts, progress=progress_bar, into=output)
    console.print(f"labelled {posts}: coverage {written.result.coverage:.0%}; run folder {output}")


@step_app.command("register")
def step_register(
    labelled: Annotated[Path, typer.Argument(help="the label step's output")],
    model: Annotated[Path, typer.Option("--model", help="folder of the model output (registered by Azure ML)")],
) -> None:
    """Copy the bundle, checked whole, into the model output that Azure ML registers."""
    import shutil

    from topicli.serving.bundle import find_bundle, read_bundle

    bundle = find_bundle(labelled)
    read_bundle(bundle)  # checked whole, digests included
    shutil.copytree(bundle, model, dirs_exist_ok=True)
    console.print(f"bundle {bundle} copied into {model}")
