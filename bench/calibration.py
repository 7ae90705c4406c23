"""Fits the shipped confidence calibrators on development data and reports their calibration, raw and calibrated.

A calibrator fits one score scale, so there is one per (encoder, scorer). Each development set is
run through a default `Pipeline` (its gold label set as the topics, with the descriptions of
bench/topics; vectors from the embedding cache; `[labelling] calibrate = false` so that the run
gives its raw confidence):

- all-MiniLM-L6-v2, with the cosine and with the cls_model scorer: TweetTopic single, train_2020 +
  train_random (6 topics); TweetTopic multi-label, dev (19 topics; a post is right when its topic
  is any of its gold); SIB-200 English, train + dev (7 topics);
- the multilingual encoders (USE v3, multilingual-e5-small), cosine: every shared SIB-200
  language's dev split + its first 101 train sentences (the split `bench/quality.py --dev` cached).

Every post with a topic gives the calibrator's features (`ConfidenceCalibrator.features`: the raw
confidence and the margin of its own best smoothed topic over the runner-up) and whether its topic
is right. The sets of a calibrator weigh equally in its fit. Figures per set, raw (the baseline,
measured in the same run) and calibrated: ECE over 10 equal-width bins, accuracy at confidence
>= 0.5 and >= 0.8 and the share of posts there; and, to show how the map carries to a set it has
not seen, the ECE of a calibrator fitted on the other sets only (leave one set out). No test file
is read.

    python bench/calibration.py

rewrites topicli/models/calibration.json (with the development reliability the report draws) and
bench/results/calibration.md.
"""

from __future__ import annotations

import resource
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from levers import DATA, sib_train_dev, tweet_multi_dev, tweet_single_train
from quality import CACHE, sib, text_posts, with_descriptions

from topicli.config import load_settings
from topicli.method.calibration import SHIPPED_CALIBRATION, ConfidenceCalibrator, write_calibrators
from topicli.method.embedding import Embedder
from topicli.method.encoders import DEFAULT_ENCODER, E5_SMALL, MULTILINGUAL
from topicli.method.evaluation import accuracy_at, expected_calibration_error, reliability_bins
from topicli.method.languages import TRAINED_ON
from topicli.method.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.5, 0.8)
TARGET_ECE = 0.05
DevSets = dict[str, tuple[list[str], list[list[str]]]]


@dataclass
class DevRun:
    """One development set's posts with a topic: raw confidence, calibrator features, whether right."""

    name: str
    confidence: np.ndarray
    features: np.ndarray
    right: np.ndarray


def english_sets() -> DevSets:
    return {
        "TweetTopic single, train (6)": tweet_single_train(),
        "TweetTopic multi-label, dev (19)": tweet_multi_dev(),
        "SIB-200 English, train+dev (7)": sib_train_dev(),
    }


def sib_sets(encoder: str) -> DevSets:
    """The dev split and first 101 train sentences (as `bench/quality.py --dev`) of every shared SIB-200 language
    the encoder was trained on (`auto` gives it no other)."""
    languages = sorted(p.name for p in (DATA / "sib200").iterdir() if p.is_dir())
    trained = [lang for lang in languages if SIB_LANGUAGES.get(lang) in TRAINED_ON[encoder]]
    return {lang: (sib(lang, "dev")["text"].tolist(), sib(lang, "dev")["gold"].tolist()) for lang in trained}


SIB_LANGUAGES = {  # SIB-200 folder -> the ISO 639-1 code py3langid and `TRAINED_ON` use
    "ben_Beng": "bn", "deu_Latn": "de", "ell_Grek": "el", "eng_Latn": "en", "fra_Latn": "fr", "heb_Hebr": "he",
    "ind_Latn": "id", "ita_Latn": "it", "mar_Deva": "mr", "nld_Latn": "nl", "pol_Latn": "pl", "por_Latn": "pt",
    "spa_Latn": "es", "swh_Latn": "sw", "tha_Thai": "th", "tur_Latn": "tr", "ukr_Cyrl": "uk", "vie_Latn": "vi",
}  # fmt: skip
# (encoder, scorer, its development sets, whether the report draws them pooled: many small sets)
GROUPS: tuple[tuple[str, str, Callable[[], DevSets], bool], ...] = (
    (DEFAULT_ENCODER, "cosine", english_sets, False),
    (DEFAULT_ENCODER, "cls_model", english_sets, False),
    (MULTILINGUAL, "cosine", lambda: sib_sets(MULTILINGUAL), True),
    (E5_SMALL, "cosine", lambda: sib_sets(E5_SMALL), True),
)


