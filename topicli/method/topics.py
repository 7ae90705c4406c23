"""The candidate topics: the shipped list or the user's file, and a topic name as the words it is made of.

The classifier is trained on label names (`rec.sport.hockey`, `STYLE & BEAUTY`) and scores the
run's topic names, and the zero-shot scorer embeds each part of a name, so both go through
`topic_phrase`; this module holds it so that scoring never loads training code.
"""

from __future__ import annotations

import re
from pathlib import Path

from topicli.errors import TopicliError

SHIPPED_TOPICS = Path(__file__).parents[1] / "data" / "topics.txt"


def read_topics(path: Path | str = "") -> list[str]:
    """Topic names, one per line (blank lines and `#` comments skipped); the shipped list when empty."""
    path = Path(path) if path else SHIPPED_TOPICS
    if not path.is_file():
        raise TopicliError(f"topic list {path} not found; give a text file with one topic per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise TopicliError(f"topic list {path} is not UTF-8 text") from None
    topics = list(dict.fromkeys(line.strip() for line in lines if line.strip() and not line.startswith("#")))
    if len(topics) < 2:
        raise TopicliError(f"topic list {path} has {len(topics)} topic(s); it needs at least two, one per line")
    return topics


def topic_phrase(label: str) -> str:
    """A label as words: `rec.sport.hockey` → `rec sport hockey`, `STYLE & BEAUTY` → `style & beauty`."""
    return re.sub(r"\s+", " ", re.sub(r"[_.]+", " ", str(label))).strip().lower()


def topic_parts(topic: str) -> list[str]:
    """The parts of a topic name: `Food & Dining` → food, dining; `science/technology` → science, technology."""
    parts = [part.strip() for part in re.split(r"&|/|,|\band\b|\+", topic_phrase(topic))]
    return [part for part in parts if part] or [topic_phrase(topic)]
