"""The `topicli` command: each command wires settings, library and rendering, nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topicli import render
from topicli.classifier_training import fit_classifier
from topicli.cli_support import ConfigOption, TopicliGroup, console, err_console, progress_bar, settings_for
from topicli.config import DEFAULT_CONFIG_PATH, Settings, default_config_text
from topicli.errors import TopicliError
from topicli.infra_cli import infra_app
from topicli.io import read_posts
from topicli.pipeline import (
    ClusterRun,
    LabelledPosts,
    Pipeline,
    default_run_folder,
    latest_run_folder,
    load_posts,
    write_outputs,
)

app = typer.Typer(
    cls=TopicliGroup,
    help="Topics for unlabelled social-media posts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(infra_app, name="infra")


@app.callback()
def main_options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks for errors")] = False,
) -> None:
    ctx.obj = {"debug": debug}


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="where to write the config")] = DEFAULT_CONFIG_PATH,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write topicli.toml with every setting, its default and a comment."""
    if path.exists() and not force:
        raise TopicliError(f"{path} already exists; pass --force to overwrite it")
    path.write_text(default_config_text(), encoding="utf-8")
    console.print(f"wrote {path}")


TextColumnOption = Annotated[
    str | None, typer.Option("--text-column", help="column holding the post text (default: caption/text/content/body)")
]
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


@app.command("train-classifier")
def train_classifier(
    data: Annotated[list[Path], typer.Argument(help="labelled files (.csv, .jsonl, .parquet)")],
    text_column: Annotated[
        str, typer.Option("--text-column", help="text column; comma-separated names, each file uses the first it has")
    ] = "text",
    label_column: Annotated[
        str, typer.Option("--label-column", help="label column; comma-separated names, each file uses the first it has")
    ] = "label",
    drop_label: Annotated[list[str], typer.Option("--drop-label", help="a label to leave out (repeatable)")] = [],  # noqa: B006
    output: Annotated[Path, typer.Option("--output", "-o", help="folder to write the cls_model to")] = Path(
        "topicli-out/cls_model"
    ),
    config: ConfigOption = None,
) -> None:
    """Fit cls_model on labelled text and print its held-out figures."""
    settings = settings_for(config)
    with err_console.status("training cls_model"):
        summary = fit_classifier(
            settings, data, text_column.split(","), label_column.split(","), drop_label, output, progress_bar
        )
    render.classifier_metrics(console, summary, output)


@app.command()
def cluster(
    posts: Annotated[Path, typer.Argument(help="posts file (.csv, .jsonl, .parquet)")],
    text_column: TextColumnOption = None,
    topics: TopicsOption = None,
    eps: EpsOption = None,
    min_samples: MinSamplesOption = None,
    algorithm: AlgorithmOption = None,
    run: RunOption = None,
    config: ConfigOption = None,
) -> None:
    """Embed posts, search clusterings, keep the chosen one."""
    settings = _clustering_settings(config, text_column, topics, eps, min_samples, algorithm, None)
    data = load_posts(posts, settings)
    result = Pipeline(settings, progress_bar).cluster(data)
    folder = run or default_run_folder(settings, posts)
    result.save(folder)
    render.candidates(console, result, folder)


@app.command()
def label(
    run: RunOption = None,
    topics: TopicsOption = None,
    noise_policy: NoiseOption = None,
    output: OutputOption = None,
    config: ConfigOption = None,
) -> None:
    """Name each cluster from the topic list and write every post's topic."""
    settings = _clustering_settings(config, None, topics, None, None, None, noise_policy)
    folder = run or latest_run_folder(settings)
    clustering = ClusterRun.load(folder)
    data = read_posts(Path(clustering.input), clustering.text_column)
    result = Pipeline(settings, progress_bar).label(data, clustering)
    _write(result, output or folder / f"posts.{settings.output.format}")


@app.command()
def run(
    posts: Annotated[Path, typer.Argument(help="posts file (.csv, .jsonl, .parquet)")],
    text_column: TextColumnOption = None,
    topics: TopicsOption = None,
    eps: EpsOption = None,
    min_samples: MinSamplesOption = None,
    algorithm: AlgorithmOption = None,
    noise_policy: NoiseOption = None,
    output: OutputOption = None,
    config: ConfigOption = None,
) -> None:
    """Cluster and label in one go: every post gets a topic."""
    settings = _clustering_settings(config, text_column, topics, eps, min_samples, algorithm, noise_policy)
    data = load_posts(posts, settings)
    pipeline = Pipeline(settings, progress_bar)
    clustering = pipeline.cluster(data)
    folder = default_run_folder(settings, posts)
    clustering.save(folder)
    render.candidates(console, clustering, folder)
    _write(pipeline.label(data, clustering), output or folder / f"posts.{settings.output.format}")


def _write(result: LabelledPosts, output: Path) -> None:
    table_path = write_outputs(result, output)
    render.topic_table(console, result)
    console.print(f"wrote {output} and {table_path} (coverage {result.coverage:.0%})")


def main() -> None:
    app()