def dev_run(name: str, texts: list[str], gold: list[list[str]], encoder: str, scorer: str, tmp: Path) -> DevRun:
    """A default run of the set with its gold label set as the topics (with their bench/topics descriptions, as
    the shipped topics have), uncalibrated."""
    topics = with_descriptions(sorted({t for labels in gold for t in labels}))
    path = tmp / "calibration_posts.jsonl"
    posts = text_posts(texts, path)
    base = load_settings(None, environ={})
    settings = replace(base, labelling=replace(base.labelling, calibrate=False, scorer=scorer))
    pipeline = Pipeline(settings.method, topics=topics, embedder=Embedder(encoder, cache_dir=CACHE))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = pipeline.prepare(posts)
        result = pipeline.label(prepared, pipeline.cluster(prepared))
    frame = result.posts
    confidence = frame["topic_confidence"].to_numpy(dtype=np.float64)
    right = np.array([topic in labels for topic, labels in zip(frame["topic"], gold, strict=True)])
    has = np.flatnonzero(np.isfinite(confidence) & (prepared.text_index >= 0))
    probabilities = prepared.scores(prepared.text_index[has])
    features = ConfidenceCalibrator.features(confidence[has], probabilities)
    return DevRun(name, confidence[has], features, right[has])


def fit(runs: list[DevRun]) -> ConfidenceCalibrator:
    """The calibrator fitted on `runs`, each set weighing the same."""
    weights = np.concatenate([np.full(len(r.right), 1 / len(r.right)) for r in runs])
    x = np.vstack([r.features for r in runs])
    return ConfidenceCalibrator().fit(x, np.concatenate([r.right for r in runs]), weights)


def figures(confidence: np.ndarray, right: np.ndarray) -> dict[str, float]:
    out = {"ece": expected_calibration_error(confidence, right), "mean_confidence": float(np.mean(confidence))}
    for threshold in THRESHOLDS:
        out[f"accuracy_at_{threshold}"], out[f"share_at_{threshold}"] = accuracy_at(confidence, right, threshold)
    return out


def cell(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.3f}"


def at(f: dict[str, float], threshold: float) -> str:
    """Accuracy at the threshold and the share of posts there, as `0.912 (0.36)`."""
    return f"{cell(f[f'accuracy_at_{threshold}'])} ({f[f'share_at_{threshold}']:.2f})"


def noise_floor(calibrated: np.ndarray, draws: int = 100) -> float:
    """The ECE a perfectly calibrated map would still show on these posts: each post right with its calibrated
    probability, the mean over seeded draws. A set of 200 posts cannot be held much under it."""
    rng = np.random.default_rng(0)
    return float(np.mean([expected_calibration_error(calibrated, rng.random(len(calibrated)) < calibrated)
                          for _ in range(draws)]))  # fmt: skip


