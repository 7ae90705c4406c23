"""Fakes built on the Azure SDK's own classes, for the tests that talk to Azure up to the wire.

Importing the SDK costs seconds, so the tests import this module when they run (the `azure_fakes`
fixture of tests/conftest.py), not at collection: a test run that touches no Azure code never loads it.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.etree import ElementTree

import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.transport import HttpRequest, HttpResponse, HttpTransport
from azure.core.pipeline.transport._requests_basic import RequestsTransportResponse
from azure.core.utils import CaseInsensitiveDict

# Azure Resource Manager, for the real MLClient (tests/test_cloud_errors.py)


class Token:
    """A credential that is signed in."""

    def get_token(self, *scopes: str, **options: Any) -> AccessToken:
        return AccessToken("token", 2**31)


class FakeTransport(HttpTransport):
    """Answers every request with one status and Azure's JSON error body, or fails to connect."""

    def __init__(self, status: int = 0, code: str = "", message: str = "") -> None:
        self.status, self.body = status, {"error": {"code": code, "message": message}}
        self.sent: list[str] = []
        self.requests: list[Any] = []

    def __enter__(self) -> FakeTransport:
        return self

    def __exit__(self, *_: Any) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, request: Any, **_: Any) -> RequestsTransportResponse:
        self.sent.append(request.url)
        self.requests.append(request)
        if not self.status:
            raise ServiceRequestError("<urllib3.connection.HTTPSConnection>: Failed to establish a new connection")
        response = requests.Response()
        response.status_code, response._content = self.status, json.dumps(self.body).encode()
        response.headers["Content-Type"] = "application/json"
        return RequestsTransportResponse(request, response)


# Blob storage, for the real azure-storage-blob client and for fetch_repository.py (tests/test_triton_deploy.py)


class Answer(HttpResponse):
    """An HTTP response as the Blob service sends it."""

    def __init__(self, request: HttpRequest, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        super().__init__(request, None)
        self.status_code = status
        self.reason = {200: "OK", 201: "Created"}.get(status, "Error")
        self.headers = CaseInsensitiveDict(headers)
        self.content_type = self.headers.get("Content-Type")
        self._body = body

    def body(self) -> bytes:
        return self._body


def _md5_matches(headers: CaseInsensitiveDict, body: bytes) -> bool:
    """Whether the body is what its Content-MD5 says (True without one)."""
    said = headers.get("Content-MD5")
    return said is None or base64.b64decode(said) == hashlib.md5(body).digest()


class BlobService(HttpTransport):
    """The Blob service of one storage account, over the SDK's own transport interface: keeps what it is sent.

    `requests` holds (method, blob, query, headers, body) of every request to the container
    `container`; `blobs` what the container holds. Uploads come as one Put Blob, or as Put Block
    requests and a Put Block List; each body is checked against its Content-MD5. `refuse` makes
    every request answer 403 with that error code; `on_request` runs before each answer (a test's
    look at the world then).
    """

    def __init__(self, account: str, container: str, on_request: Callable[[], None] = lambda: None) -> None:
        self.account, self.container = account, container
        self.requests: list[tuple[str, str, dict[str, str], CaseInsensitiveDict, bytes]] = []
        self.blobs: dict[str, bytes] = {}
        self.blocks: dict[str, dict[str, bytes]] = {}
        self.refuse: str | None = None
        self.on_request = on_request

    def __enter__(self) -> BlobService:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request: HttpRequest, **kwargs: Any) -> Answer:
        self.on_request()
        url = urlsplit(request.url)
        assert (url.scheme, url.netloc) == ("https", f"{self.account}.blob.core.windows.net")
        container, _, blob = unquote(url.path).lstrip("/").partition("/")
        assert container == self.container, url.path
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        body = request.data if isinstance(request.data, bytes) else (request.data.read() if request.data else b"")
        headers = CaseInsensitiveDict(request.headers)
        self.requests.append((request.method, blob, query, headers, body))
        if self.refuse:
            return self._error(request, 403, self.refuse, "This request is not authorized to perform this operation.")
        if request.method == "HEAD":
            if blob not in self.blobs:
                return Answer(request, 404, {"x-ms-error-code": "BlobNotFound", **self._headers(request)})
            return Answer(request, 200, {"Content-Length": str(len(self.blobs[blob])), **self._headers(request)})
        assert request.method == "PUT", request.method
        if not _md5_matches(headers, body):
            return self._error(request, 400, "Md5Mismatch", "The MD5 value specified in the request is invalid.")
        if query == {}:
            assert headers["x-ms-blob-type"] == "BlockBlob"
            self.blobs[blob] = body
        elif query.get("comp") == "block":
            self.blocks.setdefault(blob, {})[query["blockid"]] = body
        elif query == {"comp": "blocklist"}:
            staged = self.blocks.pop(blob)
            self.blobs[blob] = b"".join(staged[element.text or ""] for element in ElementTree.fromstring(body))
        else:
            raise AssertionError(f"the stand-in does not know {request.method} {request.url}")
        return Answer(request, 201, self._headers(request))

    def _headers(self, request: HttpRequest) -> dict[str, str]:
        now = email.utils.formatdate(usegmt=True)
        return {
            "ETag": '"0x8DC0000000000001"',
            "Last-Modified": now,
            "Date": now,
            "x-ms-request-id": "00000000-0000-0000-0000-000000000001",
            "x-ms-version": request.headers["x-ms-version"],
            "x-ms-request-server-encrypted": "true",
        }

    def _error(self, request: HttpRequest, status: int, code: str, message: str) -> Answer:
        body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
        headers = {"x-ms-error-code": code, "Content-Type": "application/xml", "x-ms-version": "2025-01-05"}
        return Answer(request, status, headers, body.encode())


class BlobHost:
    """The instance metadata endpoint and the Blob service's downloads, over real HTTP on localhost.

    What fetch_repository.py talks to in a container group: tokens for the client id it asks for
    (`token_of`), and blobs from `blobs` to a request that carries one of them. The first
    `refusals` blob requests answer 403, as while a new role assignment is on its way to storage.
    `seen` holds (path, Authorization) of every request.
    """

    def __init__(self, container: str, blobs: dict[str, bytes], refusals: int = 0) -> None:
        self.container, self.blobs, self.refusals = container, blobs, refusals
        self.seen: list[tuple[str, str]] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.seen.append((self.path, self.headers.get("Authorization", "")))
                status, body = host.answer(self.path, self.headers)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    @staticmethod
    def token_of(client_id: str) -> str:
        return f"token-of-{client_id}"

    def answer(self, path: str, headers: Any) -> tuple[int, bytes]:
        url = urlsplit(path)
        if url.path == "/metadata/identity/oauth2/token":
            query = {name: values[0] for name, values in parse_qs(url.query).items()}
            if headers.get("Metadata") != "true" or query.get("resource") != "https://storage.azure.com/":
                return 400, b'{"error": "invalid_request"}'
            return 200, json.dumps({"access_token": self.token_of(query["client_id"]), "token_type": "Bearer"}).encode()
        container, _, blob = unquote(url.path).lstrip("/").partition("/")
        if not headers.get("Authorization", "").startswith("Bearer token-of-") or not headers.get("x-ms-version"):
            return 401, b"NoAuthenticationInformation"
        if self.refusals:
            self.refusals -= 1
            return 403, b"AuthorizationPermissionMismatch"
        if container != self.container or blob not in self.blobs:
            return 404, b"BlobNotFound"
        return 200, self.blobs[blob]

    def __enter__(self) -> BlobHost:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *args: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
