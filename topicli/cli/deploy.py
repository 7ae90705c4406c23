"""`topicli deploy`: serve a model bundle; each place it can be served is one command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

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
from topicli.config import DEFAULT_CONFIG_PATH, Settings
from topicli.errors import TopicliError
from topicli.runs.guard import check_files

if TYPE_CHECKING:
    from topicli.cloud.rollout import DeployResult, Rollout


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


KeepOldOption = Annotated[
    bool, typer.Option("--keep-old", help="keep the previous deployment once the new one takes all traffic")
]
RollbackOption = Annotated[
    bool, typer.Option("--rollback", help="all traffic back to the previous deployment (or its model, redeployed)")
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="a registered model to deploy as it is: NAME:VERSION, NAME@latest, or latest ([azure] model_name's); "
        "default: register the latest run's bundle",
    ),
]


@deploy_app.command()
def azure(
    bundle: BundleOption = None,
    model: ModelOption = None,
    rollback: RollbackOption = False,
    keep_old: KeepOldOption = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="write the endpoint and deployment YAML and validate it; send nothing")
    ] = False,
    output: DryRunOutputOption = None,
    config: ConfigOption = None,
) -> None:
    """The [azure] online endpoint: a new blue/green deployment, moved on by smoke, mirror, canary and all."""
    from topicli.cloud import azureml, deployed
    from topicli.cloud.rollout import Rollout

    settings = settings_for(config)
    if model is not None and bundle is not None:
        raise TopicliError("--model and --bundle each name what to deploy; give one")
    if rollback and (dry_run or model is not None or bundle is not None):
        raise TopicliError("--rollback goes back to what served before; it takes no --dry-run, --model or --bundle")
    reference = azureml.model_reference(model, settings) if model is not None else None
    folder = None if reference is not None or rollback else chosen_bundle(bundle, settings)
    if dry_run:
        target = output or (folder.parent / "azureml" if folder is not None else Path(settings.output.dir) / "azureml")
        check_files(settings, target, ("endpoint.yml", "deployment.yml"), "-o" if output else "the run folder")
        plan = azureml.dry_run_plan(settings, folder, reference, target)
        for path in azureml.write_deployment_yaml(plan, target):
            console.print(f"wrote {path} (validated by the Azure ML SDK)")
        return
    last = deployed.last(settings)
    history = deployed.history(last if last is not None and last.target == "azure" else None)
    rollout = Rollout(
        settings,
        azureml.ml_client(settings),
        on_step=lambda line: console.print(line, markup=False),
        endpoint_logs=_endpoint_logs(settings),
        monitor=_monitor(settings),
        history=history,
    )
    result = _rolled_out(settings, "azure", rollout, rollback, lambda: rollout.run(folder, reference, keep_old))
    console.print(f"endpoint {result.endpoint}: deployment {result.deployment} ({result.model}) takes all traffic")
    console.print(
        f"scoring URL {result.scoring_uri}" + (f"; deleted {', '.join(result.deleted)}" if result.deleted else "")
    )
    if not settings.azure.endpoint:
        from topicli.cloud.terraform import write_outputs_to_config

        path = config or DEFAULT_CONFIG_PATH
        write_outputs_to_config(path, {"endpoint": result.endpoint})
        console.print(f"endpoint name {result.endpoint} written to [azure] endpoint in {path}")


@deploy_app.command()
def local(
    bundle: BundleOption = None,
    port: Annotated[int | None, typer.Option("--port", help="port on 127.0.0.1 (default: [serving] port)")] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the bundle on this machine with the Azure ML inference server (azmlinfsrv), in the background."""
    from topicli.cloud import deployed
    from topicli.serving import local_server

    settings = settings_for(config, serving={"port": port})
    state, s = local_server.state_folder(settings), settings.serving
    folder = chosen_bundle(bundle, settings)
    with err_console.status("starting azmlinfsrv"):
        server = local_server.start(folder, state, s.port, s.workers, s.start_timeout)
    console.print(f"serving {folder} at {server.url} (pid {server.pid}, pid file {state / local_server.PID_FILE})")
    console.print(f"the server reads its own copy, {server.bundle}: a new run does not change what it serves")
    deployed.record(settings, deployed.Deployed("local", server.url))
    console.print(f"log: {server.log}; stop it with `topicli deploy stop`")


@deploy_app.command()
def stop(config: ConfigOption = None) -> None:
    """Stop the server that `topicli deploy local` started."""
    from topicli.serving import local_server

    stopped = local_server.stop(local_server.state_folder(settings_for(config)))
    console.print(f"stopped the local server (pid {stopped.pid})" if stopped else "no local server was running")


