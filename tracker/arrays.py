"""Per-voxel score arrays of fit runs, read from only the documents a question needs.

Every layout a run may have been logged in is read (see :mod:`tracker.documents`):

- score columns (``voxel_columns``, current): one ``bson.Binary`` array per (run, split,
  field); a question reads only the fields it needs (``compare``: one metric);
- legacy runs: compact float32 copies (``voxel_arrays``) where they exist, else (or with
  ``exact=True``) their float64 lists (``voxel_scores``): slow to read (the embedded server
  decodes a list element by element).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.core.errors import ConfigError
from tracker.documents import METRICS, PACKED_EXTRA, decode_column, unpack_array
from tracker.store import Store

#: the 64 x 64 x 18 functional volume of vim-1 (voxel ids index it, 1-based, column-major)
VOLUME_SHAPE = (64, 64, 18)
#: per-voxel fields a bucket may hold (p and significant only when the fit computed them)
FIELDS = (*METRICS, "hyper", "p", "significant")
_PACKED = ("voxel_ids", *METRICS, *PACKED_EXTRA)


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

    def get(self, name: str) -> np.ndarray | None:
        return self.values.get(name)


def check_fields(fields: Iterable[str]) -> list[str]:
    """Validate per-voxel field names (``r``, ``r2_corr``, ``r2``, ``hyper``, ``p``, ``significant``)."""
    names = list(fields)
    bad = [f for f in names if f not in FIELDS]
    if bad:
        raise ConfigError(f"unknown per-voxel field(s) {', '.join(bad)}; choose from {', '.join(FIELDS)}")
    return names


def load_scores(
    store: Store, run_ids: Sequence[str], split: str, fields: Iterable[str] = ("r",),
    exact: bool = False, ids: bool = True,
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
        Per-voxel fields to read (see :data:`FIELDS`); voxel ids always come along.
    exact
        For legacy runs, read their float64 lists instead of their float32 copies. Runs
        logged as score columns have one copy, float64 (exact), whatever ``exact`` says.
    ids
        Read the voxel ids too (False: ``voxel_ids`` holds -1 per voxel; less to read).

    Returns
    -------
    dict
        run id -> :class:`RunScores`; runs without scores for ``split`` are absent.
    """
    names = check_fields(fields)
    run_ids = list(dict.fromkeys(run_ids))
    out = _load_columns(store, run_ids, split, names, ids)
    rest = [r for r in run_ids if r not in out]
    if rest:
        out.update(_load_legacy(store, rest, split, names, exact, ids))
    return out


def _load_columns(store: Store, run_ids: list[str], split: str, names: list[str],
                  ids: bool) -> dict[str, RunScores]:
    """Runs stored as score columns (one query; only the fields asked for)."""
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


def _load_legacy(store: Store, run_ids: list[str], split: str, names: list[str], exact: bool,
                 ids: bool) -> dict[str, RunScores]:
    """Runs logged before score columns: packed copies, else float64 lists."""
    parts: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    have: set[str] = set()
    if not exact:
        for b in store.packed_buckets(run_ids, split, ["voxel_ids", *names] if ids else
                                      [names[0], *names]):
            have.add(b["run_id"])
            _collect(parts[b["run_id"]], b, names, packed=True)
    rest = [r for r in run_ids if r not in have]
    if rest:
        for b in store.buckets(rest, split, ["voxel_ids", *names]):
            _collect(parts[b["run_id"]], b, names, packed=False)
    out = {}
    for run_id, p in parts.items():
        n_chunks = len(p["voxel_ids"])
        values = {f: np.concatenate(p[f]) for f in names if len(p[f]) == n_chunks}
        out[run_id] = RunScores(run_id, split, np.concatenate(p["voxel_ids"]),
                                np.concatenate(p["_chunk"]), values)
    return out


def _collect(acc: dict[str, list], bucket: dict, names: list[str], packed: bool) -> None:
    if "voxel_ids" not in bucket:  # not asked for: as many -1 as the first field has values
        first = bucket[names[0]]
        ids = np.full(len(first) // 4 if packed else len(first), -1, dtype=np.int64)
    else:
        ids = (unpack_array("voxel_ids", bucket["voxel_ids"]) if packed
               else np.asarray(bucket["voxel_ids"], dtype=np.int64))
    acc["voxel_ids"].append(ids)
    if "sizes" in bucket:  # one packed document may hold several chunks
        acc["_chunk"].append(np.repeat(np.asarray(bucket["chunks"], dtype=np.int64), bucket["sizes"]))
    else:
        acc["_chunk"].append(np.full(ids.size, bucket["chunk"], dtype=np.int64))
    for f in names:
        data = bucket.get(f)
        if data is None:
            continue
        acc[f].append(unpack_array(f, data) if packed and f in _PACKED
                      else np.array(data, dtype=np.float64))


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
