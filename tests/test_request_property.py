"""The request parser on whatever a client may send: every example ends in a 200 answer or a 4xx error body.

`handle` runs with the model of a real run's bundle, as score.py calls it: random bytes, random
JSON text (deep nesting, numbers of thousands of digits, escaped and raw lone surrogates, every
JSON type where a list, a post, an id or a text belongs), and well-shaped requests with odd texts.
No example may raise, and none may get a 5xx.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topicli.serving.bundle import BundleModel
from topicli.serving.protocol import handle

from .test_serving import run_examples

FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Any text, and text around a lone surrogate (hypothesis draws them rarely otherwise): JSON spells it \ud800.
_TEXT = st.text(st.characters(), max_size=20)
ANY_TEXT = _TEXT | st.builds(
    lambda before, code, after: before + chr(code) + after, _TEXT, st.integers(0xD800, 0xDFFF), _TEXT
)
LONG_TEXT = st.integers(4990, 5010).map(lambda n: "word " * (n // 5))  # around [serving] max_chars


def _json_string(text: str, ascii_only: bool) -> str:
    """A JSON string literal of `text`: escaped (`\\ud800`) or raw, a raw lone surrogate included."""
    return json.dumps(text, ensure_ascii=ascii_only)


NUMBERS = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0"]),
    st.integers(4290, 6000).map(lambda digits: "9" * digits),  # Python converts at most 4300 digits
)
SCALARS = st.one_of(
    st.sampled_from(["null", "true", "false"]),
    NUMBERS,
    st.builds(_json_string, ANY_TEXT, st.booleans()),
)


def _array(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{key}: {value}" for key, value in pairs) + "}"


KEYS = st.sampled_from(['"data"', '"posts"', '"id"', '"text"']) | st.builds(_json_string, ANY_TEXT, st.booleans())
JSON_TEXT = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4).map(_array) | st.lists(st.tuples(KEYS, inner), max_size=4).map(_object),
    max_leaves=16,
)
DEEP = (st.integers(1, 20) | st.integers(900, 50_000)).map(
    lambda depth: '{"data": ' + "[" * depth + '"a"' + "]" * depth + "}"  # Python's parser stops near 1,000
)
POST_TEXT = st.one_of(ANY_TEXT, LONG_TEXT, st.sampled_from(["", " ", "\x00", "\u200b", "#hashtag", "🎉" * 30]))
REQUESTS = st.one_of(
    st.lists(st.builds(_json_string, POST_TEXT, st.booleans()), min_size=1, max_size=4).map(
        lambda texts: _object([('"data"', _array(texts))])
    ),
    st.lists(
        st.tuples(st.one_of(SCALARS, st.integers().map(str)), st.builds(_json_string, POST_TEXT, st.booleans())),
        min_size=1,
        max_size=4,
    ).map(lambda posts: _object([('"posts"', _array([_object([('"id"', i), ('"text"', t)]) for i, t in posts]))])),
    st.builds(lambda value: _object([('"data"', value)]), JSON_TEXT),
    st.builds(lambda value: _object([('"posts"', _array([_object([('"id"', "1"), ('"text"', value)])]))]), JSON_TEXT),
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> BundleModel:
    return BundleModel.load(run_examples(tmp_path_factory.mktemp("property-run"), cache_dir) / "bundle")


def answered(model: BundleModel, raw: str | bytes) -> tuple[int, dict[str, Any]]:
    """`handle`'s status and body, checked: a 200 has a result per post, anything else is a 4xx error object;
    either body goes out as JSON."""
    status, body = handle(model, raw)
    json.dumps(body)
    if status == 200:
        assert body["bundle"] == model.bundle_id and body["results"]
        assert all({"id", "cluster", "topic", "confidence"} == set(result) for result in body["results"])
    else:
        assert 400 <= status < 500, (status, body)
        error = body["error"]
        assert isinstance(error["code"], str) and error["message"] and "\n" not in error["message"]
    return status, body


@FAST
@given(raw=st.binary(max_size=300))
def test_random_bytes(model: BundleModel, raw: bytes) -> None:
    answered(model, raw)


@FAST
@given(raw=JSON_TEXT | DEEP, as_bytes=st.booleans())
def test_random_json(model: BundleModel, raw: str, as_bytes: bool) -> None:
    answered(model, raw.encode("utf-8", "surrogatepass") if as_bytes else raw)


@FAST
@given(raw=REQUESTS, as_bytes=st.booleans())
def test_requests_of_the_right_shape_with_odd_contents(model: BundleModel, raw: str, as_bytes: bool) -> None:
    status, body = answered(model, raw.encode("utf-8", "surrogatepass") if as_bytes else raw)
    if status == 200:
        assert len(body["results"]) == len(json.loads(raw).get("data") or json.loads(raw).get("posts"))
