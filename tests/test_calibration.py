"""Calibrated confidence: the shipped calibrator, its file, the ECE helpers, and a run's topic_confidence."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from topicli.config import load_settings
from topicli.errors import TopicliError
from topicli.io import Posts
from topicli.method.calibration import (
    SHIPPED_CALIBRATION,
    CalibrationWarning,
    ConfidenceCalibrator,
    calibrator_for,
    log_margin,
    logit_confidence,
    read_calibrators,
    shipped_calibrator,
    write_calibrators,
)
from topicli.method.embedding import Embedder
from topicli.method.encoders import DEFAULT_ENCODER, E5_SMALL
from topicli.method.evaluation import accuracy_at, expected_calibration_error, reliability_bins
from topicli.method.pipeline import Pipeline

from .conftest import needs_data


def test_the_shipped_calibrators_are_monotone_and_probabilities() -> None:
    shipped = read_calibrators(SHIPPED_CALIBRATION)
    assert {(DEFAULT_ENCODER, "cosine"), (DEFAULT_ENCODER, "cls_model"), (E5_SMALL, "cosine")} <= set(shipped)
    confidence = np.linspace(0.0, 1.0, 41)
    margins = np.array([0.0, 0.1, 1.0, 3.0, 10.0, 40.0])
    logits = logit_confidence(confidence)
    for key, calibrator in shipped.items():
        grid = np.array([[calibrator.predict_proba_right(np.array([[x, m]]))[0] for m in margins] for x in logits])
        assert ((grid >= 0) & (grid <= 1)).all(), key
        assert (np.diff(grid, axis=0) >= 0).all() and (np.diff(grid, axis=1) >= 0).all(), key
        # a tie between two topics with no confidence is at most about a coin flip; a sure post is nearly surely right
        assert grid[0, 0] < 0.55 and grid[-1, -1] > 0.9, f"{key}: the map runs from a coin flip to a sure thing"
        sets = calibrator.development_bins()
        assert sets and all(bins for _, bins in sets), f"{key}: the file carries the development reliability"


def test_an_encoder_without_a_calibrator_keeps_raw_confidence_and_warns() -> None:
    assert shipped_calibrator(DEFAULT_ENCODER, "cosine") is not None
    with pytest.warns(CalibrationWarning, match="no confidence calibrator ships for encoder /models/mine"):
        assert calibrator_for("/models/mine", "cosine") is None


def test_a_margin_reads_the_two_best_topics() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.25, 0.5, 0.25], [1.0, 0.0, 0.0]])
    margins = log_margin(probabilities)
    np.testing.assert_allclose(margins[:2], [np.log(0.7 / 0.2), np.log(2.0)])
    assert np.isfinite(margins[2]) and margins[2] > 20  # a runner-up of 0 is floored, not infinite


def test_fit_keeps_the_map_monotone_and_round_trips_through_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=4000), rng.normal(size=4000)])
    right = rng.random(4000) < 1 / (1 + np.exp(-(1.5 * x[:, 0] - 0.8 * x[:, 1])))  # the margin is made to hurt
    calibrator = ConfidenceCalibrator().fit(x, right)
    assert calibrator.coef_[0] > 1.0 and calibrator.coef_[1] == 0.0, "a negative weight is dropped, not kept"
    write_calibrators(tmp_path / "calibration.json", {("enc", "cosine"): calibrator})
    loaded = read_calibrators(tmp_path / "calibration.json")[("enc", "cosine")]
    np.testing.assert_array_equal(loaded.predict_proba_right(x), calibrator.predict_proba_right(x))
    assert loaded.get_params() == calibrator.get_params()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"coef": None}, "coef is missing"),
        ({"coef": [0.3, -1.0]}, "coef must be 2 finite numbers >= 0"),
        ({"intercept": "0.1"}, "intercept must be a finite number"),
        ({"features": ["log_margin", "logit_confidence"]}, "features must be"),
        ({"kind": "isotonic"}, "kind must be 'logistic'"),
        ({"reliability": []}, "reliability must be a JSON object"),
    ],
)
def test_a_bad_calibration_file_is_refused_naming_the_field(tmp_path: Path, change: dict, field: str) -> None:
    document = json.loads(SHIPPED_CALIBRATION.read_text())
    entry = document["calibrators"][1]["calibrator"]
    for key, value in change.items():
        if value is None:
            del entry[key]
        else:
            entry[key] = value
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(document))
    with pytest.raises(TopicliError, match=field) as error:
        read_calibrators(path)
    assert len(str(error.value).splitlines()) == 1 and f"{path}: calibrators[1]" in str(error.value)


def test_a_calibration_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text("{not json")
    with pytest.raises(TopicliError, match="not a readable calibration file"):
        read_calibrators(path)
    path.write_text(json.dumps({"calibrators": [{"encoder": "x"}]}))
    with pytest.raises(TopicliError, match=r"calibrators\[0\] needs encoder and scorer names"):
        read_calibrators(path)


def test_ece_and_accuracy_at_a_threshold_by_hand() -> None:
    confidence = np.array([0.15, 0.15, 0.85, 0.85, 0.95, np.nan])
    right = np.array([True, False, True, True, False, True])
    # bins 0.1-0.2: confidence 0.15, accuracy 0.5 (2 posts); 0.8-0.9: 0.85, 1.0 (2); 0.9-1.0: 0.95, 0.0 (1)
    assert expected_calibration_error(confidence, right) == pytest.approx(0.4 * 0.35 + 0.4 * 0.15 + 0.2 * 0.95)
    assert [(b["lower"], b["count"], b["accuracy"]) for b in reliability_bins(confidence, right)] == [
        (0.1, 2, 0.5),
        (0.8, 2, 1.0),
        (0.9, 1, 0.0),
    ]
    assert accuracy_at(confidence, right, 0.8) == pytest.approx((2 / 3, 3 / 5))
    accuracy, share = accuracy_at(confidence, right, 0.99)
    assert np.isnan(accuracy) and share == 0.0
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([True, False])) == 0.0  # edges fall in a bin


def test_a_runs_topic_confidence_is_the_calibrated_raw_confidence(tmp_path: Path, embedder: Embedder) -> None:
    frame = pd.read_csv(needs_data("eval", "sib200", "eng_Latn", "dev.tsv"), sep="\t", dtype=str)
    path = tmp_path / "posts.csv"
    frame[["text"]].to_csv(path, index=False)
    posts = Posts(frame=pd.read_csv(path, dtype=str), text_column="text", path=path)
    topics = sorted(set(frame["category"]))
    shown = {"TOPICLI_LABELLING_MIN_CONFIDENCE": "0", "TOPICLI_LABELLING_UNMATCHED_BELOW": "0"}
    settings = load_settings(None, environ=shown)  # every topic shown, as without calibration
    assert settings.labelling.calibrate, "calibrated confidence is the default"
    pipeline = Pipeline(settings.method, topics=topics, embedder=embedder)
    prepared = pipeline.prepare(posts)
    clustering = pipeline.cluster(prepared)
    calibrated = pipeline.label(prepared, clustering).posts
    raw_settings = replace(settings, labelling=replace(settings.labelling, calibrate=False))
    raw = Pipeline(raw_settings.method, topics=topics, embedder=embedder).label(prepared, clustering).posts
    assert (calibrated["topic"] == raw["topic"]).all() and (calibrated["cluster"] == raw["cluster"]).all()
    raw_confidence = raw["topic_confidence"].to_numpy(dtype=float)
    calibrator = shipped_calibrator(prepared.encoder_name, "cosine")
    assert calibrator is not None
    expected = calibrator.calibrate(raw_confidence, prepared.scores(prepared.text_index))
    # both columns are written to 4 decimals: the raw one's rounding moves the calibrated value by less than that
    np.testing.assert_allclose(calibrated["topic_confidence"].to_numpy(dtype=float), expected, atol=1.5e-4)
    assert np.abs(expected - raw_confidence).max() > 0.1, "calibration moves the confidence"
