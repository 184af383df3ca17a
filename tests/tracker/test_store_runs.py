import time

import numpy as np
import pytest
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

from pipeline.core.errors import ConfigError, DatabaseError
from tracker.analysis.scores import load_scores
from tracker.db import documents
from tracker.db.store import Store
from tracker.record.runs import RunRecorder

KEY = "a" * 64


def _doc(**extra):
    doc = {"_id": documents.new_run_id("fe"), "schema_version": 1, "kind": "features",
           "status": "QUEUED", "config": {"layer": "conv3"}, "config_key": KEY,
           "created": documents.utc_now()}
    doc.update(extra)
    return doc


def test_init_schema_is_idempotent_and_creates_indexes(store):
    again = store.init_schema()
    assert "one_completed_per_config" in again["fit_runs"]
    info = store.db.fit_runs.index_information()
    assert info["one_completed_per_config"]["unique"] is True
    assert set(store.status()["collections"]) >= {"fit_runs", "feature_runs", "voxel_columns", "datasets"}


def test_validator_rejects_incomplete_run_document(store):
    with pytest.raises(WriteError):
        store.db.feature_runs.insert_one({"_id": "x", "status": "RUNNING"})
    with pytest.raises(WriteError):
        store.db.feature_runs.insert_one(_doc(status="BOGUS"))


def test_only_one_completed_run_per_config_key(store):
    a, b = _doc(), _doc()
    store.insert_run("feature_runs", a)
    store.insert_run("feature_runs", b)  # two attempts may exist...
    store.complete_run("feature_runs", a["_id"], {})
    with pytest.raises(DuplicateKeyError):  # ...but only one may complete
        store.complete_run("feature_runs", b["_id"], {})
    assert store.find_completed("feature_runs", KEY)["_id"] == a["_id"]


def test_get_run_by_prefix(store):
    a = _doc(_id="fe-abc123")
    b = _doc(_id="fe-abd999", config_key="b" * 64)
    store.insert_run("feature_runs", a)
    store.insert_run("feature_runs", b)
    assert store.get_run("fe-abc")[1]["_id"] == "fe-abc123"
    with pytest.raises(ConfigError, match="ambiguous"):
        store.get_run("fe-ab")
    with pytest.raises(ConfigError, match="no run"):
        store.get_run("zz")


def test_unreachable_server_gives_clear_error_without_password():
    s = Store("mongodb://user:hunter2@127.0.0.1:1/?directConnection=true", "x", timeout_ms=300)
    with pytest.raises(DatabaseError) as info:
        s.ping()
    assert "hunter2" not in str(info.value) and "127.0.0.1:1" in str(info.value)


def test_recorder_completes(store):
    doc = _doc()
    with RunRecorder(store, "feature_runs", doc, heartbeat_s=0.05) as rec:
        rec.progress("train", 3, 10)
        time.sleep(0.3)
        beat = store.db.feature_runs.find_one({"_id": doc["_id"]})
        assert beat["status"] == "RUNNING" and beat["progress"] == {"stage": "train", "done": 3, "total": 10}
        rec.complete({"result": 1})
    final = store.db.feature_runs.find_one({"_id": doc["_id"]})
    assert final["status"] == "COMPLETED" and final["result"] == 1 and final["finished"] >= final["started"]


def test_recorder_records_failure_with_traceback(store):
    doc = _doc()
    with pytest.raises(ZeroDivisionError):
        with RunRecorder(store, "feature_runs", doc):
            _ = 1 / 0
    final = store.db.feature_runs.find_one({"_id": doc["_id"]})
    assert final["status"] == "FAILED"
    assert final["error"]["type"] == "ZeroDivisionError" and "1 / 0" in final["error"]["traceback"]


def test_recorder_records_interrupt(store):
    doc = _doc()
    with pytest.raises(KeyboardInterrupt):
        with RunRecorder(store, "feature_runs", doc):
            raise KeyboardInterrupt
    assert store.db.feature_runs.find_one({"_id": doc["_id"]})["status"] == "INTERRUPTED"


