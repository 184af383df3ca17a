"""No secret from the environment ends up in anything the tool writes.

Tokens are set in the environment of real processes (the scripts and the ``tracker``
command), the database is the embedded server with authentication on (its password is
in ``TRACKER_MONGO_URI``), and a second URI with a password points at a closed port (its
error message). Then every file the tool wrote (database export, logs, feature and
figure files, report, CSV, server state and config), every document in the database
(run documents with their provenance and command line) and everything printed are
searched for the secrets, as written and percent-encoded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote_plus, unquote_plus

import pytest
from bson import json_util

from tracker.db.server import EmbeddedServer
from tracker.db.store import Store

ROOT = Path(__file__).resolve().parents[2]
AWS = "aws-Secret-0123456789abcdefXYZ"
HF = "hf_SecretTokenAbCdEf0123456789"
OFFLINE_PASSWORD = "off/line?pass#word@9"

pytestmark = pytest.mark.slow


def _run(cmd: list[str], env: dict, cwd: Path, ok: bool = True) -> str:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_secrets_never_reach_what_the_tool_writes(tmp_path, tiny_vim1_dir):
    home = tmp_path / "home"
    server = EmbeddedServer(tmp_path / "private" / "db")
    info = server.ensure()
    db = "secrets_check"
    password = info.password
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env = {**base, "AWS_SECRET_ACCESS_KEY": AWS, "HF_TOKEN": HF, "TRACKER_MONGO_URI": info.uri,
           "TRACKER_DB_NAME": db, "TRACKER_HOME": str(home), "TRACKER_DATA_DIR": str(tiny_vim1_dir)}
    tracker = [str(Path(sys.executable).parent / "tracker")]
    printed = []
    try:
        printed.append(_run([sys.executable, str(ROOT / "scripts" / "run_features.py"), "--quiet", "--json"],
                            env, tmp_path))
        fe = Store(info.uri, db).db.feature_runs.find_one({"status": "COMPLETED"})["_id"]
        printed.append(_run([sys.executable, str(ROOT / "scripts" / "run_fit.py"), "--features", fe,
                             "--subject", "S1", "--method", "ridge", "--quiet",
                             f"--data-dir={tiny_vim1_dir}"], env, tmp_path))
        out = tmp_path / "out"
        for args in (["runs", "list"], ["runs", "show", fe, "--json"], ["db", "status", "--json"],
                     ["export", "voxels", "--subject", "S1", "--roi", "V4", "--out", str(out / "v.csv")],
                     ["plot", "--out", str(out / "plots")],
                     ["report", "--roi", "V4", "--out", str(out / "r.html")],
                     ["db", "migrate", "--backup-dir", str(out / "backup")]):
            printed.append(_run(tracker + args, env, tmp_path))
        # errors: a bad filter, and a database that cannot be reached (its password in the URI)
        printed.append(_run(tracker + ["runs", "list", "--where", "subject=S1 and"], env, tmp_path, ok=False))
        offline = {**env, "TRACKER_MONGO_URI": f"mongodb://alice:{OFFLINE_PASSWORD}@127.0.0.1:1/"}
        printed.append(_run(tracker + ["runs", "list"], offline, tmp_path, ok=False))
    finally:
        server.stop(timeout=15)
    server.ensure()  # again, to dump the documents as they are stored
    try:
        store = Store(server.ensure().uri, db)
        dumped = [json_util.dumps(d) for name in store.db.list_collection_names()
                  for d in store.db[name].find()]
        assert any('"argv"' in d for d in dumped)  # provenance with the command line is there
        store.client.drop_database(db)
        store.close()
    finally:
        server.stop(timeout=15)
    texts = printed + dumped
    written = [p for root in (home, tmp_path / "out", tmp_path / "private") for p in root.rglob("*")
               if p.is_file() and p.name != "credentials.json"]
    assert any(p.suffix == ".h5" for p in written) and any(p.suffix == ".png" for p in written)
    secrets = {"AWS_SECRET_ACCESS_KEY": AWS, "HF_TOKEN": HF, "database password": password,
               "offline password": OFFLINE_PASSWORD}
    forms = {name: {value, quote_plus(value), unquote_plus(value)} for name, value in secrets.items()}
    found = []
    for name, values in forms.items():
        for value in values:
            needle = value.encode()
            found += [f"{name} in {p}" for p in written if needle in p.read_bytes()]
            found += [f"{name} in output/document #{i}" for i, t in enumerate(texts) if value in t]
    assert found == []
