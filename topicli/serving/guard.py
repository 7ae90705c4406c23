"""The local server's front door: every request body read whole before azmlinfsrv sees it, every 4xx in topicli's
error shape, and workers that end with their master.

azmlinfsrv (Flask under gunicorn) reads a chunked body lazily: a chunk size that is wrong or not hex raises inside
Flask, which answers 500. Its own refusals (405, 404, a body that is not UTF-8) carry `{"message": ...}`, not the
`{"error": {"code", "message"}}` that score.py gives (`topicli.serving.protocol`). `guarded` wraps its WSGI app so
that a client sees one shape for every 4xx and no 500 for a malformed body; `launch` runs azmlinfsrv with each
worker's app so wrapped. Only `topicli deploy local` uses it: in Azure the platform's own front end is in the way.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import signal
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

CODES = {  # the error code of a 4xx that azmlinfsrv, Flask or gunicorn gave, by status
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
}
NOT_UTF8 = "cannot be decoded as UTF-8"  # azmlinfsrv's message for a body that is not UTF-8


def error_body(code: str, message: str) -> bytes:
    """topicli's error object (the shape of `topicli.serving.protocol`'s refusals) as JSON bytes."""
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def _respond(start_response: Callable[..., Any], status: int, body: bytes, close: bool = False) -> list[bytes]:
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if close:
        headers.append(("Connection", "close"))
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [body]


def _ours(body: bytes) -> bool:
    """Whether a response body already carries topicli's error object."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    error = document.get("error") if isinstance(document, dict) else None
    return isinstance(error, dict) and {"code", "message"} <= error.keys()


def _reshaped(status: int, body: bytes) -> bytes:
    """A 4xx body from azmlinfsrv, Flask or gunicorn in topicli's shape, keeping its message."""
    try:
        document = json.loads(body)
        message = str(document["message"]) if isinstance(document, dict) else ""
    except (ValueError, KeyError):
        message = ""
    message = message or HTTPStatus(status).description or HTTPStatus(status).phrase
    code = "not_utf8" if NOT_UTF8 in message else CODES.get(status, "bad_request")
    return error_body(code, message)


def guarded(app: WSGIApp) -> WSGIApp:
    """`app` behind the front door: the body read whole first (a malformed one is a 400 that closes the
    connection), and a 4xx that is not in topicli's shape put into it."""

    def guarded_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            body = environ["wsgi.input"].read()
        except Exception as error:  # gunicorn's InvalidChunkSize, ChunkMissingTerminator, NoMoreData, ...
            message = f"the request body is malformed ({type(error).__name__}: {error}); send valid chunked encoding"
            return _respond(start_response, 400, error_body("bad_body", message), close=True)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        seen: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
            seen.update(status=status, headers=headers)
            return lambda _: None  # azmlinfsrv (Flask) returns its body; it never calls write()

        chunks = app(environ, keep)
        try:
            content = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        code = int(seen["status"].split(" ", 1)[0])
        if 400 <= code < 500 and not _ours(content):
            content = _reshaped(code, content)
            headers = [(k, v) for k, v in seen["headers"] if k.lower() not in ("content-type", "content-length")]
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(content)))]
            start_response(seen["status"], headers)
        else:
            start_response(seen["status"], seen["headers"])
        return [content]

    return guarded_app


def _die_with_parent() -> None:
    """Linux: SIGTERM to this worker when its master dies (a `kill -9` of the master leaves no orphan holding the
    port); where the master is gone already, stop now."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    if getattr(libc, "prctl", None) is not None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if parent == 1:
        os.kill(os.getpid(), signal.SIGTERM)


def launch(host: str) -> None:
    """azmlinfsrv with the command line in `sys.argv`, bound to `host` (its host is a constant, not an option),
    each gunicorn worker's app `guarded` and tied to the master's life."""
    import gunicorn.app.wsgiapp
    from azureml_inference_server_http import amlserver

    class GuardedApplication(gunicorn.app.wsgiapp.WSGIApplication):
        def load_wsgiapp(self) -> WSGIApp:  # runs in each worker, after the fork
            _die_with_parent()
            return guarded(super().load_wsgiapp())

    gunicorn.app.wsgiapp.WSGIApplication = GuardedApplication  # type: ignore[misc]
    amlserver.DEFAULT_HOST = host
    amlserver.run()
