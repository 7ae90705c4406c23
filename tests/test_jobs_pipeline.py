"""`train --on azureml` as a pipeline job and the serverless Spark jobs: real azure-ai-ml entities, dumped to YAML
and loaded back by the SDK offline; the client that would send them is the only stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import EXAMPLES
from topicli.cli.app import app

AZURE = '[azure]\nsubscription_id = "00000000-0000-0000-0000-000000000000"\nresource_group = "rg"\n'
AZURE += 'workspace = "ws"\ncompute = "cpu-cluster"\nmodel_name = "captions"\n'
URI = "azureml://datastores/workspaceblobstore/paths/posts/2026-11.parquet"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "topicli.toml").write_text(AZURE, encoding="utf-8")
    return tmp_path


def dry_run(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--on", "azureml", "--dry-run"])
    assert result.exit_code == 0, result.output + result.stderr
    path = Path(result.output.split("wrote ", 1)[1].split(" ", 1)[0])
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_train_pipeline_embeds_clusters_labels_registers(workspace: Path) -> None:
    from azure.ai.ml import load_job
    from azure.ai.ml.entities import PipelineJob

    job = dry_run("train", str(EXAMPLES))
    assert isinstance(load_job(workspace / "topicli-out" / "azureml" / "train-pipeline.yml"), PipelineJob)
    steps = job["jobs"]
    commands = [step["component"]["command"].split("topicli step ")[1] for step in steps.values()]
    assert sorted(command.split()[0] for command in commands) == ["cluster", "embed", "label", "register"]
    # each step feeds the next: embed → cluster → label → register
    assert steps["clustered"]["inputs"]["vectors"]["path"] == "${{parent.jobs.embedded.outputs.vectors}}"
    assert steps["labelled"]["inputs"]["run"]["path"] == "${{parent.jobs.clustered.outputs.run}}"
    assert steps["registered"]["inputs"]["labelled"]["path"] == "${{parent.jobs.labelled.outputs.labelled}}"
    # named outputs: data assets, and the bundle as the model deploy finds
    outputs = job["outputs"]
    assert outputs["model"] == {"name": "captions", "type": "custom_model"}
    assert {outputs[k]["name"] for k in ("vectors", "clustering", "labelled")} == {
        "captions-vectors",
        "captions-clustering",
        "captions-labelled",
    }
    assert job["settings"]["default_compute"] == "azureml:cpu-cluster"
    assert job["inputs"]["posts"]["path"] == str(EXAMPLES.resolve())  # a local file: uploaded at submission
    assert job["tags"]["topicli.posts"] == str(EXAMPLES) and job["tags"]["topicli.kind"] == "train"
    code = Path(steps["embedded"]["component"]["code"])
    assert (code / "topicli" / "cli" / "train.py").is_file()


@pytest.mark.parametrize("source", [URI, "azureml:captions-november:3"])
def test_workspace_posts_pass_through_untouched(workspace: Path, source: str) -> None:
    job = dry_run("train", source)
    assert job["inputs"]["posts"]["path"] == source


def test_posts_from_the_config(workspace: Path) -> None:
    with (workspace / "topicli.toml").open("a", encoding="utf-8") as config:
        config.write(f'[input]\nposts = "{URI}"\n')
    job = dry_run("train")
    assert job["inputs"]["posts"]["path"] == URI
    assert "TOPICLI_INPUT_POSTS" not in str(job)  # given as the job's input, not as a setting


def test_spark_jobs_validate(workspace: Path) -> None:
    run = dry_run("train", URI, "--engine", "spark")
    assert run["type"] == "spark" and run["entry"]["file"] == "topicli/spark/job.py"
    assert run["inputs"]["posts"] == {"mode": "direct", "path": URI, "type": "uri_file"}
    assert set(run["outputs"]) == {"topics", "run"} and "--run ${{outputs.run}}" in run["args"]
    assert (Path(run["code"]) / "topicli" / "spark" / "job.py").is_file()
    assert "pyspark" not in str(run["environment"]) and "onnxruntime" in str(run["environment"])  # runtime's own
    score = dry_run("score", "spark", URI, "--bundle-asset", "azureml:captions-labelled:1")
    assert score["inputs"]["bundle"]["path"] == "azureml:captions-labelled:1"
    assert "--bundle ${{inputs.bundle}}" in score["args"] and score["resources"]["runtime_version"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["train", "azureml://nowhere/posts.csv"], "no workspace path"),
        (["train", "missing.csv"], "does not exist"),
        (["train"], "no posts"),
    ],
)
def test_bad_inputs_are_one_line(workspace: Path, args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, [*args, "--on", "azureml", "--dry-run"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0]


def test_submit_sends_the_pipeline_entity(workspace: Path) -> None:
    from azure.ai.ml.entities import PipelineJob

    from topicli.cloud.pipeline_jobs import submit_train
    from topicli.config import load_settings

    sent = []

    class Jobs:
        def create_or_update(self, job, **options):
            sent.append((job, options))
            return job

    class Client:
        jobs = Jobs()

    submit_train(load_settings(None), str(EXAMPLES), Client())
    (job, options), = sent  # fmt: skip
    assert isinstance(job, PipelineJob) and options == {"experiment_name": "topicli"}
    assert sorted(job.jobs) == ["clustered", "embedded", "labelled", "registered"]
