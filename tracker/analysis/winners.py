"""Which condition wins, per ROI and per voxel (``tracker best --over FIELD``).

The candidates are the values of one condition field (``layer``, ``model``,
``preprocessing``, ``method`` ...); every other identity field must be one value per
ROI (or be averaged per voxel with ``average``, e.g. seeds). Per ROI, over the voxels
every candidate scored (distinct (subject, voxel)):

- the best candidate (highest mean score) with a seeded bootstrap CI of its mean, and
  for every candidate ``p_best``: the share of bootstrap resamples of voxels (the same
  resampled voxels for all candidates) in which it has the highest mean (beyond
  10 million resampled values, draws of the resampled means from their multivariate
  normal limit, mean and voxel covariance / n);
- per voxel, the winning candidate; ``voxel_share`` is the share of voxels each wins,
  ``voxel_share_sig`` the share it wins significantly: beating the runner-up at that
  voxel by the paired swap test (:mod:`tracker.analysis.contrasts`) at ``alpha`` (None
  where the fits stored no held-out predictions or a voxel combines several fits).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.evaluation.paired import swap_test
from tracker.analysis import conditions, predictions, queries
from tracker.analysis.contrasts import voxel_inputs
from tracker.analysis.pooling import align

#: bootstrap resamples per block (memory: block x voxels floats)
_BLOCK = 100


def best(store, over: str, roi: str | Sequence[str] | None = None, split: str = "validation",
         metric: str = "r", target: str = "voxels", extra: Mapping[str, Any] | None = None,
         average: Sequence[str] = (), n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
         n_permutations: int = 1000, permutation_seed: int = 0, voxels: bool = False
         ) -> list[dict[str, Any]]:
    """Per ROI: the candidates (values of ``over``), their scores and who wins.

    Returns
    -------
    rows
        One per ROI: ``roi``, ``over``, ``best``, ``n`` (voxels every candidate scored),
        ``conditions`` (per candidate: ``value``, ``mean``, ``mean_low``, ``mean_high``,
        ``p_best``, ``voxel_share``, ``voxel_share_sig``, ``n_runs``), ``fixed`` (the
        identity fields held fixed), ``untrained``, ``voxel_test_note``; with
        ``voxels=True`` also ``subjects``, ``voxel_keys`` and ``voxel_winner`` (index
        into ``conditions``) for maps.
    """
    if over in conditions.VOXEL_FIELDS:
        raise ConfigError(f"--over {over}: candidates are condition fields, not {over}")
    sel = queries.select_conditions(store, ("roi", over), roi, split, target, extra, average,
                                    by_hint=False)
    if not sel.groups:
        return []
    pools = sel.pool(store, metric)
    rois = sorted({k[0] for k in sel.groups})
    rows = []
    for r_i, name in enumerate(rois):
        cands = [k for k in sel.groups if k[0] == name]
        row = _roi_row(store, sel, cands, pools, over, split, n_boot, seed + r_i, alpha,
                       n_permutations, permutation_seed, voxels)
        rows.append({"roi": name, "over": over, "metric": metric, "split": split, **row})
    return rows


def _roi_row(store, sel, cands, pools, over, split, n_boot, seed, alpha, n_perm, perm_seed,
             voxels) -> dict[str, Any]:
    keys, vals, subjects = align([pools[k] for k in cands])
    M = np.vstack(vals) if vals else np.empty((0, 0))
    idents = [sel.idents[r["_id"]] for k in cands for r in sel.groups[k]]
    out: dict[str, Any] = {
        "n": int(keys.size), "fixed": conditions.held_fixed(idents, exclude=(over,)),
        "untrained": next((u for i in idents if (u := conditions.untrained(i))), None)}
    means = M.mean(axis=1) if keys.size else np.full(len(cands), np.nan)
    winner = int(np.nanargmax(means)) if keys.size else None
    p_best, lows, highs = (_stability(M, n_boot, seed) if keys.size
                           else (np.full(len(cands), np.nan),) * 3)
    vox_win = np.argmax(M, axis=0) if keys.size else np.empty(0, int)
    share = np.bincount(vox_win, minlength=len(cands)) / max(keys.size, 1)
    sig, note = _significant_wins(store, sel, cands, pools, M, vox_win, keys, subjects, split,
                                  alpha, n_perm, perm_seed)
    table = []
    for i, k in enumerate(cands):
        table.append({"value": k[1], "mean": float(means[i]) if keys.size else None,
                      "mean_low": _num(lows[i]), "mean_high": _num(highs[i]),
                      "p_best": float(p_best[i]) if np.isfinite(p_best[i]) else None,
                      "voxel_share": float(share[i]) if keys.size else None,
                      "voxel_share_sig": None if sig is None else float(sig[i]),
                      "n_runs": pools[k].n_runs})
    out.update(best=cands[winner][1] if winner is not None else None, conditions=table,
               voxel_test_note=note)
    if voxels:
        out.update(subjects=subjects, voxel_keys=keys, voxel_winner=vox_win)
    return out


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _stability(M: np.ndarray, n_boot: int, seed: int, level: float = 0.95
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One paired bootstrap of voxels for all candidates (rows of ``M``, candidates x
    voxels): the share of resamples in which each has the highest mean, and the
    percentile CI of each mean. Beyond :data:`tracker.analysis.queries.BOOT_BUDGET`
    resampled values the resampled means are drawn from their normal limit."""
    c, n = M.shape
    if n_boot <= 0:
        nan = np.full(c, np.nan)
        return nan, nan, nan
    rng = np.random.default_rng(seed)
    if n * n_boot > queries.BOOT_BUDGET:
        # many voxels: the resampled means are normal with the voxels' covariance / n
        # (the bootstrap's own limit), drawn directly
        cov = np.atleast_2d(np.cov(M)) / n
        boot = rng.multivariate_normal(M.mean(axis=1), cov, size=n_boot, method="eigh")
        return _from_boot(boot, c, n_boot, level)
    means = []
    for start in range(0, n_boot, _BLOCK):
        b = min(_BLOCK, n_boot - start)
        flat = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        W = np.bincount(flat.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        means.append(W @ M.T / n)
    return _from_boot(np.vstack(means), c, n_boot, level)


def _from_boot(boot: np.ndarray, c: int, n_boot: int, level: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    wins = np.bincount(np.argmax(boot, axis=1), minlength=c) / n_boot
    alpha = (1 - level) / 2
    lows, highs = np.quantile(boot, [alpha, 1 - alpha], axis=0)
    return wins, lows, highs


def _significant_wins(store, sel, cands, pools, M, vox_win, keys, subjects, split, alpha,
                      n_perm, perm_seed) -> tuple[np.ndarray | None, str | None]:
    """Per candidate, the share of voxels it wins with p < alpha against the runner-up."""
    if keys.size == 0 or len(cands) < 2:
        return None, "needs two candidates with shared voxels"
    mats = []
    for k in cands:
        runs = sel.groups[k]
        got, why = voxel_inputs(store, sel, runs, pools[k], split)
        if got is None:
            return None, why
        ids, held = got
        mats.append([predictions.voxel_matrix(runs, held, ids, keys, subjects, f)
                     for f in ("y_true", "y_pred")])
    if any(m is None for pair in mats for m in pair):
        return None, "held-out predictions missing for some voxels"
    order = np.argsort(-M, axis=0)
    runner = order[1]
    sig = np.zeros(len(cands))
    for w in range(len(cands)):
        for r in range(len(cands)):
            cols = np.flatnonzero((vox_win == w) & (runner == r))
            if w == r or cols.size == 0:
                continue
            y = mats[w][0][:, cols]
            _, p, _ = swap_test(y, mats[w][1][:, cols], mats[r][1][:, cols], n_perm, perm_seed)
            sig[w] += np.sum(p < alpha)
    return sig / keys.size, None
