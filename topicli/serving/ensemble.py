"""The Triton ensemble as its clients see it: the model they call and the outputs it answers with.

`triton` writes the model repository under these names; `client` and `topicli.cloud.triton_online`
call it. Here, apart from the exporter, so that a client loads no ONNX export code to know them.
The input is `topicli.method.tokens.TEXT`, which the tokenizer model reads.
"""

ENSEMBLE = "topicli"
ENSEMBLE_OUTPUTS = {"TOPIC": "topic", "CONFIDENCE": "confidence", "CLUSTER": "cluster"}  # tensor → answer field
