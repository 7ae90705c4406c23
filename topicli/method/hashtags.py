"""Hashtags as a second view of a post: their words, scored as a text of their own beside the caption.

82 % of real Instagram captions carry hashtags, and their words alone are nearly as telling as
the caption (`#NationalParkWeek #hiking_life` → "national park week hiking life"). A post's
topic score is then `cos(caption, topic) + weight * cos(hashtag words, topic)` where the post
has hashtags, and the caption's cosine alone where it has none (`blend`). The weight is chosen on
development data (bench/reader.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# A hashtag: '#' then letters, digits, underscores (any script), not inside a word (an anchor 'a#b' is not one)
HASHTAG = re.compile(r"(?<![\w&])#(\w+)")
# The words of a tag: capitals before a capitalised word (NYCMarathon → NYC Marathon), a word that may start with
# one capital (other letters: lower-case or caseless, café and 中文 included), a run of capitals, a number
WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[^\W\d_A-Z]+|[A-Z]+|\d+")


def hashtags(text: str) -> list[str]:
    """The hashtags of a text, without '#', in order, each once."""
    return list(dict.fromkeys(HASHTAG.findall(text)))


def split_tag(tag: str) -> list[str]:
    """A hashtag's words: split at underscores, at camel case and at digits, lower-cased."""
    return [word.lower() for part in tag.split("_") for word in WORD.findall(part)]


def hashtag_text(text: str) -> str:
    """The words of all the text's hashtags as one lower-case text ("" when it has none)."""
    return " ".join(word for tag in hashtags(text) for word in split_tag(tag))


def hashtag_view(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Each text's hashtag words, and which texts have any."""
    views = [hashtag_text(text) for text in texts]
    return views, np.array([bool(view) for view in views])


def blend(caption_scores: np.ndarray, tag_scores: np.ndarray, has_tags: np.ndarray, weight: float) -> np.ndarray:
    """Caption scores plus `weight` times the hashtag view's scores, on the rows whose post has hashtags."""
    return caption_scores + weight * np.where(has_tags[:, None], tag_scores, 0.0)
