"""`topicli cluster`, `label`, `run` and `evaluate`: the method on a posts file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from topicli.cli import render
from topicli.cli.common import (
    ConfigOption,
    PostsArgument,
    TextColumnOption,
    command_group,
    console,
    progress_bar,
    settings_for,
)
from topicli.cli.jobs import DryRunOption, OnOption, azureml_job, on_azureml
from topicli.config import Settings

if TYPE_CHECKING:
    from topicli.method.pipeline import LabelledPosts
    from topicli.method.runs import ClusterRun

topics_app = command_group()

TopicsOption = Annotated[Path | None, typer.Option("--topics", help="file of candidate topics, one per line")]
EpsOption = Annotated[
    float | None, typer.Option("--eps", help="fix DBSCAN's radius (cosine distance) instead of searching")
]
MinSamplesOption = Annotated[int | None, typer.Option("--min-samples", help="fix min_samples instead of searching")]
AlgorithmOption = Annotated[str | None, typer.Option("--algorithm", help="dbscan or hdbscan")]
NoiseOption = Annotated[str | None, typer.Option("--noise-policy", help="unassigned, nearest or classify")]
OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="posts with topics (.csv, .jsonl, .parquet); topic table beside it"),
]
RunOption = Annotated[
    Path | None, typer.Option("--run", help="run folder written by cluster (default: under [output] dir)")
]
IncludeEncoderOption = Annotated[
    bool, typer.Option("--include-encoder", help="copy the encoder's weights into the model bundle")
]


def _clustering_settings(
    config: Path | None,
    text_column: str | None,
    topics: Path | None,
    eps: float | None,
    min_samples: int | None,
    algorithm: str | None,
    noise_policy: str | None,
) -> Settings:
    return settings_for(
        config,
        input={"text_column": text_column},
        labelling={"topics": str(topics) if topics else None, "noise_policy": noise_policy},
        clustering={"eps": eps, "min_samples": min_samples, "algorithm": algorithm},
    )


@topics_app.command()
def cluster(
    posts: PostsArgument,
    text_column: TextColumnOption = None,
    topics: TopicsOption = None,
    eps: EpsOption = None,
    min_samples: MinSamplesOption = None,
    algorithm: AlgorithmOption = None,
    run: RunOption = None,
    on: OnOption = "local",
    dry_run: DryRunOption = False,
    config: ConfigOption = None,
) -> None:
    """Embed posts, search clusterings, keep the chosen one."""
    settings = _clustering_settings(config, text_column, topics, eps, min_samples, algorithm, None)
    if on_azureml(on):
        arguments = ["${{inputs.posts}}", "--run", "${{outputs.run}}"]
        azureml_job(settings, "cluster", arguments, {"posts": posts}, "run", dry_run)
        return
    from topicli.method.pipeline import Pipeline, load_posts
    from topicli.method.runs import default_run_folder

    pipeline = Pipeline(settings, progress_bar)
    clustering = pipeline.cluster(pipeline.prepare(load_posts(posts, settings)))
    folder = run or default_run_folder(settings, posts)
    clustering.save(folder)
    render.candidates(console, clustering, folder)


@topics_app.command()
def label(
    run: RunOption = None,
    topics: TopicsOption = None,
    noise_policy: NoiseOption = None,
    output: OutputOption = None,
    include_encoder: IncludeEncoderOption = False,
    config: ConfigOption = None,
) -> None:
    """Name each cluster from the topic list and write every post's topic."""
    from topicli.io import read_posts
    from topicli.method.pipeline import Pipeline
    from topicli.method.runs import ClusterRun, latest_run_folder

    settings = _clustering_settings(config, None, topics, None, None, None, noise_policy)
    folder = run or latest_run_folder(settings)
    clustering = ClusterRun.load(folder)
    pipeline = Pipeline(settings, progress_bar)
    prepared = pipeline.prepare(read_posts(Path(clustering.input), clustering.text_column))
    _write(settings, clustering, pipeline.label(prepared, clustering), folder, output, include_encoder)


@topics_app.command()
def run(
    posts: PostsArgument,
    text_column: TextColumnOption = None,
    topics: TopicsOption = None,
    eps: EpsOption = None,
    min_samples: MinSamplesOption = None,
    algorithm: AlgorithmOption = None,
    noise_policy: NoiseOption = None,
    output: OutputOption = None,
    include_encoder: IncludeEncoderOption = False,
    config: ConfigOption = None,
) -> None:
    """Cluster and label in one go: every post gets a topic."""
    from topicli.method.pipeline import Pipeline, load_posts
    from topicli.method.runs import default_run_folder

    settings = _clustering_settings(config, text_column, topics, eps, min_samples, algorithm, noise_policy)
    pipeline = Pipeline(settings, progress_bar)
    prepared = pipeline.prepare(load_posts(posts, settings))
    clustering = pipeline.cluster(prepared)
    folder = default_run_folder(settings, posts)
    clustering.save(folder)
    render.candidates(console, clustering, folder)
    _write(settings, clustering, pipeline.label(prepared, clustering), folder, output, include_encoder)


@topics_app.command()
def evaluate(
    posts: Annotated[Path, typer.Argument(help="posts file with gold topics (.csv, .jsonl, .json, .parquet)")],
    gold_column: Annotated[str, typer.Option("--gold-column", help="gold topics: a list, or |-separated in CSV")],
    text_column: TextColumnOption = None,
    topics: TopicsOption = None,
    eps: EpsOption = None,
    min_samples: MinSamplesOption = None,
    algorithm: AlgorithmOption = None,
    noise_policy: NoiseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object and nothing else on stdout")] = False,
    config: ConfigOption = None,
) -> None:
    """Run the pipeline and score it against gold topics (accuracy, macro-F1, NMI, coverage)."""
    from topicli.method.pipeline import evaluate_posts, load_posts

    settings = _clustering_settings(config, text_column, topics, eps, min_samples, algorithm, noise_policy)
    figures = evaluate_posts(
        load_posts(posts, settings), gold_column, settings, progress_bar, use_gold_topics=topics is None
    )
    if as_json:
        typer.echo(json.dumps(figures))
    else:
        render.figures(console, figures, posts)


def _write(
    settings: Settings,
    clustering: ClusterRun,
    result: LabelledPosts,
    folder: Path,
    output: Path | None,
    include_encoder: bool,
) -> None:
    """What `label` and `run` leave: posts with topics and the topic table where -o says, the model bundle."""
    from topicli.method.runs import bundle_folder, write_outputs
    from topicli.serving.bundle import write_bundle

    output = output or folder / f"posts.{settings.output.format}"
    table_path = write_outputs(result, output, folder)
    render.topic_table(console, result)
    console.print(f"wrote {output} and {table_path} (coverage {result.coverage:.0%})")
    written = write_bundle(result, clustering, settings, bundle_folder(folder), include_encoder)
    console.print(f"model bundle in {written} (serve it with `topicli deploy local`)")
