"""The run service: what a run leaves (its folder, outputs and bundle), written in one place for every command
and engine (`service`), as one set (`folder`), with its outputs' record (`outputs`)."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from topicli.runs.service import (
        ClusteredRun,
        RenamedWrite,
        RunWriter,
        WrittenRun,
        check_run_paths,
        cluster_posts,
        label_run,
        rename_run,
        run_posts,
        write_run,
    )

__all__ = [
    "ClusteredRun",
    "RenamedWrite",
    "RunWriter",
    "WrittenRun",
    "check_run_paths",
    "cluster_posts",
    "label_run",
    "rename_run",
    "run_posts",
    "write_run",
]


def __getattr__(name: str) -> Any:
    """The service's names, loaded when first used: `topicli.runs.guard` and `.folder` stay light for the CLI."""
    if name in __all__:
        from topicli.runs import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
