"""Seed a database with fit runs whose per-voxel scores are planted (known answers),
stored as the tracker stores them (score columns)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.keys import content_key
from tracker.db import documents
from tracker.db.store import Store


@dataclass
class FakeSplit:
    name: str
    kind: str
    r: np.ndarray
    n_train: int = 1500
    n_test: int = 250
    test_indices: np.ndarray | None = None

    @property
    def r2_corr(self):
        return self.r ** 2

    @property
    def r2(self):
        return self.r ** 2 - 0.01

    @property
    def hyper(self):
        return np.full(self.r.shape, 10.0)


def feature_run(preprocess="caffe", warp=None, layer="conv3"):
    config = {"model": "alexnet", "variant": "caffe", "layer": layer, "weights": "random:0",
              "preprocess": preprocess}
    if warp:
        config["retina_warp"] = warp
    return {"_id": documents.new_run_id("fe"), "config": config,
            "config_key": content_key(config), "dataset_id": "ds-x"}


def score_docs(run_id: str, subject: str, roi: str, split, voxel_ids, bucket_size: int) -> list[dict]:
    """The score documents of one split."""
    return documents.score_buckets(run_id, subject, roi, split, voxel_ids, bucket_size=bucket_size)


def stored(store: Store, run_id: str, field: str = "r", split: str = "validation") -> np.ndarray:
    """The values of one per-voxel field of a run as stored, in stored order."""
    from tracker.analysis.scores import load_scores

    return load_scores(store, [run_id], split, [field])[run_id].values[field]


def add_fit(store: Store, subject, method, r_test, r_val, status="COMPLETED", frun=None,
            roi="V4", target="voxels", predictions=None):
    frun = frun or feature_run()
    config = {"method": method, "protocol": "recommended", "target": target}
    key = content_key(config, subject, roi, frun["config_key"], documents.new_run_id("k"))
    doc = documents.fit_run_doc(config, key, frun, subject, roi, {"host": "test"})
    splits = [FakeSplit("test", "test", np.asarray(r_test, float), test_indices=np.arange(3)),
              FakeSplit("validation", "validation", np.asarray(r_val, float), n_test=120)]
    voxel_ids = np.arange(len(r_val)) + 1000
    buckets = []
    for s in splits:
        buckets += score_docs(doc["_id"], subject, roi, s, voxel_ids, bucket_size=4)
    doc["status"] = status
    doc["summary"] = {s.name: documents.split_summary(s, 0.15) for s in splits}
    doc["splits"] = [documents.split_record(s) for s in splits]
    if predictions:
        doc["predictions"] = predictions
    store.insert_run("fit_runs", doc)
    store.insert_buckets(buckets)
    return doc
