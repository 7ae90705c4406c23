"""`topicli deploy local`: the Azure ML inference server (azmlinfsrv) with score.py and a bundle, on 127.0.0.1.

azmlinfsrv always binds 0.0.0.0 (its host is a constant, not an option); the launcher sets
that constant to 127.0.0.1 before starting it, so the local server is not reachable from
other machines, and puts `topicli.serving.guard` in front of each worker (every 4xx in
topicli's error shape, no 500 for a malformed body, workers that end with their master).
Everything else is the real server as Azure ML runs it. The server's state lives in a folder
(default `<[output] dir>/serve/`): `azmlinfsrv.pid`, `server.json` (URL, port, bundle, log,
process start time, so a recycled PID is never taken for ours), `azmlinfsrv.log`, and
`bundle/`, the copy of the bundle it serves: a later run replaces its run folder, and a worker
that restarts must still find the bundle it was started with. `stop` removes the copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import atomic_folder, atomic_path, remove

SCORE_SCRIPT = Path(__file__).with_name("score.py")
PID_FILE = "azmlinfsrv.pid"
STATE_FILE = "server.json"
LOG_FILE = "azmlinfsrv.log"
HOST = "127.0.0.1"
SERVED_FOLDER = "bundle"  # in the state folder: the copy of the bundle the server serves
_LAUNCHER = f"from topicli.serving.guard import launch; launch({HOST!r})"


@dataclass(frozen=True)
class LocalServer:
    """A local inference server that `start` launched."""

    pid: int
    port: int
    bundle: str
    log: str
    started: float  # the process's start time, as psutil reports it

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/score"

    @property
    def health_url(self) -> str:
        return f"http://{HOST}:{self.port}/"


def state_folder(settings: Settings) -> Path:
    """Where `deploy local` keeps the local server's pid, state and log, and where `score local` finds it."""
    return Path(settings.output.dir) / "serve"


def _read_state(folder: Path) -> LocalServer | None:
    """The server recorded in `folder` if its process still runs; stale records are removed.

    A `server.json` that cannot be read (cut short, edited, not JSON) must not leave a server
    nobody can stop: the server is then found from its process (our launcher, run with this
    state folder), the record rewritten and a warning given; when no such process runs, the
    broken record is removed.
    """
    folder = Path(folder).resolve()
    state = folder / STATE_FILE
    if not state.is_file():
        return None
    try:
        server = _parse_state(state.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError) as error:
        server = _found_process(folder)
        warnings.warn(
            f"{state} is unreadable ({type(error).__name__}: {error}); "
            + (f"found the server from its process (pid {server.pid})" if server else "no server of it runs; removed"),
            stacklevel=3,
        )
        if server is None:
            _reap(folder)
            _forget(folder)
            return None
        _write_state(folder, server)
    try:
        process = psutil.Process(server.pid)
        alive = process.create_time() == server.started and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        alive = False
    if not alive:
        _reap(folder)
        _forget(folder)
        return None
    return server


def _parse_state(text: str) -> LocalServer:
    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    server = LocalServer(**document)
    wanted = {"pid": int, "port": int, "bundle": str, "log": str, "started": float}
    for name, kind in wanted.items():
        value = getattr(server, name)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise TypeError(f"{name} must be {kind.__name__}, got {value!r}")
    return server


def _processes(folder: Path) -> Iterator[psutil.Process]:
    """Every process `start` launched with this state folder: our launcher, run with AML_APP_ROOT = `folder`
    (gunicorn's master and the workers it forked, which share its command line and environment)."""
    for process in psutil.process_iter(["pid", "cmdline", "environ", "create_time"]):
        info = process.info
        command, environ = info["cmdline"] or [], info["environ"] or {}
        if _LAUNCHER in command and environ.get("AML_APP_ROOT") == str(folder):
            yield process


def _reap(folder: Path) -> None:
    """Kill what is left of a server of this state folder whose master is gone (`kill -9` of the master leaves its
    workers serving, holding the port): called only where no live server is recorded for the folder."""
    left = list(_processes(folder))
    for process in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(left, timeout=10)


def _found_process(folder: Path) -> LocalServer | None:
    """The server `start` launched with this state folder, read from its process: the session leader running
    our launcher with AML_APP_ROOT = `folder`; its command line gives the port and the bundle."""
    for process in _processes(folder):
        info = process.info
        command = info["cmdline"] or []
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(info["pid"]) != info["pid"]:
                continue  # a gunicorn worker; its master leads the group
        options = dict(zip(command[3::2], command[4::2], strict=False))
        with contextlib.suppress(KeyError, ValueError):
            port, bundle = int(options["--port"]), options["--model_dir"]
            return LocalServer(info["pid"], port, bundle, str(folder / LOG_FILE), info["create_time"])
    return None


