"""`topicli score`: send posts to a scoring endpoint (local, Azure ML or Triton) and write their topics.

Two protocols: topicli's own JSON (`score.py` under azmlinfsrv or Azure ML), and the KServe v2
inference protocol that Triton speaks over HTTP, for the ensemble `topicli export triton` writes.

Posts go in batches, a few requests in flight at once. A request that meets 429, a 5xx or a
connection error is retried with exponential backoff (or the server's Retry-After, when
longer); any other refusal stops the run with the server's message. Each answered batch is
appended to `<output>.partial.jsonl` at once, so a rerun after an interruption sends only
the posts not yet scored; the output, the same table `topicli run` writes plus a `bundle_id`
column, replaces the partial file when every post has its answer.

One output comes from one bundle: every kept answer records the bundle that gave it (topicli's
JSON names it), and an answer from another bundle, after a redeploy between two tries or during
one, stops the run (`restart` starts over). Triton's ensemble names no bundle, so its answers
leave `bundle_id` empty and cannot be checked. A URL that can never work (no http(s) scheme or no
host) fails before anything is sent; a key sent over plain http to another machine warns.
"""

from __future__ import annotations

import ipaddress
import json
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np

from topicli.config import ServingSettings
from topicli.errors import TopicliError
from topicli.io import Posts, atomic_path, file_digest, table_format, write_table
from topicli.method.records import check_output_columns, with_topics
from topicli.method.tokens import TEXT
from topicli.progress import ProgressFactory
from topicli.serving.ensemble import ENSEMBLE, ENSEMBLE_OUTPUTS

RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
BUNDLE_COLUMN = "bundle_id"


class WireProtocol(Protocol):
    """How posts travel to an endpoint and results come back: one request body, one reading of the answer."""

    def body(self, ids: list[int], texts: list[str]) -> dict[str, Any]:
        """The JSON request for a batch of posts."""
        ...

    def results(self, response: httpx.Response, ids: list[int], url: str) -> list[dict[str, Any]]:
        """(id, cluster, topic, confidence, bundle) per post of the batch (bundle None when the answer names
        none), or a `TopicliError` saying what went wrong."""
        ...


class TopicliJson:
    """topicli's own JSON (`score.py` under azmlinfsrv or Azure ML): `{"posts": [{"id", "text"}]}` in,
    `{"bundle": ID, "results": [...]}` out."""

    def body(self, ids: list[int], texts: list[str]) -> dict[str, Any]:
        return {"posts": [{"id": i, "text": t} for i, t in zip(ids, texts, strict=True)]}

    def results(self, response: httpx.Response, ids: list[int], url: str) -> list[dict[str, Any]]:
        document = _json(response)
        if response.status_code != 200:
            error = document.get("error") if isinstance(document, dict) else None
            message = error.get("message") if isinstance(error, dict) else response.text[:200]
            raise TopicliError(f"{url} refused a batch (HTTP {response.status_code}): {message}")
        results = document.get("results") if isinstance(document, dict) else None
        if not isinstance(results, list) or [r.get("id") for r in results if isinstance(r, dict)] != ids:
            raise TopicliError(
                f"{url} answered something other than topicli results for the batch; is it a topicli endpoint?"
            )
        bundle = document.get("bundle")
        bundle = bundle if isinstance(bundle, str) else None
        return [{**{k: r.get(k) for k in ("id", "cluster", "topic", "confidence")}, "bundle": bundle} for r in results]


class KServeV2:
    """The KServe v2 inference protocol that Triton speaks over HTTP, to the ensemble `topicli export triton`
    writes: the posts as one BYTES tensor in, TOPIC, CONFIDENCE and CLUSTER out (no bundle id)."""

    def body(self, ids: list[int], texts: list[str]) -> dict[str, Any]:
        return {
            "inputs": [{"name": TEXT, "shape": [len(texts), 1], "datatype": "BYTES", "data": texts}],
            "outputs": [{"name": name} for name in ENSEMBLE_OUTPUTS],
        }

    def results(self, response: httpx.Response, ids: list[int], url: str) -> list[dict[str, Any]]:
        """Rows from a KServe v2 answer; Triton's errors are `{"error": "message"}`."""
        document = _json(response)
        if response.status_code != 200:
            message = document.get("error") if isinstance(document, dict) else None
            raise TopicliError(f"{url} refused a batch (HTTP {response.status_code}): {message or response.text[:200]}")
        outputs = document.get("outputs") if isinstance(document, dict) else None
        tensors = {o.get("name"): o.get("data") for o in outputs or [] if isinstance(o, dict)}
        if any(not isinstance(tensors.get(name), list) or len(tensors[name]) != len(ids) for name in ENSEMBLE_OUTPUTS):
            raise TopicliError(
                f"{url} answered without {', '.join(ENSEMBLE_OUTPUTS)} for every post; is it topicli's ensemble?"
            )
        return [
            {
                "id": i,
                "cluster": int(cluster),
                "topic": topic or None,
                "confidence": float(confidence) if topic else None,
                "bundle": None,
            }
            for i, topic, confidence, cluster in zip(
                ids, tensors["TOPIC"], tensors["CONFIDENCE"], tensors["CLUSTER"], strict=True
            )
        ]


