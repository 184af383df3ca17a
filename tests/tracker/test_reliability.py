"""Run lifecycle, the reaper, config-key races and concurrent writers, on a real server
and with real processes and signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.core.errors import ConfigError
from pipeline.core.keys import content_key
from tests.tracker.seed_db import add_fit
from tests.tracker.workers import fake_fit_doc, log_fake_fit
from tracker.analysis import queries
from tracker.db import documents
from tracker.db.documents import utc_now as now
from tracker.record.runs import RunRecorder, reap

ROOT = Path(__file__).resolve().parents[2]


def spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.tracker.workers", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_line(proc: subprocess.Popen, expected: str) -> None:
    line = proc.stdout.readline().strip()
    assert line == expected, f"worker said {line!r}; stderr: {proc.stderr.read()[-2000:]}"


def run_doc(store, run_id):
    return store.db.fit_runs.find_one({"_id": run_id})


# ------------------------------------------------------------------ lifecycle
def test_heartbeat_interval_is_stored_and_heartbeats_never_revive_an_ended_run(store):
    doc = fake_fit_doc()
    with RunRecorder(store, "fit_runs", doc, heartbeat_s=0.05) as rec:
        assert run_doc(store, rec.run_id)["heartbeat_interval_s"] == 0.05
        rec.complete({"n_voxels": 1})
    ended = run_doc(store, doc["_id"])
    # A late beat (the thread is stopped, so call the store as the thread would) is ignored.
    assert not store.update_run_if("fit_runs", doc["_id"], {"status": "RUNNING"}, {"heartbeat": now()})
    assert run_doc(store, doc["_id"])["heartbeat"] == ended["heartbeat"]


def test_reaper_marks_only_stale_runs_dead(store):
    stale, live = fake_fit_doc(), fake_fit_doc()
    for d, age in ((stale, 100), (live, 5)):
        d.update(status="RUNNING", heartbeat=now() - timedelta(seconds=age), heartbeat_interval_s=10.0)
        store.insert_run("fit_runs", d)
    reaped = reap(store, stale_factor=4)  # limit: 40 s
    assert [r["id"] for r in reaped] == [stale["_id"]] and reaped[0]["silent_s"] >= 100
    dead = run_doc(store, stale["_id"])
    assert dead["status"] == "DEAD" and "no heartbeat for 100 s (limit 4 x 10 s)" in dead["error"]["message"]
    assert run_doc(store, live["_id"])["status"] == "RUNNING"
    assert reap(store, stale_factor=4) == []  # idempotent
    with pytest.raises(ConfigError, match="stale-factor"):
        reap(store, stale_factor=1)


def test_reap_command(store, settings, monkeypatch):
    from typer.testing import CliRunner

    from tracker.cli import app

    for name, value in (("TRACKER_MONGO_URI", settings.mongo_uri), ("TRACKER_DB_NAME", settings.db_name),
                        ("TRACKER_HOME", str(settings.home))):
        monkeypatch.setenv(name, value)
    doc = fake_fit_doc()
    doc.update(status="RUNNING", heartbeat=now() - timedelta(seconds=30), heartbeat_interval_s=5.0)
    store.insert_run("fit_runs", doc)
    runner = CliRunner()
    keep = runner.invoke(app, ["runs", "reap", "--stale-factor", "10", "--json"])
    assert keep.exit_code == 0 and keep.output.strip() == "[]"
    res = runner.invoke(app, ["runs", "reap", "--stale-factor", "4", "--json"])
    assert res.exit_code == 0, res.output
    assert [r["id"] for r in json.loads(res.output)] == [doc["_id"]]
    assert run_doc(store, doc["_id"])["status"] == "DEAD"
    bad = runner.invoke(app, ["runs", "reap", "--stale-factor", "0.5"])
    assert bad.exit_code == 2 and "above 1" in bad.output


def test_kill_9_leaves_a_running_run_that_the_reaper_marks_dead(store, mongo_uri):
    run_id = documents.new_run_id("fi")
    proc = spawn("hang", mongo_uri, store.db_name, run_id, "0.1")
    try:
        wait_line(proc, "running")
        time.sleep(0.3)  # a few heartbeats
        assert run_doc(store, run_id)["progress"] == {"stage": "fit", "done": 1, "total": 10}
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert run_doc(store, run_id)["status"] == "RUNNING"  # nobody could say otherwise
        deadline = time.monotonic() + 10
        while run_doc(store, run_id)["status"] == "RUNNING" and time.monotonic() < deadline:
            reap(store, stale_factor=3)
            time.sleep(0.1)
        assert run_doc(store, run_id)["status"] == "DEAD"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_marks_run_interrupted(store, mongo_uri, sig):
    run_id = documents.new_run_id("fi")
    proc = spawn("hang", mongo_uri, store.db_name, run_id, "30")
    try:
        wait_line(proc, "running")
        proc.send_signal(sig)
        proc.wait(timeout=20)
    finally:
        proc.kill()
    doc = run_doc(store, run_id)
    assert proc.returncode != 0
    assert doc["status"] == "INTERRUPTED" and doc["finished"] >= doc["started"]
    assert doc["error"]["type"] == ("RunInterrupted" if sig == signal.SIGTERM else "KeyboardInterrupt")


def test_buckets_of_runs_that_did_not_complete_are_never_counted(store):
    good = add_fit(store, "S1", "ridge", [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    for status in ("FAILED", "INTERRUPTED", "DEAD", "DUPLICATE", "SUPERSEDED", "RUNNING"):
        add_fit(store, "S1", "ridge", [-0.9] * 3, [-0.9] * 3, status=status)
    rows = queries.compare(store, ["subject", "method"], roi="V4", split="validation")
    assert len(rows) == 1 and rows[0]["run_ids"] == [good["_id"]]
    assert rows[0]["n"] == 3 and rows[0]["mean"] == pytest.approx(0.5)


# ---------------------------------------------------------------- identity
def test_three_processes_racing_on_one_config_key_end_with_one_completed_run(store, mongo_uri, tmp_path):
    key = content_key("race", tmp_path.name)
    go = tmp_path / "go"
    procs = [spawn("race", mongo_uri, store.db_name, key, str(tmp_path / f"ready{i}"), str(go))
             for i in range(3)]
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready{i}").exists() for i in range(3)):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.01)
        go.touch()
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-2000:] for o in outs]
    pairs = [o[0].split() for o in outs]  # (own run id, run holding the result)
    runs = {d["_id"]: d for d in store.db.fit_runs.find({"config_key": key})}
    assert sorted(d["status"] for d in runs.values()) == ["COMPLETED", "DUPLICATE", "DUPLICATE"]
    winner = next(i for i, d in runs.items() if d["status"] == "COMPLETED")
    losers = {i for i, d in runs.items() if d["status"] == "DUPLICATE"}
    assert all(runs[loser]["duplicate_of"] == winner for loser in losers)
    assert all(final == winner for _, final in pairs)  # every process reports the winner
    assert {own for own, _ in pairs} == {winner, *losers}
    rows = queries.compare(store, ["subject"], roi="V4", split="validation")
    assert rows[0]["run_ids"] == [winner] and rows[0]["n"] == 7  # the loser's buckets stay out


def test_forced_rerun_supersedes_the_completed_run(store):
    key = content_key("forced")
    first = log_fake_fit(store, fake_fit_doc(key=key))
    second = log_fake_fit(store, fake_fit_doc(key=key), replace=True)
    assert second.final_id == second.run_id
    assert run_doc(store, first.run_id)["status"] == "SUPERSEDED"
    assert run_doc(store, first.run_id)["superseded_by"] == second.run_id
    assert run_doc(store, second.run_id)["status"] == "COMPLETED"


# -------------------------------------------------------------- concurrency
def test_four_processes_times_25_fits_lose_nothing(store, mongo_uri):
    procs = [spawn("many", mongo_uri, store.db_name, "25", f"w{i}") for i in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1][-2000:] for o in outs]
    assert store.db.fit_runs.count_documents({"status": "COMPLETED"}) == 100
    assert store.db.fit_runs.count_documents({}) == 100
    # 7 voxels in chunks of 4 -> 2 chunks x 5 fields per split, 2 splits -> 20 per run
    assert store.db.voxel_columns.count_documents({}) == 2000
    per_run = store.aggregate("voxel_columns", [{"$group": {"_id": "$run_id", "n": {"$sum": 1}}}])
    assert len(per_run) == 100 and {r["n"] for r in per_run} == {20}
    subjects = {d["subject"] for d in store.db.fit_runs.find({}, {"subject": 1})}
    assert subjects == {f"w{i}-{j}" for i in range(4) for j in range(25)}


def test_a_reaped_run_that_finishes_keeps_no_dead_error(store):
    """Regression: a run reaped DEAD (its heartbeat stalled) that then finished ended
    COMPLETED with ``error.type: Dead`` still set."""
    doc = fake_fit_doc()
    with RunRecorder(store, "fit_runs", doc, heartbeat_s=30) as rec:
        store.update_run("fit_runs", rec.run_id, {"heartbeat": now() - timedelta(seconds=300)})
        assert [r["id"] for r in reap(store, stale_factor=4)] == [rec.run_id]
        assert run_doc(store, rec.run_id)["status"] == "DEAD"
        rec.complete({"n_voxels": 3})
    done = run_doc(store, doc["_id"])
    assert done["status"] == "COMPLETED" and "error" not in done
    assert done["reaped"]["type"] == "Dead"


def test_server_killed_right_after_completed_keeps_the_run_and_its_columns(tmp_path):
    """SIGKILL the embedded server the moment a run reports COMPLETED: after a restart
    the run and every score column are there (final writes are journaled, j=True)."""
    from tracker.db.server import EmbeddedServer
    from tracker.db.store import Store

    server = EmbeddedServer(tmp_path / "db")
    try:
        store = Store(server.ensure().uri, "killed_after_complete")
        store.init_schema()
        rec = log_fake_fit(store, fake_fit_doc(), seed=5)
        info = server.running(probe=False)
        os.kill(info.pid, signal.SIGKILL)
        os.waitpid(info.pid, 0)
        store.close()
        store = Store(server.ensure().uri, "killed_after_complete")
        doc = store.db.fit_runs.find_one({"_id": rec.run_id})
        assert doc["status"] == "COMPLETED"
        assert store.db.voxel_columns.count_documents({"run_id": rec.run_id}) == 20
        store.close()
    finally:
        server.stop(timeout=15)
