"""Sweeps on a local 2-worker Dask cluster against the real embedded server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipeline.core.files import sha256_file
from tracker.db.settings import Settings
from tracker.db.store import Store
from tracker.record import sweep
from tracker.record.workflows import fit_key

SPEC = """
[sweep]
name = "t"
data_dir = "{data}"

[features]
layer = "conv3"
batch_size = 40

[fits]
subject = ["S1", "S2"]
roi = ["V4"]
method = ["ridge", "pls"]
target = "voxels"
"""


@pytest.fixture
def env(tmp_path, tiny_vim1_dir, mongo_uri):
    name = "sweep_" + uuid.uuid4().hex[:8]
    settings = Settings(mongo_uri=mongo_uri, db_name=name, home=tmp_path / "home",
                        data_dir=tiny_vim1_dir)
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC.format(data=tiny_vim1_dir))
    store = Store(mongo_uri, name)
    store.init_schema()
    yield settings, store, sweep.load_spec(spec_path), tiny_vim1_dir
    store.client.drop_database(name)
    store.close()


def test_grid_expands_with_keys(env):
    settings, store, spec, data = env
    feats, fits = sweep.expand(spec, store, data)
    assert len(feats) == 1 and len(fits) == 4
    assert {(f.subject, f.config.method) for f in fits} == {
        (s, m) for s in ("S1", "S2") for m in ("ridge", "pls")}
    assert len({f.key for f in fits}) == 4
    responses = sha256_file(Path(data) / "EstimatedResponses.mat")
    assert fits[0].key == fit_key(feats[0].key, fits[0].config, fits[0].subject, "V4", responses)
    rows = sweep.task_states(store, feats, fits)
    assert [r["state"] for r in rows] == ["to do"] * 5


def test_bad_spec_field_is_a_clear_error(env, tmp_path):
    settings, store, spec, data = env
    bad = tmp_path / "bad.toml"
    bad.write_text('[features]\nlayr = "conv3"\n')
    with pytest.raises(Exception, match="valid fields"):
        sweep.expand(sweep.load_spec(bad), store, data)


def test_sweep_runs_on_local_cluster_and_rerun_is_noop(env, tmp_path, monkeypatch):
    settings, store, spec, data = env
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(sweep.KILL_ONCE_ENV, str(marker))  # the first fit kills its worker
    result = sweep.run_sweep(spec, settings, store, data, n_workers=2)
    assert result.failed == [] and len(result.done) == 5
    assert marker.exists(), "the fault was not injected"
    # the killed attempt is recorded as DEAD; its retry completed; never two completed copies
    assert result.dead_attempts == 1
    feats, fits = sweep.expand(spec, store, data)
    for task in fits:
        docs = store.find_runs("fit_runs", {"config_key": task.key})
        assert sum(d["status"] == "COMPLETED" for d in docs) == 1
    assert store.db.fit_runs.count_documents({"status": "DEAD"}) == 1
    # dependencies held: every fit started after its features finished
    frun = store.find_runs("feature_runs", {"status": "COMPLETED"})[0]
    for doc in store.find_runs("fit_runs", {"status": "COMPLETED"}):
        assert doc["started"] >= frun["finished"] and doc["feature_run_id"] == frun["_id"]
    assert {r["state"] for r in sweep.task_states(store, feats, fits)} == {"done"}
    again = sweep.run_sweep(spec, settings, store, data, n_workers=2)
    assert again.done == [] and again.skipped == 5
    assert store.db.fit_runs.count_documents({"status": "COMPLETED"}) == 4
