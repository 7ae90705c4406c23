"""`--on azureml`: a command that runs as an Azure ML command job instead of here (`cluster`, `train-classifier`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topicli.cli.common import console
from topicli.config import Settings
from topicli.errors import TopicliError

OnOption = Annotated[str, typer.Option("--on", help="local, or azureml: a command job on the [azure] compute cluster")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="with --on azureml: write the job's YAML and validate it; send nothing")
]


def on_azureml(on: str) -> bool:
    """Whether `--on` sends the command to Azure ML; a one-line error for anything but local or azureml."""
    if on not in ("local", "azureml"):
        raise TopicliError(f"--on must be local or azureml, got {on!r}")
    return on == "azureml"


def azureml_job(
    settings: Settings, name: str, arguments: list[str], inputs: dict[str, Path], output: str, dry_run: bool
) -> None:
    """Run `topicli NAME ARGUMENTS` as a job on the [azure] compute cluster, or only write its YAML (--dry-run)."""
    from topicli.cloud import azureml

    if dry_run:
        path = azureml.dry_run_job(settings, name, arguments, inputs, output)
        console.print(f"wrote {path} (validated by the Azure ML SDK); submit it with `az ml job create --file {path}`")
        return
    job = azureml.submit_job(settings, name, arguments, inputs, output, azureml.ml_client(settings))
    console.print(f"submitted job {job.name} to {settings.azure.compute}: {job.studio_url}")
