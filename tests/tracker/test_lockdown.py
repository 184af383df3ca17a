"""The embedded server is locked to its owner on a shared lab machine.

Real processes throughout: the server is started as the tool starts it, and the
"other account" is a real process running as ``nobody`` (possible where the tests run
as root, as in CI; skipped with the reason elsewhere).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pymongo
import pytest
from pymongo.errors import OperationFailure

from tracker.db.server import EmbeddedServer


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def locked():
    """A server whose home every account can traverse (pytest's own temporary folders are
    0700, which would hide the files' modes from the other account)."""
    base = Path(tempfile.mkdtemp(prefix="vimtrack-lock-"))
    os.chmod(base, 0o755)
    server = EmbeddedServer(base / "home" / "db")
    info = server.ensure()
    yield server, info
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_files_are_private_and_the_state_holds_no_password(locked):
    server, info = locked
    assert _mode(server.storage) == 0o700
    for path in (server.state_path, server.credentials_path, server.config_path, server.log_path,
                 server.state_dir / "server.lock"):
        assert _mode(path) == 0o600, path
    state = server.state_path.read_text()
    assert info.password and info.password not in state and info.password not in server.log_path.read_text()
    assert json.loads(server.credentials_path.read_text())["password"] == info.password


def test_the_owner_gets_in_and_a_client_without_credentials_is_refused(locked):
    _, info = locked
    owner = pymongo.MongoClient(info.uri, serverSelectionTimeoutMS=5000)
    owner.lockcheck.runs.insert_one({"secret": "owner data"})
    anonymous = pymongo.MongoClient(info.host, info.port, directConnection=True,
                                    serverSelectionTimeoutMS=5000)
    with pytest.raises(OperationFailure) as err:
        anonymous.lockcheck.runs.find_one()
    assert err.value.code == 13  # Unauthorized
    wrong = pymongo.MongoClient(info.uri.replace(info.password, "not-the-password"),
                                serverSelectionTimeoutMS=5000)
    with pytest.raises(OperationFailure) as err:
        wrong.lockcheck.runs.find_one()
    assert err.value.code == 18  # AuthenticationFailed
    owner.drop_database("lockcheck")
    for c in (owner, anonymous, wrong):
        c.close()


PROBE = """
import json, sys
import pymongo
from pymongo.errors import OperationFailure
port, cred = int(sys.argv[1]), sys.argv[2]
out = {}
try:
    open(cred).read()
    out["credentials"] = "read"
except PermissionError:
    out["credentials"] = "denied"
client = pymongo.MongoClient("127.0.0.1", port, directConnection=True, serverSelectionTimeoutMS=5000)
try:
    out["names"] = client.list_database_names()
except OperationFailure as exc:
    out["refused"] = exc.code
print(json.dumps(out))
"""


def _as_nobody(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` with this Python's packages as the account ``nobody``."""
    python = "/usr/bin/python3"
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    return subprocess.run([python, "-c", code, *args], user="nobody", capture_output=True, text=True,
                          timeout=120, env=env, cwd="/")


def _other_account_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("running a client as another account needs root")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 for the other account to run")
    check = _as_nobody("import sys, pymongo; print(sys.version_info[:2])")
    if check.returncode != 0 or check.stdout.strip() != str(sys.version_info[:2]):
        pytest.skip(f"the account nobody cannot import pymongo here: {check.stderr.strip()[-200:]}")


def test_another_account_can_neither_read_the_credentials_nor_log_in(locked):
    _other_account_or_skip()
    server, info = locked
    proc = _as_nobody(PROBE, str(info.port), str(server.credentials_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"credentials": "denied", "refused": 13}


def test_a_stray_config_file_is_never_read(tmp_path, monkeypatch):
    """A ./secantusd.toml and ~/.secantus/secantusd.toml that turn auth off and enable the
    test commands change nothing."""
    stray = '[server]\nauth = false\nenable_test_commands = true\n'
    (tmp_path / "secantusd.toml").write_text(stray)
    (tmp_path / "fakehome" / ".secantus").mkdir(parents=True)
    (tmp_path / "fakehome" / ".secantus" / "secantusd.toml").write_text(stray)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "fakehome"))
    server = EmbeddedServer(tmp_path / "home" / "db")
    info = server.ensure()
    try:
        anonymous = pymongo.MongoClient(info.host, info.port, directConnection=True,
                                        serverSelectionTimeoutMS=5000)
        with pytest.raises(OperationFailure):
            anonymous.admin.command("configureFailPoint", "failCommand", mode="off")
        owner = pymongo.MongoClient(info.uri, serverSelectionTimeoutMS=5000)
        with pytest.raises(OperationFailure) as err:
            owner.admin.command("configureFailPoint", "failCommand", mode="off")
        assert err.value.code != 13  # refused as unknown/disabled, not for lack of a login
        assert "loaded config from " + str(server.config_path) in server.log_path.read_text()
        anonymous.close()
        owner.close()
    finally:
        server.stop()


def test_a_restarted_server_comes_back_on_its_port_and_clients_reconnect(tmp_path):
    server = EmbeddedServer(tmp_path / "home" / "db")
    first = server.ensure()
    try:
        client = pymongo.MongoClient(first.uri, serverSelectionTimeoutMS=20_000)
        client.restart.docs.insert_one({"n": 1})
        server.stop()
        second = server.ensure()
        assert second.port == first.port and second.pid != first.pid
        # the client made before the restart carries on, with the same credentials
        client.restart.docs.insert_one({"n": 2})
        assert client.restart.docs.count_documents({}) == 2
        client.close()
    finally:
        server.stop()


def test_the_spool_is_private(tmp_path):
    from tracker.record.spool import Spool

    spool = Spool(tmp_path / "home" / "spool", "db")
    spool.append_run("fit_runs", {"_id": "fi-x", "status": "RUNNING"})
    assert _mode(spool.directory) == 0o700
    assert _mode(spool.path_of("fi-x")) == 0o600
