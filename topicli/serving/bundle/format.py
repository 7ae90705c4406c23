"""The bundle's format, described once: the pydantic `Manifest` that the writer fills and the reader returns.

A bundle is a folder:

- `manifest.json`: this module's `Manifest`, as JSON;
- `arrays.safetensors`: the vectors of the run's posts and their raw topic scores (a new post's
  scores are smoothed over its nearest run posts), which of them are core points (cluster,
  radius), the cluster centres, the embeddings of the topic names' parts, each topic's floor,
  the per-run head (`head_coef`, `head_intercept`) and, for a mixed-language run, each
  language's mean vector (`ARRAY_SPECS` lists them with their dtypes and shapes);
- `cls_model/`: the classifier's `manifest.json` + `weights.safetensors`, when the scorer is cls_model;
- `encoder/`: the sentence-transformers folder, only when written with `include_encoder`.

Nothing is pickled. The manifest records the sha256 of every other file of the bundle (`files`),
and `bundle_id` digests every field that changes an answer (`answer_fields`) with those files:
two bundles that answer a post differently never share an id, and a bundle edited after it was
written is refused when it loads.

Every section is strict (exact JSON types, no NaN); keys a later writer adds are ignored, except
in `labeller`, which is `ClusterLabeller`'s keyword arguments exactly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from topicli.method.base import FEATURES, NOISE_POLICIES

FORMAT_VERSION = 3
MANIFEST = "manifest.json"
ARRAYS = "arrays.safetensors"
CLASSIFIER_FOLDER = "cls_model"
ENCODER_FOLDER = "encoder"
ID_LENGTH = 16
# Manifest fields that record how a bundle came about and change no answer: left out of the id's answer fields.
RECORD_FIELDS = frozenset(
    {"versions", "source", "settings", "metrics", "topic_keywords", "renamed", "files", "bundle_id"}
)


class Section(BaseModel):
    """A manifest section as JSON must give it: exact types (no "3" for 3, no NaN), other keys ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, frozen=True)


Text = Annotated[str, Field(min_length=1)]
Index = Annotated[int, Field(ge=0)]


class Source(Section):
    input: str = ""
    input_sha256: str = ""
    posts: int = Field(ge=1)


class EncoderChoiceRecord(Section):
    """Why the run used its encoder."""

    name: Text
    reason: Text
    languages: dict[str, float]
    uncovered_share: float = Field(ge=0, le=1)
    unserved_share: float = Field(ge=0, le=1)


class EncoderInfo(Section):
    name: Text
    identity: Text
    dimension: int = Field(ge=1)
    source: Literal["bundle", "package", "folder"]
    path: str = ""
    package: str = ""
    version: str = ""
    choice: EncoderChoiceRecord | None = None
    centred_languages: list[Text] | None  # required: the languages whose mean the run removed, or null for none


class Clustering(Section):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=True, frozen=True)  # a fixed eps scores NaN

    algorithm: Literal["dbscan", "hdbscan"]
    eps: float = 0.0
    min_samples: int = 0
    min_cluster_size: int = 0
    n_clusters: int = 0
    coverage: float = 0.0
    in_range: bool = True
    scores: dict[str, float] = {}
    core_points: int = Field(ge=0)
    join_rule: str = ""


class Adaptation(Section):
    """`ScoreAdapter.summary`: the per-run head's record; its arrays are head_coef and head_intercept."""

    rounds: int = Field(ge=1)
    weight: float = Field(gt=0)
    pseudo_labels: int = 0
    heldout_agreement: list[float] = []


class Scoring(Section):
    scorer: Literal["cosine", "cls_model"]
    template: str = ""
    neighbours: int = Field(ge=0)
    neighbour_weight: float = Field(ge=0, le=1)
    adaptation: Adaptation | None = None  # no per-run head (adaptation off)


class Labeller(Section):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)

    k: int = Field(ge=1)
    noise_policy: Literal[NOISE_POLICIES]  # type: ignore[valid-type]
    noise_distance: float = Field(ge=0)
    override_margin: float
    unmatched_below: float = Field(ge=0, le=1)
    min_confidence: float = Field(ge=0, le=1)


class Cluster(Section):
    cluster: Index
    size: Index
    topic: Index
    confidence: float
    runner_up: Index
    runner_up_confidence: float
    voters: list[Index]
    unmatched: bool = False
    keywords: list[str] = []
    topic_name: str = ""
    runner_up_name: str = ""


_N_FEATURES = len(FEATURES)


class Calibration(Section):
    """`ConfidenceCalibrator.to_dict`: P(right) = sigmoid(coef . features + intercept)."""

    kind: Literal["logistic"]
    features: list[Literal[FEATURES]] = Field(min_length=_N_FEATURES, max_length=_N_FEATURES)  # type: ignore[valid-type]
    coef: list[Annotated[float, Field(ge=0)]] = Field(min_length=_N_FEATURES, max_length=_N_FEATURES)
    intercept: float
    regularisation: float | None = None
    reliability: dict[str, Any] = {}


class Limits(Section):
    max_posts: int = Field(ge=1)
    max_chars: int = Field(ge=1)
    encoded_chars: int | None = Field(default=None, ge=1)  # the run's [input] max_chars; absent: no cut


class Rename(Section):
    """One `topicli label --rename`: old → new topic names, and unmatched clusters (as text) → the topic joined."""

    topics: dict[str, str]
    joined: dict[str, str]


class Manifest(Section):
    """What a bundle's manifest holds: the fields serving reads, and the run's record (`RECORD_FIELDS`)."""

    format_version: Literal[3]
    versions: dict[str, str]
    source: Source
    settings: dict[str, dict[str, Any]] = {}
    encoder: EncoderInfo
    clustering: Clustering
    scoring: Scoring
    labeller: Labeller
    topics: list[Text] = Field(min_length=1)
    clusters: list[Cluster]
    topic_keywords: dict[str, list[str]] = {}
    calibration: Calibration | None = None  # absent with [labelling] calibrate off: confidence stays raw
    metrics: dict[str, Any] = {}
    limits: Limits
    renamed: list[Rename] = []
    files: dict[str, Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]]  # sha256 of every file but the manifest
    bundle_id: str = Field(pattern=r"^[0-9A-Za-z._-]{1,64}$")

    def answer_fields(self) -> dict[str, Any]:
        """The fields that change how a post is answered (all but `RECORD_FIELDS`), as JSON values."""
        return self.model_dump(mode="json", exclude=set(RECORD_FIELDS))

    def digest(self) -> str:
        """The bundle id these fields and files make: every answer field, and the sha256 of every file."""
        document = json.dumps([self.answer_fields(), sorted(self.files.items())], sort_keys=True)
        return hashlib.sha256(document.encode("utf-8")).hexdigest()[:ID_LENGTH]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


@dataclass(frozen=True)
class Bundle:
    """A bundle as read (`read_bundle`): its folder, its manifest, and its arrays by name."""

    folder: Path
    manifest: Manifest
    arrays: dict[str, np.ndarray]
