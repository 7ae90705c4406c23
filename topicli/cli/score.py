"""`topicli score`: send posts to a served model and write their topics; each kind of server is one command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar

import typer

from topicli.cli.common import (
    BundleOption,
    ConfigOption,
    ModeGroup,
    PostsArgument,
    TextColumnOption,
    chosen_bundle,
    command_group,
    console,
    progress_bar,
    settings_for,
)
from topicli.cli.jobs import DryRunOption, OnOption
from topicli.config import Settings
from topicli.runs.guard import run_files

if TYPE_CHECKING:
    from topicli.serving.client import Endpoint


class ScoreGroup(ModeGroup):
    default_command = "deployed"
    moved: ClassVar[dict[tuple[str, ...], str]] = {
        ("--local",): "topicli score local POSTS",
        ("--azure",): "topicli score azure POSTS",
        ("--endpoint",): "topicli score endpoint URL POSTS",
        ("--triton",): "topicli score triton URL POSTS",
    }

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        """`--engine spark` before or after the posts is the `spark` command; `--engine local` the default."""
        for i, arg in enumerate(args):
            name, _, value = arg.partition("=")
            if name == "--engine" and (not args or args[0] not in self.commands):
                value, end = (value, i + 1) if value else ((args[i + 1 : i + 2] or [""])[0], i + 2)
                args = [*(["spark"] if value == "spark" else []), *args[:i], *args[end:]]
                break
        return super().parse_args(ctx, args)


score_app = command_group(
    "Send posts to a scoring endpoint and write their topics; a rerun resumes where it stopped. "
    "`topicli score POSTS` is `topicli score deployed POSTS`: what `topicli deploy` last deployed.",
    cls=ScoreGroup,
)

ScoredOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="posts with topics (default: posts.scored.csv in the run folder)"),
]
RestartOption = Annotated[
    bool, typer.Option("--restart", help="drop the partial results of an earlier try and score every post again")
]


def _score(
    settings: Settings, posts: Path, endpoint: Callable[[], Endpoint], output: Path | None, restart: bool
) -> None:
    """Score `posts` against `endpoint()`, resuming from the partial results of an earlier try unless `restart`.
    The output is checked first, before the endpoint is looked up or any post is read."""
    from topicli.io import check_writable
    from topicli.method.pipeline import load_posts
    from topicli.runs.folder import default_run_folder
    from topicli.serving.client import BUNDLE_COLUMN, partial_path, score_file

    default = default_run_folder(settings, posts) / f"posts.scored.{settings.output.format}"
    path = output or default
    keep = run_files(settings, own=(default, partial_path(default), partial_path(path)))
    check_writable(path, "-o" if output else "the run folder", inputs=(posts,), keep=keep)
    check_writable(partial_path(path), "-o's partial results", inputs=(posts,), keep=keep)
    server = endpoint()
    data = load_posts(posts, settings)
    if partial_path(path).is_file():
        console.print(f"{'dropping' if restart else 'resuming from'} {partial_path(path)}")
    summary = score_file(data, server, path, settings.serving, progress_bar, restart)
    console.print(
        f"wrote {path}: {summary.posts} posts, {summary.sent} sent to {server.url} in {summary.requests} requests "
        f"({summary.retries} retried)"
    )
    if summary.bundle:
        console.print(f"every post scored by bundle {summary.bundle} (column {BUNDLE_COLUMN})")
    elif summary.posts:
        console.print(f"the endpoint names no bundle (Triton's ensemble does not): column {BUNDLE_COLUMN} is empty")


@score_app.command()
def deployed(
    posts: PostsArgument,
    text_column: TextColumnOption = None,
    output: ScoredOption = None,
    restart: RestartOption = False,
    config: ConfigOption = None,
) -> None:
    """Score against what `topicli deploy` last deployed: the Azure endpoint, the local server or Triton."""
    settings = settings_for(config, input={"text_column": text_column})
    _score(settings, posts, lambda: _deployed_endpoint(settings), output, restart)


def _deployed_endpoint(settings: Settings) -> Endpoint:
    """The endpoint of the last `topicli deploy` (recorded in [output] dir), or of a local server started before."""
    from topicli.cloud import deployed
    from topicli.errors import TopicliError
    from topicli.serving.client import triton_endpoint

    last = deployed.last(settings)
    if last is None:
        try:
            return _local_endpoint(settings)
        except TopicliError:
            raise TopicliError(
                f"nothing deployed yet (no record in {deployed.record_path(settings)}, and no local server runs): "
                "run `topicli deploy` (Azure), `topicli deploy local` or `topicli deploy triton` first, or name the "
                "server: topicli score local|azure|endpoint URL|triton URL POSTS"
            ) from None
    if last.target == "local":
        return _local_endpoint(settings)
    if last.target == "triton" and not last.endpoint:  # a container group (`deploy triton --aci`): no key
        return triton_endpoint(last.url)
    from topicli.cloud.azureml import azure_endpoint, ml_client

    if last.target == "triton":
        from topicli.cloud.triton_online import scoring_endpoint

        return scoring_endpoint(settings, ml_client(settings), last.endpoint)
    return azure_endpoint(settings, ml_client(settings), last.endpoint)


@score_app.command()
def local(
    posts: PostsArgument,
    text_column: TextColumnOption = None,
    output: ScoredOption = None,
    restart: RestartOption = False,
    config: ConfigOption = None,
) -> None:
    """Score against the server that `topicli deploy local` started."""
    settings = settings_for(config, input={"text_column": text_column})
    _score(settings, posts, lambda: _local_endpoint(settings), output, restart)


def _local_endpoint(settings: Settings) -> Endpoint:
    """The server `topicli deploy local` started, or a one-line error when none runs."""
    from topicli.serving.client import Endpoint
    from topicli.serving.local_server import running_server, state_folder

    return Endpoint(running_server(state_folder(settings)).url)


@score_app.command()
def azure(
    posts: PostsArgument,
    text_column: TextColumnOption = None,
    output: ScoredOption = None,
    restart: RestartOption = False,
    config: ConfigOption = None,
) -> None:
    """Score against the [azure] endpoint; its URL and key come from the workspace."""
    from topicli.cloud.azureml import azure_endpoint, ml_client

    settings = settings_for(config, input={"text_column": text_column})
    _score(settings, posts, lambda: azure_endpoint(settings, ml_client(settings)), output, restart)


@score_app.command()
def endpoint(
    url: Annotated[str, typer.Argument(help="scoring URL of the endpoint")],
    posts: PostsArgument,
    key: Annotated[str, typer.Option("--key", envvar="TOPICLI_ENDPOINT_KEY", help="endpoint key")] = "",
    text_column: TextColumnOption = None,
    output: ScoredOption = None,
    restart: RestartOption = False,
    config: ConfigOption = None,
) -> None:
    """Score against any endpoint that speaks topicli's JSON (an Azure ML endpoint by its URL and key)."""
    from topicli.serving.client import Endpoint

    settings = settings_for(config, input={"text_column": text_column})
    _score(settings, posts, lambda: Endpoint(url, key), output, restart)


