"""Every table the CLI prints fits an 80-column terminal, cuts no word, and shows more at 160 columns."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.cells import cell_len
from rich.console import Console

from topicli.cli import render
from topicli.method.base import Candidate
from topicli.method.records import ClusterRun
from topicli.method.timeline import over_time

TOPICS = [
    ("Bodybuilding & Weightlifting", "topic", 41, "deadlift, squat, #gymlife, bench, protein, reps, gains, pr"),
    ("Technology & Gadgets", "topic", 23, "phone, laptop, battery, #tech, keyboard, charger, screen, apps"),
    ("Music & Concerts", "topic", 12, "song, album, concert, #vinylcollection, band, tour, stage, setlist"),
    ("Cats", "topic", 3, "cat, purring, #catsofinstagram"),
    ("shabbat · jerusalem · #israel", "unmatched", 9, "shabbat, jerusalem, #israel, challah, torah, kotel"),
]
LONG_EXAMPLE = (
    "Finally hit a 200 kg deadlift after eighteen months of grinding, thank you to everyone at the gym who "
    "kept me honest on the bad days and loaded the plates when I could not"
)


def topic_table() -> pd.DataFrame:
    rows = []
    for i, (topic, kind, size, words) in enumerate(TOPICS):
        rows.append(
            {
                "topic": topic, "kind": kind, "clusters": str(i), "size": size, "from_noise": size // 4,
                "confidence": 0.3 + i / 10, "runner_up": "Fitness & Workouts", "keywords": words,
                "example_1": f"{LONG_EXAMPLE} ({topic})", "example_2": "", "example_3": "",
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def printed(width: int, draw: object, *args: object) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    draw(console, *args)  # type: ignore[operator]
    return console.file.getvalue()  # type: ignore[attr-defined]


def fits(text: str, width: int) -> None:
    widths = [cell_len(line) for line in text.splitlines()]
    assert widths and max(widths) <= width, f"a line of {max(widths)} columns at {width}:\n{text}"


def words(text: str) -> set[str]:
    return set(re.findall(r"[#\w][\w'().-]*", text))


def test_the_topic_table_fits_80_columns_without_cutting_a_name_or_keyword() -> None:
    table = topic_table()
    text = printed(80, render.topic_table, table)
    fits(text, 80)
    shown = words(text)
    for topic, _kind, size, keywords in TOPICS:
        assert words(topic) <= shown, topic
        assert words(keywords) <= shown, keywords
        assert str(size) in shown
    header = text.split("\n")[1:4]
    assert "keywords" in " ".join(header) and "example" not in text.split("topics your list")[0]
    assert "topics your list may be missing" in text and "closest topic" in text
    assert "…" not in text.split("topics your list")[0], "nothing cut in the topic table at 80 columns"


def test_a_wider_terminal_shows_runner_up_noise_and_an_example() -> None:
    table = topic_table()
    narrow, wide = printed(80, render.topic_table, table), printed(160, render.topic_table, table)
    fits(wide, 160)
    for column in ("from noise", "runner-up", "example"):
        assert column not in narrow.split("topics your list")[0] and column in wide, column
    assert LONG_EXAMPLE[:60] in " ".join(wide.split()), "the example is shown, cut only at the table's edge"
    assert "Fitness & Workouts" in wide


def test_the_unmatched_clusters_show_size_keywords_and_an_example() -> None:
    table = topic_table()
    for width in (80, 160):
        text = printed(width, render.topic_table, table).split("topics your list may be missing")[1]
        fits(text, width)
        assert words("shabbat, jerusalem, #israel, challah, torah, kotel") <= words(text)
        assert "9" in words(text) and "Finally" in text and "Fitness & Workouts" in " ".join(text.split())


def test_topics_over_time_list_the_growing_and_shrinking() -> None:
    days = np.arange(40) % 20
    frame = pd.DataFrame({"date": [f"2026-01-{1 + d:02d}" for d in days]})
    topics = pd.Series(np.where(days < 10, "Skiing & Snowboarding", "Beach & Summer"))
    counts = over_time(frame, topics)
    text = printed(80, render.topic_table, topic_table(), counts)
    fits(text, 80)
    after = text.split("topics over time")[1]
    assert after.index("grows") < after.index("Beach") < after.index("shrinks") < after.index("Skiing")
    assert "change [95%]" in after and "Fisher's exact test" in after and "Holm-adjusted" in after


def test_topics_over_time_say_so_when_nothing_beats_chance() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"date": [f"2026-01-{1 + d:02d}" for d in rng.integers(0, 28, 200)]})
    topics = pd.Series(rng.choice(["Skiing & Snowboarding", "Beach & Summer", "Cats"], 200))
    text = printed(80, render.topic_table, topic_table(), over_time(frame, topics))
    fits(text, 80)
    after = " ".join(text.split("topics over time")[1].split())
    assert "no topic grows or shrinks beyond chance" in after and "over 3 topics" in after
    assert "grows " not in after.replace("grows or", "")


def test_the_candidates_table_fits_80_columns_with_every_figure() -> None:
    candidates = [
        Candidate("dbscan", 0.2125 + i / 100, 2 + i, 0, 20 + i, 0.4 + i / 50, True,
                  {"score": 0.31 + i / 100, "agreement": 0.77, "topics_used": 18 + i})
        for i in range(6)
    ]  # fmt: skip
    labels = np.zeros(3, dtype=np.int64)
    run = ClusterRun("posts.csv", "0" * 64, "caption", "enc", labels, labels > 0, candidates, candidates[0], "why")
    for width in (80, 160):
        text = printed(width, render.candidates, run, Path("topicli-out/posts"))
        fits(text, width)
        for c in candidates:
            assert f"{c.score:.3f}" in text and f"{c.eps:g}" in text
        assert {"eps", "min_samples", "clusters", "coverage", "agreement", "topics", "score"} <= words(text)


@pytest.mark.parametrize("width", [80, 160])
def test_the_other_tables_fit(width: int, tmp_path: Path) -> None:
    (tmp_path / "encoder.onnx").write_bytes(b"x" * 1000)
    long = "https://topicli-endpoint.westeurope.inference.ml.azure.com/score?" + "x" * 80
    outputs = [
        printed(width, render.figures, {"accuracy": 0.81234, "n_clusters": 42}, Path("posts.csv")),
        printed(width, render.values, "terraform outputs", {"endpoint": long, "resource_group": "rg-topicli"}),
        printed(width, render.files, tmp_path),
        printed(width, render.steps, "deploy", [("register", long), ("endpoint", "create or update")]),
    ]
    for text in outputs:
        fits(text, width)
    assert "0.812" in outputs[0] and "rg-topicli" in outputs[1] and "encoder.onnx" in outputs[2]
    assert "x" * 20 in "".join(outputs[1].split()), "a long value wraps rather than vanishing"