def _write_state(folder: Path, server: LocalServer) -> None:
    (folder / PID_FILE).write_text(f"{server.pid}\n", encoding="utf-8")
    with atomic_path(folder / STATE_FILE) as temp:
        temp.write_text(json.dumps(asdict(server), indent=2) + "\n", encoding="utf-8")


def _forget(folder: Path) -> None:
    """Remove the record of a server that no longer runs, and the copy of the bundle it served."""
    (folder / STATE_FILE).unlink(missing_ok=True)
    (folder / PID_FILE).unlink(missing_ok=True)
    remove(folder / SERVED_FOLDER)


def running_server(folder: Path) -> LocalServer:
    """The local server recorded in `folder`, or an error saying how to start one."""
    server = _read_state(folder)
    if server is None:
        raise TopicliError(
            f"no local server runs (nothing alive recorded in {folder}); start one: topicli deploy local"
        )
    return server


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _port_free(port: int) -> bool:
    """Whether azmlinfsrv can bind `port` now. It binds with SO_REUSEADDR (gunicorn does), so the probe does
    too: connections of a stopped server left in TIME_WAIT do not hold the port, a listening socket does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _log_tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


def _refusal(log: Path) -> str | None:
    """Why score.py refused the bundle, from its one log line, when that is why the server stopped."""
    from topicli.serving.score import REFUSED

    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    reasons = [line.split(REFUSED, 1)[1].strip() for line in text.splitlines() if REFUSED in line]
    return reasons[0] if reasons else None


def start(bundle: Path, folder: Path, port: int, workers: int = 1, timeout: float = 180.0) -> LocalServer:
    """Start azmlinfsrv on 127.0.0.1:`port` serving `bundle`, and wait until it answers its liveness probe.

    The bundle is checked here first (`read_bundle`), so a bad one is refused with its reason before
    a server starts; what only loading shows (the encoder) comes back from score.py's log line.
    """
    from topicli.serving.bundle import read_bundle

    bundle = Path(bundle).resolve()
    read_bundle(bundle)
    folder = Path(folder).resolve()
    existing = _read_state(folder)
    if existing is not None:
        raise TopicliError(
            f"a local server already runs at {existing.url} (pid {existing.pid}); stop it with `topicli deploy stop`"
        )
    _reap(folder)  # workers a killed master left behind, holding the port
    if not _port_free(port):
        raise TopicliError(f"port {port} on {HOST} is in use; pass another with --port")
    folder.mkdir(parents=True, exist_ok=True)
    served = _serve_copy(bundle, folder / SERVED_FOLDER)
    log = folder / LOG_FILE
    command = [
        sys.executable,
        "-c",
        _LAUNCHER,
        "--entry_script",
        str(SCORE_SCRIPT),
        "--model_dir",
        str(served),
        "--port",
        str(port),
        "--worker_count",
        str(workers),
    ]
    # AML_APP_ROOT is where azmlinfsrv looks for a config.json: the state folder holds none.
    env = {**os.environ, "AML_APP_ROOT": str(folder), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    server = LocalServer(process.pid, port, str(served), str(log), psutil.Process(process.pid).create_time())
    try:
        _wait_live(server, process, timeout)
    except BaseException:
        _terminate(process.pid)
        process.wait(timeout=30)
        _reap(folder)
        remove(served)
        raise
    _write_state(folder, server)
    return server


def _serve_copy(bundle: Path, served: Path) -> Path:
    """`bundle` copied to `served` (hard links where the file system allows: no second copy of the encoder), so
    that no later command that replaces the run folder takes the served bundle with it."""

    def link_or_copy(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    with atomic_folder(served) as staging:
        shutil.copytree(bundle, staging, copy_function=link_or_copy, dirs_exist_ok=True)
    return served


def _wait_live(server: LocalServer, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TopicliError(
                _refusal(Path(server.log))
                or f"the inference server exited with code {process.returncode}: {_log_tail(Path(server.log))}"
            )
        try:
            if httpx.get(server.health_url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise TopicliError(f"the inference server did not answer within {timeout:g}s; see {server.log}")


def _terminate(pid: int) -> None:
    """SIGTERM to the server's process group (gunicorn's master and its workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)


def stop(folder: Path, timeout: float = 30.0) -> LocalServer | None:
    """Stop the local server recorded in `folder`; None when none runs."""
    folder = Path(folder).resolve()
    server = _read_state(folder)
    if server is None:
        return None
    _terminate(server.pid)
    try:
        psutil.Process(server.pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
    _reap(folder)  # a worker that outlived its master
    _forget(folder)
    return server
