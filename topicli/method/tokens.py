"""Tokenising posts for the ONNX encoders: raw text → token ids, attention mask and has-text flag.

The ONNX encoders (`topicli.method.encoders`) tokenise with `tokenize`, and the same file is
Triton's Python-backend tokenizer model: `topicli export triton` copies it as
`tokenizer/1/model.py` beside the encoder's `tokenizer.json` (truncation and padding already
set). Inside Triton it needs only numpy and the `tokenizers` package, not topicli, so the
served tokenisation and the local one are the same code. `triton_python_backend_utils`
exists only inside Triton's Python backend, so it is imported where it is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TEXT = "TEXT"
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class TokenBatch:
    input_ids: np.ndarray  # int64 (posts, tokens)
    attention_mask: np.ndarray  # int64 (posts, tokens)
    valid: np.ndarray  # bool (posts,): the post has text; an empty post gets no topic


def tokenize(tokenizer: Any, texts: Sequence[str]) -> TokenBatch:
    """The encoder's inputs for a batch of texts, padded to the longest."""
    encoded = tokenizer.encode_batch(list(texts))
    return TokenBatch(
        np.array([e.ids for e in encoded], dtype=np.int64).reshape(len(texts), -1),
        np.array([e.attention_mask for e in encoded], dtype=np.int64).reshape(len(texts), -1),
        np.array([bool(text.strip()) for text in texts], dtype=bool),
    )


class TritonPythonModel:
    """Triton's Python-backend interface: `initialize` once per instance, `execute` per list of requests."""

    def initialize(self, args: dict[str, str]) -> None:
        from tokenizers import Tokenizer

        folder = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, TEXT).as_numpy()
            try:
                texts = [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in raw.ravel()]
            except UnicodeDecodeError as error:
                message = f"{TEXT} must be UTF-8 text ({error})"
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message)))
                continue
            batch = tokenize(self.tokenizer, texts)
            tensors = [
                pb_utils.Tensor("input_ids", batch.input_ids),
                pb_utils.Tensor("attention_mask", batch.attention_mask),
                pb_utils.Tensor("valid", batch.valid.reshape(len(texts), 1)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