def test_recorder_without_complete_is_failed(store):
    doc = _doc()
    with RunRecorder(store, "feature_runs", doc):
        pass
    assert store.db.feature_runs.find_one({"_id": doc["_id"]})["status"] == "FAILED"


def test_store_open_starts_embedded_server(tmp_path, db_name):
    from tracker.db.server import EmbeddedServer
    from tracker.db.settings import Settings

    settings = Settings(mongo_uri=None, db_name=db_name, home=tmp_path / "home")
    try:
        with Store.open(settings) as s:
            assert "fit_runs" in s.db.list_collection_names()
        assert EmbeddedServer(settings.embedded_db_dir).running() is not None
    finally:
        EmbeddedServer(settings.embedded_db_dir).stop()


def test_buckets_round_trip(store):
    class Split:
        name, kind, n_train, n_test, test_indices = "validation", "validation", 10, 5, None
        r = np.array([0.1, np.nan, 0.3, 0.4, 0.5, 0.6, 0.7])
        r2_corr = r ** 2
        r2 = r - 1
        hyper = np.arange(7.0)

    docs = documents.score_buckets("fi-1", "S1", "V4", Split, np.arange(100, 107), bucket_size=3)
    # one document per field and chunk of <= 3 voxels: binary arrays, no lists
    assert [(d["field"], d["chunk"], d["n"]) for d in docs if d["field"] in ("voxel_ids", "hyper")] == [
        ("voxel_ids", 0, 3), ("hyper", 0, 3), ("voxel_ids", 1, 3), ("hyper", 1, 3),
        ("voxel_ids", 2, 1), ("hyper", 2, 1)]
    assert len(docs) == 3 * 5 and all(isinstance(d["data"], bytes) for d in docs)
    assert {d["field"]: d["dtype"] for d in docs} == {
        "voxel_ids": "<i4", "r": "<f8", "r2_corr": "<f8", "r2": "<f8", "hyper": "<f8"}
    store.insert_buckets(docs)
    back = load_scores(store, ["fi-1"], "validation", ["r", "r2", "hyper"])["fi-1"]
    assert back.voxel_ids.tolist() == list(range(100, 107)) and back.chunk.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert np.isnan(back.values["r"][1]) and back.values["r"][6] == 0.7 and back.values["r2"][6] == 0.7 - 1
    assert back.values["hyper"].tolist() == list(range(7))
    with pytest.raises(BulkWriteError, match="duplicate key"):  # (run, split, field, chunk) is unique
        store.insert_buckets([{k: v for k, v in docs[0].items() if k != "_id"}])
    assert store.upsert_buckets(docs) == len(docs)  # replays replace, never duplicate
    assert store.db.voxel_columns.count_documents({"run_id": "fi-1"}) == len(docs)
    class Other(Split):  # a replay with other values (and one new run) replaces them
        r = Split.r + 1

    again = documents.score_buckets("fi-1", "S1", "V4", Other, np.arange(100, 107), bucket_size=3)
    store.upsert_buckets(again + documents.score_buckets("fi-9", "S1", "V4", Other, np.arange(7)))
    assert store.db.voxel_columns.count_documents({"run_id": "fi-1"}) == len(docs)
    assert load_scores(store, ["fi-1"], "validation")["fi-1"].values["r"][6] == 1.7
    assert load_scores(store, ["fi-9"], "validation")["fi-9"].voxel_ids.tolist() == list(range(7))

    class Big(Split):
        r = np.array([0.5])
        r2_corr, r2, hyper = r ** 2, r - 1, np.zeros(1)

    (ids_doc, *_) = documents.score_buckets("fi-3", "S1", "V4", Big, [2 ** 40])
    assert ids_doc["dtype"] == "<i8"  # ids beyond int32 are stored as int64
    store.insert_buckets(documents.score_buckets("fi-3", "S1", "V4", Big, [2 ** 40]))
    assert load_scores(store, ["fi-3"], "validation")["fi-3"].voxel_ids.tolist() == [2 ** 40]
