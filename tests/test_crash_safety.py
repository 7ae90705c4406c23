"""A run folder's outputs are replaced as a set: a process killed at any rename leaves the old set or the new.

Each case runs `topicli label` in a child process that dies (`os._exit`, no clean-up) at its k-th
rename or link, for every k; the run folder it leaves must be exactly the previous set or exactly the
new one, and the next run must finish and leave no temporary files behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from topicli.cli import app
from topicli.io import atomic_folder
from topicli.runs.outputs import find_posts_output

from .conftest import EXAMPLES

NEW_TOPICS = ["Coffee rituals", "Running and fitness", "Pets at home", "Home cooking", "Weekend trips", "Live music"]
KILLER = """
import os, sys
from topicli.cli import app

kill_at, calls = int(sys.argv[1]), 0
for name in ("replace", "rename", "symlink"):
    def wrapped(*args, _real=getattr(os, name), **kwargs):
        global calls
        calls += 1
        if calls == kill_at:
            os._exit(137)
        return _real(*args, **kwargs)
    setattr(os, name, wrapped)
try:
    app(sys.argv[2:], prog_name="topicli")
finally:
    print(calls, file=sys.stderr)
"""


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file the run folder shows (through its link)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def label_killed_at(kill_at: int) -> subprocess.CompletedProcess:
    """`topicli label --topics new.txt` in a child process that dies at its `kill_at`-th rename (0: never)."""
    command = [sys.executable, "-c", KILLER, str(kill_at), "label", "--topics", "new.txt"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ.copy())


@pytest.mark.heavy
@pytest.mark.parametrize("layout", ["link", "folder written before attempts"])
def test_a_kill_at_any_rename_leaves_the_old_set_or_the_new(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    monkeypatch.setenv("TOPICLI_ENCODER_NAME", "all-MiniLM-L6-v2")
    Path("new.txt").write_text("\n".join(NEW_TOPICS) + "\n")
    result = CliRunner().invoke(app, ["run", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    folder = isolated / "topicli-out" / "posts"

    def reset() -> None:
        """The old set back in place, as a link to an attempt or as a plain folder (runs before attempts)."""
        shutil.rmtree(isolated / "topicli-out")
        shutil.copytree(saved, folder)
        if layout == "link":
            assert CliRunner().invoke(app, ["label"]).exit_code == 0
            assert folder.is_symlink()

    saved = isolated / "saved"
    shutil.copytree(folder, saved)
    reset()
    old = snapshot(folder)
    assert label_killed_at(0).returncode == 0  # embeds the new topic names: later runs find them in the cache
    new = snapshot(folder)
    assert new != old and set(new) == set(old)
    reset()
    counted = label_killed_at(0)
    assert counted.returncode == 0, counted.stderr
    assert snapshot(folder) == new, "the same run gives the same bytes"
    renames = int(counted.stderr.strip().splitlines()[-1])
    assert renames >= 8, "clustering (3), posts, topic table, record, bundle, link"

    seen = []
    for kill_at in range(1, renames + 1):
        reset()
        killed = label_killed_at(kill_at)
        assert killed.returncode == 137, killed.stderr
        shown = snapshot(folder)
        assert shown in (old, new), f"killed at rename {kill_at}: a mix of the two sets"
        seen.append("new" if shown == new else "old")
        assert find_posts_output(folder).is_file()
        rerun = label_killed_at(0)  # the next run finishes and tidies what the killed one left
        assert rerun.returncode == 0, rerun.stderr
        assert snapshot(folder) == new
        out = isolated / "topicli-out"
        assert sorted(p.name for p in out.iterdir()) == [".latest-run", ".posts.attempts", "posts"], (
            "no link or folder left over"
        )
        assert len(list((out / ".posts.attempts").iterdir())) == 1, "only the attempt the link points to"
        assert not [p for p in folder.rglob("*") if p.name.startswith(".") and p.name != ".complete"]
    assert seen[0] == "old" and seen == sorted(seen, key=["old", "new"].index), "once the new set shows, it stays"
    if layout == "link":  # the link's swap is the last rename of the set; the most recent run's pointer follows it
        assert seen == ["old"] * (renames - 1) + ["new"], "the new set shows only once the link is swapped"


def test_a_folder_whose_writer_died_between_its_two_renames_is_put_back(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "a.txt").write_text("old")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    moved = tmp_path / f".bundle.old-{dead.stdout.strip()}"
    folder.rename(moved)  # what a writer killed after moving the old folder aside leaves
    (tmp_path / f".bundle.{dead.stdout.strip()}.abc").mkdir()  # and its staging folder
    with atomic_folder(folder) as staging:
        assert (folder / "a.txt").read_text() == "old", "put back before anything else"
        (staging / "a.txt").write_text("new")
    assert (folder / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
