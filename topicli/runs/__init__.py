"""The run service: what a run leaves (its folder, outputs and bundle), written in one place for every command
and engine (`service`), as one set (`folder`), with its outputs' record (`outputs`)."""

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
