"""The candidate topics: the shipped list or the user's file, and a topic name as the words it is made of.

The classifier is trained on label names (`rec.sport.hockey`, `STYLE & BEAUTY`) and scores the
run's topic names, and the zero-shot scorer embeds each part of a name, so both go through
`topic_phrase`; this module holds it so that scoring never loads training code.

A topics file line is a name, optionally followed by a colon and a short description or
keywords: `Fitness & Workouts: gym, training, exercise, workout`. The name is what outputs,
tables and bundles show; the description is extra text for the scorers (`scored_parts`).
The colon that starts a description is the first one followed by a space or the end of the
line, so `Star Trek:Picard` and `10:30 Club` stay whole names; a name that has a colon and a
space in it, like `Re: Zero`, writes it `Re\\: Zero`.
"""

from __future__ import annotations

import re
from pathlib import Path

from topicli.errors import TopicliError

SHIPPED_TOPICS = Path(__file__).parents[1] / "data" / "topics.txt"
DESCRIPTION_COLON = re.compile(r"(?<!\\):(?=\s|$)")  # a colon, not escaped, followed by a space or the line's end


class Topic(str):
    """A topic name that carries its description: the str itself is the name, so every caller that
    shows, compares or stores topic names (outputs, tables, bundle manifests, JSON) keeps working, and
    every path from `read_topics` to `Pipeline` (CLI, Spark, Azure jobs) carries the descriptions
    unchanged, while the scorers read `description` ("" when the file gave none)."""

    description: str

    def __new__(cls, name: str, description: str = "") -> Topic:
        topic = super().__new__(cls, name)
        topic.description = description
        return topic

    def __repr__(self) -> str:
        return f"Topic({str(self)!r}, {self.description!r})" if self.description else f"Topic({str(self)!r})"


def parse_topic(line: str) -> Topic:
    """One topics-file line as a `Topic`: `Name: description` (see the module's docstring), `\\:` a colon of
    the name. An empty description (`Name:`) is no description."""
    found = DESCRIPTION_COLON.search(line)
    name, description = (line[: found.start()], line[found.end() :]) if found else (line, "")
    return Topic(name.replace("\\:", ":").strip(), " ".join(description.split()))


def read_topics(path: Path | str = "") -> list[Topic]:
    """Topics, one per line (blank lines and `#` comments skipped), with their descriptions; the shipped list
    when empty. A name given twice keeps its first line."""
    path = Path(path) if path else SHIPPED_TOPICS
    if not path.is_file():
        raise TopicliError(f"topic list {path} not found; give a text file with one topic per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise TopicliError(f"topic list {path} is not UTF-8 text") from None
    topics: dict[str, Topic] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        topic = parse_topic(line)
        if not topic:
            raise TopicliError(f"topic list {path} line {number} has a description but no name; write `Name: words`")
        topics.setdefault(str(topic), topic)
    if len(topics) < 2:
        raise TopicliError(f"topic list {path} has {len(topics)} topic(s); it needs at least two, one per line")
    return list(topics.values())


def topic_phrase(label: str) -> str:
    """A label as words: `rec.sport.hockey` → `rec sport hockey`, `STYLE & BEAUTY` → `style & beauty`."""
    return re.sub(r"\s+", " ", re.sub(r"[_.]+", " ", str(label))).strip().lower()


def topic_parts(topic: str) -> list[str]:
    """The parts of a topic name: `Food & Dining` → food, dining; `science/technology` → science, technology."""
    parts = [part.strip() for part in re.split(r"&|/|,|\band\b|\+", topic_phrase(topic))]
    return [part for part in parts if part] or [topic_phrase(topic)]


def scored_parts(topic: str) -> list[str]:
    """What a topic is scored by (`topicli.method.scoring.part_vectors`): its name's parts, and its description
    as one more part when it has one, so a post is about the topic when it is about any of them.

    One part for the whole description did best of the ways tried on the development sets, with the
    cosine and the cls_model scorers alike (bench/results/descriptions.md): each keyword as a part of
    its own lets a topic with many keywords take posts that match any one of them, and "name:
    description" helped the cosine scorer as much but cls_model (trained on short label names) less.
    """
    description = getattr(topic, "description", "")
    return [*topic_parts(topic), description] if description else topic_parts(topic)