TOPICLI_JSON = TopicliJson()
KSERVE_V2 = KServeV2()


@dataclass(frozen=True)
class Endpoint:
    """Where to send posts: the scoring URL, the key when the endpoint wants one, and its wire protocol."""

    url: str
    key: str = ""
    protocol: WireProtocol = TOPICLI_JSON

    def __post_init__(self) -> None:
        """Refuse what can never work, before anything is sent (a refused connection is retried instead)."""
        try:
            url = httpx.URL(self.url)
        except (httpx.InvalidURL, TypeError) as error:
            raise TopicliError(f"{self.url!r} is not a URL ({error}); {_URL_EXAMPLE}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise TopicliError(f"{self.url!r} is not an http(s) URL with a host; {_URL_EXAMPLE}")
        if self.key and not (self.key.isascii() and self.key.isprintable()):
            raise TopicliError("the endpoint key holds characters an HTTP header cannot carry; copy it again")

    @property
    def key_in_clear(self) -> bool:
        """Whether the key would cross the network unencrypted: plain http to a host other than this one."""
        url = httpx.URL(self.url)
        return bool(self.key) and url.scheme == "http" and not _is_loopback(url.host)


_URL_EXAMPLE = "an endpoint URL looks like https://NAME.REGION.inference.ml.azure.com/score"


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def triton_endpoint(base_url: str) -> Endpoint:
    """The inference URL of the topicli ensemble on a Triton server (`http://host:8000`)."""
    if not base_url.startswith(("http://", "https://")):
        raise TopicliError(f"a Triton endpoint is the server's base URL, like http://host:8000; got {base_url!r}")
    return Endpoint(f"{base_url.rstrip('/')}/v2/models/{ENSEMBLE}/infer", protocol=KSERVE_V2)


@dataclass(frozen=True)
class ScoreSummary:
    posts: int  # non-empty posts in the file
    sent: int  # posts sent by this run (the rest came from the partial file)
    requests: int  # requests made, retries included
    retries: int
    bundle: str | None  # the bundle that answered, None when the endpoint names none (Triton)


def partial_path(output: Path) -> Path:
    return output.with_name(f"{output.name}.partial.jsonl")


class PartialResults:
    """Answers kept so far, one JSON line per post after a header naming the input file's digest; each answer
    names the bundle that gave it, and all must come from one bundle."""

    def __init__(self, path: Path, input_sha256: str) -> None:
        self.path = path
        self.results: dict[int, dict[str, Any]] = {}
        header = {"input_sha256": input_sha256}
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            if not lines or _parse(lines[0]) != header:
                raise TopicliError(
                    f"{path} holds partial results of another input; delete it or rerun with --restart to score "
                    "this file from the start"
                )
            for line in lines[1:]:
                row = _parse(line)  # a line cut short by an interruption is dropped and its post sent again
                if row is not None:
                    self.results[row["id"]] = row
        bundles = {row.get("bundle") for row in self.results.values()}
        if len(bundles) > 1:
            raise TopicliError(f"{path} holds results of {len(bundles)} bundles; rerun with --restart")
        self.bundle: str | None = bundles.pop() if bundles else None
        with atomic_path(path) as temp:  # rewritten whole, so a torn last line never runs into the next
            temp.write_text("".join(json.dumps(r) + "\n" for r in [header, *self.results.values()]), encoding="utf-8")

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Keep a batch's answers, refused when they come from another bundle than those kept."""
        if not rows:
            return
        bundle = rows[0]["bundle"]
        if self.results and bundle != self.bundle:
            raise TopicliError(
                f"the endpoint now serves bundle {bundle or 'unknown'}, the partial results in {self.path} came from "
                f"{self.bundle or 'an unknown bundle'}; rerun with --restart to score every post with one bundle"
            )
        self.bundle = bundle
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(row) + "\n" for row in rows))
            handle.flush()
        self.results.update((row["id"], row) for row in rows)


