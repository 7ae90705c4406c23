"""Serving a run's model: the bundle, the request protocol, the Azure ML scoring script, ONNX and Triton
exports, the scoring client and the local inference server. No CLI, rendering or Azure ML SDK here."""

# The modules other layers import. `score` is the scoring script that Azure ML and azmlinfsrv load
# by path, and `protocol` its request handling: neither is imported from outside.
__all__ = ["bundle", "client", "ensemble", "local_server", "onnx", "triton"]
