"""`topicli export`: a model bundle as ONNX graphs, or as a Triton Inference Server model repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from topicli.cli_support import ConfigOption, TopicliGroup, chosen_bundle, console, err_console, settings_for
from topicli.onnx_export import export_onnx
from topicli.triton import ENSEMBLE, write_repository

export_app = typer.Typer(
    cls=TopicliGroup, help="The model bundle as ONNX, or as a Triton model repository.", no_args_is_help=True
)

BundleArgument = Annotated[
    Path | None,
    typer.Argument(help="model bundle folder (default: the bundle of the latest run)", show_default=False),
]


def _files_table(folder: Path) -> Table:
    table = Table(title=str(folder), title_justify="left")
    table.add_column("file")
    table.add_column("MB", justify="right")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        table.add_row(str(path.relative_to(folder)), f"{path.stat().st_size / 1e6:.1f}")
    return table


@export_app.command()
def onnx(
    bundle: BundleArgument = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="folder to write (default: onnx/ beside the bundle)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """The encoder and the topic assignment as ONNX graphs, with the tokenizer."""
    folder = chosen_bundle(bundle, settings_for(config))
    with err_console.status(f"exporting {folder}"):
        written = export_onnx(folder, output or folder.parent / "onnx")
    console.print(_files_table(written))


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
    """A Triton model repository: tokenizer (Python), encoder and assignment (ONNX), and their ensemble."""
    settings = settings_for(config, triton={"instances": instances, "max_batch_size": max_batch_size})
    folder = chosen_bundle(bundle, settings)
    with err_console.status(f"exporting {folder}"):
        written = write_repository(
            folder,
            output or folder.parent / "triton",
            instance_kind=instance_kind,
            instances=settings.triton.instances,
            max_batch_size=settings.triton.max_batch_size,
        )
    console.print(_files_table(written))
    console.print(f"serve it with `tritonserver --model-repository={written}`; clients call model {ENSEMBLE!r}")
