"""cls_model: P(a text is about a topic), from the text's and the topic name's embeddings.

The topic enters only through the embedding of its name, and the pair features are
symmetric in the two vectors (their product, their absolute difference and their cosine),
so the model scores topic names it never saw in training. It is a one-hidden-layer network,
trained with torch and saved as safetensors + JSON; prediction is plain numpy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.base import BaseEstimator

from topicli.errors import TopicliError
from topicli.io import atomic_path

FORMAT_VERSION = 1
SHIPPED_MODEL = Path(__file__).parents[1] / "models" / "cls_model"


def pair_features(texts: np.ndarray, topics: np.ndarray) -> np.ndarray:
    """Features of row-aligned (text, topic) unit vectors: product, |difference|, cosine."""
    product = texts * topics
    return np.hstack([product, product.sum(axis=1, keepdims=True)]).astype(np.float32)


def _residual_network(n_features: int, hidden: int):
    import torch

    class ResidualNetwork(torch.nn.Module):
        """Scaled cosine plus a learned correction that starts at zero.

        Starting from cosine zero-shot and learning only what the pairs teach on top of it
        keeps the model from forgetting how to read topic names it never saw.
        """

        def __init__(self) -> None:
            super().__init__()
            self.hidden = torch.nn.Linear(n_features, hidden)
            self.output = torch.nn.Linear(hidden, 1)
            torch.nn.init.zeros_(self.output.weight)
            torch.nn.init.zeros_(self.output.bias)
            self.cosine_scale = torch.nn.Parameter(torch.tensor(10.0))
            self.cosine_bias = torch.nn.Parameter(torch.tensor(-4.0))

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            correction = self.output(torch.relu(self.hidden(features))).squeeze(1)
            return correction + self.cosine_scale * features[:, -1] + self.cosine_bias

    return ResidualNetwork()


def _blocks(n_texts: int, n_topics: int, max_pairs: int) -> Iterator[slice]:
    step = max(1, max_pairs // max(n_topics, 1))
    for start in range(0, n_texts, step):
        yield slice(start, min(start + step, n_texts))


class PairClassifier(BaseEstimator):
    """Binary classifier on (text, topic name) pairs.

    Parameters are set in `__init__`; `fit` learns `weights_` (a dict of arrays) and
    returns `self`; `predict_proba` scores every text against every topic.
    """

    def __init__(
        self,
        *,
        hidden: int = 64,
        epochs: int = 3,
        learning_rate: float = 1e-3,
        batch_size: int = 512,
        weight_decay: float = 1e-5,
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.seed = seed

    def fit(self, text_vectors: np.ndarray, topic_vectors: np.ndarray, targets: np.ndarray) -> PairClassifier:
        """Learn from row-aligned pairs: `targets[i]` is 1 when text i is about topic i."""
        import torch

        torch.manual_seed(self.seed)
        features = torch.from_numpy(pair_features(text_vectors, topic_vectors))
        labels = torch.from_numpy(np.asarray(targets, dtype=np.float32))
        network = _residual_network(features.shape[1], self.hidden)
        optimiser = torch.optim.AdamW(network.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        positive_weight = (labels.numel() - labels.sum()) / labels.sum().clamp(min=1)
        loss_function = torch.nn.BCEWithLogitsLoss(pos_weight=positive_weight)
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            order = torch.randperm(len(labels), generator=generator)
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                optimiser.zero_grad()
                loss = loss_function(network(features[batch]), labels[batch])
                loss.backward()
                optimiser.step()
        self.weights_ = {name: value.detach().numpy().copy() for name, value in network.state_dict().items()}
        return self

    def decision_function(self, text_vectors: np.ndarray, topic_vectors: np.ndarray) -> np.ndarray:
        """Logits for row-aligned pairs."""
        w = self.weights_
        features = pair_features(text_vectors, topic_vectors)
        hidden = np.maximum(features @ w["hidden.weight"].T + w["hidden.bias"], 0)
        correction = (hidden @ w["output.weight"].T + w["output.bias"])[:, 0]
        return correction + w["cosine_scale"] * features[:, -1] + w["cosine_bias"]

    def predict_proba(self, text_vectors: np.ndarray, topic_vectors: np.ndarray, max_pairs: int = 65536) -> np.ndarray:
        """P(text i is about topic j) for every text and every topic: shape (texts, topics)."""
        n_texts, n_topics = len(text_vectors), len(topic_vectors)
        out = np.empty((n_texts, n_topics), dtype=np.float32)
        for rows in _blocks(n_texts, n_topics, max_pairs):
            block = text_vectors[rows]
            texts = np.repeat(block, n_topics, axis=0)
            topics = np.tile(topic_vectors, (len(block), 1))
            logits = self.decision_function(texts, topics).reshape(len(block), n_topics)
            out[rows] = 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))
        return out


def save_classifier(model: PairClassifier, folder: Path, card: dict[str, Any]) -> None:
    """`weights.safetensors` and `manifest.json` (settings, encoder, template, metrics); no pickle."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "weights.safetensors") as temp:
        save_file({k: np.ascontiguousarray(v) for k, v in model.weights_.items()}, str(temp))
    document = {"format_version": FORMAT_VERSION, "settings": model.get_params(), **card}
    with atomic_path(folder / "manifest.json") as temp:
        temp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_classifier(folder: Path | str = "") -> tuple[PairClassifier, dict[str, Any]]:
    """The classifier in `folder` (the shipped one when empty) and its card (its `manifest.json`)."""
    folder = Path(folder) if folder else SHIPPED_MODEL
    manifest_file, weights_file = folder / "manifest.json", folder / "weights.safetensors"
    if not manifest_file.is_file() or not weights_file.is_file():
        raise TopicliError(
            f"{folder} is not a cls_model folder (needs manifest.json and weights.safetensors); "
            "write one with `topicli train-classifier` or clear [classifier] path"
        )
    try:
        card = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise TopicliError(
            f"{manifest_file} is not readable JSON ({type(error).__name__}); "
            "write the cls_model again with `topicli train-classifier`"
        ) from None
    if not isinstance(card, dict):
        raise TopicliError(
            f"{manifest_file} is not a JSON object; write the cls_model again with `topicli train-classifier`"
        )
    if card.get("format_version") != FORMAT_VERSION:
        raise TopicliError(
            f"{folder}: cls_model format {card.get('format_version')} but this topicli reads {FORMAT_VERSION}; "
            "retrain it with `topicli train-classifier`"
        )
    try:
        model = PairClassifier(**card["settings"])
    except (KeyError, TypeError) as error:
        raise TopicliError(
            f"{manifest_file}: its settings are missing or not {PairClassifier.__name__}'s ({error}); "
            "write the cls_model again with `topicli train-classifier`"
        ) from None
    try:
        model.weights_ = load_file(str(weights_file))
    except Exception as error:  # safetensors raises its own SafetensorError, or OSError
        raise TopicliError(
            f"{weights_file} is not a readable safetensors file ({' '.join(str(error).split())}); "
            "write the cls_model again with `topicli train-classifier`"
        ) from None
    return model, card
