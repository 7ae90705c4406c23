"""Serving a run's model: the bundle, the request protocol, the Azure ML scoring script, ONNX and Triton
exports, the scoring client and the local inference server. No CLI, rendering or Azure ML SDK here."""
