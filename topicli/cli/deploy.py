"""`topicli deploy`: serve a model bundle; each place it can be served is one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

import typer

from topicli.cli import render
from topicli.cli.common import (
    BundleOption,
    ConfigOption,
    ModeGroup,
    chosen_bundle,
    command_group,
    console,
    err_console,
    settings_for,
)
from topicli.cli.infra import terraform_output_on_error


class DeployGroup(ModeGroup):
    default_command = "azure"
    moved: ClassVar[dict[tuple[str, ...], str]] = {
        ("--local", "--stop"): "topicli deploy stop",
        ("--local",): "topicli deploy local",
        ("--triton",): "topicli deploy triton",
    }


deploy_app = command_group(
    "Serve the model bundle: an Azure ML online endpoint, Triton in Azure, or azmlinfsrv on this machine. "
    "`topicli deploy` alone is `topicli deploy azure`.",
    cls=DeployGroup,
)

DryRunOutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="with --dry-run: folder for the files it writes (default: beside the bundle)"),
]


@deploy_app.command()
def azure(
    bundle: BundleOption = None,
    keep_old: Annotated[bool, typer.Option("--keep-old", help="keep the previous deployment after the switch")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="write the endpoint and deployment YAML and validate it; send nothing")
    ] = False,
    output: DryRunOutputOption = None,
    config: ConfigOption = None,
) -> None:
    """The [azure] online endpoint, blue/green: the new deployment takes all traffic once it answers."""
    from topicli.cloud import azureml

    settings = settings_for(config)
    folder = chosen_bundle(bundle, settings)
    if dry_run:
        target = output or folder.parent / "azureml"
        plan = azureml.deployment_plan(settings, folder, azureml.stage_code(target / "code"), azureml.COLOURS[0])
        for path in azureml.write_deployment_yaml(plan, target):
            console.print(f"wrote {path} (validated by the Azure ML SDK)")
        return
    with err_console.status(f"deploying {folder} to endpoint {settings.azure.endpoint}"):
        result = azureml.deploy(settings, folder, azureml.ml_client(settings), keep_old)
    console.print(f"endpoint {result.endpoint}: deployment {result.deployment} ({result.model}) takes all traffic")
    console.print(
        f"scoring URL {result.scoring_uri}" + (f"; deleted {', '.join(result.deleted)}" if result.deleted else "")
    )


@deploy_app.command()
def local(
    bundle: BundleOption = None,
    port: Annotated[int | None, typer.Option("--port", help="port on 127.0.0.1 (default: [serving] port)")] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the bundle on this machine with the Azure ML inference server (azmlinfsrv), in the background."""
    from topicli.serving import local_server

    settings = settings_for(config, serving={"port": port})
    state, s = local_server.state_folder(settings), settings.serving
    folder = chosen_bundle(bundle, settings)
    with err_console.status("starting azmlinfsrv"):
        server = local_server.start(folder, state, s.port, s.workers, s.start_timeout)
    console.print(f"serving {folder} at {server.url} (pid {server.pid}, pid file {state / local_server.PID_FILE})")
    console.print(f"log: {server.log}; stop it with `topicli deploy stop`")


@deploy_app.command()
def stop(config: ConfigOption = None) -> None:
    """Stop the server that `topicli deploy local` started."""
    from topicli.serving import local_server

    stopped = local_server.stop(local_server.state_folder(settings_for(config)))
    console.print(f"stopped the local server (pid {stopped.pid})" if stopped else "no local server was running")


@deploy_app.command()
def triton(
    bundle: BundleOption = None,
    repository: Annotated[
        Path | None,
        typer.Option("--repository", help="a Triton model repository to upload (default: written from the bundle)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="write the Terraform variables and upload list, validated; send nothing")
    ] = False,
    output: DryRunOutputOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve the bundle with Triton in an Azure container group ([infra] terraform_dir/triton, CPU)."""
    from topicli.cloud import terraform, triton_aci

    settings = settings_for(config)
    if repository is None:
        folder = chosen_bundle(bundle, settings)
        with err_console.status(f"writing the Triton model repository of {folder}"):
            repository = triton_aci.repository_for_bundle(settings, folder)
        console.print(f"wrote the Triton model repository {repository}")
    release = triton_aci.prepare(settings, repository)
    if dry_run:
        for path in triton_aci.dry_run(release, output or triton_aci.dry_run_folder(repository)):
            console.print(f"wrote {path}")
        render.steps(console, "deploy triton would (variables validated offline)", triton_aci.steps(release))
        return
    runner = terraform.runner_for(settings, release.terraform_dir, release.variables)
    with terraform_output_on_error():
        deployed = triton_aci.deploy(release, runner, on_step=lambda line: console.print(line, markup=False))
    console.print(f"container group {deployed.container_group} serves {deployed.share}/{deployed.share_folder}")
    console.print(f"inference URL {deployed.inference_url} (POST /v2/models/topicli/infer)")
