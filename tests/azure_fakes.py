"""Fakes built on the Azure SDK's own classes, for the tests that talk to Azure up to the wire.

Importing the SDK costs seconds, so the tests import this module when they run (the `azure_fakes`
fixture of tests/conftest.py), not at collection: a test run that touches no Azure code never loads it.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

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


# Azure Files, for the real azure-storage-file-share client (tests/test_triton_deploy.py)


class Answer(HttpResponse):
    """An HTTP response as the Azure Files service sends it."""

    def __init__(self, request: HttpRequest, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        super().__init__(request, None)
        self.status_code = status
        self.reason = {200: "OK", 201: "Created"}.get(status, "Error")
        self.headers = CaseInsensitiveDict(headers)
        self.content_type = self.headers.get("Content-Type")
        self._body = body

    def body(self) -> bytes:
        return self._body


class FileService(HttpTransport):
    """Azure Files of one storage account, over the SDK's own transport interface: keeps what it is sent.

    `requests` holds (method, path, query, headers, body) of every request; `folders` and `files`
    what the share holds. `on_request` runs before each answer (a test's look at the world then).
    """

    def __init__(self, account: str, share: str, on_request: Callable[[], None] = lambda: None) -> None:
        self.account, self.share = account, share
        self.requests: list[tuple[str, str, dict[str, str], CaseInsensitiveDict, bytes]] = []
        self.folders: set[str] = set()
        self.files: dict[str, bytearray] = {}
        self.refuse: str | None = None
        self.on_request = on_request

    def __enter__(self) -> FileService:
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
        assert url.netloc == f"{self.account}.file.core.windows.net"
        path = unquote(url.path).lstrip("/")
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        body = request.data if isinstance(request.data, bytes) else (request.data.read() if request.data else b"")
        headers = CaseInsensitiveDict(request.headers)
        self.requests.append((request.method, path, query, headers, body))
        if self.refuse:
            return self._error(request, 403, self.refuse, "Server failed to authenticate the request.")
        assert request.method == "PUT", request.method
        parent = path.rsplit("/", 1)[0]
        if query == {"restype": "directory"}:
            if path in self.folders:
                return self._error(request, 409, "ResourceAlreadyExists", "The specified resource already exists.")
            if parent != self.share and parent not in self.folders:
                return self._error(request, 404, "ParentNotFound", "The specified parent path does not exist.")
            self.folders.add(path)
            return self._answer(request)
        if query == {} and headers["x-ms-type"] == "file":
            if parent != self.share and parent not in self.folders:
                return self._error(request, 404, "ParentNotFound", "The specified parent path does not exist.")
            self.files[path] = bytearray(int(headers["x-ms-content-length"]))
            return self._answer(request)
        if query == {"comp": "range"}:
            assert headers["x-ms-write"] == "update"
            start, end = map(int, headers["x-ms-range"].removeprefix("bytes=").split("-"))
            if base64.b64decode(headers["Content-MD5"]) != hashlib.md5(body).digest():
                return self._error(request, 400, "Md5Mismatch", "The MD5 value specified in the request is invalid.")
            assert end - start + 1 == len(body) == int(headers["Content-Length"])
            self.files[path][start : end + 1] = body
            return self._answer(request, {"Content-MD5": headers["Content-MD5"]})
        raise AssertionError(f"the stand-in does not know {request.method} {request.url}")

    def _answer(self, request: HttpRequest, extra: dict[str, str] | None = None) -> Answer:
        now = email.utils.formatdate(usegmt=True)
        headers = {
            "ETag": '"0x8DC0000000000001"',
            "Last-Modified": now,
            "Date": now,
            "x-ms-request-id": "00000000-0000-0000-0000-000000000001",
            "x-ms-version": request.headers["x-ms-version"],
            "x-ms-request-server-encrypted": "true",
            **(extra or {}),
        }
        return Answer(request, 201, headers)

    def _error(self, request: HttpRequest, status: int, code: str, message: str) -> Answer:
        body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
        headers = {"x-ms-error-code": code, "Content-Type": "application/xml", "x-ms-version": "2025-01-05"}
        return Answer(request, status, headers, body.encode())
