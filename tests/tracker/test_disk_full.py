"""A disk that fills up.

- During a feature write: a real small tmpfs (mounting one needs root, as CI has;
  elsewhere the test skips and says so) and the kernel's real ENOSPC. One clear error
  naming the path and the free space, the run FAILED with that message, nothing left on
  the disk.
- Under the embedded database while a fit uploads: on a full disk SecantusDB's storage
  engine panics; the server still answers ping and refuses everything else with code 1
  "internal server error" (seen on real tmpfs runs; how soon it panics depends on what
  its journal had set aside, too unsteady for CI). The test therefore simulates exactly
  that answer at the write calls: a real SecantusDB process of the test's own, with
  test commands on, whose ``failCommand`` failpoint answers code 1 to every command but
  ping from the moment the fit runs. The fit spools its results with the reason, the CLI
  says "storage failed ... free space", the storage check that restarts an embedded
  server sees the failure, and once the failure ends ``tracker sync`` leaves the run
  COMPLETED with every score column: nothing lost.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pymongo
import pytest

from pipeline.core.errors import DataFormatError
from pipeline.features.config import FeatureConfig
from pipeline.fit.config import FitConfig
from tracker.analysis.scores import load_scores
from tracker.db import documents
from tracker.db.server import ServerInfo, _storage_ok, server_command
from tracker.db.settings import Settings
from tracker.db.store import Store
from tracker.record.datasets import register_dataset
from tracker.record.spool import Spool
from tracker.record.workflows import extract_and_log, fit_and_log

#: every command a panicked SecantusDB refuses (it still answers ping and hello)
REFUSED = ["insert", "update", "delete", "find", "aggregate", "count", "distinct", "listDatabases",
           "listCollections", "listIndexes", "createIndexes", "collMod", "create"]


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a tmpfs of the given size (MB) at a fresh folder; unmounted afterwards."""
    mounts = []

    def mount(size_mb: int) -> Path:
        where = tmp_path / f"tmpfs{len(mounts)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'}): the disk-full "
                        "rows need one")
        mounts.append(where)
        return where

    yield mount
    for where in reversed(mounts):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_feature_write_on_a_full_disk_fails_cleanly(store, mongo_uri, tiny_vim1_dir, tmp_path, tmpfs):
    small = tmpfs(4)  # the tiny preset's conv3 file is ~70 MB
    settings = Settings(mongo_uri=mongo_uri, db_name=store.db_name, home=tmp_path / "home",
                        data_dir=tiny_vim1_dir, features_dir=small)
    with pytest.raises(DataFormatError, match="could not write .*No space left on device.*MB free there"):
        extract_and_log(store, settings, tiny_vim1_dir, FeatureConfig(batch_size=40))
    run = store.db.feature_runs.find_one({})
    assert run["status"] == "FAILED" and "No space left on device" in run["error"]["message"]
    assert sorted(p.name for p in small.iterdir()) == []  # no partial file, no temp file


@pytest.fixture
def failing_server(tmp_path):
    """A SecantusDB process with test commands on (the tool's own server never has them)."""
    config = tmp_path / "failpoint.toml"
    config.write_text('[server]\nhost = "127.0.0.1"\nenable_test_commands = true\n')
    log = tmp_path / "failpoint.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(server_command() + ["--config", str(config), "--port", "0",
                                                    "--storage-path", str(tmp_path / "fdb")],
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while (found := re.search(r"listening on [0-9.]+:(\d+)", log.read_text(errors="replace"))) is None:
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.1)
        yield ServerInfo(proc.pid, "127.0.0.1", int(found.group(1)), str(tmp_path / "fdb"))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _storage_fails(client: pymongo.MongoClient, on: bool) -> None:
    data = {"failCommands": REFUSED, "errorCode": 1, "errmsg": "internal server error"}
    client.admin.command("configureFailPoint", "failCommand", mode="alwaysOn" if on else "off",
                         **({"data": data} if on else {}))


def test_database_storage_fails_during_a_fit_and_nothing_is_lost(failing_server, tmp_path, tiny_vim1_dir,
                                                                 monkeypatch):
    from typer.testing import CliRunner

    from tracker.cli import app

    info = failing_server
    admin = pymongo.MongoClient(info.uri, serverSelectionTimeoutMS=5000)
    db_name = "full_" + uuid.uuid4().hex[:6]
    store = Store(info.uri, db_name, timeout_ms=2000)
    store.init_schema()
    frun = {"_id": "fe-full", "schema_version": 1, "kind": "features", "status": "COMPLETED",
            "config": {"model": "alexnet", "layer": "conv3", "preprocess": "caffe"},
            "config_key": "e" * 64, "created": documents.utc_now(), "data_dir": str(tiny_vim1_dir)}
    store.insert_run("feature_runs", frun)
    register_dataset(store, tiny_vim1_dir)
    rng = np.random.default_rng(0)
    features = SimpleNamespace(train=rng.normal(size=(240, 30)).astype(np.float32),
                               val=rng.normal(size=(40, 30)).astype(np.float32))
    settings = Settings(mongo_uri=store.uri, db_name=db_name, home=tmp_path / "home")
    failing = []

    def progress(stage, done, total):
        if not failing:  # the storage fails while the fit runs
            _storage_fails(admin, True)
            failing.append(stage)

    out = fit_and_log(store, settings, "fe-full", "S1", "V4", FitConfig(method="ridge"),
                      data_dir=tiny_vim1_dir, progress=progress, features=features)
    assert failing and out.spooled and out.run["status"] == "COMPLETED"
    assert out.run["spool"]["error"] == "StorageFailure"
    assert [p.name for p in Spool(settings.spool_dir, db_name).pending()] == [f"{out.run_id}.jsonl"]
    assert not _storage_ok(info)  # what makes the next start restart an embedded server
    monkeypatch.setenv("TRACKER_MONGO_URI", store.uri)
    monkeypatch.setenv("TRACKER_DB_NAME", db_name)
    monkeypatch.setenv("TRACKER_HOME", str(settings.home))
    res = CliRunner().invoke(app, ["runs", "list"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "storage failed" in res.output and "free space" in res.output
    _storage_fails(admin, False)  # space freed, server restarted: it takes writes again
    assert _storage_ok(info)
    res = CliRunner().invoke(app, ["sync", "--json"])
    assert res.exit_code == 0, res.output
    doc = store.db.fit_runs.find_one({"_id": out.run_id})
    assert doc["status"] == "COMPLETED" and doc["n_voxels"] == out.run["n_voxels"]
    for split in ("test", "validation"):
        ids = load_scores(store, [out.run_id], split, ["r"])[out.run_id].voxel_ids
        assert len(ids) == out.run["n_voxels"]
    store.client.drop_database(db_name)
    store.close()
    admin.close()
