"""Seed fit runs with planted per-voxel scores, optional p / significant arrays, layers and
noise ceilings (known answers for the query, plot, export and report tests)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.keys import content_key
from tracker.db import documents
from tracker.db.store import Store

from .seed_db import feature_run, score_docs


@dataclass
class Split:
    name: str
    r: np.ndarray
    n_test: int = 120
    n_train: int = 1750

    kind = "validation"
    test_indices = None
    p = None
    significant = None

    @property
    def r2_corr(self):
        return self.r ** 2

    @property
    def r2(self):
        return self.r ** 2 - 0.02

    @property
    def hyper(self):
        return np.arange(self.r.size, dtype=float)


def add_fit(store: Store, subject: str, method: str, r_val, r_test=None, voxel_ids=None,
            layer="conv3", roi="V4", p_val=None, frun=None, bucket_size=3, status="COMPLETED"):
    """A completed fit with planted validation (and test) r; p_val adds p + BH flags (flag:
    p < 0.05)."""
    r_val = np.asarray(r_val, dtype=float)
    r_test = r_val - 0.1 if r_test is None else np.asarray(r_test, dtype=float)
    ids = np.arange(r_val.size) + 1 if voxel_ids is None else np.asarray(voxel_ids)
    frun = frun or feature_run(layer=layer)
    config = {"method": method, "protocol": "recommended", "target": "voxels", "alpha": 1.0}
    key = content_key(config, subject, roi, frun["config_key"], documents.new_run_id("k"))
    doc = documents.fit_run_doc(config, key, frun, subject, roi, {"host": "h", "python": "3.11"})
    splits = [Split("test", r_test, n_test=250), Split("validation", r_val)]
    if p_val is not None:
        splits[1].p = np.asarray(p_val, dtype=float)
        splits[1].significant = splits[1].p < 0.05
    buckets = []
    for s in splits:
        buckets += score_docs(doc["_id"], subject, roi, s, ids, bucket_size)
    doc["status"] = status
    doc["summary"] = {s.name: documents.split_summary(s, 0.15) for s in splits}
    doc["n_voxels"] = int(ids.size)
    store.insert_run("fit_runs", doc)
    store.insert_buckets(buckets)
    return doc


def add_ceiling(store: Store, subject: str, voxel_ids, r_ceiling, dataset_id="ds-x",
                split="validation"):
    from datetime import datetime, timezone

    store.db.noise_ceilings.insert_one({
        "schema_version": 1, "dataset_id": dataset_id, "subject": subject, "split": split,
        "method": "nsd",
        "voxel_ids": [int(v) for v in voxel_ids], "r_ceiling": [float(c) for c in r_ceiling],
        "created": datetime.now(timezone.utc)})
