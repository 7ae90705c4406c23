"""Calibrated confidence: the probability that a post's topic is right, from what the labeller already has.

A run's raw confidence (its cluster's mean vote probability, or its own best smoothed probability
when it left its cluster or was noise) ranks posts well but reads as no probability: on the
development sets posts at 0.4 are right 85 % of the time. `ConfidenceCalibrator` is a logistic
(Platt) map of two per-post features:

- `logit(raw confidence)`;
- `log(p1 / p2)`, the post's own two best smoothed topic probabilities: how far its best topic
  stands above the runner-up, in the softmax's own units. It carries over between topic lists
  of 6 and 19 topics where the raw probability does not (bench/results/calibration.md).

P(right) = sigmoid(w1 x1 + w2 x2 + b), with w1, w2 >= 0 so that more confidence or a wider margin
never lowers the probability. Being plain arithmetic it runs the same in numpy and as ONNX operators
(`topicli.serving.onnx`).

One map does not fit every encoder: multilingual-e5-small's cosines crowd together, so its softmax
probabilities are flatter than MiniLM's at the same accuracy. The shipped file
(`topicli/models/calibration.json`) holds one calibrator per (encoder, scorer), each fitted on
development data only by `bench/calibration.py`, with the development reliability the report draws.
A run whose encoder and scorer have none keeps its raw confidence, with a `CalibrationWarning`.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator

from topicli.errors import TopicliError
from topicli.method.base import FEATURES

if TYPE_CHECKING:
    from topicli.serving.bundle.format import Bundle

SHIPPED_CALIBRATION = Path(__file__).parents[1] / "models" / "calibration.json"
CONFIDENCE_EPS = 1e-6  # raw confidence is clipped to [eps, 1 - eps] before its logit
MARGIN_FLOOR = 1e-12  # the runner-up's probability is at least this (one topic, or float32 underflow)


def logit_confidence(confidence: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(confidence, dtype=np.float64), CONFIDENCE_EPS, 1 - CONFIDENCE_EPS)
    return np.log(c) - np.log1p(-c)


def log_margin(probabilities: np.ndarray) -> np.ndarray:
    """log(p1 / p2) of each row of a (posts, topics) probability matrix: its best topic over the runner-up."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.shape[1] < 2:
        return np.full(len(p), -math.log(MARGIN_FLOOR))
    top = -np.partition(-p, 1, axis=1)[:, :2]
    return log_ratio(top[:, 0], top[:, 1])


def log_ratio(best: np.ndarray, second: np.ndarray) -> np.ndarray:
    """log(best / second), each floored at MARGIN_FLOOR: the margin feature from two probabilities."""
    return np.log(np.maximum(best, MARGIN_FLOOR)) - np.log(np.maximum(second, MARGIN_FLOOR))


