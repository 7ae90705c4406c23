"""`topicli export`: a model bundle as ONNX graphs, or as a Triton Inference Server model repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topicli.cli import render
from topicli.cli.common import (
    ConfigOption,
    chosen_bundle,
    command_group,
    console,
    err_console,
    settings_for,
)
from topicli.config import Settings
from topicli.runs.guard import run_files

export_app = command_group("The model bundle as ONNX, or as a Triton model repository.", no_args_is_help=True)

BundleArgument = Annotated[
    Path | None,
    typer.Argument(help="model bundle folder (default: the bundle of the latest run)", show_default=False),
]


@export_app.command()
def onnx(
    bundle: BundleArgument = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="folder to write (default: onnx/ beside the bundle)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """The encoder and the topic assignment as ONNX graphs, with the tokenizer (USE and multilingual-e5-small: the
    assignment graph, and encoder.json naming the package that runs the encoder)."""
    from topicli.serving.onnx import export_onnx

    settings = settings_for(config)
    folder = chosen_bundle(bundle, settings)
    target = _checked_target(settings, folder, output, "onnx")
    with err_console.status(f"exporting {folder}"):
        written = export_onnx(folder, target)
    render.files(console, written)


@export_app.command()
def triton(
    bundle: BundleArgument = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="repository folder (default: triton/ beside the bundle)")
    ] = None,
    instance_kind: Annotated[
        str, typer.Option("--instance-kind", help="where the ONNX models run: cpu or gpu")
    ] = "cpu",
    instances: Annotated[
        int | None, typer.Option("--instances", help="instances of each model (default: [triton] instances)")
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option("--max-batch-size", help="most posts in one batch (default: [triton] max_batch_size)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """A Triton model repository: tokenizer (Python), encoder and assignment (ONNX), and their ensemble; for USE or
    multilingual-e5-small, the encoder is a Python model running its package, copied in."""
    from topicli.serving.ensemble import ENSEMBLE
    from topicli.serving.triton import write_repository

    settings = settings_for(config, triton={"instances": instances, "max_batch_size": max_batch_size})
    folder = chosen_bundle(bundle, settings)
    target = _checked_target(settings, folder, output, "triton")
    with err_console.status(f"exporting {folder}"):
        written = write_repository(
            folder,
            target,
            instance_kind=instance_kind,
            instances=settings.triton.instances,
            max_batch_size=settings.triton.max_batch_size,
        )
    render.files(console, written)
    console.print(f"serve it with `tritonserver --model-repository={written}`; clients call model {ENSEMBLE!r}")


def _checked_target(settings: Settings, bundle: Path, output: Path | None, default: str) -> Path:
    """The folder an export replaces whole: -o, or `default` beside the bundle; refused (one line) where it is or
    holds the bundle, a run's files or another output. Only the default folder may be replaced with what it holds:
    the same export, written before."""
    from topicli.io import check_writable

    target = output or bundle.parent / default
    keep = {**run_files(settings, own=(bundle.parent / default,)), bundle: f"the bundle {bundle}"}
    check_writable(target, "-o" if output else "the run folder", folder=True, keep=keep)
    return target
