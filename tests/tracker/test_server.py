import json
import subprocess
import sys

import pymongo

from tracker.db.server import EmbeddedServer


def test_start_reuse_stop(tmp_path):
    server = EmbeddedServer(tmp_path / "db")
    info = server.ensure()
    try:
        again = EmbeddedServer(tmp_path / "db").ensure()
        assert again == info, "a second caller must reuse the running server"
        client = pymongo.MongoClient(info.uri, serverSelectionTimeoutMS=5000)
        client.t.c.insert_one({"x": 1})
        assert client.t.c.count_documents({}) == 1
        client.close()
        assert json.loads((tmp_path / "server.json").read_text())["port"] == info.port
    finally:
        assert server.stop() is True
    assert server.running() is None
    # only the port stays on record (a restart takes it again when it is free)
    assert json.loads((tmp_path / "server.json").read_text()) == {"last_port": info.port}
    assert server.stop() is False


def test_data_survives_restart(tmp_path):
    server = EmbeddedServer(tmp_path / "db")
    uri = server.ensure().uri
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    client.t.c.insert_one({"x": 42}, )
    client.close()
    server.stop()
    uri = server.ensure().uri
    try:
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
        assert client.t.c.find_one({}, {"_id": 0}) == {"x": 42}
        client.close()
    finally:
        server.stop()


def test_two_processes_starting_at_once_share_one_server(tmp_path):
    code = ("import sys; from tracker.db.server import EmbeddedServer; "
            f"print(EmbeddedServer({str(tmp_path / 'db')!r}).ensure().pid)")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    pids = {p.communicate(timeout=120)[0].strip() for p in procs}
    try:
        assert len(pids) == 1 and pids != {""}
    finally:
        EmbeddedServer(tmp_path / "db").stop()


def test_stale_state_file_is_ignored(tmp_path):
    (tmp_path / "server.json").write_text(json.dumps(
        {"pid": 999999, "host": "127.0.0.1", "port": 1, "storage": str((tmp_path / "db").resolve())}))
    server = EmbeddedServer(tmp_path / "db")
    assert server.running() is None
    info = server.ensure()
    try:
        assert info.pid != 999999
    finally:
        server.stop()
