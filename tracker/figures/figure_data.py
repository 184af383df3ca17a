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
from tracker.db.store import Store


def bars_data(store: Store, subject: str, roi: str = "V4", metric: str = "r2_corr",
              n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """The 2019 bars: per (split, method, preprocessing) of one subject, the mean over
    voxels with its seeded bootstrap 95% CI, std, SEM, n, chance level and, where a
    noise ceiling exists, the fraction of it (``frac_ceiling``)."""
    rows = []
    by, fixed = queries.series_by(store, ["method", "preprocessing"], roi, "voxels",
                                  {"subject": subject})
    for split in SPLITS:
        thresholds = r_thresholds(store, subject, roi, split)
        for row in queries.compare(store, by, roi=roi, split=split, metric=metric,
                                   extra={"subject": subject}, n_boot=n_boot, seed=seed):
            if row["n"]:
                found = [thresholds[i] for i in row["run_ids"] if thresholds.get(i) is not None]
                rows.append({"split": split, **{k: row[k] for k in (
                    "method", "preprocessing", "mean", "mean_low", "mean_high", "std", "sem", "n",
                    "n_runs", "median", "chance_r2_corr", "frac_ceiling", "untrained")},
                    "condition": condition_label(row, by[2:]), "fixed": fixed,
                    "r_threshold_p05": float(np.mean(found)) if found else None})
    return rows


def r_thresholds(store: Store, subject: str, roi: str, split: str) -> dict[str, float | None]:
    """Run id -> the stored critical r at p < .05 on ``split`` (None where not stored)."""
    path = f"summary.{split}.r_threshold_p05"
    runs = queries.completed_fits(store, roi, "voxels", {"subject": subject}, fields=(path,))
    return {r["_id"]: fields.get_path(r, path) for r in runs}


def condition_label(row: Mapping[str, Any], extra_fields: list[str]) -> str:
    """The part of a bar's condition beyond method and preprocessing (``protocol=cs431``)."""
    return ", ".join(f"{f}={row[f]}" for f in extra_fields)


def caption(fixed: Mapping[str, str], n: int | None = None) -> str:
    """``held fixed: model alexnet, layer conv3, ...; n voxels`` for a figure caption."""
    keep = [f"{k} {v}" for k, v in fixed.items()
            if k in ("model", "weights", "layer", "preprocessing", "method", "protocol", "target")]
    text = "held fixed: " + ", ".join(keep) if keep else ""
    if any(k == "weights" and v.startswith("random:") for k, v in fixed.items()):
        text += f" (untrained {fixed['weights']})"
    return text + (f"; {n} voxels" if n is not None else "")


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
    """Per-voxel score distributions per (ROI, ``by`` value) and whatever else varies
    (one condition per box), one value per distinct voxel.

    ``normalise`` divides each voxel's score by its noise ceiling (voxels without one
    are left out). Rows: ``roi``, ``group``, ``values`` (sorted ndarray), ``n``,
    ``median``, ``q25``, ``q75``, ``fixed`` (fields held fixed), ``pooling``; ROIs in
    name order.
    """
    by_fields, fixed = queries.series_by(store, ["roi", by], None, "voxels", query, split)
    sel = queries.select_conditions(store, by_fields, None, split, "voxels", query)
    pools = sel.pool(store, metric)
    # a box is labelled by the fields that vary among its ROI's boxes (the by field always)
    label_at: dict[str, list[int]] = {}
    for roi in {k[0] for k in pools}:
        keys = [k for k in pools if k[0] == roi]
        label_at[roi] = [i for i in range(1, len(by_fields))
                         if i == 1 or len({k[i] for k in keys}) > 1]
    rows = []
    for key, p in sorted(pools.items()):
        v = p.values
        if normalise:
            if p.ceiling is None:
                continue
            c = p.ceiling
            # voxels whose ceiling is 0 (no detectable signal) have no normalised score
            v = np.divide(v, c, out=np.full_like(v, np.nan), where=np.isfinite(c) & (c > 0))
        v = np.sort(v[np.isfinite(v)])
        if v.size:
            q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75])
            rows.append({"roi": key[0], "by": by,
                         "group": " ".join(str(key[i]) for i in label_at[key[0]]),
                         "parts": {by_fields[i]: key[i] for i in label_at[key[0]]},
                         "values": v, "n": int(v.size), "median": float(med), "q25": float(q25),
                         "q75": float(q75), "fixed": fixed, "pooling": p.policy()})
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
    by, fixed = queries.series_by(store, ["roi", "method", "layer"], None, "voxels", query)
    rows = queries.compare(store, by, roi=None, split=split, metric=metric, extra=query,
                           n_boot=n_boot)
    for r in rows:  # one series per condition but its layer
        r["series"] = " ".join(str(r[f]) for f in by if f not in ("roi", "layer"))
    keep = {k for k in {(r["roi"], r["series"]) for r in rows}
            if len({r["layer"] for r in rows if (r["roi"], r["series"]) == k}) > 1}
    out = [{**{k: r[k] for k in ("roi", "method", "layer", "n", "n_runs", "median", "median_low",
                                 "median_high", "mean", "frac_ceiling", "series")}, "fixed": fixed}
           for r in rows if (r["roi"], r["series"]) in keep and r["n"]]
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
