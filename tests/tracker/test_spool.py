"""Offline runs: the local spool, `tracker sync`, and a database that goes away (and
comes back) in the middle of a real fit. Servers that get killed here are private to
this module, never the session's."""

from __future__ import annotations

import json
import os
import signal
import stat
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pymongo
import pytest
from typer.testing import CliRunner

from pipeline.core.errors import DatabaseError, IntegrityError
from pipeline.core.keys import content_key
from pipeline.fit.config import FitConfig
from tests.tracker.workers import fake_buckets, fake_fit_doc, log_fake_fit
from tracker.analysis.scores import load_scores
from tracker.cli import app
from tracker.db import documents
from tracker.db.documents import decode_column
from tracker.db.server import EmbeddedServer
from tracker.db.settings import Settings
from tracker.db.store import Store
from tracker.record.runs import RunRecorder
from tracker.record.spool import Spool
from tracker.record.workflows import fit_and_log

DOWN = "mongodb://127.0.0.1:1/?directConnection=true"  # nothing listens on port 1
runner = CliRunner()


def offline_store(db_name: str) -> Store:
    return Store(DOWN, db_name, timeout_ms=300)


def counts(store: Store, run_id: str) -> tuple[str | None, int]:
    doc = store.db.fit_runs.find_one({"_id": run_id})
    return (doc or {}).get("status"), store.db.voxel_columns.count_documents({"run_id": run_id})


