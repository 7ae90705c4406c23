"""A sentence-transformers model as an ONNX graph and a ready tokenizer: how the default encoder gets to
ONNX Runtime (`encoders.shipped_encoder`, on first use) and what `topicli export onnx` ships.

The functions take the `sentence_transformers.SentenceTransformer` itself, so this module needs
nothing from the encoders that use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from topicli.method.tokens import TOKENIZER_FILE

OPSET = 18
ONNX_ENCODER_FILE = "encoder.onnx"
ENCODER_INPUTS = ("input_ids", "attention_mask")


def _encoder_module(model: Any) -> Any:
    import torch

    class PooledEncoder(torch.nn.Module):
        """The whole sentence-transformers model (its own pooling) on token ids, then unit length."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            features = self.model({"input_ids": input_ids, "attention_mask": attention_mask})
            return torch.nn.functional.normalize(features["sentence_embedding"], p=2, dim=1)

    return PooledEncoder().eval()


def export_encoder(model: Any, path: Path) -> None:
    """Tokens → pooled unit embedding as ONNX, through torch's exporter, batch and length left dynamic."""
    import warnings

    import torch

    tokens = torch.ones((2, 8), dtype=torch.int64)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on Python control flow in transformers' masks
        torch.onnx.export(
            _encoder_module(model),
            (tokens, tokens),
            str(path),
            input_names=list(ENCODER_INPUTS),
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )


def configured_tokenizer(model: Any) -> Any:
    """The encoder's `tokenizers.Tokenizer`, truncating at its max sequence length and padding to the longest."""
    from tokenizers import Tokenizer

    hf = model.tokenizer
    tokenizer = Tokenizer.from_str(hf.backend_tokenizer.to_str())
    tokenizer.enable_truncation(int(model.max_seq_length))
    tokenizer.enable_padding(pad_id=int(hf.pad_token_id), pad_token=str(hf.pad_token))
    return tokenizer


def write_encoder_files(model: Any, folder: Path) -> None:
    """The encoder's ONNX graph (`ONNX_ENCODER_FILE`) and its configured tokenizer (`TOKENIZER_FILE`) into `folder`."""
    export_encoder(model, folder / ONNX_ENCODER_FILE)
    configured_tokenizer(model).save(str(folder / TOKENIZER_FILE))
