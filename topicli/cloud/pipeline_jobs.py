"""Azure ML jobs past one node: the `topicli train` pipeline, and serverless Spark jobs (run, batch scoring).

**Pipeline** (`train_pipeline`): four command steps on the `[azure] compute` cluster, each
running topicli's own CLI from the staged source, so each step is the code of a local run:

    embed    topicli step embed POSTS --cache OUT          the embedding cache, a named data asset
    cluster  topicli step cluster POSTS --run OUT          (cache input)  the clustering
    label    topicli step label POSTS --run RUN -o OUT     (cache input)  posts with topics, bundle
    register topicli step register LABELLED --model OUT    the bundle, checked, as a custom_model output

The posts input is a local file (uploaded at submission) or an `azureml://` URI or a data asset
(`azureml:NAME:VERSION`), passed through untouched. Outputs are named data assets
(`<model_name>-vectors`, `-clustering`, `-labelled`) and the model output registers the bundle
as `[azure] model_name`, so `topicli deploy` finds it. The job's tags carry the lineage: posts,
topicli version, encoder, the digest of the settings the steps ran with; Azure ML links the
registered model to the job that made it.

**Spark** (`spark_job`): a serverless Spark job (`azure.ai.ml.spark`) running
`topicli/spark/job.py`: `run --engine spark` on the posts (the run folder copied to an output),
or, with a bundle input, batch scoring of every post without an endpoint.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from topicli import __version__
from topicli.cloud.azureml import (
    _conda,
    _pins,
    _validated,
    environment,
    job_folder,
    job_input,
    job_settings,
    stage_code,
    topicli_requirements,
)
from topicli.config import Settings
from topicli.errors import TopicliError

SPARK_ENTRY = "topicli/spark/job.py"
SPARK_RUNTIME = "3.4"
STEPS = ("embed", "cluster", "label", "register")


def _settings_digest(settings: Settings) -> str:
    document = {name: asdict(getattr(settings, name)) for name in ("encoder", "clustering", "labelling", "scale")}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def lineage_tags(settings: Settings, source: str, kind: str) -> dict[str, str]:
    """What a job (and the model it registers) came from."""
    return {
        "topicli.kind": kind,
        "topicli.posts": source,
        "topicli.version": __version__,
        "topicli.encoder": settings.encoder.name,
        "topicli.settings_sha256": _settings_digest(settings),
    }


def _check_compute(settings: Settings) -> None:
    if not settings.azure.compute:
        raise TopicliError("[azure] compute is not set; run `topicli infra up` or name a compute cluster there")


def check_uri(source: str) -> None:
    """Refuse an `azureml://` URI that cannot name workspace storage, before anything is sent."""
    if source.startswith("azureml://") and not (
        source.startswith("azureml://datastores/") or source.startswith("azureml://subscriptions/")
    ):
        raise TopicliError(
            f"{source} is no workspace path: write azureml://datastores/<datastore>/paths/<path> "
            "(or the long form azureml://subscriptions/.../datastores/<datastore>/paths/<path>)"
        )


def train_pipeline(settings: Settings, source: str, code: Path) -> Any:
    """The `topicli train --on azureml` pipeline job, its code staged in `code`."""
    from azure.ai.ml import Input, Output, command, dsl

    _check_compute(settings)
    check_uri(source)
    prefix, variables, setting_inputs = job_settings(settings)
    env = environment(settings, named=False)
    staged = str(stage_code(code))
    setting_refs = {key: Input(type=value.type) for key, value in setting_inputs.items()}
    cache = Input(type="uri_folder", mode="download")  # the steps add to the cache: a writable copy

    def step(name: str, arguments: str, inputs: dict[str, Any], output: str, kind: str = "uri_folder") -> Any:
        return command(
            name=name,
            display_name=f"topicli {name}",
            command=" ".join([*prefix, f"python -m topicli step {arguments}"]),
            code=staged,
            environment=env,
            environment_variables=variables,
            inputs={**inputs, **setting_refs},
            outputs={output: Output(type=kind)},
        )

    posts = Input(type="uri_file")
    embed = step("embed", "embed ${{inputs.posts}} --cache ${{outputs.vectors}}", {"posts": posts}, "vectors")
    cluster = step(
        "cluster",
        "cluster ${{inputs.posts}} --cache ${{inputs.vectors}} --run ${{outputs.run}}",
        {"posts": posts, "vectors": cache},
        "run",
    )
    label = step(
        "label",
        "label ${{inputs.posts}} --cache ${{inputs.vectors}} --run ${{inputs.run}} -o ${{outputs.labelled}}",
        {"posts": posts, "vectors": cache, "run": Input(type="uri_folder")},
        "labelled",
    )
    register = step(
        "register",
        "register ${{inputs.labelled}} --model ${{outputs.model}}",
        {"labelled": Input(type="uri_folder")},
        "model",
        "custom_model",
    )

    @dsl.pipeline(name="topicli-train", description="topicli train: embed, cluster, label, register the bundle")
    def topicli_train(posts):  # type: ignore[no-untyped-def]  # the SDK reads annotations as input types
        embedded = embed(posts=posts, **setting_inputs)
        clustered = cluster(posts=posts, vectors=embedded.outputs.vectors, **setting_inputs)
        labelled = label(posts=posts, vectors=embedded.outputs.vectors, run=clustered.outputs.run, **setting_inputs)
        registered = register(labelled=labelled.outputs.labelled, **setting_inputs)
        return {
            "vectors": embedded.outputs.vectors,
            "clustering": clustered.outputs.run,
            "labelled": labelled.outputs.labelled,
            "model": registered.outputs.model,
        }

    job = topicli_train(posts=job_input(source))
    name = settings.azure.model_name
    for output in ("vectors", "clustering", "labelled"):
        job.outputs[output].name = f"{name}-{output}"
    job.outputs["model"].name = name
    job.settings.default_compute = settings.azure.compute
    job.experiment_name = "topicli"
    job.display_name = "topicli train"
    job.tags = lineage_tags(settings, source, "train")
    return job


def spark_environment(settings: Settings) -> Any:
    """The Spark job's Python packages: topicli's pins less pyspark, which the Spark runtime brings itself."""
    from azure.ai.ml.entities import Environment

    pins = [pin for pin in _pins(topicli_requirements()) if not pin.startswith("pyspark==")]
    return Environment(
        image=settings.azure.base_image, conda_file=_conda("topicli-spark", pins), description="topicli: Spark jobs"
    )


def spark_job(settings: Settings, source: str, code: Path, bundle: str | None = None) -> Any:
    """A serverless Spark job: `run --engine spark` on the posts, or (with `bundle`) batch scoring by it."""
    from azure.ai.ml import Output, spark

    check_uri(source)
    scale = settings.scale
    _, variables, setting_inputs = job_settings(settings)
    if setting_inputs:
        names = ", ".join(setting_inputs)
        raise TopicliError(f"a Spark job takes no local files from settings ({names}); use the defaults or a pipeline")
    staged = stage_code(code)
    inputs = {"posts": job_input(source)}
    inputs["posts"].mode = "direct"  # Spark reads the storage URI itself
    outputs = {"topics": Output(type="uri_folder", mode="direct")}
    args = "--posts ${{inputs.posts}} --output ${{outputs.topics}}"
    if bundle is None:
        outputs["run"] = Output(type="uri_folder", mode="direct")
        args += " --run ${{outputs.run}}"
    else:
        inputs["bundle"] = job_input(bundle, "uri_folder")  # Spark jobs take no model inputs: a folder or data asset
        inputs["bundle"].mode = "direct"
        args += " --bundle ${{inputs.bundle}}"
    variables = {**variables, "TOPICLI_SCALE_EXECUTORS": str(scale.spark_executors)}
    conf = {f"spark.executorEnv.{k}": v for k, v in variables.items()}
    conf |= {f"spark.yarn.appMasterEnv.{k}": v for k, v in variables.items()}
    conf["spark.python.worker.reuse"] = "true"
    return spark(
        experiment_name="topicli",
        display_name="topicli score (spark)" if bundle else "topicli run (spark)",
        tags=lineage_tags(settings, source, "spark-score" if bundle else "spark-run"),
        code=str(staged),
        entry={"file": SPARK_ENTRY},
        driver_cores=4,
        driver_memory="28g",
        executor_cores=4,
        executor_memory="28g",
        executor_instances=scale.spark_executors,
        conf=conf,
        environment=spark_environment(settings),
        inputs=inputs,
        outputs=outputs,
        args=args,
        resources={"instance_type": scale.spark_instance_type, "runtime_version": SPARK_RUNTIME},
    )


def write_yaml(job: Any, path: Path) -> Any:
    """The job's YAML, loaded back by `load_job` to validate it offline; local input paths kept as given."""
    from azure.ai.ml import load_job

    path.parent.mkdir(parents=True, exist_ok=True)
    entity = job._to_job() if hasattr(job, "_to_job") else job
    entity.dump(path)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in (job.inputs or {}).items():
        given = getattr(value, "path", None) or getattr(getattr(value, "_data", None), "path", None)
        if isinstance(given, str) and key in document.get("inputs", {}) and isinstance(document["inputs"][key], dict):
            document["inputs"][key]["path"] = given
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return _validated(load_job, path)


def dry_run_train(settings: Settings, source: str) -> Path:
    """`<[output] dir>/azureml/train-pipeline.yml`, validated offline, its code beside it."""
    folder = job_folder(settings)
    path = folder / "train-pipeline.yml"
    write_yaml(train_pipeline(settings, source, folder / "code"), path)
    return path


def dry_run_spark(settings: Settings, source: str, bundle: str | None = None) -> Path:
    """`<[output] dir>/azureml/spark-run.yml` (or `spark-score.yml`), validated offline."""
    folder = job_folder(settings)
    path = folder / f"spark-{'score' if bundle else 'run'}.yml"
    write_yaml(spark_job(settings, source, folder / "code", bundle), path)
    return path


def submit_train(settings: Settings, source: str, client: Any) -> Any:
    with tempfile.TemporaryDirectory(prefix="topicli-job-code-") as code:
        return client.jobs.create_or_update(train_pipeline(settings, source, Path(code)), experiment_name="topicli")


def submit_spark(settings: Settings, source: str, client: Any, bundle: str | None = None) -> Any:
    with tempfile.TemporaryDirectory(prefix="topicli-job-code-") as code:
        return client.jobs.create_or_update(spark_job(settings, source, Path(code), bundle))
