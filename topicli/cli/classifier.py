"""`topicli train-classifier`: fit cls_model on labelled text, here or as an Azure ML job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topicli.cli import render
from topicli.cli.common import (
    ConfigOption,
    check_cache_dir,
    command_group,
    console,
    err_console,
    progress_bar,
    settings_for,
)
from topicli.cli.jobs import DryRunOption, OnOption, azureml_job, on_azureml
from topicli.runs.guard import run_files

classifier_app = command_group()


@classifier_app.command("train-classifier")
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
    if on_azureml(on):
        from topicli.cloud.azureml import train_job_arguments

        options = ["--text-column", text_column, "--label-column", label_column]
        arguments, inputs = train_job_arguments(data, options + [f"--drop-label={d}" for d in drop_label])
        azureml_job(settings, "train-classifier", [*arguments, "-o", "${{outputs.model}}"], inputs, "model", dry_run)
        return
    from topicli.io import check_writable
    from topicli.method.training import fit_classifier

    check_cache_dir(settings)
    # a cls_model folder of its own under [output] dir (the default) may be written again; a run's folder may not
    own = (output,) if output.resolve().parent == Path(settings.output.dir).resolve() else ()
    check_writable(output, "-o", folder=True, inputs=tuple(data), keep=run_files(settings, own=own))
    with err_console.status("training cls_model"):
        summary = fit_classifier(
            settings, data, text_column.split(","), label_column.split(","), drop_label, output, progress_bar
        )
    render.classifier_metrics(console, summary, output)
