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

from pipeline.core.errors import ConfigError
from pipeline.core.vocab import SPLITS, layer_sort_key
from pipeline.data.layout import ROI_CODES
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


#: what a hierarchy condition holds fixed besides the ROI (everything but the layer)
CONDITION_FIELDS = ("subject", "method", "protocol", "target", "model", "variant", "weights",
                    "preprocessing")


def _condition(run: Mapping[str, Any]) -> tuple:
    """A fit's identity without its layer and ROI: the fields above and its fit config."""
    import json

    fixed = tuple(str(fields.get_path(run, fields.GROUP_FIELDS[f])) for f in CONDITION_FIELDS)
    return (*fixed, json.dumps(run.get("config", {}), sort_keys=True, default=str))


def _condition_label(cond: tuple, varying: list[int]) -> str:
    """``S1 ridge`` plus the condition fields that differ between the conditions shown."""
    extra = [cond[i] for i in varying if CONDITION_FIELDS[i] not in ("subject", "method")]
    return " ".join([cond[0], cond[1], *extra]) + (" (other fit config)" if len(varying) > len(extra) + 2
                                                   else "")


def layer_data(store: Store, split: str = "validation", metric: str = "r",
               query: Mapping[str, Any] | None = None, n_boot: int = 1000,
               strict: bool = False) -> list[dict[str, Any]]:
    """The hierarchy figure's data: score vs layer per ROI, one condition per layer.

    Voxel-target fits are grouped into *conditions*: equal in every identity field but
    the layer and the ROI (:data:`CONDITION_FIELDS` and the whole fit config), so a line
    of the figure changes the layer only. A condition with two fits of one (ROI, layer)
    (they differ in something else: data, backend, ...) is ambiguous: ``strict`` raises
    a ConfigError naming the runs; otherwise that condition is left out. ROIs where a
    condition has fewer than 2 layers are left out.

    Rows (ROIs in vim-1 order, layers in network order): ``condition``, ``subject``,
    ``method``, ``roi``, ``layer``, ``run_id``, ``n`` voxels, ``median`` with its seeded
    bootstrap CI (``median_low``, ``median_high``), ``mean``, ``frac_ceiling`` (mean
    score / mean noise ceiling, None without ceilings) and ``best`` (the layer with the
    highest median of that condition and ROI).
    """
    runs = [r for r in queries.completed_fits(store, None, "voxels", query)
            if "," not in str(fields.get_path(r, "features.layer"))]
    cells: dict[tuple, dict[tuple, list[dict]]] = {}
    for run in runs:
        key = (run["roi"], str(fields.get_path(run, "features.layer")))
        cells.setdefault(_condition(run), {}).setdefault(key, []).append(run)
    keep = {}
    for cond, by_cell in cells.items():
        doubled = {k: v for k, v in by_cell.items() if len(v) > 1}
        if doubled:
            if strict:
                (roi, layer), dup = next(iter(doubled.items()))
                raise ConfigError(f"{len(dup)} fits of {cond[0]} {cond[1]} {roi} {layer} "
                                  f"({', '.join(r['_id'] for r in dup)}) differ only outside the layer "
                                  "sweep's fields: narrow them with --where (e.g. feature_run=...)")
            continue
        n_layers: dict[str, int] = {}
        for roi, _ in by_cell:
            n_layers[roi] = n_layers.get(roi, 0) + 1
        swept = {k: v[0] for k, v in by_cell.items() if n_layers[k[0]] > 1}
        if swept:
            keep[cond] = swept
    varying = [i for i in range(len(CONDITION_FIELDS) + 1) if len({c[i] for c in keep}) > 1]
    scores = load_scores(store, [r["_id"] for c in keep.values() for r in c.values()], split, [metric])
    table = CeilingTable(store, split)
    rows = []
    for cond, by_cell in keep.items():
        for (roi, layer), run in by_cell.items():
            s = scores.get(run["_id"])
            if s is None:
                continue
            v = s.values[metric]
            ci = queries.intervals(v, n_boot=n_boot)
            c = table.for_run(run, s.voxel_ids, metric)
            frac = float(np.nanmean(v) / np.nanmean(c)) if c is not None and np.isfinite(c).any() else None
            rows.append({"condition": _condition_label(cond, varying), "subject": cond[0], "method": cond[1],
                         "roi": roi, "layer": layer, "run_id": run["_id"], "n": int(np.isfinite(v).sum()),
                         "median": float(np.nanmedian(v)), "median_low": ci["median_low"],
                         "median_high": ci["median_high"], "mean": float(np.nanmean(v)),
                         "frac_ceiling": frac, "best": False})
    best: dict[tuple, dict] = {}
    for r in rows:
        k = (r["condition"], r["roi"])
        if k not in best or r["median"] > best[k]["median"]:
            best[k] = r
    for r in best.values():
        r["best"] = True
    from tracker.analysis.conditions import held_fixed, identities

    ids = {r["run_id"] for r in rows}
    fixed = held_fixed(list(identities(store, [r for r in runs if r["_id"] in ids]).values()),
                       exclude=("layer",))
    for r in rows:
        r["fixed"] = fixed
    order = {name: code for code, name in ROI_CODES.items() if code > 0}
    return sorted(rows, key=lambda r: (order.get(r["roi"], 99), r["roi"], r["condition"],
                                       layer_sort_key(r["layer"])))


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
