"""Per-run adaptation of the topic scores: a head learnt from the posts the run is already sure of.

Zero-shot scores read a topic only through its name, and most of what they lose is per-topic
calibration: `bench/levers.py`'s ceiling (per-topic offsets fitted to gold) is far above them.
A run's own posts can teach that calibration. Self-training does it without labels:

1. each topic's most confident posts under the current scores (by margin over the runner-up,
   a share of the posts that take it) become pseudo-labelled (post, topic) pairs;
2. a multinomial logistic regression on the post vectors (the *head*) is fitted on most of
   them, the rest held out;
3. the head's log-probabilities, scaled into cosine units and weighted (below), are added to
   every post's raw scores, which are smoothed and softmaxed again as before: new scores;
4. repeated from the new scores while the head's agreement with its held-out pseudo-labels
   improves (at most `max_rounds`); the head of the best round is kept.

Two things set how much the head says, neither a constant fitted to a dataset:

- evidence: `n / (n + topics x dim)` for n pseudo-labels and a head of topics x dim weights, so a
  head fitted on a few dozen posts barely moves them (unshrunk, on 300-sentence SIB-200 sets, it
  cost up to 0.13 macro-F1) while on tens of thousands it has a large say;
- loudness: the head never spreads its scores over the topics more than the zero-shot scores do
  (mean per-post standard deviation, in logit units). multilingual-e5-small's cosines to topic
  names lie close together, and an unscaled head drowned them.

The figures are in bench/results/quality_levers_dev.md.

Every round refits the head on top of the *unadapted* raw scores, so the kept head is one
linear map: serving adds `correction(vector)` to a new post's raw scores, and the ONNX graph does
the same with MatMul, Add, LogSoftmax, Max and Mul. Everything is seeded: the same posts give the
same head.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator

from topicli.method.scoring import COSINE_SCALE

if TYPE_CHECKING:
    from topicli.serving.bundle.format import Bundle

LOG_FLOOR = float(np.log(1e-6))  # a topic the head never saw, or gives nothing, sits at this log-probability
ABSENT_INTERCEPT = -30.0  # the intercept of a topic no pseudo-label has: its log-probability ends at LOG_FLOOR
MIN_PER_TOPIC = 2  # pseudo-labels of a topic that any post takes, however few posts take it
CHUNK = 65536
SPREAD_SAMPLE = 10_000  # posts on which the scores' spread over the topics is measured (a mean, well estimated)


def pseudo_labels(probabilities: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, topic) of each topic's most confident posts: `share` of the posts whose best topic it is (at least
    MIN_PER_TOPIC), ranked by the margin of the best topic over the runner-up (ties by row)."""
    ordered = np.sort(probabilities, axis=1)
    margin = ordered[:, -1] - ordered[:, -2] if probabilities.shape[1] > 1 else ordered[:, -1]
    best = np.argmax(probabilities, axis=1)
    rows = []
    for topic in range(probabilities.shape[1]):
        mine = np.flatnonzero(best == topic)
        if len(mine):
            keep = max(MIN_PER_TOPIC, int(np.ceil(share * len(mine))))
            rows.append(mine[np.lexsort((mine, -margin[mine]))][:keep])
    chosen = np.sort(np.concatenate(rows)) if rows else np.empty(0, dtype=np.int64)
    return chosen, best[chosen]


def _spread(scores: np.ndarray) -> float:
    """The mean over posts of the standard deviation of a post's scores over the topics."""
    return float(np.mean(np.std(scores, axis=1)))


