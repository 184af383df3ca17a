"""A disk that fills up: real small tmpfs mounts (this needs root, as CI has; elsewhere
the tests skip and say so), real processes, real ENOSPC from the kernel.

- During a feature write: one clear error naming the path and the free space, the run
  FAILED with that message, nothing left on the disk.
- Under the embedded database during a fit's upload: its storage engine panics (it still
  answers ping, and "internal server error" to everything else); the fit spools its
  results with a clear reason, the next command restarts the server once space is free,
  and ``tracker sync`` uploads the run with every score column: nothing lost.
"""

from __future__ import annotations

import errno
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from bson import Binary
from pymongo import WriteConcern
from pymongo.errors import OperationFailure

from pipeline.core.errors import DataFormatError
from pipeline.features.config import FeatureConfig
from pipeline.fit.config import FitConfig
from tracker.analysis.scores import load_scores
from tracker.db import documents
from tracker.db.server import EmbeddedServer
from tracker.db.settings import Settings
from tracker.db.store import Store
from tracker.record.spool import Spool
from tracker.record.workflows import extract_and_log, fit_and_log


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


def fill(directory: Path) -> Path:
    """Write a filler file until the disk says ENOSPC."""
    filler = directory / "filler.bin"
    block = b"\0" * (1 << 20)
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(block)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_feature_write_on_a_full_disk_fails_cleanly(store, mongo_uri, tiny_vim1_dir, tmp_path, tmpfs):
    small = tmpfs(4)  # the tiny preset's conv3 file is ~70 MB
    settings = Settings(mongo_uri=mongo_uri, db_name=store.db_name, home=tmp_path / "home",
                        data_dir=tiny_vim1_dir, features_dir=small)
    with pytest.raises(DataFormatError, match="could not write .*No space left on device.*MB free there"):
        extract_and_log(store, settings, tiny_vim1_dir, FeatureConfig(batch_size=40))
    run = store.db.feature_runs.find_one({})
    assert run["status"] == "FAILED" and "No space left on device" in run["error"]["message"]
    assert sorted(p.name for p in small.iterdir()) == []  # no partial file, no temp file


def test_database_disk_fills_during_a_fit_and_nothing_is_lost(tmpfs, tmp_path, tiny_vim1_dir, monkeypatch):
    from typer.testing import CliRunner

    from tracker.cli import app

    disk = tmpfs(64)
    server = EmbeddedServer(disk / "db")
    db_name = "full_" + uuid.uuid4().hex[:6]
    try:
        store = Store(server.ensure().uri, db_name, timeout_ms=2000)
        store.init_schema()
        frun = {"_id": "fe-full", "schema_version": 1, "kind": "features", "status": "COMPLETED",
                "config": {"model": "alexnet", "layer": "conv3", "preprocess": "caffe"},
                "config_key": "e" * 64, "created": documents.utc_now(), "data_dir": str(tiny_vim1_dir)}
        store.insert_run("feature_runs", frun)
        rng = np.random.default_rng(0)
        features = SimpleNamespace(train=rng.normal(size=(240, 30)).astype(np.float32),
                                   val=rng.normal(size=(40, 30)).astype(np.float32))
        settings = Settings(mongo_uri=store.uri, db_name=db_name, home=tmp_path / "home")
        fillers = []

        def progress(stage, done, total):
            if not fillers:  # the disk fills while the fit runs
                fillers.append(fill(disk))
                junk = store.db.get_collection("junk", write_concern=WriteConcern(j=True))
                for _ in range(200):  # past the journal space the engine had set aside
                    try:
                        junk.insert_one({"blob": Binary(bytes(1 << 20))})
                    except OperationFailure as exc:
                        assert exc.code == 1  # its storage engine has panicked
                        break
                else:
                    raise AssertionError("the database never noticed its full disk")

        out = fit_and_log(store, settings, "fe-full", "S1", "V4", FitConfig(method="ridge"),
                          data_dir=tiny_vim1_dir, progress=progress, features=features)
        assert fillers and out.spooled and out.run["status"] == "COMPLETED"
        assert out.run["spool"]["error"] == "StorageFailure"
        assert [p.name for p in Spool(settings.spool_dir, db_name).pending()] == [f"{out.run_id}.jsonl"]
        # the panicked server still answers ping but refuses the rest: the CLI says what to do
        monkeypatch.setenv("TRACKER_MONGO_URI", store.uri)
        monkeypatch.setenv("TRACKER_DB_NAME", db_name)
        monkeypatch.setenv("TRACKER_HOME", str(settings.home))
        res = CliRunner().invoke(app, ["runs", "list"])
        assert res.exit_code in (2, 3) and "Traceback" not in res.output
        assert "storage failed" in res.output and "free space" in res.output
        fillers[0].unlink()  # space is freed: the next start restarts the panicked server
        uri = server.ensure().uri
        monkeypatch.setenv("TRACKER_MONGO_URI", uri)
        res = CliRunner().invoke(app, ["sync", "--json"])
        assert res.exit_code == 0, res.output
        store = Store(uri, db_name)
        doc = store.db.fit_runs.find_one({"_id": out.run_id})
        assert doc["status"] == "COMPLETED" and doc["n_voxels"] == out.run["n_voxels"]
        for split in ("test", "validation"):
            ids = load_scores(store, [out.run_id], split, ["r"])[out.run_id].voxel_ids
            assert len(ids) == out.run["n_voxels"]
        store.client.drop_database(db_name)
        store.close()
    finally:
        for filler in disk.glob("filler.bin"):
            filler.unlink()
        server.stop(timeout=15)
