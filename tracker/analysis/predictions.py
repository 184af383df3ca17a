"""Held-out predictions stored with fits, and the per-voxel paired test of two conditions.

Fits store the measured and predicted responses of the validation images per voxel
(``y_true``, ``y_pred`` in ``voxel_columns``; :func:`tracker.db.documents.prediction_docs`).
Fits logged before that have none: their contrasts report the voxel test as not
available rather than guessing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracker.db.documents import PREDICTION_FIELDS
from tracker.db.store import Store

#: the split whose images every fit shares (the only one with stored predictions)
PREDICTION_SPLIT = "validation"


@dataclass
class HeldOut:
    """One fit's validation responses, voxel-major.

    Attributes
    ----------
    y_true, y_pred : ndarray of float32, shape (v, n_images)
        In the order of the fit's voxel ids for the split.
    """

    y_true: np.ndarray
    y_pred: np.ndarray


def load_predictions(store: Store, run_ids: Sequence[str], split: str = PREDICTION_SPLIT
                     ) -> dict[str, HeldOut]:
    """Stored held-out responses of ``run_ids`` (runs without them are absent)."""
    parts: dict[str, dict[str, list[tuple[int, np.ndarray]]]] = defaultdict(lambda: defaultdict(list))
    for doc in store.columns(list(dict.fromkeys(run_ids)), [split], PREDICTION_FIELDS):
        n_img = int(doc.get("n_images") or 0)
        if n_img < 1:
            continue
        block = np.frombuffer(doc["data"], dtype=np.dtype(doc["dtype"])).reshape(-1, n_img)
        parts[doc["run_id"]][doc["field"]].append((int(doc["chunk"]), block))
    out = {}
    for run_id, by_field in parts.items():
        if set(by_field) != set(PREDICTION_FIELDS):
            continue
        arrays = [np.concatenate([b for _, b in sorted(by_field[f], key=lambda x: x[0])])
                  for f in PREDICTION_FIELDS]
        if arrays[0].shape == arrays[1].shape:
            out[run_id] = HeldOut(*arrays)
    return out


def voxel_matrix(runs: Sequence[Mapping[str, Any]], held: Mapping[str, HeldOut],
                 ids: Mapping[str, np.ndarray], keys: np.ndarray, subjects: Sequence[str],
                 field: str) -> np.ndarray | None:
    """``field`` (``y_true`` / ``y_pred``) of the voxels ``keys`` as (n_images, n).

    ``runs`` are one side of a contrast with one fit per voxel; None if a voxel's fit
    stored no predictions or the fits hold different numbers of images.
    """
    sidx = {s: i for i, s in enumerate(subjects)}
    key_parts, row_parts = [], []
    for run in runs:
        h = held.get(run["_id"])
        if h is None:
            continue
        arr = getattr(h, field)
        vid = np.asarray(ids[run["_id"]], dtype=np.int64)
        if arr.shape[0] != vid.size or (row_parts and arr.shape[1] != row_parts[0].shape[1]):
            return None
        key_parts.append((np.int64(sidx[str(run.get("subject"))]) << 32) | vid)
        row_parts.append(arr)
    if not row_parts:
        return None
    all_keys, first = np.unique(np.concatenate(key_parts), return_index=True)
    pos = np.searchsorted(all_keys, keys)
    pos = np.clip(pos, 0, max(all_keys.size - 1, 0))
    if keys.size and not np.array_equal(all_keys[pos], keys):
        return None
    rows = np.concatenate(row_parts)[first[pos]]
    return np.ascontiguousarray(rows.T, dtype=np.float64)