class ConfidenceCalibrator(BaseEstimator):
    """P(topic is right) = sigmoid(coef_ . [logit(confidence), log(p1/p2)] + intercept_).

    `fit` takes the features (`features`), whether each post's topic was right, and sample weights
    (the development sets weigh equally). A coefficient the fit makes negative is fixed at 0 and the
    rest refitted, so the map is monotone in both features. `reliability` (development figures, for
    the report) is kept as given: the bench script sets it after fitting.
    """

    def __init__(self, *, regularisation: float = 1e-3) -> None:
        self.regularisation = regularisation

    @staticmethod
    def features(confidence: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """(posts, 2): logit of the raw confidence and log(p1 / p2) of each post's own smoothed probabilities."""
        return np.column_stack([logit_confidence(confidence), log_margin(probabilities)])

    def fit(self, x: np.ndarray, right: np.ndarray, sample_weight: np.ndarray | None = None) -> ConfidenceCalibrator:
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(right, dtype=bool)
        if len(np.unique(y)) < 2:
            raise TopicliError("calibration needs posts whose topic is right and posts whose topic is wrong")
        weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        weight = weight * len(y) / weight.sum()
        kept = list(range(x.shape[1]))
        while True:
            model = LogisticRegression(C=1 / self.regularisation, max_iter=2000)
            model.fit(x[:, kept], y, sample_weight=weight)
            if (model.coef_[0] >= 0).all() or not kept:
                break
            kept.pop(int(np.argmin(model.coef_[0])))
        self.coef_ = np.zeros(x.shape[1])
        self.coef_[kept] = model.coef_[0]
        self.intercept_ = float(model.intercept_[0])
        self.reliability_: dict[str, Any] = {}
        return self

    def predict_proba_right(self, x: np.ndarray) -> np.ndarray:
        """P(right) of each row of `features(...)`."""
        z = np.asarray(x, dtype=np.float64) @ self.coef_ + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def calibrate(self, confidence: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated confidence of posts with a topic: `confidence` their raw one (NaN: no topic, kept NaN),
        `probabilities` their own smoothed (posts, topics) rows."""
        confidence = np.asarray(confidence, dtype=np.float64)
        out = np.full(len(confidence), np.nan)
        has = np.isfinite(confidence)
        if has.any():
            out[has] = self.predict_proba_right(self.features(confidence[has], np.asarray(probabilities)[has]))
        return out

    def calibrate_posts(self, confidence: np.ndarray, scores: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """`calibrate` for a run's or a request's posts: `scores(rows)` gives the probability rows (a
        `TopicScores`), asked only for the posts with a topic."""
        out = np.array(confidence, dtype=np.float64)
        has = np.flatnonzero(np.isfinite(out))
        out[has] = self.calibrate(out[has], scores(has))
        return out

    def development_bins(self) -> tuple[tuple[str, tuple[tuple[float, float, int], ...]], ...]:
        """Per development set in `reliability_`, its calibrated bins as (mean confidence, accuracy, posts)."""
        try:
            return tuple(
                (
                    str(name),
                    tuple((float(b["confidence"]), float(b["accuracy"]), int(b["count"])) for b in f["calibrated"]),
                )
                for name, f in self.reliability_.get("sets", {}).items()
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise TopicliError(
                f"calibration reliability.sets is damaged ({type(error).__name__}: {error}); "
                "write it again with `python bench/calibration.py`"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "logistic",
            "features": list(FEATURES),
            "coef": [float(c) for c in self.coef_],
            "intercept": self.intercept_,
            "regularisation": self.regularisation,
            "reliability": self.reliability_,
        }

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> ConfidenceCalibrator | None:
        """The calibrator of a run's topic_confidence, from its bundle; None when the run's stayed raw."""
        calibration = bundle.manifest.calibration
        return None if calibration is None else cls.from_dict(calibration.model_dump(), str(bundle.folder))

    @classmethod
    def from_dict(cls, document: Any, source: str = "calibration") -> ConfidenceCalibrator:
        """A calibrator from `to_dict`'s form, checked field by field: anything wrong is one `TopicliError`
        naming the field."""

        def bad(field: str, why: str) -> TopicliError:
            return TopicliError(f"{source}: {field} {why}; write it again with `python bench/calibration.py`")

        if not isinstance(document, dict):
            raise bad("the calibration", f"must be a JSON object, got {type(document).__name__}")
        for field in ("kind", "features", "coef", "intercept"):
            if field not in document:
                raise bad(field, "is missing")
        if document["kind"] != "logistic":
            raise bad("kind", f"must be 'logistic', got {document['kind']!r}")
        if document["features"] != list(FEATURES):
            raise bad("features", f"must be {list(FEATURES)}, got {document['features']!r}")
        coef = document["coef"]
        if (
            not isinstance(coef, list)
            or len(coef) != len(FEATURES)
            or not all(_finite_number(c) and c >= 0 for c in coef)
        ):
            raise bad("coef", f"must be {len(FEATURES)} finite numbers >= 0, got {coef!r}")
        if not _finite_number(document["intercept"]):
            raise bad("intercept", f"must be a finite number, got {document['intercept']!r}")
        regularisation = document.get("regularisation", 1e-3)
        if not _finite_number(regularisation) or regularisation <= 0:
            raise bad("regularisation", f"must be a number > 0, got {regularisation!r}")
        reliability = document.get("reliability", {})
        if not isinstance(reliability, dict):
            raise bad("reliability", f"must be a JSON object, got {type(reliability).__name__}")
        calibrator = cls(regularisation=float(regularisation))
        calibrator.coef_ = np.array(coef, dtype=np.float64)
        calibrator.intercept_ = float(document["intercept"])
        calibrator.reliability_ = reliability
        return calibrator


class CalibrationWarning(UserWarning):
    """No calibrator ships for the run's encoder and scorer: topic_confidence stays the raw score."""


def read_calibrators(path: Path) -> dict[tuple[str, str], ConfidenceCalibrator]:
    """The calibrators of a calibration file, by (encoder name, scorer), each checked (`from_dict`)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TopicliError(
            f"{path}: not a readable calibration file ({type(error).__name__}: {error}); "
            "write it again with `python bench/calibration.py`"
        ) from None
    entries = document.get("calibrators") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise TopicliError(f"{path}: calibrators must be a list; write it again with `python bench/calibration.py`")
    found = {}
    for i, entry in enumerate(entries):
        where = f"{path}: calibrators[{i}]"
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("encoder", "scorer")):
            raise TopicliError(
                f"{where} needs encoder and scorer names; write it again with `python bench/calibration.py`"
            )
        found[entry["encoder"], entry["scorer"]] = ConfidenceCalibrator.from_dict(entry.get("calibrator"), where)
    return found


def write_calibrators(path: Path, calibrators: dict[tuple[str, str], ConfidenceCalibrator]) -> None:
    entries = [{"encoder": e, "scorer": s, "calibrator": c.to_dict()} for (e, s), c in calibrators.items()]
    Path(path).write_text(json.dumps({"calibrators": entries}, indent=1) + "\n", encoding="utf-8")


@cache
def _shipped() -> dict[tuple[str, str], ConfidenceCalibrator]:
    return read_calibrators(SHIPPED_CALIBRATION)


def shipped_calibrator(encoder: str, scorer: str) -> ConfidenceCalibrator | None:
    """The shipped calibrator of an encoder (by name) and scorer, read once per process; None when none ships
    (a calibrator fits one score scale: encoders and scorers spread their probabilities differently)."""
    return _shipped().get((encoder, scorer))


def calibrator_for(encoder: str, scorer: str) -> ConfidenceCalibrator | None:
    """`shipped_calibrator`, warning (`CalibrationWarning`) when none ships for the pair."""
    calibrator = shipped_calibrator(encoder, scorer)
    if calibrator is None:
        shipped = ", ".join(f"{e} ({s})" for e, s in _shipped())
        warnings.warn(
            f"no confidence calibrator ships for encoder {encoder} with the {scorer} scorer (only {shipped}): "
            "topic_confidence is the raw score, not a probability",
            CalibrationWarning,
            stacklevel=3,
        )
    return calibrator


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
