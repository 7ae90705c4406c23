"""What topicli shows and what it holds back: the settings behind an honest feed (issue 29), chosen on
development data only.

    python bench/honest_feed.py

For each development set (instagram_dev, TweetTopic single train, TweetTopic multi dev, SIB-200 English
dev) the default run is prepared and clustered once, then labelled again for every setting:

- `[labelling] min_confidence` t: a post whose calibrated confidence is below t is shown with no topic.
  The curve gives, per t, the accuracy of the posts shown (right: the topic is one of the post's gold
  topics) and the share of posts shown;
- `[labelling] unmatched_below` u: a cluster whose calibrated chance of being right is below u is flagged
  "no topic fits". On instagram_dev, whose none-fits posts are marked by hand, the flag's precision (flagged
  posts that are none-fits) and recall (none-fits posts flagged).

instagram_dev's accuracy is over the posts a topic fits (n = 367, as its README says); its none-fits posts
count in the share shown. Writes bench/results/honest_feed.md.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import DATA, ROOT, described, labelled, multi_dev, settings_for, sib, text_posts

from topicli.config import Settings
from topicli.method.pipeline import Pipeline
from topicli.method.topics import read_topics

RESULTS = ROOT / "bench" / "results" / "honest_feed.md"
THRESHOLDS = (0.0, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8)
UNMATCHED = (0.0, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6)
DEFAULT_MIN_CONFIDENCE = 0.5


def instagram_dev() -> pd.DataFrame:
    """The 400 hand-labelled captions: text, gold (acceptable topics; empty for none-fits), none_fits."""
    folder = DATA / "instagram_dev"
    captions = {r["id"]: r["caption"] for r in map(json.loads, (folder / "captions.jsonl").open(encoding="utf-8"))}
    labels = [json.loads(line) for line in (folder / "labels.jsonl").open(encoding="utf-8")]
    return pd.DataFrame(
        {
            "text": [captions[r["id"]] for r in labels],
            "gold": [r["topics"] for r in labels],
            "none_fits": [bool(r["none_fits"]) for r in labels],
            "language": [r["lang"] for r in labels],
        }
    )


def sets() -> list[tuple[str, pd.DataFrame, list[str]]]:
    """(name, posts, candidate topics): the shipped 100 for instagram_dev, each label set (with descriptions)
    for the others, as bench/quality.py's default row reads them."""
    out = [("instagram_dev (100 topics)", instagram_dev(), read_topics(""))]
    for name, frame in (
        ("TweetTopic single, train (6)", labelled(("train_2020.single.json", "train_random.single.json"))),
        ("TweetTopic multi, dev (19)", multi_dev()),
        ("SIB-200 English, dev (7)", sib("eng_Latn", "dev")),
    ):
        out.append((name, frame.assign(none_fits=False), described(frame)[1]))
    return out


def labelled_with(settings: Settings, topics: list[str], frame: pd.DataFrame, tmp: Path, grid: dict) -> dict:
    """The run's posts labelled once per setting in `grid` ({row: labelling overrides}): topic and confidence."""
    path = tmp / "posts.jsonl"
    posts = text_posts(frame["text"], path)
    pipeline = Pipeline(settings.method, topics=topics)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = pipeline.prepare(posts)
        clustering = pipeline.cluster(prepared)
        out = {}
        for row, changes in grid.items():
            method = replace(settings.method, labelling=replace(settings.labelling, **changes))
            result = Pipeline(method, topics=topics).label(prepared, clustering)
            out[row] = result.posts
    return out


def figures(frame: pd.DataFrame, posts: pd.DataFrame) -> dict[str, float]:
    """Accuracy of the posts shown (over posts a topic fits), share shown (of all posts), and the none-fits
    flag's precision and recall (posts with no topic shown and a suggestion, against none_fits)."""
    shown = (posts["topic"] != "").to_numpy()
    fits = ~frame["none_fits"].to_numpy()
    right = np.array([t in g for t, g in zip(posts["topic"], frame["gold"], strict=True)])
    judged = shown & fits
    flagged = ~shown
    none_fits = frame["none_fits"].to_numpy()
    return {
        "accuracy_shown": float(right[judged].mean()) if judged.any() else float("nan"),
        "share_shown": float(shown.mean()),
        "accuracy_all": float(right[fits].mean()),
        "flag_precision": float((flagged & none_fits).sum() / max(flagged.sum(), 1)),
        "flag_recall": float((flagged & none_fits).sum() / max(none_fits.sum(), 1)),
    }


def shown(f: dict[str, float]) -> str:
    return f"{f['accuracy_shown']:.3f} / {f['share_shown']:.0%}"


def main() -> None:
    import tempfile

    started = time.perf_counter()
    grid = {("t", t): {"min_confidence": t, "unmatched_below": 0.0} for t in THRESHOLDS}
    grid |= {("u", u): {"min_confidence": 0.0, "unmatched_below": u} for u in UNMATCHED}
    grid |= {("d", u): {"min_confidence": DEFAULT_MIN_CONFIDENCE, "unmatched_below": u} for u in UNMATCHED}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, frame, topics in sets():
            posts = labelled_with(settings_for("auto"), topics, frame, Path(tmp), grid)
            results[name] = {row: figures(frame, p) for row, p in posts.items()}
            print(f"{name}: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    names = list(results)
    lines = [
        "# What topicli shows and what it holds back (development sets)",
        "",
        "`python bench/honest_feed.py`: the default run (auto encoder, calibrated confidence) on each development set,",
        "labelled again per setting. Accuracy: the topic shown is one of the post's gold topics (instagram_dev: over",
        "the 367 posts a topic fits). Share: posts shown with a topic, of all posts.",
        "",
        "## `[labelling] min_confidence`: accuracy of the posts shown / share shown",
        "",
        "| min_confidence | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for t in THRESHOLDS:
        cells = [shown(results[n][("t", t)]) for n in names]
        lines.append(f"| {t:g} | " + " | ".join(cells) + " |")
    first = names[0]
    lines += [
        "",
        '## `[labelling] unmatched_below`: clusters flagged "no topic fits" (calibrated)',
        "",
        f"On {first}, whose none-fits posts are marked by hand: the flag's precision and recall over posts, and",
        "accuracy of the posts shown / share shown on every set.",
        "",
        "| unmatched_below | flag precision | flag recall | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for u in UNMATCHED:
        own = results[first][("u", u)]
        cells = [shown(results[n][("u", u)]) for n in names]
        lines.append(f"| {u:g} | {own['flag_precision']:.2f} | {own['flag_recall']:.2f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## Both: `min_confidence = {DEFAULT_MIN_CONFIDENCE:g}` with each `unmatched_below`",
        "",
        "| unmatched_below | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for u in UNMATCHED:
        lines.append(f"| {u:g} | " + " | ".join(shown(results[n][("d", u)]) for n in names) + " |")
    lines += ["", f"{time.perf_counter() - started:.0f} s on this machine (2 cores).", ""]
    text = "\n".join(lines)
    print(text)
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