def group(encoder: str, scorer: str, sets: DevSets, pooled: bool, tmp: Path) -> tuple[ConfidenceCalibrator, list[str]]:
    """One (encoder, scorer)'s calibrator, fitted on its development sets, and its section of the results."""
    started = time.perf_counter()
    runs = [dev_run(name, texts, gold, encoder, scorer, tmp) for name, (texts, gold) in sets.items()]
    calibrator = fit(runs)
    rows, reliability, misses, noisy = [], {}, [], []
    for r in runs:
        calibrated = calibrator.predict_proba_right(r.features)
        left_out = fit([o for o in runs if o is not r]).predict_proba_right(r.features)
        raw, cal, out = figures(r.confidence, r.right), figures(calibrated, r.right), figures(left_out, r.right)
        floor = noise_floor(calibrated)
        rows.append(
            f"| {r.name} | {len(r.right)} | {r.right.mean():.3f} | {raw['mean_confidence']:.3f} | "
            f"{cal['mean_confidence']:.3f} | {raw['ece']:.3f} | **{cal['ece']:.3f}** | {floor:.3f} | "
            f"{out['ece']:.3f} | {at(raw, 0.5)} | {at(cal, 0.5)} | {at(raw, 0.8)} | {at(cal, 0.8)} |"
        )
        if cal["ece"] > max(TARGET_ECE, floor):
            misses.append(f"{r.name} ({cal['ece']:.3f})")
        elif cal["ece"] > TARGET_ECE:
            noisy.append(f"{r.name} ({cal['ece']:.3f}, floor {floor:.3f})")
        if not pooled:
            reliability[r.name] = {"posts": len(r.right), "ece_raw": raw["ece"], "ece": cal["ece"],
                                   "calibrated": reliability_bins(calibrated, r.right)}  # fmt: skip
    right = np.concatenate([r.right for r in runs])
    raw_pooled = expected_calibration_error(np.concatenate([r.confidence for r in runs]), right)
    calibrated = np.concatenate([calibrator.predict_proba_right(r.features) for r in runs])
    pooled_ece = expected_calibration_error(calibrated, right)
    if pooled:
        name = f"SIB-200 dev, {len(runs)} languages pooled"
        reliability[name] = {"posts": len(right), "ece_raw": raw_pooled, "ece": pooled_ece,
                             "calibrated": reliability_bins(calibrated, right)}  # fmt: skip
    calibrator.reliability_ = {
        "fitted_on": f"default settings, encoder {encoder}, {scorer} scorer, the gold label set as topics",
        "command": "python bench/calibration.py",
        "sets": reliability,
    }
    coef, intercept = calibrator.coef_, calibrator.intercept_
    lines = [
        f"## {encoder}, {scorer} scorer",
        "",
        f"P(right) = sigmoid({coef[0]:.4f} x logit(raw confidence) + {coef[1]:.4f} x log(p1/p2) + {intercept:.4f}); "
        f"{len(runs)} sets, {time.perf_counter() - started:.0f} s.",
        "",
        "| set | posts | accuracy | mean conf. raw | mean conf. cal. | ECE raw | ECE cal. | ECE floor | left-out ECE | "
        "acc ≥ 0.5 (share) raw | cal. | acc ≥ 0.8 (share) raw | cal. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"All {len(right)} posts pooled: ECE raw {raw_pooled:.3f}, calibrated {pooled_ece:.3f}. "
        f"ECE ≤ {TARGET_ECE} (calibrated) on every set: {'yes' if not misses and not noisy else '**no**'}. "
        + (f"Above both {TARGET_ECE} and its noise floor: {', '.join(misses)}. " if misses else "")
        + (f"Above {TARGET_ECE} but within the floor: {', '.join(noisy)}." if noisy else ""),
        "",
    ]
    print("\n".join(lines), flush=True)
    return calibrator, lines


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent: the shared data folder sits beside the clone")
    started = time.perf_counter()
    tmp = ROOT / "bench" / "results" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Calibrated confidence on development data",
        "",
        "Each set is one default `Pipeline` run (its gold label set, described, as the topics) with",
        "`[labelling] calibrate = false`; its posts with a topic are the rows. One logistic calibrator per",
        "(encoder, scorer), fitted on that pair's sets, each weighing the same (topicli/models/calibration.json).",
        "ECE: 10 equal-width bins.",
        "`acc ≥ t (share)`: accuracy of the posts with confidence ≥ t, and their share of the posts. `left-out",
        "ECE`: the same map fitted on the other sets only (how it carries to a set it has not seen). `ECE floor`:",
        "the ECE a perfectly calibrated map would still show on that many posts (each post right with its",
        "calibrated probability, mean of 100 seeded draws): on 200 posts it is about 0.06, so ECE ≤ 0.05 there is",
        "within noise. The multilingual encoders are fitted on the SIB-200 languages they were trained on",
        "(`TRAINED_ON`: `auto` gives them no other). Produced by `python bench/calibration.py`; no test file is read.",
        "",
    ]
    calibrators = {}
    for encoder, scorer, sets, pooled in GROUPS:
        calibrators[encoder, scorer], section = group(encoder, scorer, sets(), pooled, tmp)
        lines += section
    write_calibrators(SHIPPED_CALIBRATION, calibrators)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines += [f"Wall time {time.perf_counter() - started:.0f} s; peak memory {peak:.0f} MB."]
    out_path = ROOT / "bench" / "results" / "calibration.md"
    out_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {SHIPPED_CALIBRATION} and {out_path}")


if __name__ == "__main__":
    main()
