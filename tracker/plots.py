"""Figures regenerated from the database alone.

Each figure has a *data* function (database -> plain rows, testable) and a *draw*
function (rows -> matplotlib figure). Axis labels name the metric: ``r`` (Pearson),
``r^2 of correlation`` (squared Pearson r, the 2019 "r-squared") or ``R^2``
(coefficient of determination).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tracker import queries
from tracker.store import Store

METRIC_LABELS = {
    "r": "Pearson r",
    "r2_corr": "r² of correlation (squared Pearson r)",
    "r2": "R² (coefficient of determination)",
}
SPLITS = ("test", "validation")


def bars_data(store: Store, subject: str, roi: str = "V4", metric: str = "r2_corr") -> list[dict]:
    """Mean and std across voxels per (split, method, preprocessing) for one subject."""
    rows = []
    for split in SPLITS:
        for row in queries.compare(
            store, ["method", "preprocessing"], roi=roi, split=split, metric=metric,
            extra={"subject": subject},
        ):
            if row["n"]:
                rows.append({
                    "split": split, "method": row["method"], "preprocessing": row["preprocessing"],
                    "mean": row["mean"], "std": row["std"], "sem": row["sem"], "n": row["n"],
                    "n_runs": row["n_runs"], "chance_r2_corr": row["chance_r2_corr"],
                })
    return rows


def chance_level(metric: str, chance_r2_corr: float | None) -> float | None:
    """Expected value of ``metric`` under no signal (r: 0; r^2: 1/(n-1); R^2: about -1/n)."""
    if metric == "r":
        return 0.0
    if chance_r2_corr is None:
        return None
    return chance_r2_corr if metric == "r2_corr" else -chance_r2_corr


def draw_bars(rows: list[dict], subject: str, roi: str, metric: str):
    """The 2019 figure: bars of mean +- std over voxels, test and validation, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = sorted({(r["method"], r["preprocessing"]) for r in rows})
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(SPLITS) * max(1, len(conditions)) / 2, 4))
    width = 0.8 / max(1, len(conditions))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ci, cond in enumerate(conditions):
        xs, means, stds = [], [], []
        for si, split in enumerate(SPLITS):
            match = [r for r in rows if r["split"] == split and (r["method"], r["preprocessing"]) == cond]
            if match:
                xs.append(si + (ci - (len(conditions) - 1) / 2) * width)
                means.append(match[0]["mean"])
                stds.append(match[0]["std"])
        ax.bar(xs, means, width * 0.95, yerr=stds, capsize=3, color=colors[ci % len(colors)],
               label=f"{cond[0]} ({cond[1]})")
    for si, split in enumerate(SPLITS):
        match = [r for r in rows if r["split"] == split]
        level = chance_level(metric, match[0]["chance_r2_corr"]) if match else None
        if level is not None:
            ax.hlines(level, si - 0.45, si + 0.45, colors="k", linestyles="--",
                      label="chance" if si == 0 else None)
    ax.set_xticks(range(len(SPLITS)), [s.capitalize() for s in SPLITS])
    ax.set_ylabel(METRIC_LABELS[metric] + "\nmean ± std across voxels")
    ax.set_title(f"{subject} {roi}: per-voxel encoding accuracy")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def roi_average_data(store: Store, subject: str, roi: str = "V4", split: str = "validation") -> list[dict]:
    """Predicted vs measured ROI-average responses of each completed ROI-average fit."""
    runs = queries.completed_fits(store, roi, target="roi_mean", extra={"subject": subject})
    out = []
    for run in store.find_runs("fit_runs", {"_id": {"$in": [r["_id"] for r in runs]}},
                               projection={"predictions": 1, "config.method": 1,
                                           "features.preprocessing": 1, "summary": 1}):
        pred = (run.get("predictions") or {}).get(split)
        if not pred:
            continue
        out.append({
            "run_id": run["_id"], "method": run["config"]["method"],
            "preprocessing": run["features"]["preprocessing"],
            "y_true": pred["y_true"], "y_pred": pred["y_pred"],
            "r": queries.get_path(run, f"summary.{split}.r.mean"),
        })
    return sorted(out, key=lambda d: (d["method"], d["preprocessing"]))


def draw_roi_average(rows: list[dict], subject: str, roi: str, split: str):
    """Scatter of predicted vs measured ROI average, one panel per fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(3.6 * len(rows), 3.6), squeeze=False)
    for ax, row in zip(axes[0], rows):
        yt, yp = np.asarray(row["y_true"]), np.asarray(row["y_pred"])
        ax.scatter(yp, yt, s=10, alpha=0.7)
        lo, hi = float(min(yt.min(), yp.min())), float(max(yt.max(), yp.max()))
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        r = row["r"]
        ax.set_title(f"{row['method']} ({row['preprocessing']})\nr = {r:.3f}, r² = {r * r:.3f}"
                     if r is not None else row["method"], fontsize=9)
        ax.set_xlabel(f"predicted {roi} average")
        ax.set_ylabel(f"measured {roi} average")
    fig.suptitle(f"{subject} {roi} average, {split} images (n = {len(rows[0]['y_true'])})")
    fig.tight_layout()
    return fig


def make_all(store: Store, out_dir: Path, roi: str = "V4", metric: str = "r2_corr",
             formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Write every standard figure for which the database has data; returns the paths."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    subjects = sorted({r["subject"] for r in queries.completed_fits(store, roi, target=None)})
    for subject in subjects:
        rows = bars_data(store, subject, roi, metric)
        figures: list[tuple[str, Any]] = []
        if rows:
            figures.append((f"bars_{subject}_{roi}_{metric}", draw_bars(rows, subject, roi, metric)))
        avg = roi_average_data(store, subject, roi)
        if avg:
            fig = draw_roi_average(avg, subject, roi, "validation")
            figures.append((f"roi_average_{subject}_{roi}", fig))
        for name, fig in figures:
            for fmt in formats:
                path = out_dir / f"{name}.{fmt}"
                fig.savefig(path, dpi=120)
                written.append(path)
            plt.close(fig)
    return written
