"""Bundles changed on purpose, as another writer would have written them: the manifest edited, then its files'
digests and its id made again, so that the edit, not the integrity check, is what a test meets."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from topicli.serving.bundle import MANIFEST, Manifest
from topicli.serving.bundle.write import file_digests


def rewritten(bundle: Path, target: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of `bundle` in `target` whose manifest `change` edits in place, signed again. A change the schema
    refuses is left unsigned: loading refuses it for the schema first."""
    shutil.copytree(bundle, target)
    document = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    change(document)
    document["files"] = file_digests(target)
    with contextlib.suppress(ValidationError):
        document["bundle_id"] = Manifest.model_validate(document).digest()
    (target / MANIFEST).write_text(json.dumps(document), encoding="utf-8")
    return target


def with_fields(bundle: Path, target: Path, changes: dict[str, Any]) -> Path:
    """`rewritten` with `section.name` fields set to values (a value of None removes the field)."""

    def change(document: dict[str, Any]) -> None:
        for key, value in changes.items():
            section, _, name = key.partition(".")
            where = document[section] if name else document
            field = name or section
            if value is None:
                where.pop(field, None)
            else:
                where[field] = value

    return rewritten(bundle, target, change)