def _parse(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class ScoringClient:
    """Sends batches of (id, text) to one endpoint with retries; thread-safe (one httpx client)."""

    def __init__(self, endpoint: Endpoint, settings: ServingSettings) -> None:
        self.endpoint = endpoint
        self.settings = settings
        if endpoint.key_in_clear:
            warnings.warn(
                f"the endpoint key goes to {endpoint.url} over plain http, readable by anyone on the way; "
                "use its https:// URL",
                stacklevel=2,
            )
        headers = {"Authorization": f"Bearer {endpoint.key}"} if endpoint.key else {}
        limits = httpx.Limits(max_connections=settings.in_flight)
        self.http = httpx.Client(headers=headers, timeout=settings.timeout, limits=limits)
        self.requests = 0
        self.retries = 0

    def close(self) -> None:
        self.http.close()

    def score(self, ids: list[int], texts: list[str]) -> list[dict[str, Any]]:
        """One batch's results (id, cluster, topic, confidence), retried on 429/5xx and connection errors."""
        protocol = self.endpoint.protocol
        body = protocol.body(ids, texts)
        attempt = 0
        while True:
            self.requests += 1
            try:
                response = self.http.post(self.endpoint.url, json=body)
                failure = f"HTTP {response.status_code}"
                if response.status_code not in RETRIED_STATUS:
                    return protocol.results(response, ids, self.endpoint.url)
                wait_s = _retry_after(response)
            except httpx.TransportError as error:
                failure, wait_s = f"{type(error).__name__}: {error}", 0.0
            if attempt >= self.settings.retries:
                raise TopicliError(
                    f"{self.endpoint.url} failed {attempt + 1} times ({failure}); rerun the same command to send "
                    "only the posts not scored yet"
                )
            self.retries += 1
            time.sleep(max(wait_s, self.settings.backoff * 2**attempt))
            attempt += 1


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("retry-after", 0)), 60.0)
    except ValueError:
        return 0.0


def _json(response: httpx.Response) -> Any:
    """The body as JSON, or None when it is not JSON (a proxy's error page, say)."""
    try:
        return response.json()
    except ValueError:
        return None


def _batches(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def score_file(
    posts: Posts,
    endpoint: Endpoint,
    output: Path,
    settings: ServingSettings,
    progress: ProgressFactory,
    restart: bool = False,
) -> ScoreSummary:
    """Score every non-empty post not already in the partial file (none with `restart`), then write the output
    table."""
    table_format(output)
    check_output_columns(posts.frame, posts.path)
    if BUNDLE_COLUMN in posts.frame.columns:
        raise TopicliError(f"{posts.path} already has column {BUNDLE_COLUMN}; rename it and rerun")
    texts = posts.texts
    rows = [i for i, text in enumerate(texts) if text.strip()]
    if restart:
        partial_path(output).unlink(missing_ok=True)
    partial = PartialResults(partial_path(output), file_digest(posts.path))
    todo = [i for i in rows if i not in partial.results]
    client = ScoringClient(endpoint, settings)
    try:
        with progress("scoring posts", len(rows)) as advance, ThreadPoolExecutor(settings.in_flight) as pool:
            advance(len(rows) - len(todo))
            batches = _batches(todo, settings.batch_size)
            running: set[Future] = set()
            try:
                while True:
                    for batch in batches:
                        running.add(pool.submit(client.score, batch, [texts[i] for i in batch]))
                        if len(running) >= settings.in_flight:
                            break
                    if not running:
                        break
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        answered = future.result()
                        partial.add(answered)
                        advance(len(answered))
            finally:
                for future in running:
                    future.cancel()
    finally:
        client.close()
    _write_output(posts, partial, output)
    partial.path.unlink()
    return ScoreSummary(len(rows), len(todo), client.requests, client.retries, partial.bundle)


def _write_output(posts: Posts, partial: PartialResults, output: Path) -> None:
    answers = list(partial.results.values())
    frame = with_topics(
        posts.frame,
        list(partial.results),
        [r["cluster"] for r in answers],
        [r["topic"] or "" for r in answers],
        [np.nan if r["confidence"] is None else r["confidence"] for r in answers],
    )
    frame[BUNDLE_COLUMN] = partial.bundle or ""
    write_table(frame, output)