# ------------------------------------------------------------------- format
def test_spool_appends_durable_lines_and_skips_only_a_torn_last_line(tmp_path):
    spool = Spool(tmp_path / "spool", "db1")
    doc = fake_fit_doc()
    spool.append_run("fit_runs", doc)
    spool.append_buckets(doc["_id"], [{"_id": "driver-id", "run_id": doc["_id"], "chunk": 0}])
    path = spool.path_of(doc["_id"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    records, torn = spool.read(path)
    assert torn == 0 and [r["op"] for r in records] == ["run", "buckets"]
    assert abs(records[0]["doc"]["created"] - doc["created"]) < timedelta(milliseconds=1)  # BSON: ms
    assert records[1]["docs"] == [{"run_id": doc["_id"], "chunk": 0}]  # driver _id dropped
    with open(path, "ab") as fh:  # a crash in the middle of an append
        fh.write(b'{"op": "run", "doc": {"_id": "x"')
    assert spool.read(path) == (records, 1)
    path.write_bytes(path.read_bytes().replace(b'"op": "buckets"', b'"op": "buck', 1))
    with pytest.raises(IntegrityError, match="line 2 is corrupt"):
        spool.read(path)


# ----------------------------------------------------------------- offline
def test_unreachable_at_start_completes_into_the_spool_and_syncs_once(store, tmp_path):
    spool = Spool(tmp_path / "spool", store.db_name)
    doc = fake_fit_doc()
    rec = log_fake_fit(offline_store(store.db_name), doc, seed=3, spool=spool)
    assert rec.spooled == "start: ServerSelectionTimeoutError"
    assert rec.final_run()["status"] == "COMPLETED"
    assert counts(store, doc["_id"]) == (None, 0)
    assert [p.name for p in spool.pending()] == [f"{doc['_id']}.jsonl"]

    report = spool.sync(store)
    # 7 voxels in chunks of 4: 2 chunks x 5 fields x 2 splits
    assert (report.files, report.runs, report.buckets) == (1, 1, 20)
    assert counts(store, doc["_id"]) == ("COMPLETED", 20)
    got = load_scores(store, [doc["_id"]], "validation", ["r"])[doc["_id"]]
    expected = [decode_column(d) for d in fake_buckets(doc["_id"], seed=3)
                if d["split"] == "validation" and d["field"] == "r"]
    np.testing.assert_array_equal(got.values["r"], np.concatenate(expected))  # binary survived JSON
    stored = store.db.fit_runs.find_one({"_id": doc["_id"]})
    assert stored["spool"]["stage"] == "start" and stored["spool"]["synced"] >= stored["finished"]
    assert stored["summary"]["validation"]["r"]["median"] == pytest.approx(0.3)

    assert spool.sync(store).files == 0  # nothing pending: a second sync does nothing
    synced = next((spool.directory / "synced").iterdir())
    os.replace(synced, spool.path_of(doc["_id"]))  # replay the same file (crash before the move)
    assert spool.sync(store).runs == 1
    assert counts(store, doc["_id"]) == ("COMPLETED", 20)
    assert store.db.fit_runs.count_documents({}) == 1


def test_without_a_spool_an_unreachable_database_is_one_clear_error(store):
    with pytest.raises(DatabaseError, match="unreachable at start .* no spool"):
        with RunRecorder(offline_store("x"), "fit_runs", fake_fit_doc()):
            pass


def test_spooled_run_whose_key_completed_meanwhile_syncs_as_duplicate(store, tmp_path):
    key = content_key("dup", tmp_path.name)
    spool = Spool(tmp_path / "spool", store.db_name)
    offline = log_fake_fit(offline_store(store.db_name), fake_fit_doc(key=key), spool=spool)
    online = log_fake_fit(store, fake_fit_doc(key=key))
    report = spool.sync(store)
    assert report.duplicates == [offline.run_id]
    loser = store.db.fit_runs.find_one({"_id": offline.run_id})
    assert loser["status"] == "DUPLICATE" and loser["duplicate_of"] == online.run_id
    assert store.find_completed("fit_runs", key)["_id"] == online.run_id


def test_sync_skips_files_of_another_database(store, tmp_path):
    Spool(tmp_path, "other_db").append_run("fit_runs", fake_fit_doc())
    report = Spool(tmp_path, store.db_name).sync(store)
    assert report.files == 0 and len(report.skipped) == 1


# ----------------------------------------------------- a server that goes away
@pytest.fixture(scope="module")
def private_server(tmp_path_factory):
    server = EmbeddedServer(tmp_path_factory.mktemp("private") / "db")
    server.ensure()
    yield server
    server.stop()


def kill_server(server: EmbeddedServer) -> None:
    """kill -9 the server (a crash: only durable writes may survive)."""
    info = server.running(probe=False)
    os.kill(info.pid, signal.SIGKILL)
    try:
        os.waitpid(info.pid, 0)
    except ChildProcessError:
        pass


def test_database_killed_mid_fit_then_tracker_sync(private_server, tiny_vim1_dir, tmp_path, monkeypatch):
    uri = private_server.ensure().uri
    db_name = "offline_fit"
    store = Store(uri, db_name, timeout_ms=800)
    store.init_schema()
    frun = {"_id": "fe-fake", "schema_version": 1, "kind": "features", "status": "COMPLETED",
            "config": {"model": "alexnet", "layer": "conv3", "preprocess": "caffe"},
            "config_key": "f" * 64, "created": documents.utc_now(), "data_dir": str(tiny_vim1_dir)}
    store.insert_run("feature_runs", frun)
    rng = np.random.default_rng(0)
    features = SimpleNamespace(train=rng.normal(size=(240, 30)).astype(np.float32),
                               val=rng.normal(size=(40, 30)).astype(np.float32))
    settings = Settings(mongo_uri=uri, db_name=db_name, home=tmp_path / "home")
    stages = []

    def progress(stage, done, total):
        if not stages:
            kill_server(private_server)  # the database dies during the fit
        stages.append(stage)

    out = fit_and_log(store, settings, "fe-fake", "S1", "V4", FitConfig(method="ridge"),
                      data_dir=tiny_vim1_dir, progress=progress, features=features)
    assert stages and out.run["status"] == "COMPLETED" and not out.reused
    assert out.run["spool"]["stage"] == "buckets"
    n_vox = out.run["n_voxels"]
    pending = Spool(settings.spool_dir, db_name).pending()
    assert [p.name for p in pending] == [f"{out.run_id}.jsonl"]

    uri = private_server.ensure().uri  # the database comes back (on its port)
    store = Store(uri, db_name)
    assert store.db.fit_runs.find_one({"_id": out.run_id})["status"] == "RUNNING"  # durable start
    monkeypatch.setenv("TRACKER_MONGO_URI", uri)
    monkeypatch.setenv("TRACKER_DB_NAME", db_name)
    monkeypatch.setenv("TRACKER_HOME", str(settings.home))
    for expected_runs in (1, 0):  # `tracker sync` twice: the second finds nothing to do
        res = runner.invoke(app, ["sync", "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["runs"] == expected_runs
    doc = store.db.fit_runs.find_one({"_id": out.run_id})
    assert doc["status"] == "COMPLETED" and doc["n_voxels"] == n_vox
    assert doc["summary"]["validation"]["r"]["median"] == pytest.approx(
        out.run["summary"]["validation"]["r"]["median"])
    ids = load_scores(store, [out.run_id], "validation", ["r"])[out.run_id].voxel_ids
    assert len(ids) == n_vox and len(set(ids.tolist())) == n_vox
    n_fields = store.db.voxel_columns.count_documents({"run_id": out.run_id, "split": "validation",
                                                       "chunk": 0})
    assert n_fields >= 5  # ids, r, r2_corr, r2, hyper (+ p, significant)
    # the validation split also holds its held-out y_true / y_pred (one block each here)
    assert store.db.voxel_columns.count_documents({"run_id": out.run_id}) == 2 * n_fields - 2
    assert store.db.voxel_columns.count_documents({"run_id": out.run_id, "split": "validation",
                                                   "field": {"$in": ["y_true", "y_pred"]}}) == 2
    store.client.drop_database(db_name)
    store.close()


def test_database_restart_mid_run_loses_nothing(private_server, tmp_path):
    uri = private_server.ensure().uri
    db_name = "restart_run"
    store = Store(uri, db_name, timeout_ms=800)
    store.init_schema()
    spool = Spool(tmp_path / "spool", db_name)
    doc = fake_fit_doc()
    with RunRecorder(store, "fit_runs", doc, heartbeat_s=30, spool=spool) as rec:
        kill_server(private_server)
        rec.insert_buckets(fake_buckets(rec.run_id, seed=1))  # fails over to the spool
        new_uri = private_server.ensure().uri  # restarted (by another command) before the run ends
        assert new_uri == uri  # same port, so the run's own client finds it again
        rec.complete({"n_voxels": 7})
    # At its end the run found the database back and uploaded its own spool file.
    assert spool.pending() == []
    assert counts(store, doc["_id"]) == ("COMPLETED", 20)  # 2 splits x 2 chunks x 5 fields
    got = load_scores(store, [doc["_id"]], "validation", ["r"])[doc["_id"]].values["r"]
    expected = [d for d in fake_buckets(doc["_id"], seed=1) if d["split"] == "validation"
                and d["field"] == "r"]
    np.testing.assert_array_equal(got, np.concatenate([decode_column(d) for d in expected]))
    pymongo.MongoClient(new_uri).drop_database(db_name)
