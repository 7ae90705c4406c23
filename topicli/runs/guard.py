"""What no command may write over: the files of every run under [output] dir, a run's outputs written
elsewhere, and the posts each run read (`run_files`, for `topicli.io.check_writable`'s `keep`)."""

from __future__ import annotations

from pathlib import Path

from topicli.config import Settings


def check_cache_dir(settings: Settings) -> None:
    """Refuse an [encoder] cache_dir that cannot take writes, before the first post is embedded."""
    from topicli.io import check_writable

    check_writable(Path(settings.encoder.cache_dir), "[encoder] cache_dir", folder=True)


def run_files(settings: Settings, *runs: Path, skip: Path | None = None, own: tuple[Path, ...] = ()) -> dict[Path, str]:
    """What no command may write over (`check_writable`'s `keep`), each with what it is: in every folder under
    [output] dir (runs, the local server's state, cls_model) and every run folder in `runs`, its files, and a run's
    outputs written elsewhere (-o) and the posts it read. Left out: `skip`, the run folder a command replaces as a
    set (`run`, `label`: its files are written anew, as one attempt), and the command's `own` outputs (files, or
    folders and all they hold), which it may write again."""
    import json

    from topicli.method.records import CLUSTERING_FILE
    from topicli.runs.outputs import OUTPUTS_FILE

    root = Path(settings.output.dir)
    folders = {*(p for p in root.iterdir() if not p.name.startswith(".")), *runs} if root.is_dir() else {*runs}
    found: dict[Path, str] = {}
    for folder in sorted(f for f in folders if f.is_dir() and (skip is None or f.resolve() != skip.resolve())):
        files = (p for p in folder.rglob("*") if p.is_file())  # named in messages: visible and shallow ones first
        for file in sorted(files, key=lambda p: (p.name.startswith("."), len(p.parts), str(p))):
            found[file] = f"a file of {folder}"
        records = (
            (OUTPUTS_FILE, "posts", "posts output", folder),  # a name alone is in the run folder
            (OUTPUTS_FILE, "topic_table", "topic table", folder),
            (CLUSTERING_FILE, "input", "input posts", Path()),  # as given on the command line
        )
        for name, key, what, base in records:
            try:
                path = base / json.loads((folder / name).read_text(encoding="utf-8"))[key]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # no record, or a damaged one: the command that reads it says so
            found.setdefault(path, f"run {folder}'s {what}")
    mine = [Path(p).resolve() for p in own]
    return {p: what for p, what in found.items() if not any(o == p.resolve() or o in p.resolve().parents for o in mine)}


def check_files(settings: Settings, folder: Path, names: tuple[str, ...], what: str) -> None:
    """`check_writable` for the files a command writes by name into `folder` (`report --png`, `deploy --dry-run -o`):
    none may be an input or another's file; the same names from an earlier run of the command may be replaced."""
    from topicli.io import check_writable

    check_writable(folder, what, folder=True)
    keep = run_files(settings, own=tuple(folder / name for name in names))
    for name in names:
        check_writable(folder / name, f"{what}'s {name}", keep=keep)
