"""Retention (`runs delete`, `gc`), migrations (`db migrate`), `db status`, and secrets
kept out of the database, on a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from bson import json_util
from typer.testing import CliRunner

from pipeline.core.errors import ConfigError, IntegrityError
from pipeline.core.keys import content_key
from tests.tracker.seed_db import add_fit
from tests.tracker.workers import fake_fit_doc
from tracker.cli import app
from tracker.db import documents
from tracker.db.documents import utc_now as now
from tracker.db.migrations import migrate
from tracker.record.maintenance import collect_garbage, database_status, delete_run

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def add_feature_run(store, settings, name: str | None, status: str = "COMPLETED") -> dict:
    doc = {"_id": documents.new_run_id("fe"), "schema_version": 1, "kind": "features",
           "status": status, "config": {"layer": "conv3"},
           "config_key": content_key(name, documents.new_run_id("k")), "created": now()}
    if name is not None:
        path = settings.feature_root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"features")
        doc["output"] = {"host": "h", "path": str(path.resolve()), "sha256": "0" * 64}
    store.insert_run("feature_runs", doc)
    return doc


def test_delete_fit_removes_the_run_and_its_buckets_only(store, settings, env):
    keep = add_fit(store, "S1", "ridge", [0.1] * 5, [0.2] * 5)
    gone = add_fit(store, "S1", "pls", [0.1] * 5, [0.2] * 5)
    res = runner.invoke(app, ["runs", "delete", gone["_id"][:9], "--json"], input="y\n")  # asks first
    assert res.exit_code == 0, res.output
    # 5 voxels / 4 -> 2 chunks x 5 fields (ids, r, r2_corr, r2, hyper) x 2 splits
    printed = res.stdout[res.stdout.index("{"):]  # after the runner's echo of the answer
    assert json.loads(printed) == {"id": gone["_id"], "collection": "fit_runs", "runs": 1,
                                   "buckets": 20, "files": []}
    assert store.db.fit_runs.count_documents({}) == 1
    assert store.db.voxel_columns.count_documents({"run_id": keep["_id"]}) == 20
    assert store.db.voxel_columns.count_documents({"run_id": gone["_id"]}) == 0
    assert store.db.voxel_columns.count_documents({"run_id": keep["_id"]}) == 20
    res = runner.invoke(app, ["runs", "delete", "fi-nope"])
    assert res.exit_code == 2 and "no run with id" in res.output


def test_delete_feature_run_with_files_refuses_while_used(store, settings):
    feat = add_feature_run(store, settings, "a.h5")
    frun = {"_id": feat["_id"], "config": feat["config"], "config_key": feat["config_key"]}
    fit = add_fit(store, "S1", "ridge", [0.1], [0.1], frun=frun)
    with pytest.raises(ConfigError, match=f"used by 1 fit run.*{fit['_id']}"):
        delete_run(store, settings, feat["_id"], with_files=True)
    delete_run(store, settings, fit["_id"])
    twin = add_feature_run(store, settings, None)
    store.update_run("feature_runs", twin["_id"], {"output": feat["output"]})
    with pytest.raises(IntegrityError, match=f"also recorded by run {twin['_id']}"):
        delete_run(store, settings, feat["_id"], with_files=True)
    delete_run(store, settings, twin["_id"])
    report = delete_run(store, settings, feat["_id"], with_files=True)
    assert report["files"] == [feat["output"]["path"]] and not Path(feat["output"]["path"]).exists()


def test_gc_lists_then_deletes_orphans_and_keeps_what_is_used(store, settings, env):
    used = add_feature_run(store, settings, "used.h5")
    orphan = settings.feature_root / "orphan.h5"
    orphan.write_bytes(b"x")
    lost = add_feature_run(store, settings, "lost.h5")
    Path(lost["output"]["path"]).unlink()
    lost_used = add_feature_run(store, settings, "lost_used.h5")
    Path(lost_used["output"]["path"]).unlink()
    add_fit(store, "S1", "ridge", [0.1], [0.1], frun={**lost_used, "dataset_id": "ds"})
    store.insert_buckets(documents.score_buckets("fi-lost", "S1", "V4", SimpleNamespace(
        name="test", r=np.ones(2), r2_corr=np.ones(2), r2=np.ones(2), hyper=np.ones(2)), [1, 2]))
    report = collect_garbage(store, settings)
    assert report["orphan_files"] == [str(orphan)]
    assert report["orphan_bucket_runs"] == ["fi-lost"]
    assert {m["id"]: m["used_by_fits"] for m in report["missing_file_runs"]} == {
        lost["_id"]: 0, lost_used["_id"]: 1}
    assert orphan.exists()  # listing deletes nothing
    res = runner.invoke(app, ["gc", "--delete", "--json"])
    assert res.exit_code == 0, res.output
    assert {m["id"]: m["kept"] for m in json.loads(res.output)["missing_file_runs"]} == {
        lost["_id"]: False, lost_used["_id"]: True}
    assert not orphan.exists() and Path(used["output"]["path"]).exists()
    assert store.db.voxel_columns.count_documents({"run_id": "fi-lost"}) == 0
    assert {d["_id"] for d in store.db.feature_runs.find()} == {used["_id"], lost_used["_id"]}
    again = collect_garbage(store, settings)
    assert again["orphan_files"] == [] and again["orphan_bucket_runs"] == []


def test_migrate_backs_up_then_upgrades_v0_documents_once(store, settings, env):
    current = add_fit(store, "S1", "ridge", [0.1], [0.1])
    store.db.command("collMod", "fit_runs", validator={})  # as before validators existed
    old = {"_id": "fi-old", "config_key": "c" * 64, "subject": "S1", "roi": "V4",
           "feature_run_id": "fe-x", "started": now().replace(microsecond=0)}
    store.db.fit_runs.insert_one(dict(old))
    store.init_schema()  # validators back
    res = runner.invoke(app, ["db", "migrate", "--json", "--backup-dir", str(settings.home / "bk")])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["migrated"]["fit_runs"] == 1 and report["failed"] == []
    backup = Path(report["backup"]["fit_runs"])
    backed = [json_util.loads(line) for line in backup.read_text().splitlines()]
    assert {d["_id"] for d in backed} == {current["_id"], "fi-old"}
    assert next(d for d in backed if d["_id"] == "fi-old").get("schema_version") is None
    lines = Path(report["backup"]["voxel_columns"]).read_text().splitlines()
    columns = [json_util.loads(line) for line in lines]
    assert len(columns) == store.db.voxel_columns.count_documents({}) == 2 * 5  # binary arrays kept
    assert all(bytes(d["data"]) == bytes(store.db.voxel_columns.find_one({"_id": d["_id"]})["data"])
               for d in columns)
    doc = store.db.fit_runs.find_one({"_id": "fi-old"})
    assert doc["schema_version"] == 1 and doc["kind"] == "fit" and doc["status"] == "DEAD"
    assert doc["created"] == doc["started"] and doc["subject"] == "S1"
    assert migrate(store, settings.home / "bk2")["migrated"]["fit_runs"] == 0  # idempotent


def test_db_status_is_complete(store, settings, env):
    add_fit(store, "S1", "ridge", [0.1], [0.1])
    add_fit(store, "S1", "ridge", [0.1], [0.1], status="FAILED")
    stale = fake_fit_doc()
    stale.update(status="RUNNING", heartbeat=now().replace(year=2020), heartbeat_interval_s=1.0)
    store.insert_run("fit_runs", stale)
    (settings.spool_dir).mkdir(parents=True)
    (settings.spool_dir / "fi-x.jsonl").write_text("")
    res = runner.invoke(app, ["db", "status", "--json"])
    assert res.exit_code == 0, res.output
    status = json.loads(res.output)
    fits = status["collections"]["fit_runs"]
    assert fits["by_status"] == {"COMPLETED": 1, "FAILED": 1, "RUNNING": 1}
    assert fits["schema_versions"] == {"1": 3} and "one_completed_per_config" in fits["indexes"]
    assert status["stale_running"] == [stale["_id"]] and status["spool"]["pending"] == ["fi-x.jsonl"]
    assert status["embedded"] is False and status["schema_version"] == documents.SCHEMA_VERSION
    assert database_status(store, settings)["database"] == store.db_name
    table = runner.invoke(app, ["db", "status"])
    assert table.exit_code == 0 and "stale RUNNING runs (tracker runs reap): 1" in table.output


SECRET = "Hunter2Secret"


def test_secrets_never_reach_the_database_logs_or_output(store, settings, tmp_path):
    """A run logged by a process whose URI, argv and environment hold secrets."""
    code = (
        "import sys; from tests.tracker.workers import fake_fit_doc, log_fake_fit;"
        "from tracker.db.store import Store; from tracker.record import provenance;"
        f"sys.argv = ['run_fit.py', '--password', {SECRET!r}, '--uri', 'mongodb://u:{SECRET}@h/'];"
        "doc = fake_fit_doc(); doc['provenance'] = provenance.collect();"
        f"log_fake_fit(Store({settings.mongo_uri!r}, {store.db_name!r}), doc);"
        f"bad = Store('mongodb://u:{SECRET}@127.0.0.1:1/?directConnection=true', 'x', timeout_ms=200)\n"
        "try:\n    bad.ping()\nexcept Exception as err:\n    print(err, file=sys.stderr)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRACKER_TOKEN": SECRET,
           "TRACKER_MONGO_URI": f"mongodb://u:{SECRET}@127.0.0.1:1/", "API_KEY": SECRET}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "cannot reach the database at mongodb://***@127.0.0.1:1" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    # The CLI with a password in the URI: output and errors stay clean.
    res = runner.invoke(app, ["--uri", f"mongodb://u:{SECRET}@127.0.0.1:1/?serverSelectionTimeoutMS=200",
                              "runs", "list"])
    assert res.exit_code != 0 and SECRET not in res.output and "***" in res.output
    dump = "".join(json_util.dumps(d) for name in store.db.list_collection_names()
                   for d in store.db[name].find())
    argv = store.db.fit_runs.find_one()["provenance"]["argv"]
    assert argv == ["run_fit.py", "--password", "***", "--uri", "mongodb://***@h/"]
    assert SECRET not in dump


def test_gc_never_deletes_a_file_a_spooled_run_or_another_database_names(store, settings, mongo_uri):
    """Regression: gc --delete removed the file of a finished extraction still waiting in
    the spool, and two databases sharing one features directory deleted each other's."""
    from tracker.db.store import Store
    from tracker.record.spool import Spool

    spooled_file = settings.feature_root / f"{'a' * 12}_fe-spooled00001.h5"
    spooled_file.parent.mkdir(parents=True, exist_ok=True)
    spooled_file.write_bytes(b"features of a run the database has not seen yet")
    Spool(settings.spool_dir, store.db_name).append_run("feature_runs", {
        "_id": "fe-spooled00001", "status": "COMPLETED",
        "output": {"host": "h", "path": str(spooled_file), "sha256": "0" * 64}})
    other_name = store.db_name + "_other"
    other = Store(mongo_uri, other_name)
    other.init_schema()
    try:
        theirs = add_feature_run(other, settings, "theirs.h5")
        orphan = settings.feature_root / "orphan.h5"
        orphan.write_bytes(b"x")
        report = collect_garbage(store, settings, delete=True)
        assert report["orphan_files"] == [str(orphan)] and report["unchecked_databases"] == []
        assert not orphan.exists()
        assert spooled_file.exists() and Path(theirs["output"]["path"]).exists()
        # the spooled run and the other database's run are not "missing file" runs here
        assert report["missing_file_runs"] == []
    finally:
        other.client.drop_database(other_name)
        other.close()
