"""Per-voxel score arrays of fit runs, read from only the documents a question needs.

Scores are score columns (``voxel_columns``): one ``bson.Binary`` array per (run, split,
field), so a question reads only the fields it needs (``compare``: one metric).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.core.errors import ConfigError
from tracker.analysis.fields import check_fields
from tracker.db.documents import decode_column
from tracker.db.store import Store

#: the 64 x 64 x 18 functional volume of vim-1 (voxel ids index it, 1-based, column-major)
VOLUME_SHAPE = (64, 64, 18)


@dataclass
class RunScores:
    """One run's per-voxel arrays for one split, in stored (chunk) order.

    Attributes
    ----------
    run_id, split : str
    voxel_ids : ndarray of int64, shape (v,)
    chunk : ndarray of int64, shape (v,)
        The chunk (document number) holding each voxel.
    values : dict of str -> ndarray of float64, shape (v,)
        Requested fields; a field the run's buckets lack (``p``, ``significant`` of a fit
        without a permutation test) is absent. ``significant`` is 1.0 / 0.0 (NaN unknown).
    """

    run_id: str
    split: str
    voxel_ids: np.ndarray
    chunk: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)


def load_scores(
    store: Store, run_ids: Sequence[str], split: str, fields: Iterable[str] = ("r",),
    ids: bool = True,
) -> dict[str, RunScores]:
    """Per-voxel arrays of ``run_ids`` for one split.

    Parameters
    ----------
    store
        The database.
    run_ids
        Fit runs to read (their buckets only).
    split
        ``test`` or ``validation``.
    fields
        Per-voxel fields to read (:data:`tracker.analysis.fields.SCORE_FIELDS`); voxel ids
        come along unless ``ids`` is False. Values are float64 as the fit computed them.
    ids
        Read the voxel ids too (False: ``voxel_ids`` holds -1 per voxel; less to read).

    Returns
    -------
    dict
        run id -> :class:`RunScores`; runs without scores for ``split`` are absent.
    """
    names = check_fields(fields)
    run_ids = list(dict.fromkeys(run_ids))
    want = list(dict.fromkeys(["voxel_ids", *names] if ids else names))
    docs: dict[str, dict[str, list[tuple[int, dict]]]] = defaultdict(lambda: defaultdict(list))
    for doc in store.columns(run_ids, [split], want):
        docs[doc["run_id"]][doc["field"]].append((doc["chunk"], doc))
    out = {}
    for run_id, by_field in docs.items():
        parts = {f: [d for _, d in sorted(got, key=lambda x: x[0])] for f, got in by_field.items()}
        values = {f: np.concatenate([decode_column(d) for d in parts[f]]) for f in names if f in parts}
        first = parts["voxel_ids"] if ids and "voxel_ids" in parts else next(iter(parts.values()))
        sizes = [len(d["data"]) // np.dtype(d["dtype"]).itemsize for d in first]
        chunk = np.repeat(np.asarray([d["chunk"] for d in first], dtype=np.int64), sizes)
        voxel_ids = (np.concatenate([decode_column(d) for d in parts["voxel_ids"]])
                     if ids and "voxel_ids" in parts  # else -1 per voxel (a read-only view)
                     else np.broadcast_to(np.int64(-1), chunk.shape))
        out[run_id] = RunScores(run_id, split, voxel_ids, chunk, values)
    return out


def pooled(scores: Iterable[RunScores], name: str) -> np.ndarray:
    """One field of several runs concatenated (empty if no run has it)."""
    parts = [s.values[name] for s in scores if name in s.values]
    return np.concatenate(parts) if parts else np.empty(0)


def voxel_coords(voxel_ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0-based ``(i, j, k)`` indices into the 64 x 64 x 18 volume of 1-based MATLAB ids.

    vim-1 voxel ids are MATLAB linear indices (1-based, column-major), so
    ``np.unravel_index(id - 1, (64, 64, 18), order="F")``.
    """
    ids = np.asarray(voxel_ids, dtype=np.int64)
    size = int(np.prod(VOLUME_SHAPE))
    if ids.size and (ids.min() < 1 or ids.max() > size):
        raise ConfigError(f"voxel ids must be between 1 and {size} (64 x 64 x 18), got "
                          f"{int(ids.min())}..{int(ids.max())}")
    i, j, k = np.unravel_index(ids - 1, VOLUME_SHAPE, order="F")
    return i, j, k
