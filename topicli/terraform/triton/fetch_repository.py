"""Copy a Triton model repository out of blob storage, signed in as the container group's managed identity.

The container group of terraform/triton runs this before tritonserver (main.tf: local.command), as
`python3 fetch_repository.py CONTAINER_URL FOLDER TARGET`, on the Triton image's own Python: standard
library only, so nothing is installed for it. `topicli deploy triton --aci` uploads a repository's files as
the blobs FOLDER/<path> and then, last, FOLDER.json: the list of its folders and files with their sha256
(`topicli.cloud.triton_aci`). This reads that list, creates every folder (blob storage keeps none, and Triton
needs the ensemble's empty version folder), and downloads every file into TARGET, checking its sha256.

The token is the user-assigned identity's (AZURE_CLIENT_ID), from the instance metadata endpoint; the
identity holds Storage Blob Data Reader on the container. A role assignment takes minutes to reach storage
and the metadata endpoint can answer late in a new container group, so refusals, throttling, server errors
and failed connections are tried again for five minutes before the script fails (and the group restarts it).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

IMDS = "http://169.254.169.254/metadata/identity/oauth2/token"
STORAGE = "https://storage.azure.com/"
STORAGE_VERSION = "2021-08-06"  # x-ms-version: Entra ID tokens need 2017-11-09 or later
TRIES, PAUSE = 30, 10.0
RETRIED = {403, 408, 429, 500, 502, 503, 504}
CHUNK = 1024 * 1024

T = TypeVar("T")


def retried(call: Callable[[], T], what: str) -> T:
    """`call()`, tried again after a pause while it fails in a way that passes (see the module docstring)."""
    for _ in range(TRIES - 1):
        try:
            return call()
        except OSError as error:  # urllib's URLError and HTTPError, timeouts, reset connections
            if isinstance(error, urllib.error.HTTPError) and error.code not in RETRIED:
                raise
            print(f"fetch_repository: {what}: {error}; trying again in {PAUSE:g} s", file=sys.stderr)
            time.sleep(PAUSE)
    return call()


def token(client_id: str) -> str:
    """An Entra ID access token for Azure Storage, of the managed identity `client_id`."""
    query = urllib.parse.urlencode({"api-version": "2018-02-01", "resource": STORAGE, "client_id": client_id})
    request = urllib.request.Request(f"{IMDS}?{query}", headers={"Metadata": "true"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return str(json.load(answer)["access_token"])


def fetch(container_url: str, folder: str, target: Path, bearer: str) -> dict[str, Any]:
    """Every folder and file that the list FOLDER.json names, from the container into `target`; the list."""
    headers = {"Authorization": f"Bearer {bearer}", "x-ms-version": STORAGE_VERSION}

    def request(blob: str) -> urllib.request.Request:
        return urllib.request.Request(f"{container_url.rstrip('/')}/{urllib.parse.quote(blob)}", headers=headers)

    def listing() -> dict[str, Any]:
        with urllib.request.urlopen(request(f"{folder}.json"), timeout=60) as answer:
            return dict(json.load(answer))

    def download(path: str) -> str:
        digest = hashlib.sha256()
        answer = urllib.request.urlopen(request(f"{folder}/{path}"), timeout=60)
        with answer, open(target / path, "wb") as out:
            while chunk := answer.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()

    listed = retried(listing, f"{folder}.json")
    target.mkdir(parents=True, exist_ok=True)
    for name in listed["folders"]:
        (target / name).mkdir(parents=True, exist_ok=True)
    for file in listed["files"]:
        (target / file["path"]).parent.mkdir(parents=True, exist_ok=True)
        sha256 = retried(partial(download, file["path"]), file["path"])
        if sha256 != file["sha256"]:
            raise SystemExit(f"fetch_repository: {folder}/{file['path']} is not the file that was uploaded (sha256)")
    return listed


def main(arguments: list[str]) -> None:
    container_url, folder, target = arguments
    bearer = retried(lambda: token(os.environ["AZURE_CLIENT_ID"]), "token")
    listed = fetch(container_url, folder, Path(target), bearer)
    print(f"fetch_repository: {len(listed['files'])} files of {container_url}/{folder} in {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
