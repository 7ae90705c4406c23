"""The `topicli` command: each command wires settings, library and rendering, nothing more."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from topicli import azure, infra, local_server, render, triton_deploy
from topicli.bundle import bundle_folder, write_bundle
from topicli.classifier_training import fit_classifier
from topicli.cli_support import (
    ConfigOption,
    TopicliGroup,
    chosen_bundle,
    console,
    err_console,
    progress_bar,
    settings_for,
)
from topicli.client import Endpoint, partial_path, score_file, triton_endpoint
from topicli.config import DEFAULT_CONFIG_PATH, Settings, default_config_text
from topicli.errors import TopicliError
from topicli.export_cli import export_app
from topicli.infra_cli import infra_app, terraform_output_on_error
from topicli.io import Posts, read_posts
from topicli.pipeline import (
    ClusterRun,
    LabelledPosts,
    Pipeline,
    default_run_folder,
    evaluate_posts,
    latest_run_folder,
    load_posts,
    write_outputs,
)
from topicli.report import MAP_POINTS, build_report, write_page
from topicli.report_png import write_pngs

app = typer.Typer(
    cls=TopicliGroup,
    help="Topics for unlabelled social-media posts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(infra_app, name="infra")
app.add_typer(export_app, name="export")


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


PostsArgument = Annotated[Path, typer.Argument(help="posts file (.csv, .jsonl, .json, .parquet)")]
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
OnOption = Annotated[str, typer.Option("--on", help="local, or azureml: a command job on the [azure] compute cluster")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="write the Azure ML YAML and validate it; send nothing")]
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
    on: OnOption = "local",
    dry_run: DryRunOption = False,
    config: ConfigOption = None,
) -> None:
    """Fit cls_model on labelled text and print its held-out figures."""
    settings = settings_for(config)
    if _on_azureml(on):
        options = ["--text-column", text_column, "--label-column", label_column]
        arguments, inputs = azure.train_job_arguments(data, options + [f"--drop-label={d}" for d in drop_label])
        _azureml_job(settings, "train-classifier", [*arguments, "-o", "${{outputs.model}}"], inputs, "model", dry_run)
        return
    with err_console.status("training cls_model"):
        summary = fit_classifier(
            settings, data, text_column.split(","), label_column.split(","), drop_label, output, progress_bar
        )
    render.classifier_metrics(console, summary, output)


@app.command()
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
    if _on_azureml(on):
        arguments = ["${{inputs.posts}}", "--run", "${{outputs.run}}"]
        _azureml_job(settings, "cluster", arguments, {"posts": posts}, "run", dry_run)
        return
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
    include_encoder: IncludeEncoderOption = False,
    config: ConfigOption = None,
) -> None:
    """Name each cluster from the topic list and write every post's topic."""
    settings = _clustering_settings(config, None, topics, None, None, None, noise_policy)
    folder = run or latest_run_folder(settings)
    clustering = ClusterRun.load(folder)
    data = read_posts(Path(clustering.input), clustering.text_column)
    pipeline = Pipeline(settings, progress_bar)
    _write(pipeline, data, clustering, pipeline.label(data, clustering), folder, output, include_encoder)


@app.command()
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
    settings = _clustering_settings(config, text_column, topics, eps, min_samples, algorithm, noise_policy)
    data = load_posts(posts, settings)
    pipeline = Pipeline(settings, progress_bar)
    clustering = pipeline.cluster(data)
    folder = default_run_folder(settings, posts)
    clustering.save(folder)
    render.candidates(console, clustering, folder)
    _write(pipeline, data, clustering, pipeline.label(data, clustering), folder, output, include_encoder)


@app.command()
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
    settings = _clustering_settings(config, text_column, topics, eps, min_samples, algorithm, noise_policy)
    data = load_posts(posts, settings)
    figures = evaluate_posts(data, gold_column, settings, progress_bar, use_gold_topics=topics is None)
    if as_json:
        typer.echo(json.dumps(figures))
    else:
        render.figures(console, figures, posts)


