"""The embedded MongoDB-wire-compatible server (SecantusDB), run as its own process.

One server per data directory (WiredTiger allows one process per directory). The
first caller starts ``secantusd-py`` on a free loopback port and records
``{pid, host, port}`` in ``server.json`` next to the data; later callers (other
commands, scripts, tests) reuse it. A file lock serialises start-up, so two
processes starting at once end with one server. ``stop()`` sends SIGTERM and waits.

The server is never imported into our process: a crash of one side never takes
the other down, and its GPL-2.0 licence stays at arm's length.

Locked to its owner: it runs with authentication on. The first start creates a random
credential in ``credentials.json`` (0600) beside the data and the user it names (the
server has no localhost exception, so the user is created on a first start without
authentication, checked to be the only one, and the server restarted with it on).
The data directory is 0700 and the state, lock, log and config files are 0600, so
another account on the machine can neither read the data nor log in. The server gets
an explicit ``secantusd.toml`` written here (no stray ``./secantusd.toml`` or
``~/.secantus`` file is read). A restart reuses the last port when it is free, so a
running fit's client finds the server again.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

from pipeline.core.errors import DatabaseError
from pipeline.core.files import atomic_write_text, exclusive_lock, private_dir

HOST = "127.0.0.1"
STATE_FILE = "server.json"
LOG_FILE = "server.log"
CONFIG_FILE = "secantusd.toml"
CREDENTIALS_FILE = "credentials.json"
_LISTEN_RE = re.compile(r"listening on ([0-9.]+):(\d+)")


@dataclass(frozen=True)
class ServerInfo:
    """A running embedded server."""

    pid: int
    host: str
    port: int
    storage: str
    user: str | None = None
    password: str | None = None

    @property
    def uri(self) -> str:
        """``mongodb://user:password@host:port/...`` (credentials percent-encoded)."""
        if self.user is None:
            return f"mongodb://{self.host}:{self.port}/?directConnection=true"
        cred = f"{quote_plus(self.user)}:{quote_plus(self.password or '')}"
        return f"mongodb://{cred}@{self.host}:{self.port}/?directConnection=true&authSource=admin"

    def state(self) -> dict:
        """What ``server.json`` records (never the password)."""
        return {"pid": self.pid, "host": self.host, "port": self.port, "storage": self.storage}


def server_command() -> list[str]:
    """The ``secantusd-py`` launcher: next to this interpreter, else on PATH, else the
    installed package run by this interpreter (``python -m secantus``: an install whose
    scripts folder is not on PATH)."""
    local = Path(sys.executable).parent / "secantusd-py"
    if local.exists():
        return [str(local)]
    found = shutil.which("secantusd-py")
    if found:
        return [found]
    if importlib.util.find_spec("secantus") is not None:
        return [sys.executable, "-m", "secantus"]
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


