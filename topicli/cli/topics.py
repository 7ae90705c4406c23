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
    PostsOrUriArgument,
    TextColumnOption,
    chosen_run,
    command_group,
    console,
    progress_bar,
    settings_for,
)
from topicli.cli.jobs import DryRunOption, EngineOption, OnOption, azureml_job, on_azureml, on_spark, run_on_spark
from topicli.config import Settings
from topicli.runs.guard import check_cache_dir

if TYPE_CHECKING:
    from topicli.method.languages import EncoderChoice
    from topicli.runs.service import WrittenRun

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
    Path | None,
    typer.Option("--run", help="run folder (cluster: where to write it; label: which to read; default: the latest)"),
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
    posts: PostsOrUriArgument,
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
        azureml_job(settings, "cluster", arguments, {"posts": posts}, "run", dry_run)  # a URI stays one
        return
    from topicli.runs.service import cluster_posts

    done = cluster_posts(settings, Path(posts), run, progress_bar)
    _say_read(done.encoder_choice, done.cut, settings)
    render.candidates(console, done.clustering, done.folder)


RenameOption = Annotated[
    Path | None,
    typer.Option(
        "--rename",
        help="CSV of old,new topic names: rename or merge the run's topics (an unmatched cluster may join a topic) "
        "and write its outputs and bundle again, without clustering or scoring",
    ),
]


LabelPostsOption = Annotated[
    Path | None,
    typer.Option(
        "--posts",
        help="the posts the run clustered, read from here instead of the path the run recorded (a run clustered "
        "elsewhere, e.g. on Azure ML, recorded the compute node's mount path); checked to be the same file",
    ),
]


@topics_app.command()
def label(
    run: RunOption = None,
    posts: LabelPostsOption = None,
    topics: TopicsOption = None,
    noise_policy: NoiseOption = None,
    output: OutputOption = None,
    include_encoder: IncludeEncoderOption = False,
    rename: RenameOption = None,
    config: ConfigOption = None,
) -> None:
    """Name each cluster from the topic list and write every post's topic (or rename topics: --rename)."""
    if rename is not None:
        _rename(rename, run, config)
        return
    from topicli.runs.service import label_run

    settings = _clustering_settings(config, None, topics, None, None, None, noise_policy)
    folder = chosen_run(run, settings)
    say_written(label_run(settings, folder, posts, output, include_encoder, progress_bar), settings)


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
    engine: EngineOption = None,
    config: ConfigOption = None,
) -> None:
    """Cluster and label in one go: every post gets a topic."""
    from topicli.runs.folder import default_run_folder
    from topicli.runs.service import check_run_paths, run_posts

    settings = _clustering_settings(config, text_column, topics, eps, min_samples, algorithm, noise_policy)
    if on_spark(settings, engine):
        topic_list = check_run_paths(settings, default_run_folder(settings, posts), "[output] dir")
        run_on_spark(settings, str(posts), output, topic_list)
        return
    say_written(run_posts(settings, posts, output, include_encoder, progress_bar), settings)


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
    check_cache_dir(settings)
    figures = evaluate_posts(
        load_posts(posts, settings), gold_column, settings, progress_bar, use_gold_topics=topics is None
    )
    if as_json:
        typer.echo(json.dumps(figures))
    else:
        render.figures(console, figures, posts)


def say_written(written: WrittenRun, settings: Settings) -> None:
    """What a labelled run leaves: the chosen clustering, the topic table, and where its files went."""
    _say_read(written.encoder_choice, written.cut, settings)
    render.candidates(console, written.clustering, written.folder)
    result = written.result
    render.topic_table(console, result.topic_table, result.over_time, settings.output.min_posts)
    if result.counts is not None:
        render.feed(console, result.counts, settings.labelling.min_confidence)
    outputs = written.outputs
    console.print(f"wrote {outputs.posts} and {outputs.topic_table} (coverage {result.coverage:.0%})")
    if outputs.over_time is not None:
        console.print(f"wrote {outputs.over_time} (topic counts per {result.over_time.attrs['period']})")
    console.print(f"model bundle in {written.bundle} (serve it with `topicli deploy local`)")
    _say_dropped(written.dropped, written.folder)
    if written.renames is not None:
        console.print(
            f"[yellow]the run this one replaced had renamed topics; they are kept in {written.renames} but not "
            f"applied here: apply them with `topicli label --rename {written.renames}`[/yellow]"
        )


def _say_dropped(dropped: list[str], folder: Path) -> None:
    """Files of the replaced run that this command did not write again (a report of the old topics)."""
    if dropped:
        names = ", ".join(dropped)
        console.print(f"{names} of the run before is out of date and not kept in {folder}; `topicli report` writes it")


def _say_read(choice: EncoderChoice | None, cut: int, settings: Settings) -> None:
    """The encoder the run used and why (auto's choice from the posts' languages), and the posts cut short."""
    if choice is not None:
        console.print(f"encoder {choice.reason}")
    if cut:
        limit = settings.input.max_chars
        console.print(f"cut {cut:,} posts longer than {limit:,} characters to their first {limit:,} before encoding")


def _rename(mapping_file: Path, run: Path | None, config: Path | None) -> None:
    """`label --rename`: the run's outputs and bundle again with new topic names, as one new attempt."""
    from topicli.runs.service import rename_run

    settings = settings_for(config)
    done = rename_run(settings, mapping_file, chosen_run(run, settings))
    renamed = done.renamed
    render.topic_table(console, renamed.topic_table, renamed.over_time)
    changes = [f"{old} → {new}" for old, new in renamed.mapping.items()]
    changes += [f"cluster {c} → {topic}" for c, topic in renamed.joined.items()]
    console.print(f"renamed {'; '.join(changes)}")
    console.print(f"wrote {done.outputs.posts} and {done.outputs.topic_table}; model bundle in {done.bundle}")
    _say_dropped(done.dropped, done.folder)
