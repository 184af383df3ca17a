"""One value per distinct (subject, voxel): how a group of fits becomes voxel statistics.

A group's fits share one condition (:mod:`tracker.analysis.conditions`); each scored
some voxels of one subject. Pooling keeps every voxel once:

- fits of different subjects, or of disjoint voxels, are concatenated;
- a voxel scored by more than one fit of the group (``--over seed``: one fit per seed;
  or the same condition fitted for V4 and for ``all``) gets the mean of its finite
  values over those fits, and :attr:`Pooled.n_combined` says how many voxels that was;
- its BH flag counts only when every fit that scored it flagged it.

Voxel keys are ``subject index << 32 | voxel id`` (subjects in sorted order), sorted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracker.analysis.scores import RunScores


@dataclass
class Pooled:
    """A group's per-voxel values, one per distinct (subject, voxel).

    Attributes
    ----------
    subjects : list of str
        Sorted subject names; ``keys >> 32`` indexes it.
    keys : ndarray of int64, shape (n,)
        Sorted voxel keys (subject index << 32 | voxel id).
    values : ndarray of float64, shape (n,)
        Mean over the group's fits that scored the voxel (NaN: no finite value).
    significant : ndarray of bool, shape (n,), or None
        Flagged by every fit that scored the voxel; None unless every fit stored flags.
    ceiling : ndarray of float64, shape (n,), or None
        Noise ceiling in the metric's units (NaN where unknown); None if none recorded.
    copies : ndarray of int64, shape (n,)
        Fits that scored each voxel.
    n_runs : int
        Fits with scores in the group.
    """

    subjects: list[str]
    keys: np.ndarray
    values: np.ndarray
    significant: np.ndarray | None
    ceiling: np.ndarray | None
    copies: np.ndarray
    n_runs: int

    @property
    def n_combined(self) -> int:
        """Voxels whose value combines more than one fit."""
        return int(np.sum(self.copies > 1))

    @property
    def finite(self) -> np.ndarray:
        """The finite values (one per voxel)."""
        return self.values[np.isfinite(self.values)]

    def policy(self, over: Sequence[str] = ()) -> str:
        """What was done to keep one value per voxel, in words."""
        n = int(self.keys.size)
        if not self.n_combined:
            return "one fit per voxel"
        what = ", ".join(over) if over else "duplicate fits"
        return (f"{self.n_combined}/{n} voxels: mean of up to {int(self.copies.max())} "
                f"fits ({what})")


def _vset_key(run: Mapping[str, Any]) -> tuple:
    """Fits with equal keys scored the same voxels in the same order (the voxel set is
    a function of the response file, ROI and target)."""
    return (run.get("subject"), run.get("roi"), run.get("target"), run.get("dataset_id"),
            (run.get("responses") or {}).get("sha256"), run.get("n_voxels"))


def voxel_sets(runs: Sequence[Mapping[str, Any]]) -> dict[tuple, list[str]]:
    """Run ids by voxel-set key (the first of each list is the one whose ids are read)."""
    out: dict[tuple, list[str]] = defaultdict(list)
    for run in runs:
        out[_vset_key(run)].append(run["_id"])
    return dict(out)


def pool(members: Sequence[Mapping[str, Any]], scores: Mapping[str, RunScores],
         ids: Mapping[str, np.ndarray], metric: str,
         ceiling: Callable[[Mapping[str, Any], np.ndarray], np.ndarray | None] | None = None,
         ) -> Pooled:
    """Pool one group of fits to one value per distinct (subject, voxel).

    Parameters
    ----------
    members
        The group's fit documents.
    scores
        Run id -> :class:`RunScores` holding ``metric`` (and ``significant`` if stored).
    ids
        Run id -> voxel ids (shape (v,)) for every member with scores.
    ceiling
        ``(run, voxel_ids) -> ceiling`` in the metric's units, or None.
    """
    got = [r for r in members if r["_id"] in scores]
    subjects = sorted({str(r.get("subject")) for r in got})
    sidx = {s: i for i, s in enumerate(subjects)}
    flags = bool(got) and all("significant" in scores[r["_id"]].values for r in got)
    # runs of one voxel set: summed in place (their ids are equal, element by element)
    sets: dict[tuple, dict[str, Any]] = {}
    for run in got:
        s = scores[run["_id"]]
        vid = np.asarray(ids[run["_id"]], dtype=np.int64)
        v = s.values[metric]
        ok = np.isfinite(v)
        entry = sets.get(_vset_key(run))
        if entry is None:
            key = (np.int64(sidx[str(run.get("subject"))]) << 32) | vid
            c = ceiling(run, vid) if ceiling is not None else None
            entry = sets[_vset_key(run)] = {
                "keys": key, "sum": np.zeros(v.shape), "n": np.zeros(v.shape, np.int64),
                "copies": np.zeros(v.shape, np.int64), "sig": np.zeros(v.shape, np.int64),
                "ceiling": c}
        entry["sum"] += np.where(ok, v, 0.0)
        entry["n"] += ok
        entry["copies"] += 1
        if flags:
            entry["sig"] += scores[run["_id"]].values["significant"] == 1.0
    return _merge(list(sets.values()), subjects, flags, len(got), ceiling is not None)


def _merge(sets: list[dict[str, Any]], subjects: list[str], flags: bool, n_runs: int,
           with_ceiling: bool) -> Pooled:
    if not sets:
        empty = np.empty(0)
        return Pooled(subjects, empty.astype(np.int64), empty, None, None,
                      empty.astype(np.int64), 0)
    cat = {k: np.concatenate([s[k] for s in sets]) for k in ("keys", "sum", "n", "copies", "sig")}
    keys, inv = np.unique(cat["keys"], return_inverse=True)
    if keys.size == cat["keys"].size:  # no voxel in two sets: a permutation only
        order = np.argsort(cat["keys"], kind="stable")
        red = {k: v[order] for k, v in cat.items()}
    else:
        red = {k: np.bincount(inv, weights=cat[k], minlength=keys.size)
               for k in ("sum", "n", "copies", "sig")}
        order = None
    n = red["n"].astype(np.int64)
    copies = red["copies"].astype(np.int64)
    values = np.full(keys.shape, np.nan)
    np.divide(red["sum"], n, out=values, where=n > 0)
    sig = (red["sig"].astype(np.int64) == copies) & (n > 0) if flags else None
    ceil = None
    has_c = [s["ceiling"] is not None for s in sets]
    if with_ceiling and any(has_c):
        cvals = np.concatenate([s["ceiling"] if s["ceiling"] is not None
                                else np.full(s["keys"].shape, np.nan) for s in sets])
        if order is not None:
            ceil = cvals[order]
        else:  # the same voxel has the same ceiling in every fit: keep the last seen
            ceil = np.full(keys.shape, np.nan)
            ceil[inv] = cvals
    return Pooled(subjects, keys, values, sig, ceil, copies, n_runs)


def align(pools: Sequence[Pooled]) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    """The voxels every pool holds with a finite value.

    Returns
    -------
    keys : ndarray of int64, shape (n,)
        Shared voxel keys (re-indexed to the returned subject list).
    values : list of ndarray, shape (n,)
        Each pool's values at those voxels.
    subjects : list of str
    """
    subjects = sorted({s for p in pools for s in p.subjects})
    sidx = {s: i for i, s in enumerate(subjects)}
    rekeyed = []
    for p in pools:
        remap = np.asarray([sidx[s] for s in p.subjects], dtype=np.int64)
        k = (remap[p.keys >> 32] << 32) | (p.keys & 0xFFFFFFFF) if p.keys.size else p.keys
        ok = np.isfinite(p.values)
        rekeyed.append((k[ok], p.values[ok]))
    shared = rekeyed[0][0]
    for k, _ in rekeyed[1:]:
        shared = np.intersect1d(shared, k, assume_unique=True)
    vals = [v[np.searchsorted(k, shared)] for k, v in rekeyed]
    return shared, vals, subjects
