"""The data of every figure, read from the database alone.

Each figure has a *data* function here (database -> plain rows/arrays, testable: the
same database gives the same data) and a *draw* function in :mod:`tracker.figures.draw`
(data -> matplotlib figure). Axis labels name the metric: ``r`` (Pearson), ``r^2 of
correlation`` (squared Pearson r, the 2019 "r-squared") or ``R^2`` (coefficient of
determination).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.core.vocab import SPLITS, layer_sort_key
from tracker.analysis import fields, queries, voxels
from tracker.analysis.ceilings import CeilingTable
from tracker.analysis.scores import load_scores
from tracker.db.store import Store


def bars_data(store: Store, subject: str, roi: str = "V4", metric: str = "r2_corr",
              n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """The 2019 bars: per (split, method, preprocessing) of one subject, the mean over
    voxels with its seeded bootstrap 95% CI, std, SEM, n, chance level and, where a
    noise ceiling exists, the fraction of it (``frac_ceiling``)."""
    rows = []
    for split in SPLITS:
        thresholds = r_thresholds(store, subject, roi, split)
        for row in queries.compare(store, ["method", "preprocessing"], roi=roi, split=split,
                                   metric=metric, extra={"subject": subject}, n_boot=n_boot, seed=seed):
            if row["n"]:
                found = [thresholds[i] for i in row["run_ids"] if thresholds.get(i) is not None]
                rows.append({"split": split, **{k: row[k] for k in (
                    "method", "preprocessing", "mean", "mean_low", "mean_high", "std", "sem", "n",
                    "n_runs", "median", "chance_r2_corr", "frac_ceiling")},
                    "r_threshold_p05": float(np.mean(found)) if found else None})
    return rows


def r_thresholds(store: Store, subject: str, roi: str, split: str) -> dict[str, float | None]:
    """Run id -> the stored critical r at p < .05 on ``split`` (None where not stored)."""
    path = f"summary.{split}.r_threshold_p05"
    runs = queries.completed_fits(store, roi, "voxels", {"subject": subject}, fields=(path,))
    return {r["_id"]: fields.get_path(r, path) for r in runs}


def roi_average_data(store: Store, subject: str, roi: str = "V4", split: str = "validation") -> list[dict]:
    """Predicted vs measured ROI-average responses of each completed ROI-average fit."""
    runs = queries.completed_fits(store, roi, target="roi_mean", extra={"subject": subject})
    out = []
    for run in store.find_runs("fit_runs", {"_id": {"$in": [r["_id"] for r in runs]}},
                               projection={"predictions": 1, "config.method": 1, "n_voxels": 1,
                                           "features.preprocessing": 1, "summary": 1}):
        pred = (run.get("predictions") or {}).get(split)
        if not pred:
            continue
        out.append({
            "run_id": run["_id"], "method": run["config"]["method"],
            "preprocessing": run["features"]["preprocessing"],
            "y_true": pred["y_true"], "y_pred": pred["y_pred"],
            "r": fields.get_path(run, f"summary.{split}.r.mean"), "n_voxels": run.get("n_voxels"),
        })
    return sorted(out, key=lambda d: (d["method"], d["preprocessing"]))


def scatter_data(store: Store, run_a: str, run_b: str, split: str = "validation",
                 metric: str = "r") -> dict[str, Any]:
    """Per-voxel scores of two runs paired by voxel id, with the paired statistics."""
    (_, a), (_, b) = store.get_run(run_a), store.get_run(run_b)
    return voxels.paired_scores(store, a, b, split, metric)


def distribution_data(store: Store, split: str = "validation", metric: str = "r",
                      query: Mapping[str, Any] | None = None, by: str = "method",
                      normalise: bool = False) -> list[dict[str, Any]]:
    """Per-voxel score distributions per (ROI, ``by`` value), pooled over runs.

    ``normalise`` divides each voxel's score by its noise ceiling (voxels without one
    are left out). Rows: ``roi``, ``group``, ``values`` (sorted ndarray), ``n``,
    ``median``, ``q25``, ``q75``; ROIs in name order.
    """
    by = fields.parse_by(by)[0]
    runs = queries.completed_fits(store, None, "voxels", query)
    scores = load_scores(store, [r["_id"] for r in runs], split, [metric])
    table = CeilingTable(store, split)
    pooled: dict[tuple, list[np.ndarray]] = {}
    for run in runs:
        s = scores.get(run["_id"])
        if s is None:
            continue
        v = s.values[metric]
        if normalise:
            c = table.for_run(run, s.voxel_ids, metric)
            if c is None:
                continue
            # voxels whose ceiling is 0 (no detectable signal) have no normalised score
            v = np.divide(v, c, out=np.full_like(v, np.nan), where=c > 0)
        key = (run["roi"], str(fields.get_path(run, fields.GROUP_FIELDS[by])))
        pooled.setdefault(key, []).append(v)
    rows = []
    for (roi, group), parts in sorted(pooled.items()):
        v = np.concatenate(parts)
        v = np.sort(v[np.isfinite(v)])
        if v.size:
            q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75])
            rows.append({"roi": roi, "by": by, "group": group, "values": v, "n": int(v.size),
                         "median": float(med), "q25": float(q25), "q75": float(q75)})
    return rows


def volume_data(store: Store, run_id: str, split: str = "validation", metric: str = "r") -> dict[str, Any]:
    """A run's per-voxel scores in the 64 x 64 x 18 volume (NaN elsewhere) and the axial
    slices (k) that hold voxels."""
    run = voxels.voxel_fit(*store.get_run(run_id), run_id)
    vol = voxels.volume(store, run, split, metric)
    slices = [int(k) for k in np.flatnonzero(np.isfinite(vol).any(axis=(0, 1)))]
    return {"run": voxels.run_info(run), "split": split, "metric": metric, "volume": vol,
            "slices": slices}


def layer_data(store: Store, split: str = "validation", metric: str = "r",
               query: Mapping[str, Any] | None = None, n_boot: int = 1000) -> list[dict[str, Any]]:
    """Score vs layer per ROI (and method): median over pooled voxels with bootstrap CI,
    plus ``frac_ceiling`` where ceilings exist. Empty unless some ROI has 2+ layers."""
    rows = queries.compare(store, ["roi", "method", "layer"], roi=None, split=split, metric=metric,
                           extra=query, n_boot=n_boot)
    keep = {k for k in {(r["roi"], r["method"]) for r in rows}
            if len({r["layer"] for r in rows if (r["roi"], r["method"]) == k}) > 1}
    out = [{k: r[k] for k in ("roi", "method", "layer", "n", "n_runs", "median", "median_low",
                              "median_high", "mean", "frac_ceiling")}
           for r in rows if (r["roi"], r["method"]) in keep and r["n"]]
    return sorted(out, key=lambda r: (r["roi"], r["method"], layer_sort_key(r["layer"])))


def scatter_pairs(store: Store, roi: str, method_a: str = "ridge", method_b: str = "pls") -> list[tuple]:
    """(subject, newest run of ``method_a``, newest of ``method_b``) on the same features."""
    runs = queries.completed_fits(store, roi, "voxels")
    pairs = []
    seen = set()
    for a in runs:
        if a["config"].get("method") != method_a:
            continue
        key = (a["subject"], a["feature_run_id"])
        b = next((r for r in runs if r["config"].get("method") == method_b
                  and (r["subject"], r["feature_run_id"]) == key), None)
        if b is not None and key not in seen:
            seen.add(key)
            pairs.append((a["subject"], a["_id"], b["_id"]))
    return pairs
