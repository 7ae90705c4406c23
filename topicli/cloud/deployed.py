"""The record of what `topicli deploy` last deployed, which `topicli score POSTS` sends posts to.

One small JSON file, `<[output] dir>/deployed.json`, beside the local server's own state
(`<[output] dir>/serve/`): the target (azure, local or triton), where it answers, and for Azure
the endpoint, the deployment, its model and the model served before it, the figures of each
gate of the last rollout (`gates`, also of one that failed), and `history`: every deployment
that passed all its gates, oldest first, each marked `rolled_back` once `deploy --rollback`
went back past it. `--rollback` goes to the last entry of the history that is not rolled back
and serves another model than the live deployment: never to a candidate that failed a gate.
It is replaced atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import atomic_path

RECORD_FILE = "deployed.json"
Target = Literal["azure", "local", "triton"]
TARGETS = ("azure", "local", "triton")


@dataclass(frozen=True)
class Deployed:
    target: Target
    url: str  # scoring URL (azure, local) or Triton's base URL
    endpoint: str = ""  # azure: the online endpoint
    deployment: str = ""  # azure: the deployment taking all traffic
    model: str = ""  # azure: name:version it serves
    previous_model: str = ""  # azure: name:version the deployment before it served
    gates: list[dict[str, Any]] = field(default_factory=list)  # azure: the last rollout's gates, with their figures
    history: list[dict[str, Any]] = field(default_factory=list)  # azure: `Passed` records, oldest first
    failed: str = ""  # azure: why the last rollout was stopped ("" when it passed)


@dataclass(frozen=True)
class Passed:
    """A deployment that passed every gate, and the model it served then."""

    deployment: str
    model: str
    at: str  # UTC, ISO 8601
    rolled_back: bool = False


def history(record: Deployed | None) -> list[Passed]:
    """The passed deployments of an Azure record (a record from before `history` gives its two models)."""
    if record is None or record.target not in ("azure", "triton") or not record.endpoint:
        return []
    if record.history:
        known = {f.name for f in fields(Passed)}
        return [Passed(**{k: v for k, v in entry.items() if k in known}) for entry in record.history]
    earlier = [Passed("", record.previous_model, "")] if record.previous_model else []
    return [*earlier, Passed(record.deployment, record.model, "")]


def after_rollback(passed: list[Passed], deployment: str, model: str) -> list[Passed]:
    """The history once `deployment` serves `model` again: later entries rolled back, the entry moved to it."""
    live = [i for i, entry in enumerate(passed) if not entry.rolled_back and entry.model == model]
    if not live:
        return [*passed, Passed(deployment, model, "")]
    target = live[-1]
    return [
        replace(entry, deployment=deployment)
        if i == target
        else replace(entry, rolled_back=True)
        if i > target
        else entry
        for i, entry in enumerate(passed)
    ]


def as_records(passed: list[Passed]) -> list[dict[str, Any]]:
    return [asdict(entry) for entry in passed]


def record_path(settings: Settings) -> Path:
    return Path(settings.output.dir) / RECORD_FILE


def record(settings: Settings, deployed: Deployed) -> Path:
    """Keep `deployed` as the last deployment; the path written."""
    path = record_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(asdict(deployed), indent=2), encoding="utf-8")
    return path


def last(settings: Settings) -> Deployed | None:
    """What was last deployed, or None; a record that cannot be read is an error saying how to fix it."""
    path = record_path(settings)
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(Deployed)}
        deployed = Deployed(**{key: value for key, value in document.items() if key in known})
        if deployed.target not in TARGETS or not isinstance(deployed.url, str):
            raise ValueError(f"target {deployed.target!r}")
    except (ValueError, TypeError, UnicodeDecodeError) as error:
        raise TopicliError(
            f"{path} is not a record of a deployment ({error}); deploy again, or name the server: "
            "topicli score local|azure|endpoint URL|triton URL POSTS"
        ) from None
    return deployed