@deploy_app.command()
def triton(
    ctx: typer.Context,
    bundle: BundleOption = None,
    repository: Annotated[
        Path | None,
        typer.Option("--repository", help="a Triton model repository to deploy (default: written from the bundle)"),
    ] = None,
    aci: Annotated[
        bool,
        typer.Option("--aci", help="an Azure container group instead (CPU, public plain HTTP: a demo, not production)"),
    ] = False,
    keep_old: KeepOldOption = False,
    rollback: RollbackOption = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="write what would be deployed, validated offline; send nothing")
    ] = False,
    output: DryRunOutputOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve the bundle with Triton: an Azure ML managed online deployment (key auth, TLS, the safe rollout)."""
    from topicli.cloud import azureml, deployed, triton_aci, triton_online

    settings = settings_for(config)
    if rollback and (dry_run or aci or repository is not None or bundle is not None):
        raise TopicliError("--rollback goes back to what served before; it takes no --dry-run, --aci or repository")
    if repository is None and not rollback:
        folder = chosen_bundle(bundle, settings)
        with err_console.status(f"writing the Triton model repository of {folder}"):
            repository = triton_aci.repository_for_bundle(settings, folder)
        console.print(f"wrote the Triton model repository {repository}")
    if aci:
        _container_group(ctx, settings, repository, dry_run, output)  # type: ignore[arg-type]
        return
    if repository is not None:
        triton_aci.read_repository(repository)  # a Triton model repository, or one line saying what is wrong
    if dry_run:
        target = output or triton_aci.dry_run_folder(repository)  # type: ignore[arg-type]
        for path in triton_online.dry_run(settings, repository, target):  # type: ignore[arg-type]
            console.print(f"wrote {path} (validated by the Azure ML SDK)")
        return
    last = deployed.last(settings)
    rollout = triton_online.TritonRollout(
        settings,
        azureml.ml_client(settings),
        on_step=lambda line: console.print(line, markup=False),
        endpoint_logs=_endpoint_logs(settings),
        monitor=_monitor(settings),
        history=deployed.history(last if last is not None and last.target == "triton" else None),
    )
    url_of = triton_online.inference_url
    result = _rolled_out(
        settings, "triton", rollout, rollback, lambda: rollout.run(repository, keep_old=keep_old), url_of
    )
    console.print(f"endpoint {result.endpoint}: deployment {result.deployment} ({result.model}) takes all traffic")
    console.print(f"inference URL {url_of(result.scoring_uri)} (KServe v2; the endpoint key as bearer token)")


def _rolled_out(
    settings: Settings,
    target: str,
    rollout: Rollout,
    rollback: bool,
    run: Callable[[], DeployResult],
    url_of: Callable[[str], str] = str,
) -> DeployResult:
    """Run the rollout (or the rollback) and record it in deployed.json, gates and history with it; a rollout
    stopped by a failed gate is recorded too (its gates and why), the live deployment's record kept."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from topicli.cloud import deployed

    last = deployed.last(settings)
    same = last if last is not None and last.target == target else None
    passed = deployed.history(same)
    try:
        result = rollout.rollback() if rollback else run()
    except TopicliError as failed:
        if same is not None:
            gates = [gate.record() for gate in rollout.gates]
            kept = replace(same, gates=gates, failed=str(failed), history=deployed.as_records(passed))
            deployed.record(settings, kept)
        raise
    if rollback:
        passed = deployed.after_rollback(passed, result.deployment, result.model)
    else:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        passed = [*passed, deployed.Passed(result.deployment, result.model, now)]
    record = deployed.Deployed(
        target,  # type: ignore[arg-type]
        url_of(result.scoring_uri),
        result.endpoint,
        result.deployment,
        result.model,
        result.previous_model,
        result.gates,
        deployed.as_records(passed),
    )
    path = deployed.record(settings, record)
    for gate in result.gates:
        console.print(
            f"{gate['stage']} gate: {gate['deployment']} {gate['candidate']['requests']} requests, 5xx "
            f"{gate['candidate']['error_share']:.2%}, p95 {gate['candidate']['p95_ms']} ms; {gate['old_deployment']} "
            f"{gate['old']['requests']} requests, 5xx {gate['old']['error_share']:.2%}, p95 {gate['old']['p95_ms']} ms",
            markup=False,
        )
    console.print(f"`topicli score POSTS` now scores against it (recorded in {path})")
    return result


def _monitor(settings: Settings) -> Any:
    """Azure Monitor's client: the metric gates read it; autoscale and alerts are put through it."""
    from azure.identity import DefaultAzureCredential

    from topicli.cloud.metrics import monitor_client

    return monitor_client(settings, DefaultAzureCredential())


def _endpoint_logs(settings: Settings) -> Callable[[str], str] | None:
    """Sends an endpoint's logs to [azure] log_analytics_workspace, when it is set (`infra up` writes it)."""
    if not settings.azure.log_analytics_workspace:
        return None
    from azure.identity import DefaultAzureCredential

    from topicli.cloud.monitor import send_endpoint_logs

    credential = DefaultAzureCredential()
    return lambda endpoint: send_endpoint_logs(settings, endpoint, credential)


def _container_group(
    ctx: typer.Context, settings: Settings, repository: Path, dry_run: bool, output: Path | None
) -> None:
    """`deploy triton --aci`: Triton in an Azure container group ([infra] terraform_dir/triton, CPU)."""
    from topicli.cloud import terraform, triton_aci
    from topicli.cloud.deployed import Deployed, record

    release = triton_aci.prepare(settings, repository)
    if dry_run:
        for path in triton_aci.dry_run(release, output or triton_aci.dry_run_folder(repository)):
            console.print(f"wrote {path}")
        render.steps(console, "deploy triton would (variables validated offline)", triton_aci.steps(release))
        return
    from azure.identity import DefaultAzureCredential

    runner = terraform.runner_for(settings, release.terraform_dir, release.variables)
    with terraform_output_on_error(ctx):
        deployed = triton_aci.deploy(
            release, runner, DefaultAzureCredential(), on_step=lambda line: console.print(line, markup=False)
        )
    console.print(
        f"container group {deployed.container_group} serves {deployed.folder} of blob container {deployed.container}"
    )
    console.print(f"inference URL {deployed.inference_url} (POST /v2/models/topicli/infer)")
    record(settings, Deployed("triton", deployed.inference_url))