class ScoreAdapter(BaseEstimator):
    """Learns a per-run head on pseudo-labelled posts and gives the correction it adds to raw topic scores.

    Settings in `__init__`; `fit` learns `coef_` (topics, dim), `intercept_` (topics,), `weight_` (what the
    head's log-probabilities are scaled by), `rounds_` (rounds kept), `agreement_` (held-out agreement per
    round tried) and `pseudo_labels_` (pairs of the kept round), and returns `self`.
    """

    def __init__(
        self,
        *,
        share: float = 0.3,
        strength: float = 1.0,
        regularisation: float = 10.0,
        max_rounds: int = 3,
        holdout: float = 0.2,
        seed: int = 0,
    ) -> None:
        self.share = share
        self.strength = strength
        self.regularisation = regularisation
        self.max_rounds = max_rounds
        self.holdout = holdout
        self.seed = seed

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> ScoreAdapter | None:
        """The run's per-run head, from its bundle (it corrects a served post's raw scores as the run's); None
        when the run had none."""
        adaptation = bundle.manifest.scoring.adaptation
        if adaptation is None:
            return None
        adapter = cls()
        adapter.coef_, adapter.intercept_ = bundle.arrays["head_coef"], bundle.arrays["head_intercept"]
        adapter.weight_ = adaptation.weight
        return adapter

    def fit(
        self,
        vectors: np.ndarray,
        raw: np.ndarray,
        finish: Callable[[np.ndarray], np.ndarray],
        weights: np.ndarray | None = None,
    ) -> ScoreAdapter:
        """`raw`: the posts' unadapted raw scores; `finish(raw)`: their probabilities (smoothing, softmax), as the
        run computes them; `weights`: the posts each row stands for."""
        self.fit_scores(vectors, raw, finish, weights)
        return self

    def fit_scores(
        self,
        vectors: np.ndarray,
        raw: np.ndarray,
        finish: Callable[[np.ndarray], np.ndarray],
        weights: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`fit`, returning the raw scores with the kept head's correction and their probabilities (`raw` and
        `finish(raw)` when no round was kept), which the last round computed already: a run needs them next."""
        n_topics = raw.shape[1]
        self.coef_ = np.zeros((n_topics, vectors.shape[1]), dtype=np.float32)
        self.intercept_ = np.zeros(n_topics, dtype=np.float32)
        self.agreement_: list[float] = []
        self.rounds_ = 0
        self.pseudo_labels_ = 0
        self.weight_ = 0.0
        adapted, probabilities = raw, finish(raw)
        sample = np.sort(np.random.default_rng(self.seed).permutation(len(raw))[:SPREAD_SAMPLE])
        zero_shot_spread = _spread(COSINE_SCALE * raw[sample])
        for _ in range(self.max_rounds):
            rows, topics = pseudo_labels(probabilities, self.share)
            if len(np.unique(topics)) < 2:
                break
            coef, intercept, agreement, held_out = self._head(vectors, rows, topics, n_topics, weights)
            self.agreement_.append(agreement)
            if len(self.agreement_) > 1 and agreement <= self._to_beat(held_out):
                break
            self.coef_, self.intercept_ = coef, intercept
            self.rounds_ += 1
            self.pseudo_labels_ = len(rows)
            loudness = zero_shot_spread / max(_spread(self._log_probabilities(vectors[sample])), 1e-6)
            evidence = len(rows) / (len(rows) + coef.size)
            self.weight_ = self.strength * evidence * min(1.0, loudness)
            adapted = raw + self.correction(vectors)
            probabilities = finish(adapted)
        return adapted, probabilities

    def _to_beat(self, held_out: int) -> float:
        """The agreement a new round must pass: the best before it plus its standard error on `held_out` posts, so
        a round is kept for a gain the held-out share can tell from chance, not for a post or two."""
        best = max(self.agreement_[:-1])
        return best + float(np.sqrt(best * (1.0 - best) / max(held_out, 1)))

    def _head(
        self, vectors: np.ndarray, rows: np.ndarray, topics: np.ndarray, n_topics: int, weights: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, float, int]:
        """A head fitted on all but a held-out share of the pseudo-labels, its agreement with that share, and the
        share's size."""
        order = np.random.default_rng(self.seed).permutation(len(rows))
        held = np.zeros(len(rows), dtype=bool)
        held[order[: round(self.holdout * len(rows))]] = True
        if len(np.unique(topics[~held])) < 2:
            held[:] = False
        x = np.asarray(vectors[rows], dtype=np.float32)
        # imported here: serving only applies the head, and scikit-learn's linear models bring its progress bars (rich)
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=self.regularisation, max_iter=1000, tol=1e-3)  # 1e-4 took 2.5x the time
        with warnings.catch_warnings():
            # many topics over few pseudo-labels is what a small run is; scikit-learn takes it for regression
            warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
            model.fit(x[~held], topics[~held], sample_weight=None if weights is None else weights[rows][~held])
        coef = np.zeros((n_topics, x.shape[1]), dtype=np.float32)
        intercept = np.full(n_topics, ABSENT_INTERCEPT, dtype=np.float32)
        classes = model.classes_
        if len(classes) == 2:  # scikit-learn keeps one row for two classes: the second's logit against the first's
            coef[classes[1]], intercept[classes[1]] = model.coef_[0], model.intercept_[0]
            intercept[classes[0]] = 0.0
        else:
            coef[classes], intercept[classes] = model.coef_, model.intercept_
        agreement = float(np.mean(model.predict(x[held]) == topics[held])) if held.any() else 1.0
        return coef, intercept, agreement, int(held.sum())

    def correction(self, vectors: np.ndarray) -> np.ndarray:
        """What the head adds to raw scores: `weight_` x its log-probabilities (floored), in cosine units."""
        out = self._log_probabilities(vectors)
        out *= self.weight_ / COSINE_SCALE
        return out

    def _log_probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """The head's log-probability of every topic, floored at LOG_FLOOR, a block of posts at a time."""
        out = np.empty((len(vectors), len(self.intercept_)), dtype=np.float32)
        for start in range(0, len(vectors), CHUNK):
            logits = np.asarray(vectors[start : start + CHUNK], dtype=np.float32) @ self.coef_.T + self.intercept_
            logits -= logits.max(axis=1, keepdims=True)
            log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            out[start : start + CHUNK] = np.maximum(log_probabilities, LOG_FLOOR)
        return out

    def summary(self) -> dict[str, Any]:
        """What the manifest records of the adaptation."""
        return {
            "rounds": self.rounds_,
            "pseudo_labels": self.pseudo_labels_,
            "heldout_agreement": [round(a, 4) for a in self.agreement_],
            "weight": self.weight_,
        }