def _storage_ok(info: ServerInfo, timeout_ms: int = 3000) -> bool:
    """False when the server answers but its storage engine has failed (code 1)."""
    import pymongo
    from pymongo.errors import OperationFailure, PyMongoError

    client = pymongo.MongoClient(info.uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        client.admin.command("listDatabases", nameOnly=True)
        return True
    except OperationFailure as exc:
        return exc.code != 1
    except PyMongoError:
        return True  # unreachable is running()'s business, not a storage failure
    finally:
        client.close()


def _disk_hint(path: Path) -> str:
    """``"; only N MB free on the disk of PATH"`` when that disk is (nearly) full."""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return ""
    return f"; only {free / 1e6:.0f} MB free on the disk of {path}: free space" if free < 64e6 else ""


@contextmanager
def _locked(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(directory / "server.lock"):
        yield


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

    @property
    def config_path(self) -> Path:
        return self.state_dir / CONFIG_FILE

    @property
    def credentials_path(self) -> Path:
        return self.state_dir / CREDENTIALS_FILE

    def credentials(self) -> tuple[str, str] | None:
        """``(user, password)`` of this server's owner, or None before the first start."""
        try:
            data = json.loads(self.credentials_path.read_text())
            return str(data["user"]), str(data["password"])
        except FileNotFoundError:
            return None
        except PermissionError:
            raise DatabaseError(f"the embedded database's credentials {self.credentials_path} "
                                "belong to another account: use your own TRACKER_HOME") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatabaseError(f"the embedded database's credentials {self.credentials_path} are "
                                f"unreadable ({exc}); remove the file and the data directory "
                                f"{self.storage} to start afresh") from None

    def _recorded(self) -> ServerInfo | None:
        try:
            state = json.loads(self.state_path.read_text())
            return ServerInfo(int(state["pid"]), state["host"], int(state["port"]), state["storage"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _last_port(self) -> int | None:
        """The port the server last listened on (kept by :meth:`stop`), if recorded."""
        try:
            state = json.loads(self.state_path.read_text())
            return int(state.get("port") or state["last_port"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def _forget(self, port: int | None) -> None:
        """Drop the running server's record, keeping only its port for the next start."""
        if port:
            try:
                atomic_write_text(self.state_path, json.dumps({"last_port": port}), mode=0o600)
                return
            except OSError:  # a full disk: forgetting the port is fine
                pass
        self.state_path.unlink(missing_ok=True)

    def running(self, probe: bool = True) -> ServerInfo | None:
        """The recorded server if its process is alive (and, with ``probe``, accepts
        connections), else None. The returned info carries the owner's credentials."""
        info = self._recorded()
        if info is None or info.storage != str(self.storage) or not pid_alive(info.pid):
            return None
        if probe and not _answers(info.host, info.port):
            return None
        cred = self.credentials()
        return info if cred is None else ServerInfo(info.pid, info.host, info.port, info.storage, *cred)

    def ensure(self) -> ServerInfo:
        """Return the running server, starting one if needed (safe across processes)."""
        info = self.running()
        if info is not None and info.user is not None and _storage_ok(info):
            return info
        with _locked(self.state_dir):
            info = self.running()
            # an older server without auth, or one whose storage failed (it still answers
            # ping, and "internal server error" to everything else): restart it
            if info is not None and (info.user is None or not _storage_ok(info)):
                self._terminate(info.pid, timeout=15)
                info = None
            if info is None:
                info = self._start()
        return info

    def _write_config(self, auth: bool) -> None:
        text = ("# Written by vimtrack for its embedded server: passed with --config, so no\n"
                "# ./secantusd.toml, ~/.secantus or /etc/secantus file is ever read.\n"
                f"[server]\nhost = \"{HOST}\"\nauth = {'true' if auth else 'false'}\n"
                "enable_test_commands = false\n")
        atomic_write_text(self.config_path, text, mode=0o600)

    def _start(self) -> ServerInfo:
        private_dir(self.storage)
        cred = self.credentials()
        if cred is None:
            cred = self._provision()
        last = self._last_port()
        ports = [last, 0] if last else [0]
        for i, port in enumerate(ports):
            try:
                info = self._launch(port, auth=True)
            except DatabaseError:
                if i == len(ports) - 1:
                    raise
                continue
            return ServerInfo(info.pid, info.host, info.port, info.storage, *cred)
        raise AssertionError("unreachable")

    def _provision(self) -> tuple[str, str]:
        """Create the owner's user on a server started without auth, then stop it."""
        import pymongo

        user, password = "vimtrack", secrets.token_urlsafe(32)
        info = self._launch(0, auth=False)
        try:
            client = pymongo.MongoClient(info.host, info.port, directConnection=True,
                                         serverSelectionTimeoutMS=10_000)
            try:
                existing = client.admin.command("usersInfo").get("users", [])
                for other in existing:  # only ours may exist: nobody else's, nor a stale one
                    client.admin.command("dropUser", other["user"])
                client.admin.command("createUser", user, pwd=password, roles=["root"])
                names = [u["user"] for u in client.admin.command("usersInfo").get("users", [])]
                if names != [user]:
                    raise DatabaseError(f"the embedded database at {self.storage} has unexpected "
                                        f"users {names} while being locked; start it again")
            finally:
                client.close()
        finally:
            self._terminate(info.pid)
            self._forget(None)
        atomic_write_text(self.credentials_path, json.dumps({"user": user, "password": password}),
                          mode=0o600)
        return user, password

    def _launch(self, port: int, auth: bool) -> ServerInfo:
        """Start the server process and wait until it answers; records ``server.json``."""
        self._write_config(auth)
        cmd = server_command() + [
            "--config", str(self.config_path), "--host", HOST, "--port", str(port),
            "--storage-path", str(self.storage), "--log-level", "INFO",
        ]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, close_fds=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DatabaseError(
                    f"the embedded database server exited with code {proc.returncode} while "
                    f"starting on {self.storage}; see {self.log_path}{_disk_hint(self.storage)}"
                )
            found = self._logged_port(offset)
            if found is not None and _answers(HOST, found):
                info = ServerInfo(proc.pid, HOST, found, str(self.storage))
                atomic_write_text(self.state_path, json.dumps(info.state()), mode=0o600)
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
                self._forget(self._last_port())
                return False
            self._terminate(info.pid, timeout)
            self._forget(info.port)
            return True

    @staticmethod
    def _terminate(pid: int, timeout: float = 60.0) -> None:
        """SIGTERM ``pid``, wait for it (reaping our child), SIGKILL it after ``timeout``."""
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            try:  # reap it if it is our child
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
