"""A stand-in for Triton Inference Server, which cannot run here: it runs a model repository as Triton would.

Configurations are parsed with Triton's own protobuf schema (`tritonclient`'s `model_config_pb2`)
and enforced: input names, data types, per-post dimensions and `max_batch_size`, `reshape`
between Triton's and the model's shapes, and ensemble steps wired by their input and output
maps. ONNX models run in onnxruntime; the Python-backend `model.py` runs through its own
`initialize`/`execute`, with `triton_python_backend_utils` stood in by the few calls it uses.
`serve` puts this behind the KServe v2 HTTP protocol (`/v2/models/NAME/infer`, `/v2/health/ready`).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

# Triton data type → (KServe v2 datatype, numpy kind accepted)
DATA_TYPES = {
    "TYPE_STRING": ("BYTES", "O"),
    "TYPE_BOOL": ("BOOL", "b"),
    "TYPE_INT64": ("INT64", "i"),
    "TYPE_FP32": ("FP32", "f"),
}


class TritonError(Exception):
    """What Triton would answer with an error status."""


class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name = name
        self._array = np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class _Response:
    def __init__(self, output_tensors: list[_Tensor], error: Exception | None = None) -> None:
        self.output_tensors = output_tensors
        self.error = error


class Request:
    """A stand-in for a Python-backend request: its input tensors by name."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self.tensors = {name: _Tensor(name, array) for name, array in tensors.items()}


def backend_utils() -> types.ModuleType:
    """`triton_python_backend_utils` as far as model.py uses it."""
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = _Tensor
    module.InferenceResponse = _Response
    module.TritonError = TritonError
    module.get_input_tensor_by_name = lambda request, name: request.tensors.get(name)
    return module


def load_python_model(folder: Path) -> Any:
    """The Python-backend model of `folder` (its `1/model.py`), initialised as Triton does."""
    sys.modules["triton_python_backend_utils"] = backend_utils()
    spec = importlib.util.spec_from_file_location(f"triton_model_{folder.name}", folder / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_repository": str(folder), "model_version": "1", "model_name": folder.name})
    return model


def read_config(folder: Path) -> Any:
    return text_format.Parse((folder / "config.pbtxt").read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def type_name(data_type: int) -> str:
    return model_config_pb2.DataType.Name(data_type)


class StandinTriton:
    """Loads every model of a repository; `infer(name, tensors)` runs one as Triton would."""

    def __init__(self, repository: Path) -> None:
        self.configs = {d.name: read_config(d) for d in sorted(repository.iterdir()) if d.is_dir()}
        self.models: dict[str, Any] = {}
        for name, config in self.configs.items():
            folder = repository / name
            if config.backend == "python":
                self.models[name] = load_python_model(folder)
            elif config.backend == "onnxruntime":
                self.models[name] = onnxruntime.InferenceSession(
                    str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
                )
            elif config.platform != "ensemble":
                raise TritonError(f"{name}: no backend this stand-in runs")

    def _check(self, model: str, tensors: dict[str, np.ndarray], specs: Any, what: str) -> None:
        config = self.configs[model]
        for spec in specs:
            if spec.name not in tensors:
                raise TritonError(f"{model}: {what} {spec.name} missing")
            array = tensors[spec.name]
            expected_kind = DATA_TYPES[type_name(spec.data_type)][1]
            if array.dtype.kind != expected_kind:
                raise TritonError(
                    f"{model}: {what} {spec.name} is {array.dtype}, config says {type_name(spec.data_type)}"
                )
            if len(array) > config.max_batch_size:
                raise TritonError(f"{model}: batch of {len(array)} over max_batch_size {config.max_batch_size}")
            dims = list(spec.dims)
            if array.ndim != len(dims) + 1 or any(
                d != -1 and d != s for d, s in zip(dims, array.shape[1:], strict=True)
            ):
                raise TritonError(f"{model}: {what} {spec.name} has shape {array.shape}, config says [batch, {dims}]")

    def infer(self, model: str, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if model not in self.configs:
            raise TritonError(f"unknown model {model!r}")
        config = self.configs[model]
        self._check(model, tensors, config.input, "input")
        if config.platform == "ensemble":
            known = dict(tensors)
            for step in config.ensemble_scheduling.step:
                produced = self.infer(step.model_name, {key: known[value] for key, value in step.input_map.items()})
                known.update({value: produced[key] for key, value in step.output_map.items()})
            outputs = {spec.name: known[spec.name] for spec in config.output}
        elif config.backend == "python":
            (response,) = self.models[model].execute([Request(tensors)])
            if response.error is not None:
                raise TritonError(str(response.error))
            outputs = {t.name(): t.as_numpy() for t in response.output_tensors}
        else:
            feeds = {}
            for spec in config.input:
                shape = list(spec.reshape.shape) if spec.HasField("reshape") else list(tensors[spec.name].shape[1:])
                feeds[spec.name] = tensors[spec.name].reshape(len(tensors[spec.name]), *shape)
            names = [spec.name for spec in config.output]
            results = self.models[model].run(names, feeds)
            outputs = {}
            for spec, result in zip(config.output, results, strict=True):
                result = np.asarray(result)
                if spec.HasField("reshape"):
                    result = result.reshape(len(result), *spec.dims)
                if result.dtype.kind == "U":
                    result = result.astype(object)
                outputs[spec.name] = result
        self._check(model, outputs, config.output, "output")
        return outputs


def _request_tensors(document: dict[str, Any]) -> dict[str, np.ndarray]:
    tensors = {}
    for item in document["inputs"]:
        if item["datatype"] == "BYTES":
            array = np.array([str(v).encode("utf-8") for v in item["data"]], dtype=object)
        else:
            array = np.array(
                item["data"], dtype={"BOOL": bool, "INT64": np.int64, "FP32": np.float32}[item["datatype"]]
            )
        tensors[item["name"]] = array.reshape(item["shape"])
    return tensors


def _answer_tensor(name: str, array: np.ndarray, data_type: str) -> dict[str, Any]:
    flat = array.ravel().tolist()
    if data_type == "BYTES":
        flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat]
    return {"name": name, "datatype": data_type, "shape": list(array.shape), "data": flat}


@contextmanager
def serve(repository: Path) -> Iterator[str]:
    """The stand-in behind KServe v2 over HTTP on 127.0.0.1; yields the base URL."""
    triton = StandinTriton(repository)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send(200 if self.path == "/v2/health/ready" else 404, {})

        def do_POST(self) -> None:
            parts = self.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "v2" or parts[1] != "models" or parts[3] != "infer":
                self._send(404, {"error": f"no route {self.path}"})
                return
            try:
                document = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    outputs = triton.infer(parts[2], _request_tensors(document))
                    specs = {s.name: s for s in triton.configs[parts[2]].output}
                wanted = [o["name"] for o in document.get("outputs", [])] or list(outputs)
                answer = [_answer_tensor(n, outputs[n], DATA_TYPES[type_name(specs[n].data_type)][0]) for n in wanted]
            except (TritonError, KeyError, ValueError) as error:
                self._send(400, {"error": str(error)})
                return
            self._send(200, {"model_name": parts[2], "model_version": "1", "outputs": answer})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
