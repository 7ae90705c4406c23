"""Scoring requests: the shapes `score.py` accepts, their limits, and the answer, apart from any web server.

Accepted bodies: `{"data": ["post", ...]}` (ids are the positions) or
`{"posts": [{"id": ..., "text": ...}, ...]}` (an id is a string or an integer; the position
when absent). The answer is `{"bundle": ID, "results": [{"id", "cluster", "topic",
"confidence"}, ...]}` in request order; a post with no topic has `topic` and `confidence` null.
A bad request gets `{"error": {"code": ..., "message": ...}}` with a 4xx status, never an
exception: the server must outlive any input.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from topicli.serving.bundle import BundleModel

SHAPES = '{"data": ["post", ...]} or {"posts": [{"id": ..., "text": ...}, ...]}'


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


def parse_request(raw: str | bytes, max_posts: int, max_chars: int) -> ScoringRequest:
    """The posts of a request body, or a `RequestError` naming what is wrong with it."""
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(400, "invalid_json", f"the body is not valid JSON ({error}); expected {SHAPES}") from None
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
            if isinstance(post_id, bool) or not isinstance(post_id, str | int):
                raise RequestError(400, "bad_id", f"post {position}: id must be a string or an integer")
        if not isinstance(text, str):
            raise RequestError(400, "not_text", f"post {position}: text must be a string, got {type(text).__name__}")
        if len(text) > max_chars:
            raise RequestError(413, "post_too_long", f"post {position} has {len(text)} characters; at most {max_chars}")
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
        request = parse_request(raw, model.limits["max_posts"], model.limits["max_chars"])
    except RequestError as error:
        return error.status, error.body()
    return 200, answer(model, request)
