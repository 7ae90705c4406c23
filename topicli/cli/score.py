"""`topicli score`: send posts to a served model and write their topics; each kind of server is one command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar

import typer

from topicli.cli.common import (
    ConfigOption,
    ModeGroup,
    PostsArgument,
    TextColumnOption,
    command_group,
    console,
    progress_bar,
    settings_for,
)
from topicli.config import Settings

if TYPE_CHECKING:
    from topicli.serving.client import Endpoint


class ScoreGroup(ModeGroup):
    default_command = "local"
    moved: ClassVar[dict[tuple[str, ...], str]] = {
        ("--local",): "topicli score local POSTS",
        ("--azure",): "topicli score azure POSTS",
        ("--endpoint",): "topicli score endpoint URL POSTS",
        ("--triton",): "topicli score triton URL POSTS",
    }


score_app = command_group(
    "Send posts to a scoring endpoint and write their topics; a rerun resumes where it stopped. "
    "`topicli score POSTS` is `topicli score local POSTS`.",
    cls=ScoreGroup,
)

ScoredOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="posts with topics (default: posts.scored.csv in the run folder)"),
]
RestartOption = Annotated[
    bool, typer.Option("--restart", help="drop the partial results of an earlier try and score every post again")
]


def _score(settings: Settings, posts: Path, endpoint: Endpoint, output: Path | None, restart: bool) -> None:
    """Score `posts` against `endpoint`, resuming from the partial results of an earlier try unless `restart`."""
    from topicli.method.pipeline import load_posts
    from topicli.method.runs import default_run_folder
    from topicli.serving.client import BUNDLE_COLUMN, partial_path, score_file

    data = load_posts(posts, settings)
    path = output or default_run_folder(settings, posts) / f"posts.scored.{settings.output.format}"
    if partial_path(path).is_file():
        console.print(f"{'dropping' if restart else 'resuming from'} {partial_path(path)}")
    summary = score_file(data, endpoint, path, settings.serving, progress_bar, restart)
    console.print(
        f"wrote {path}: {summary.posts} posts, {summary.sent} sent to {endpoint.url} in {summary.requests} requests "
        f"({summary.retries} retried)"
    )
    if summary.bundle:
        console.print(f"every post scored by bundle {summary.bundle} (column {BUNDLE_COLUMN})")
    elif summary.posts:
        console.print(f"the endpoint names no bundle (Triton's ensemble does not): column {BUNDLE_COLUMN} is empty")


@score_app.command()
def local(
    posts: PostsArgument,
    text_column: TextColumnOption = None,
    output: ScoredOption = None,
    restart: RestartOption = False,
    config: ConfigOption = None,
) -> None:
    """Score against the server that `topicli deploy local` started."""
    from topicli.serving.client import Endpoint
    from topicli.serving.local_server import running_server, state_folder

    settings = settings_for(config, input={"text_column": text_column})
    _score(settings, posts, Endpoint(running_server(state_folder(settings)).url), output, restart)


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
    _score(settings, posts, azure_endpoint(settings, ml_client(settings)), output, restart)


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

    endpoint = Endpoint(url, key)
    _score(settings_for(config, input={"text_column": text_column}), posts, endpoint, output, restart)


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

    _score(settings_for(config, input={"text_column": text_column}), posts, triton_endpoint(url), output, restart)