@score_app.command()
def triton(
    url: Annotated[str, typer.Argument(help="base URL of the Triton server, like http://host:8000")],
    posts: PostsArgument,
    text_column: TextColumnOption = None,
    output: ScoredOption = None,
    restart: RestartOption = False,
    config: ConfigOption = None,
) -> None:
    """Score against a Triton server that serves the repository of `topicli export triton` (KServe v2)."""
    from topicli.serving.client import triton_endpoint

    settings = settings_for(config, input={"text_column": text_column})
    _score(settings, posts, lambda: triton_endpoint(url), output, restart)


@score_app.command()
def spark(
    posts: Annotated[str, typer.Argument(help="posts file or folder (.csv, .jsonl, .json, .parquet), any size")],
    bundle: BundleOption = None,
    text_column: TextColumnOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="a folder of parts: s.csv, s.jsonl or s.parquet writes folder s/ in that format; "
            "a name without suffix, in [scale] format",
        ),
    ] = None,
    bundle_asset: Annotated[
        str | None,
        typer.Option(
            "--bundle-asset",
            help="with --on azureml: the bundle as an azureml:// URI or data asset (train's azureml:NAME-labelled:V)",
        ),
    ] = None,
    on: OnOption = "local",
    dry_run: DryRunOption = False,
    config: ConfigOption = None,
) -> None:
    """Batch scoring without an endpoint: every post embedded and assigned by the bundle in Spark tasks
    (`topicli score POSTS --engine spark`); `--on azureml` as a serverless Spark job."""
    from topicli.cli.jobs import on_azureml, score_on_spark, spark_job_on_azureml

    settings = settings_for(config, input={"text_column": text_column})
    if on_azureml(on):
        chosen = bundle_asset or str(chosen_bundle(bundle, settings))
        spark_job_on_azureml(settings, posts, chosen, dry_run)
        return
    score_on_spark(settings, posts, chosen_bundle(bundle, settings), output)
