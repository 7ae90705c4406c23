"""Scoring requests: the shapes `score.py` accepts, their limits, and the answer, apart from any web server.

Accepted bodies: `{"data": ["post", ...]}` (ids are the positions) or
`{"posts": [{"id": ..., "text": ...}, ...]}` (an id is a string or an integer; the position
when absent). The answer is `{"bundle": ID, "results": [{"id", "cluster", "topic",
"confidence"}, ...]}` in request order; a post with no topic has `topic` and `confidence` null.
A bad request gets `{"error": {"code": ..., "message": ...}}` with a 4xx status, never an
exception: the server must outlive any input. That includes JSON that Python reads only in part:
nesting deeper than its parser's recursion, numbers of more digits than int conversion allows,
and escaped lone surrogates (`"\\ud800"`), which are valid JSON but no text an encoder can read.
An id is a string of at most 256 characters or a 64-bit integer: it comes back in the answer.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any

from topicli.serving.bundle import BundleModel

SHAPES = '{"data": ["post", ...]} or {"posts": [{"id": ..., "text": ...}, ...]}'
MAX_ID_CHARS = 256
ID_RANGE = range(-(2**63), 2**63)


class RequestError(Exception):
    """A request the server refuses: HTTP status, a short code and a one-line message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": str(self)}}


@dataclass
class ScoringRequest:
    ids: list[str | int]
    texts: list[str]


def _posts(document: Any) -> tuple[list[Any], bool]:
    """The list of posts and whether they are objects (`posts`) rather than strings (`data`)."""
    if not isinstance(document, dict) or len({"data", "posts"} & document.keys()) != 1:
        raise RequestError(400, "bad_shape", f"expected {SHAPES}")
    key = "data" if "data" in document else "posts"
    posts = document[key]
    if not isinstance(posts, list):
        raise RequestError(400, "bad_shape", f'"{key}" must be a list; expected {SHAPES}')
    return posts, key == "posts"


def _is_unicode(text: str) -> bool:
    """Whether `text` is real Unicode: JSON's escapes can spell a lone surrogate, which no encoder reads."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_id(post_id: Any, position: int) -> None:
    if isinstance(post_id, bool) or not isinstance(post_id, str | int):
        raise RequestError(400, "bad_id", f"post {position}: id must be a string or an integer")
    if isinstance(post_id, int) and post_id not in ID_RANGE:
        raise RequestError(400, "bad_id", f"post {position}: an integer id must fit in 64 bits")
    if isinstance(post_id, str) and (len(post_id) > MAX_ID_CHARS or not _is_unicode(post_id)):
        raise RequestError(
            400, "bad_id", f"post {position}: a string id is Unicode text of at most {MAX_ID_CHARS} characters"
        )


def parse_request(raw: str | bytes, max_posts: int, max_chars: int) -> ScoringRequest:
    """The posts of a request body, or a `RequestError` naming what is wrong with it."""
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(400, "invalid_json", f"the body is not valid JSON ({error}); expected {SHAPES}") from None
    except RecursionError:
        raise RequestError(400, "too_deep", f"the body nests too deeply to be read; expected {SHAPES}") from None
    except ValueError:  # an integer of more digits than Python converts
        raise RequestError(
            400, "number_too_long", f"the body holds a number of over {sys.get_int_max_str_digits()} digits"
        ) from None
    posts, as_objects = _posts(document)
    if not posts:
        raise RequestError(400, "empty", "the list of posts is empty; send at least one")
    if len(posts) > max_posts:
        raise RequestError(413, "too_many_posts", f"{len(posts)} posts in one request; at most {max_posts}")
    ids: list[str | int] = []
    texts: list[str] = []
    for position, post in enumerate(posts):
        post_id: Any = position
        text = post
        if as_objects:
            if not isinstance(post, dict) or "text" not in post:
                raise RequestError(400, "bad_shape", f'post {position}: expected an object with "text" (and "id")')
            text, post_id = post["text"], post.get("id", position)
            _check_id(post_id, position)
        if not isinstance(text, str):
            raise RequestError(400, "not_text", f"post {position}: text must be a string, got {type(text).__name__}")
        if len(text) > max_chars:
            raise RequestError(413, "post_too_long", f"post {position} has {len(text)} characters; at most {max_chars}")
        if not _is_unicode(text):
            raise RequestError(400, "bad_text", f"post {position}: text holds a lone surrogate (\\ud800-\\udfff)")
        ids.append(post_id)
        texts.append(text)
    return ScoringRequest(ids, texts)


def answer(model: BundleModel, request: ScoringRequest) -> dict[str, Any]:
    """The results for a parsed request, in its order."""
    predicted = model.predict(request.texts)
    results = []
    for i, post_id in enumerate(request.ids):
        topic = int(predicted.topics[i])
        confidence = float(predicted.confidence[i])
        results.append(
            {
                "id": post_id,
                "cluster": int(predicted.clusters[i]),
                "topic": model.topics[topic] if topic >= 0 else None,
                "confidence": None if math.isnan(confidence) else round(confidence, 6),
            }
        )
    return {"bundle": model.bundle_id, "results": results}


def handle(model: BundleModel, raw: str | bytes) -> tuple[int, dict[str, Any]]:
    """HTTP status and JSON body for a raw request body."""
    try:
        request = parse_request(raw, model.limits.max_posts, model.limits.max_chars)
    except RequestError as error:
        return error.status, error.body()
    return 200, answer(model, request)