@app.command()
def report(
    run: Annotated[Path | None, typer.Argument(help="run folder (default: the latest under [output] dir)")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML file to write (default: report.html in the run folder)")
    ] = None,
    posts: Annotated[
        Path | None, typer.Option("--posts", help="the run's posts output, where `-o` put it outside the run folder")
    ] = None,
    png: Annotated[Path | None, typer.Option("--png", help="also write the charts as PNG files in this folder")] = None,
    max_points: Annotated[
        int, typer.Option("--max-points", help="most posts drawn on the map (a random sample beyond)")
    ] = MAP_POINTS,
    config: ConfigOption = None,
) -> None:
    """Write one self-contained HTML page of a run: topic sizes, a map of the posts, examples, candidates."""
    settings = settings_for(config)
    folder = run or latest_run_folder(settings)
    page = build_report(folder, settings, posts, max_points, progress_bar)
    path = output or folder / "report.html"
    write_page(page, path)
    console.print(f"wrote {path}: {len(page.topics)} topics, {len(page.map.xy):,} of {page.map.total:,} posts mapped")
    for written in write_pngs(page, png) if png else []:
        console.print(f"wrote {written}")


@app.command()
def deploy(
    local: Annotated[bool, typer.Option("--local", help="serve here with azmlinfsrv on 127.0.0.1 instead")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="with --local: stop the local server")] = False,
    port: Annotated[int | None, typer.Option("--port", help="with --local: port (default: serving.port)")] = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="model bundle folder (default: the bundle of the latest run)")
    ] = None,
    keep_old: Annotated[bool, typer.Option("--keep-old", help="keep the previous deployment after the switch")] = False,
    triton: Annotated[
        bool,
        typer.Option("--triton", help="serve it with Triton in an Azure container group (terraform/triton, CPU)"),
    ] = False,
    repository: Annotated[
        Path | None,
        typer.Option("--repository", help="with --triton: a Triton model repository to upload (default: the bundle's)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="write the Azure ML YAML, or --triton's variables and files; send nothing")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="with --dry-run: folder for the files it writes (default beside the run)"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the model bundle: an Azure ML online endpoint (blue/green), `--triton`, or `--local` on this machine."""
    settings = settings_for(config, serving={"port": port})
    if triton:
        if local or stop or port is not None or keep_old:
            raise TopicliError("--triton deploys to Azure: leave out --local, --stop, --port and --keep-old")
        _deploy_triton(settings, bundle, repository, output, dry_run)
        return
    if repository is not None:
        raise TopicliError("--repository goes with --triton")
    state = Path(settings.output.dir) / "serve"
    if local and stop:
        stopped = local_server.stop(state)
        console.print(f"stopped the local server (pid {stopped.pid})" if stopped else "no local server was running")
        return
    folder = chosen_bundle(bundle, settings)
    if local:
        s = settings.serving
        with err_console.status("starting azmlinfsrv"):
            server = local_server.start(folder, state, s.port, s.workers, s.start_timeout)
        console.print(f"serving {folder} at {server.url} (pid {server.pid}, pid file {state / local_server.PID_FILE})")
        console.print(f"log: {server.log}; stop it with `topicli deploy --local --stop`")
        return
    if dry_run:
        target = output or folder.parent / "azureml"
        plan = azure.deployment_plan(settings, folder, azure.stage_code(target / "code"), azure.COLOURS[0])
        for path in azure.write_deployment_yaml(plan, target):
            console.print(f"wrote {path} (validated by the Azure ML SDK)")
        return
    with err_console.status(f"deploying {folder} to endpoint {settings.azure.endpoint}"):
        result = azure.deploy(settings, folder, azure.ml_client(settings), keep_old)
    console.print(f"endpoint {result.endpoint}: deployment {result.deployment} ({result.model}) takes all traffic")
    console.print(
        f"scoring URL {result.scoring_uri}" + (f"; deleted {', '.join(result.deleted)}" if result.deleted else "")
    )


@app.command()
def score(
    posts: PostsArgument,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="scoring URL of an endpoint")] = None,
    on_azure: Annotated[
        bool, typer.Option("--azure", help="the [azure] endpoint; URL and key from the workspace")
    ] = False,
    local: Annotated[bool, typer.Option("--local", help="the server of `deploy --local` (the default)")] = False,
    triton: Annotated[
        str | None, typer.Option("--triton", help="base URL of a Triton server with `export triton`'s repository")
    ] = None,
    key: Annotated[str, typer.Option("--key", envvar="TOPICLI_ENDPOINT_KEY", help="endpoint key")] = "",
    text_column: TextColumnOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="posts with topics (default: posts.scored.csv in the run folder)"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Send posts to a scoring endpoint and write their topics; a rerun resumes where it stopped."""
    if sum([endpoint is not None, on_azure, local, triton is not None]) > 1:
        raise TopicliError("give one of --endpoint, --azure, --local and --triton")
    settings = settings_for(config, input={"text_column": text_column})
    if triton is not None:
        target = triton_endpoint(triton)
    elif endpoint:
        target = Endpoint(endpoint, key)
    elif on_azure:
        target = azure.azure_endpoint(settings, azure.ml_client(settings))
    else:
        target = Endpoint(local_server.running_server(Path(settings.output.dir) / "serve").url)
    data = load_posts(posts, settings)
    path = output or default_run_folder(settings, posts) / f"posts.scored.{settings.output.format}"
    if partial_path(path).is_file():
        console.print(f"resuming from {partial_path(path)}")
    summary = score_file(data, target, path, settings.serving, progress_bar)
    console.print(
        f"wrote {path}: {summary.posts} posts, {summary.sent} sent to {target.url} in {summary.requests} requests "
        f"({summary.retries} retried)"
    )


def _deploy_triton(
    settings: Settings, bundle: Path | None, repository: Path | None, output: Path | None, dry_run: bool
) -> None:
    """`deploy --triton`: write (or take) the Triton model repository, then deploy it, or describe it (--dry-run)."""
    if repository is None:
        folder = chosen_bundle(bundle, settings)
        with err_console.status(f"writing the Triton model repository of {folder}"):
            repository = triton_deploy.write_repository(settings, folder)
        console.print(f"wrote the Triton model repository {repository}")
    prepared = triton_deploy.prepare(settings, repository)
    if dry_run:
        for path in triton_deploy.dry_run(prepared, output or triton_deploy.dry_run_folder(repository)):
            console.print(f"wrote {path}")
        table = Table(title="deploy --triton would (variables validated offline)", title_justify="left")
        table.add_column("step", style="bold")
        table.add_column("what")
        for step, what in triton_deploy.steps(prepared):
            table.add_row(step, escape(what))
        console.print(table)
        return
    runner = infra.runner_for(settings, prepared.terraform_dir, prepared.variables)
    with terraform_output_on_error():
        deployed = triton_deploy.deploy(prepared, runner, on_step=lambda line: console.print(line, markup=False))
    console.print(f"container group {deployed.container_group} serves {deployed.share}/{deployed.share_folder}")
    console.print(f"inference URL {deployed.inference_url} (POST /v2/models/topicli/infer)")


def _on_azureml(on: str) -> bool:
    if on not in ("local", "azureml"):
        raise TopicliError(f"--on must be local or azureml, got {on!r}")
    return on == "azureml"


def _azureml_job(
    settings: Settings, name: str, arguments: list[str], inputs: dict[str, Path], output: str, dry_run: bool
) -> None:
    if dry_run:
        path = azure.dry_run_job(settings, name, arguments, inputs, output)
        console.print(f"wrote {path} (validated by the Azure ML SDK); submit it with `az ml job create --file {path}`")
        return
    job = azure.submit_job(settings, name, arguments, inputs, output, azure.ml_client(settings))
    console.print(f"submitted job {job.name} to {settings.azure.compute}: {job.studio_url}")


def _write(
    pipeline: Pipeline,
    data: Posts,
    clustering: ClusterRun,
    result: LabelledPosts,
    folder: Path,
    output: Path | None,
    include_encoder: bool,
) -> None:
    """What `label` and `run` leave: posts with topics, the topic table, and the model bundle."""
    output = output or folder / f"posts.{pipeline.settings.output.format}"
    table_path = write_outputs(result, output)
    render.topic_table(console, result)
    console.print(f"wrote {output} and {table_path} (coverage {result.coverage:.0%})")
    written = write_bundle(pipeline, data, clustering, result, bundle_folder(folder), include_encoder)
    console.print(f"model bundle in {written} (serve it with `topicli deploy --local`)")


def main() -> None:
    app()
