"""Run folders: a run's files replaced as one set.

A run folder (`[output] dir/<posts name>/` by default) is a link to one attempt folder
(`.<name>.attempts/<attempt>/` beside it), and a command writes everything into a new attempt,
then swaps the link in one rename (`new_attempt`). A crash at any point leaves the previous
complete set or the new one, never a mix; the next command removes attempts that nothing points
to and puts back a link a crash left missing. What a run folder holds is listed in
`topicli.runs.service`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import atomic_path, exchange, pid_alive, remove, stale_leftovers
from topicli.method.records import CLUSTERING_FILE

BUNDLE_FOLDER = "bundle"
COMPLETE_FILE = ".complete"  # the last file of an attempt: one without it was cut short
LATEST_FILE = ".latest-run"  # in [output] dir: the run folder the last run, cluster or label wrote


def default_run_folder(settings: Settings, posts_path: Path) -> Path:
    return Path(settings.output.dir) / Path(posts_path).stem


def mark_latest(settings: Settings, folder: Path) -> None:
    """Record `folder` as the most recent run: the one commands read when no --run names another. Only what
    makes a run (run, cluster, label, train) marks it; a rename or a report does not."""
    pointer = Path(settings.output.dir) / LATEST_FILE
    pointer.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(pointer) as temp:
        temp.write_text(str(folder) + "\n", encoding="utf-8")  # as given: relative, like [output] dir


def latest_run_folder(settings: Settings) -> Path:
    """The most recent run: the one `mark_latest` recorded, while it still holds a clustering; else the run
    folder under the output dir whose clustering was written last."""
    pointer = Path(settings.output.dir) / LATEST_FILE
    if pointer.is_file():
        recorded = Path(pointer.read_text(encoding="utf-8").strip())
        if (recorded / CLUSTERING_FILE).is_file():
            return recorded
    found = sorted(
        (p for p in Path(settings.output.dir).glob(f"*/{CLUSTERING_FILE}") if not p.parent.name.startswith(".")),
        key=lambda p: (p.stat().st_mtime, str(p)),
    )  # names starting with a dot are attempts and links being made, not run folders
    if not found:
        raise TopicliError(f"no clustering under {settings.output.dir}; run `topicli cluster POSTS` first")
    return found[-1].parent


def bundle_folder(run_folder: Path) -> Path:
    return Path(run_folder) / BUNDLE_FOLDER


def _attempts(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.attempts")


def _recover(folder: Path) -> None:
    """Put back the link a crash left missing (between moving an old-style folder aside and linking), and
    remove attempts that no link points to and no live process is writing."""
    for leftover in stale_leftovers(folder.parent, f".{folder.name}.link-"):
        remove(leftover)
    attempts = _attempts(folder)
    if not attempts.is_dir():
        return
    complete = sorted((a for a in attempts.iterdir() if (a / COMPLETE_FILE).is_file()), key=lambda a: a.name)
    if not folder.exists() and not folder.is_symlink() and complete:
        _link(folder, complete[-1])
    current = folder.resolve() if folder.is_symlink() else None
    for attempt in attempts.iterdir():
        pid = attempt.name.rsplit("-", 1)[-1]
        writing = pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)) and attempt not in complete
        if attempt.resolve() != current and not writing:
            remove(attempt)


def _link(folder: Path, attempt: Path) -> None:
    """Point `folder` at `attempt` in one rename (a relative link, so the output folder can move)."""
    temp = folder.with_name(f".{folder.name}.link-{os.getpid()}")
    remove(temp)
    os.symlink(os.path.relpath(attempt, folder.parent), temp)
    if folder.is_dir() and not folder.is_symlink():  # a run folder written before attempts: moved aside whole
        legacy = _attempts(folder) / f"{time.strftime('%Y%m%dT%H%M%S')}-legacy-{os.getpid()}"
        if exchange(temp, folder):  # the link in, the old folder out, in one step
            os.replace(temp, legacy)
            return
        os.replace(folder, legacy)  # elsewhere two steps: a crash between them is put right by `_recover`
    os.replace(temp, folder)


@contextmanager
def new_attempt(folder: Path) -> Iterator[Path]:
    """A fresh attempt folder for everything a command leaves in the run folder `folder`; when the block
    succeeds it becomes `folder` in one rename, and the attempts it replaced are removed."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _recover(folder)
    attempt = _attempts(folder) / f"{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}-{os.getpid()}"
    attempt.mkdir(parents=True)
    try:
        yield attempt
        (attempt / COMPLETE_FILE).touch()
        _link(folder, attempt)
    except BaseException:
        remove(attempt)
        raise
    _recover(folder)
