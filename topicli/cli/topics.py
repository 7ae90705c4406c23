"""`topicli cluster`, `label`, `run` and `evaluate`: the method on a posts file."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from topicli.cli import render
from topicli.cli.common import (
    ConfigOption,
    PostsArgument,
    PostsOrUriArgument,
    TextColumnOption,
    check_cache_dir,
    command_group,
    console,
    progress_bar,
    run_files,
    settings_for,
)
from topicli.cli.jobs import DryRunOption, EngineOption, OnOption, azureml_job, on_azureml, on_spark, run_on_spark
from topicli.config import Settings

if TYPE_CHECKING:
    from topicli.method.pipeline import LabelledPosts, PreparedPosts
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


def check_run_paths(
    settings: Settings, folder: Path, folder_name: str, output: Path | None = None, source: Path | None = None
) -> list[str]:
    """Refuse, before any post is embedded, what the command could not write: the embedding cache, the run
    folder (`folder_name` says which option or setting gave it), -o and the topic table beside it, neither
    of which may be the input `source` nor a file of another run (`run_files`). Returns the topic list, read now
    so a bad --topics fails now too."""
    from topicli.io import check_writable, table_format
    from topicli.method.runs import topic_table_path
    from topicli.method.topics import read_topics

    check_cache_dir(settings)
    check_writable(folder, folder_name, folder=True)
    if output is not None:
        inputs = (source,) if source is not None else ()
        keep = run_files(settings, skip=folder)
        check_writable(output, "-o", inputs=inputs, keep=keep)
        table_format(output)
        check_writable(topic_table_path(output), "-o's topic table", inputs=inputs, keep=keep)
    return read_topics(settings.labelling.topics)


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
    from topicli.method.pipeline import Pipeline, load_posts
    from topicli.method.runs import default_run_folder, new_attempt

    path = Path(posts)
    folder = run or default_run_folder(settings, path)
    topic_list = check_run_paths(settings, folder, "--run" if run else "[output] dir")
    pipeline = Pipeline(settings, progress_bar, topic_list)
    prepared = pipeline.prepare(load_posts(path, settings))
    _say_cut(prepared.cut, settings)
    _say_encoder(prepared)
    clustering = pipeline.cluster(prepared)
    with new_attempt(folder) as attempt:
        clustering.save(attempt)
    render.candidates(console, clustering, folder)


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
    from dataclasses import replace

    from topicli.errors import TopicliError
    from topicli.io import read_posts
    from topicli.method.pipeline import Pipeline
    from topicli.method.runs import ClusterRun, latest_run_folder

    settings = _clustering_settings(config, None, topics, None, None, None, noise_policy)
    folder = run or latest_run_folder(settings)
    clustering = ClusterRun.load(folder)
    if posts is not None:
        clustering = replace(clustering, input=str(posts))
    elif not Path(clustering.input).exists():
        raise TopicliError(
            f"{clustering.input}, the posts {folder} was clustered from, is not on this machine (a run clustered on "
            "Azure ML records the compute node's path); give them with --posts"
        )
    topic_list = check_run_paths(settings, folder, "--run" if run else "[output] dir", output, Path(clustering.input))
    pipeline = Pipeline(settings, progress_bar, topic_list)
    prepared = pipeline.prepare(read_posts(Path(clustering.input), clustering.text_column))
    write_run(settings, clustering, pipeline.label(prepared, clustering), folder, output, include_encoder)


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
    from topicli.method.pipeline import Pipeline, load_posts
    from topicli.method.runs import default_run_folder

    settings = _clustering_settings(config, text_column, topics, eps, min_samples, algorithm, noise_policy)
    if on_spark(settings, engine):
        topic_list = check_run_paths(settings, default_run_folder(settings, posts), "[output] dir")
        run_on_spark(settings, str(posts), output, topic_list)
        return
    folder = default_run_folder(settings, posts)
    pipeline = Pipeline(settings, progress_bar, check_run_paths(settings, folder, "[output] dir", output, posts))
    prepared = pipeline.prepare(load_posts(posts, settings))
    _say_encoder(prepared)
    clustering = pipeline.cluster(prepared)
    render.candidates(console, clustering, folder)
    write_run(settings, clustering, pipeline.label(prepared, clustering), folder, output, include_encoder)


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


def write_run(
    settings: Settings,
    clustering: ClusterRun,
    result: LabelledPosts,
    folder: Path,
    output: Path | None,
    include_encoder: bool,
) -> None:
    """What `label` and `run` leave, replacing the run folder's contents as one set: the clustering, posts
    with topics and the topic table (where -o says), and the model bundle."""
    from topicli.method.runs import bundle_folder, new_attempt, write_outputs
    from topicli.serving.bundle import write_bundle

    with new_attempt(folder) as attempt:
        clustering.save(attempt)
        written = write_outputs(result, folder, attempt, output, settings.output.format)
        write_bundle(result, clustering, settings, bundle_folder(attempt), include_encoder)
    render.topic_table(console, result.topic_table, result.over_time)
    _say_cut(result.cut, settings)
    console.print(f"wrote {written.posts} and {written.topic_table} (coverage {result.coverage:.0%})")
    if written.over_time is not None:
        console.print(f"wrote {written.over_time} (topic counts per {result.over_time.attrs['period']})")
    console.print(f"model bundle in {bundle_folder(folder)} (serve it with `topicli deploy local`)")


def _say_encoder(prepared: PreparedPosts) -> None:
    """The encoder the run used and why (auto's choice from the posts' languages)."""
    if prepared.encoder_choice is not None:
        console.print(f"encoder {prepared.encoder_choice.reason}")


def _say_cut(cut: int, settings: Settings) -> None:
    if cut:
        limit = settings.input.max_chars
        console.print(f"cut {cut:,} posts longer than {limit:,} characters to their first {limit:,} before encoding")


def _rename(mapping_file: Path, run: Path | None, config: Path | None) -> None:
    """`label --rename`: the run's outputs and bundle again with new topic names, as one new attempt."""
    from topicli.io import check_writable, read_table
    from topicli.method.rename import read_mapping, rename_outputs, renamed_manifest
    from topicli.method.runs import (
        ClusterRun,
        bundle_folder,
        find_posts_output,
        latest_run_folder,
        new_attempt,
        topic_table_path,
        write_outputs,
    )
    from topicli.serving.bundle import (
        CLASSIFIER_FOLDER,
        ENCODER_FOLDER,
        BundleContents,
        BundleModel,
        read_bundle,
        save_bundle,
    )

    settings = settings_for(config)
    folder = run or latest_run_folder(settings)
    mapping = read_mapping(mapping_file)
    clustering = ClusterRun.load(folder)
    posts_path = find_posts_output(folder)
    old_bundle = bundle_folder(folder)
    manifest, arrays = read_bundle(old_bundle)

    @cache  # the bundle (and its encoder) is loaded only where an unmatched cluster joins a topic, and once
    def served() -> BundleModel:
        return BundleModel.load(old_bundle)

    inside = posts_path.resolve().parent == folder.resolve()
    if not inside:
        check_writable(posts_path, "the run's posts output")
    renamed = rename_outputs(
        read_table(posts_path),
        read_table(topic_table_path(posts_path)),
        clustering.text_column,
        mapping,
        manifest["topics"],
        lambda texts, cluster, topic: served().answer_as_cluster(texts, cluster, topic),
        settings.input.date_column,
        settings.labelling.keywords,
    )
    contents = BundleContents(
        renamed_manifest(manifest, renamed),
        arrays,
        old_bundle / CLASSIFIER_FOLDER if (old_bundle / CLASSIFIER_FOLDER).is_dir() else None,
        old_bundle / ENCODER_FOLDER if (old_bundle / ENCODER_FOLDER).is_dir() else None,
    )
    with new_attempt(folder) as attempt:
        clustering.save(attempt)
        output = folder / posts_path.name if inside else posts_path
        written = write_outputs(renamed, folder, attempt, output, settings.output.format)
        save_bundle(contents, bundle_folder(attempt))
    render.topic_table(console, renamed.topic_table, renamed.over_time)
    changes = [f"{old} → {new}" for old, new in renamed.mapping.items()]
    changes += [f"cluster {c} → {topic}" for c, topic in renamed.joined.items()]
    console.print(f"renamed {'; '.join(changes)}")
    console.print(f"wrote {written.posts} and {written.topic_table}; model bundle in {bundle_folder(folder)}")
