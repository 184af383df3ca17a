"""The data of the receptive-field figures of fwRF fits, read from the database alone.

- :func:`rf_data`: per (subject, ROI), the newest completed per-voxel fwRF fit's fields
  (``rf_x_deg``, ``rf_y_deg``, ``rf_size_deg``), eccentricity, r and BH flags;
- :func:`fwrf_vs_ridge_pairs` / :func:`fwrf_vs_ridge_data`: fwRF and ridge fits of the same
  subject, ROI and feature run, paired per voxel (:func:`tracker.analysis.voxels.paired_scores`).

Drawn by :mod:`tracker.figures.rf_draw`. ROIs are the runs' ROIs (a fit of ROI ``all``
is one panel of its own).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracker.analysis import queries, voxels
from tracker.analysis.fields import RF_FIELDS
from tracker.analysis.scores import load_scores
from tracker.db.store import Store
from tracker.figures.figure_data import scatter_pairs

FWRF = {"config.method": "fwrf"}


def rf_data(store: Store, subject: str | None = None, split: str = "validation",
            significant_only: bool = True) -> list[dict[str, Any]]:
    """Receptive fields of the newest fwRF fit per (subject, ROI), ROIs in name order.

    Rows: ``subject``, ``roi``, ``run_id``, ``stimulus_deg``, ``x``, ``y``, ``size``,
    ``ecc`` (degrees; ndarrays), ``r``, ``n``, ``n_total`` and ``selection`` (which voxels:
    with ``significant_only`` the BH-significant ones of ``split`` when the fit flagged
    any, else all, and it says so). A run without scores or fields is left out.
    """
    extra = dict(FWRF, **({"subject": subject} if subject else {}))
    runs = queries.completed_fits(store, None, "voxels", extra)  # newest first
    newest: dict[tuple[str, str], dict] = {}
    for run in runs:
        newest.setdefault((run["subject"], run["roi"]), run)
    scores = load_scores(store, [r["_id"] for r in newest.values()], split,
                         ["r", "significant", *RF_FIELDS])
    rows = []
    for (subj, roi), run in sorted(newest.items()):
        s = scores.get(run["_id"])
        if s is None or not all(f in s.values for f in RF_FIELDS):
            continue
        keep = np.isfinite(s.values["r"])
        selection = "all voxels"
        if significant_only and "significant" in s.values:
            flagged = keep & (s.values["significant"] == 1.0)
            keep, selection = ((flagged, "BH-significant voxels") if flagged.any()
                               else (keep, "all voxels: none BH-significant"))
        if not keep.any():
            continue
        x, y, size = (s.values[f][keep] for f in RF_FIELDS)
        rows.append({"subject": subj, "roi": roi, "run_id": run["_id"], "split": split,
                     "stimulus_deg": float(run["config"].get("stimulus_deg") or 20.0),
                     "x": x, "y": y, "size": size, "ecc": np.hypot(x, y), "r": s.values["r"][keep],
                     "n": int(keep.sum()), "n_total": int(keep.size), "selection": selection})
    return rows


def size_fits(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Least-squares line ``size = intercept + slope * eccentricity`` per ROI (2+ voxels)."""
    out = {}
    for row in rows:
        if row["n"] >= 2 and np.ptp(row["ecc"]) > 0:
            slope, intercept = np.polyfit(row["ecc"], row["size"], 1)
            out[row["roi"]] = {"slope": float(slope), "intercept": float(intercept), "n": row["n"],
                               "median_size": float(np.median(row["size"]))}
    return out


def fwrf_vs_ridge_pairs(store: Store, roi: str) -> list[tuple[str, str, str]]:
    """(subject, newest fwRF run, newest ridge run on the same features) for ``roi``."""
    return scatter_pairs(store, roi, "fwrf", "ridge")


def fwrf_vs_ridge_data(store: Store, fwrf_run: str, ridge_run: str, split: str = "validation",
                       metric: str = "r") -> dict[str, Any]:
    """Per-voxel scores of an fwRF fit (a) and a ridge fit (b), paired by voxel id, with the
    paired statistics (share of voxels where fwRF wins, median difference, Wilcoxon test)."""
    (_, a), (_, b) = store.get_run(fwrf_run), store.get_run(ridge_run)
    return voxels.paired_scores(store, a, b, split, metric)
