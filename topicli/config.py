"""Settings: one TOML file, overridden by `TOPICLI_<SECTION>_<KEY>` variables and options.

Every setting is declared once, in the dataclasses below, with its type, default and a
one-line help text; `topicli init` writes the file from these declarations, and loading
checks a file against them (unknown keys and wrong types are errors, not surprises).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from topicli.errors import TopicliError

DEFAULT_CONFIG_PATH = Path("topicli.toml")


def setting(default: Any, help: str) -> Any:
    """A settings field with its one-line help text."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class InputSettings:
    """How posts are read."""

    text_column: str = setting("", "column holding the post text; empty finds caption, text, content or body")
    max_chars: int = setting(5000, "posts longer than this many characters are cut to it before encoding")


@dataclass(frozen=True)
class EncoderSettings:
    """The sentence encoder that turns posts into vectors."""

    name: str = setting(
        "auto",
        "auto (all-MiniLM-L6-v2 if 90%+ of posts are English, else multilingual), "
        "all-MiniLM-L6-v2 (exported to ONNX on first use and run by ONNX Runtime), "
        "all-MiniLM-L6-v2-int8 (int8 weights, ONNX), "
        "multilingual (USE v3) or a local sentence-transformers folder (run by PyTorch)",
    )
    batch_size: int = setting(64, "posts embedded per batch")
    cache_dir: str = setting(".topicli-cache", "folder of cached embeddings, keyed by (encoder, text)")


@dataclass(frozen=True)
class ClassifierSettings:
    """cls_model: P(text is about topic) for a (text, topic name) pair."""

    path: str = setting("", "folder of a cls_model written by train-classifier; empty uses the shipped one")
    negatives: int = setting(6, "negative topics drawn per training text (half of them the hardest)")
    hidden: int = setting(64, "hidden units of the pair network")
    epochs: int = setting(3, "training passes over the pairs")
    near_duplicate: float = setting(0.8, "label names at or above this cosine are near-duplicates, never negatives")
    held_out_labels: float = setting(0.2, "share of labels kept out of training to measure unseen topic names")
    seed: int = setting(0, "random seed for splits, negatives and initial weights")
    topic_template: str = setting("This post is about {topic}.", "how a topic name is put into words before encoding")


@dataclass(frozen=True)
class ClusteringSettings:
    """Density clustering and the search over its parameters."""

    algorithm: str = setting("dbscan", "dbscan or hdbscan")
    min_topics: int = setting(20, "fewest clusters a candidate clustering may have")
    max_topics: int = setting(100, "most clusters a candidate clustering may have")
    eps: float = setting(0.0, "DBSCAN radius in cosine distance; 0 searches it")
    min_samples: int = setting(0, "neighbours that make a core post; 0 searches it")
    eval_sample: int = setting(3000, "posts scored by cls_model to rank candidate clusterings")
    seed: int = setting(0, "random seed of the evaluation sample")


@dataclass(frozen=True)
class LabellingSettings:
    """Naming clusters from the topic list, and what happens to noise posts."""

    topics: str = setting("", "file of candidate topics, one per line; empty uses the shipped 100")
    k: int = setting(20, "posts nearest each cluster's centre that vote on its topic")
    noise_policy: str = setting(
        "classify", "noise posts: unassigned, nearest (cluster within noise_distance) or classify"
    )
    noise_distance: float = setting(0.5, "largest cosine distance to a cluster centre for the nearest policy")
    scorer: str = setting("cosine", "per-post topic scores: cosine (zero-shot on topic name parts) or cls_model")
    topic_template: str = setting("This post is about {topic}.", "how a topic name is put into words for cosine")
    floor_weight: float = setting(0.75, "share of each topic's low-percentile cosine taken off its scores (0: none)")
    floor_quantile: float = setting(0.05, "the percentile (as a fraction) of a topic's cosine scores that is its floor")
    neighbours: int = setting(0, "nearest posts whose scores are blended into a post's; 0 picks sqrt(posts)/3, 5-30")
    neighbour_weight: float = setting(0.5, "weight of the neighbours' mean scores (0 turns smoothing off)")
    override_margin: float = setting(
        0.0, "a post leaves its cluster's topic when its own best topic scores this much higher"
    )


@dataclass(frozen=True)
class OutputSettings:
    """Where results go."""

    dir: str = setting("topicli-out", "folder for the clustering, posts with topics and the topic table")
    format: str = setting("csv", "csv, parquet or jsonl when no output path is given")


@dataclass(frozen=True)
class AzureSettings:
    """The Azure ML workspace; `topicli infra up` fills these in."""

    subscription_id: str = setting("", "Azure subscription id")
    resource_group: str = setting("", "resource group of the workspace")
    workspace: str = setting("", "Azure Machine Learning workspace name")
    compute: str = setting("", "compute cluster for scale-out jobs")
    location: str = setting("", "Azure region of the workspace")
    endpoint: str = setting("topicli", "online endpoint that `topicli deploy` creates or updates")
    model_name: str = setting("topicli-bundle", "name the model bundle is registered under")
    environment_name: str = setting("topicli-serve", "name of the Azure ML environment for serving and jobs")
    base_image: str = setting(
        "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest", "Azure ML base image of that environment"
    )
    instance_type: str = setting("Standard_DS3_v2", "VM size of each online deployment instance")
    instance_count: int = setting(1, "instances of each online deployment")


