"""The embedded MongoDB-wire-compatible server (SecantusDB), run as its own process.

One server per data directory (WiredTiger allows one process per directory). The
first caller starts ``secantusd-py`` on a free loopback port and records
``{pid, host, port}`` in ``server.json`` next to the data; later callers (other
commands, scripts, tests) reuse it. A file lock serialises start-up, so two
processes starting at once end with one server. ``stop()`` sends SIGTERM and waits.

The server is never imported into our process: a crash of one side never takes
the other down, and its GPL-2.0 licence stays at arm's length.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import DatabaseError
from pipeline.core.files import atomic_write_text

HOST = "127.0.0.1"
STATE_FILE = "server.json"
LOG_FILE = "server.log"
_LISTEN_RE = re.compile(r"listening on ([0-9.]+):(\d+)")


@dataclass(frozen=True)
class ServerInfo:
    """A running embedded server."""

    pid: int
    host: str
    port: int
    storage: str

    @property
    def uri(self) -> str:
        """``mongodb://host:port`` (no credentials: the embedded server has none)."""
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"


def server_command() -> list[str]:
    """The ``secantusd-py`` launcher: next to this interpreter, else on PATH."""
    local = Path(sys.executable).parent / "secantusd-py"
    if local.exists():
        return [str(local)]
    found = shutil.which("secantusd-py")
    if found:
        return [found]
    raise DatabaseError(
        "the embedded database server 'secantusd-py' was not found: install it with "
        "`pip install secantusdb==0.7.0b3`, or set TRACKER_MONGO_URI to a MongoDB server"
    )


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists here and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists": check its state where /proc is available.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _answers(host: str, port: int, timeout_ms: int = 1000) -> bool:
    """True if a server on host:port answers ``ping``.

    Speaks the wire protocol (a bare TCP connect that sends nothing makes this server
    delay its SIGTERM shutdown by a minute).
    """
    import pymongo
    from pymongo.errors import PyMongoError

    client = pymongo.MongoClient(
        host, port, directConnection=True, serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


@contextmanager
def _locked(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "server.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class EmbeddedServer:
    """Start, find and stop the SecantusDB server that owns ``storage``.

    Parameters
    ----------
    storage
        WiredTiger data directory (created if missing). ``server.json`` and
        ``server.log`` are written in its parent directory.
    """

    def __init__(self, storage: Path | str, start_timeout: float = 60.0) -> None:
        self.storage = Path(storage).resolve()
        self.state_dir = self.storage.parent
        self.start_timeout = start_timeout

    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def log_path(self) -> Path:
        return self.state_dir / LOG_FILE

    def running(self, probe: bool = True) -> ServerInfo | None:
        """The recorded server if its process is alive (and, with ``probe``, accepts
        connections), else None."""
        try:
            state = json.loads(self.state_path.read_text())
            info = ServerInfo(int(state["pid"]), state["host"], int(state["port"]), state["storage"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if info.storage != str(self.storage) or not pid_alive(info.pid):
            return None
        if not probe:
            return info
        return info if _answers(info.host, info.port) else None

    def ensure(self) -> ServerInfo:
        """Return the running server, starting one if needed (safe across processes)."""
        info = self.running()
        if info is not None:
            return info
        with _locked(self.state_dir):
            info = self.running()
            if info is None:
                info = self._start()
        return info

    def _start(self) -> ServerInfo:
        self.storage.mkdir(parents=True, exist_ok=True)
        cmd = server_command() + [
            "--host", HOST, "--port", "0", "--storage-path", str(self.storage),
            "--log-level", "INFO",
        ]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, close_fds=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DatabaseError(
                    f"the embedded database server exited with code {proc.returncode} while "
                    f"starting on {self.storage}; see {self.log_path}"
                )
            port = self._logged_port(offset)
            if port is not None and _answers(HOST, port):
                info = ServerInfo(proc.pid, HOST, port, str(self.storage))
                atomic_write_text(self.state_path, json.dumps(info.__dict__))
                return info
            time.sleep(0.1)
        proc.terminate()
        raise DatabaseError(
            f"the embedded database server did not start within {self.start_timeout:.0f} s "
            f"on {self.storage}; see {self.log_path}"
        )

    def _logged_port(self, offset: int) -> int | None:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return None
        match = _LISTEN_RE.search(text)
        return int(match.group(2)) if match else None

    def stop(self, timeout: float = 60.0) -> bool:
        """SIGTERM the server and wait for it to exit; True if one was running."""
        with _locked(self.state_dir):
            info = self.running(probe=False)
            if info is None:
                self.state_path.unlink(missing_ok=True)
                return False
            os.kill(info.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(info.pid) and time.monotonic() < deadline:
                try:  # reap it if it is our child
                    os.waitpid(info.pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.1)
            if pid_alive(info.pid):
                os.kill(info.pid, signal.SIGKILL)
            self.state_path.unlink(missing_ok=True)
            return True
