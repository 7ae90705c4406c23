"""`topicli train-classifier`: fit cls_model on labelled text, here or as an Azure ML job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topicli.cli import render
from topicli.cli.common import (
    ConfigOption,
    command_group,
    console,
    err_console,
    progress_bar,
    settings_for,
)
from topicli.cli.jobs import DryRunOption, OnOption, azureml_job, on_azureml
from topicli.runs.guard import check_cache_dir, run_files

classifier_app = command_group()
KINDS = ("pair", "cross-encoder")


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
    kind: Annotated[
        str,
        typer.Option(
            "--kind", help="pair: a network on two embeddings; cross-encoder: post and topic read by one transformer"
        ),
    ] = "pair",
    texts_per_source: Annotated[
        int, typer.Option("--texts-per-source", min=10, help="cross-encoder: texts sampled from each file")
    ] = 1500,
    negatives: Annotated[
        int, typer.Option("--negatives", min=1, help="cross-encoder: negative topics per text (half the nearest)")
    ] = 3,
    max_length: Annotated[
        int, typer.Option("--max-length", min=16, max=512, help="cross-encoder: tokens of a (post, topic) pair")
    ] = 96,
    on: OnOption = "local",
    dry_run: DryRunOption = False,
    config: ConfigOption = None,
) -> None:
    """Fit cls_model on labelled text and print its held-out figures."""
    settings = settings_for(config)
    if kind not in KINDS:
        raise typer.BadParameter(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
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
    if kind == "cross-encoder":
        from topicli.method.cross_encoder import CrossEncoder
        from topicli.method.cross_training import CrossRecipe, fit_cross_encoder

        s = settings.classifier
        recipe = CrossRecipe(
            texts_per_source, negatives, s.near_duplicate, s.held_out_labels, s.described_share, s.topic_template
        )
        model = CrossEncoder(max_length=max_length, seed=s.seed)
        manifest = fit_cross_encoder(
            settings,
            data,
            text_column.split(","),
            label_column.split(","),
            drop_label,
            output,
            progress_bar,
            recipe,
            model,
        )
        render.cross_encoder_metrics(console, manifest, output)
        return
    with err_console.status("training cls_model"):
        summary = fit_classifier(
            settings, data, text_column.split(","), label_column.split(","), drop_label, output, progress_bar
        )
    render.classifier_metrics(console, summary, output)
