"""Variance partitions read from the database: runs, their per-voxel columns, ROI rows.

A partition run (``partition_runs``, made by ``tracker partition A B``) stores per voxel
``r2_a``, ``r2_b``, ``r2_ab``, ``unique_a``, ``unique_b`` and ``shared`` (validation R2,
raw: negative estimates are kept, see :mod:`pipeline.fit.partition`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.data.layout import ROI_CODES
from pipeline.fit.partition import PARTITION_FIELDS
from tracker.db.documents import decode_column
from tracker.db.store import Store


def completed_partitions(store: Store, query: Mapping[str, Any] | None = None) -> list[dict]:
    """Completed partition runs matching ``query`` (e.g. ``{"subject": "S1"}``), newest first."""
    return store.find_runs("partition_runs", {"status": "COMPLETED", **(query or {})},
                           projection={"provenance": 0}, sort=[("created", -1)])


def partition_columns(store: Store, run_id: str) -> dict[str, np.ndarray]:
    """``{"voxel_ids": int64, field: float64 ...}`` of one partition run (all its fields)."""
    parts: dict[str, list[tuple[int, np.ndarray]]] = {}
    wanted = ["voxel_ids", *PARTITION_FIELDS, "alpha_a", "alpha_b"]
    for doc in store.columns([run_id], ["validation"], wanted):
        parts.setdefault(doc["field"], []).append((doc["chunk"], decode_column(doc)))
    if "voxel_ids" not in parts:
        raise ConfigError(f"partition run {run_id} has no per-voxel columns")
    return {f: np.concatenate([a for _, a in sorted(p, key=lambda x: x[0])]) for f, p in parts.items()}


def pair_label(run: Mapping[str, Any]) -> tuple[str, str]:
    """(label of A, label of B) of a partition run, e.g. ("conv1 (caffe)", "fc6 (caffe)")."""
    return run["spaces"]["A"]["label"], run["spaces"]["B"]["label"]


def partition_rows(store: Store, query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per completed partition run: subject, ROI, the two spaces' labels, voxel
    count and the mean over voxels of every field (raw values); the newest run of each
    (subject, ROI, A, B) only. ROIs in vim-1 order."""
    seen, rows = set(), []
    for run in completed_partitions(store, query):
        a, b = pair_label(run)
        ident = (run["subject"], run["roi"], run["spaces"]["A"]["config_key"], run["spaces"]["A"]["layer"],
                 run["spaces"]["B"]["config_key"], run["spaces"]["B"]["layer"])
        if ident in seen:
            continue
        seen.add(ident)
        summary = run["summary"]["validation"]
        rows.append({"run_id": run["_id"], "subject": run["subject"], "roi": run["roi"], "a": a, "b": b,
                     "n": run["n_voxels"], **{f: summary[f]["mean"] for f in PARTITION_FIELDS},
                     **{f"median_{f}": summary[f]["median"] for f in PARTITION_FIELDS}})
    order = {name: code for code, name in ROI_CODES.items() if code > 0}
    return sorted(rows, key=lambda r: (r["subject"], r["a"], r["b"], order.get(r["roi"], 99), r["roi"]))