@dataclass(frozen=True)
class ServingSettings:
    """The model bundle, the scoring server and the `topicli score` client."""

    max_posts: int = setting(256, "most posts one scoring request may carry (written into the bundle)")
    max_chars: int = setting(5000, "longest post, in characters, a scoring request may carry (written into the bundle)")
    port: int = setting(5001, "port of `topicli deploy local` on 127.0.0.1")
    workers: int = setting(1, "worker processes of the local inference server (each loads the model)")
    start_timeout: float = setting(180.0, "seconds `deploy local` waits for the server to answer")
    batch_size: int = setting(64, "posts per request sent by `topicli score`")
    in_flight: int = setting(4, "requests `topicli score` keeps in flight at once")
    retries: int = setting(5, "retries of a request on 429, 5xx or a connection error, with exponential backoff")
    backoff: float = setting(0.5, "seconds before the first retry; doubled each time")
    timeout: float = setting(120.0, "seconds one scoring request may take")


@dataclass(frozen=True)
class InfraSettings:
    """Inputs of the Terraform configuration in terraform/."""

    terraform_dir: str = setting("terraform", "folder of the Terraform configuration")
    prefix: str = setting("topicli", "name prefix of every resource (lowercase letters and digits, 3-12)")
    location: str = setting("westeurope", "Azure region to create the resources in")
    compute_vm_size: str = setting("Standard_DS3_v2", "VM size of the CPU compute cluster")
    compute_min_nodes: int = setting(0, "nodes the compute cluster keeps when idle; 0 costs nothing between jobs")
    compute_max_nodes: int = setting(2, "most nodes the compute cluster scales to")
    compute_idle_minutes: int = setting(15, "minutes a node stays idle before the compute cluster lets it go")


@dataclass(frozen=True)
class TritonSettings:
    """`topicli deploy triton`: Triton Inference Server in an Azure container group (terraform/triton, CPU only)."""

    image: str = setting("nvcr.io/nvidia/tritonserver:25.10-py3", "Triton Inference Server image, with its tag")
    tokenizers_version: str = setting(
        "", "tokenizers release the container installs; empty takes the one installed here"
    )
    cpu: float = setting(2.0, "CPU cores of the container, 1 to 4")
    memory_gb: float = setting(8.0, "memory of the container in GB, 2 to 16")
    dns_label: str = setting(
        "", "DNS label of the container group's public IP; empty names it <prefix>-triton-<suffix>"
    )
    instances: int = setting(1, "instances of each model that Triton runs side by side")
    max_batch_size: int = setting(64, "most posts Triton batches into one model call")


@dataclass(frozen=True)
class Settings:
    input: InputSettings = field(default_factory=InputSettings)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    clustering: ClusteringSettings = field(default_factory=ClusteringSettings)
    labelling: LabellingSettings = field(default_factory=LabellingSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    azure: AzureSettings = field(default_factory=AzureSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    infra: InfraSettings = field(default_factory=InfraSettings)
    triton: TritonSettings = field(default_factory=TritonSettings)


CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("clustering", "algorithm"): ("dbscan", "hdbscan"),
    ("labelling", "noise_policy"): ("unassigned", "nearest", "classify"),
    ("labelling", "scorer"): ("cosine", "cls_model"),
    ("output", "format"): ("csv", "parquet", "jsonl"),
}
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("labelling", "neighbour_weight"): (0.0, 1.0),
    ("labelling", "floor_weight"): (0.0, 1.0),
    ("labelling", "floor_quantile"): (0.0, 1.0),
}


def _sections() -> dict[str, type]:
    return {f.name: f.default_factory for f in fields(Settings)}  # type: ignore[misc]


def _field_types(section: type) -> dict[str, type]:
    return {f.name: type(f.default) for f in fields(section)}


def _check_value(section: str, key: str, value: Any, expected: type, origin: str) -> Any:
    where = f"{origin}: [{section}] {key}"
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise TopicliError(f"{where} must be {expected.__name__}, got {type(value).__name__} {value!r}")
    allowed = CHOICES.get((section, key))
    if allowed and value not in allowed:
        raise TopicliError(f"{where} must be one of {', '.join(allowed)}, got {value!r}")
    low, high = RANGES.get((section, key), (value, value))
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
        types = _field_types(sections[section])
        checked = {}
        for key, value in entries.items():
            if key not in types:
                raise TopicliError(f"{origin}: unknown setting [{section}] {key}; known: {', '.join(types)}")
            checked[key] = _check_value(section, key, value, types[key], origin)
        updated[section] = replace(getattr(settings, section), **checked)
    return replace(settings, **updated)


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Settings given as `TOPICLI_<SECTION>_<KEY>` environment variables."""
    environ = os.environ if environ is None else environ
    found: dict[str, dict[str, Any]] = {}
    for section, cls in _sections().items():
        for key, expected in _field_types(cls).items():
            name = f"TOPICLI_{section}_{key}".upper()
            if name in environ:
                found.setdefault(section, {})[key] = _parse_env(environ[name], expected, name)
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
    settings = _apply(settings, env_overrides(environ), "environment")
    cleaned = {s: {k: v for k, v in e.items() if v is not None} for s, e in (overrides or {}).items()}
    return _apply(settings, {s: e for s, e in cleaned.items() if e}, "option")


def _toml_value(value: Any) -> str:
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
            lines.append(f"# {f.metadata['help']}")
            lines.append(f"{f.name} = {_toml_value(f.default)}")
        lines.append("")
    return "\n".join(lines)
