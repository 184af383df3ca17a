"""Drawing the receptive-field figures of :mod:`tracker.figures.rf_data` (no database)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tracker.figures.draw import METRIC_LABELS, _plt, _run_label


def _colors(rois: list[str]) -> dict[str, Any]:
    plt = _plt()
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {roi: cycle[i % len(cycle)] for i, roi in enumerate(rois)}


def draw_rf_centres(rows: list[dict[str, Any]], subject: str):
    """RF centres on the visual field, one panel per ROI (colour = ROI), degrees from the
    stimulus centre (x right, y up), the stimulus outlined; marker area grows with r."""
    plt = _plt()
    colors = _colors([r["roi"] for r in rows])
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.5), squeeze=False)
    for ax, row in zip(axes[0], rows):
        half = row["stimulus_deg"] / 2
        ax.plot([-half, half, half, -half, -half], [-half, -half, half, half, -half], "k-", lw=0.8)
        ax.axhline(0, color="0.8", lw=0.6)
        ax.axvline(0, color="0.8", lw=0.6)
        area = 6 + 40 * np.clip(row["r"], 0, 1)
        ax.scatter(row["x"], row["y"], s=area, alpha=0.6, color=colors[row["roi"]], edgecolors="none")
        ax.set_xlim(-half * 1.05, half * 1.05)
        ax.set_ylim(-half * 1.05, half * 1.05)
        ax.set_aspect("equal")
        ax.set_title(f"{row['roi']}: {row['n']} of {row['n_total']} voxels\n({row['selection']})", fontsize=8)
        ax.set_xlabel("x (deg, right +)")
    axes[0][0].set_ylabel("y (deg, up +)")
    fig.suptitle(f"{subject}: fwRF receptive-field centres ({rows[0]['split']})", fontsize=10)
    fig.tight_layout()
    return fig


def draw_rf_size(rows: list[dict[str, Any]], fits: dict[str, dict[str, float]], subject: str):
    """RF size (Gaussian sigma) against eccentricity, ROIs coloured, with each ROI's fitted line."""
    plt = _plt()
    colors = _colors([r["roi"] for r in rows])
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    jitter = np.random.default_rng(0)
    for row in rows:
        c = colors[row["roi"]]
        size = row["size"] * np.exp(jitter.normal(0, 0.03, row["n"]))  # the sizes sit on a grid
        ax.scatter(row["ecc"], size, s=8, alpha=0.45, color=c, edgecolors="none")
        fit = fits.get(row["roi"])
        label = f"{row['roi']} ({row['selection']})"
        if fit is not None:
            xs = np.linspace(0, float(row["ecc"].max()), 20)
            ax.plot(xs, fit["intercept"] + fit["slope"] * xs, color=c, lw=2)
            label += f": {fit['intercept']:.2f} + {fit['slope']:.2f} x ecc (n = {fit['n']})"
        ax.scatter([], [], color=c, label=label)
    ax.set_xlabel("eccentricity (deg)")
    ax.set_ylabel("RF size: Gaussian sigma (deg)")
    ax.set_title(f"{subject}: fwRF size vs eccentricity ({rows[0]['split']})", fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def draw_fwrf_vs_ridge(data: dict[str, Any]):
    """Per-voxel score of fwRF (x) against ridge (y): identity line, share of voxels where
    fwRF wins, median difference and Wilcoxon signed-rank p."""
    plt = _plt()
    a, b = np.array(data["a"], dtype=float), np.array(data["b"], dtype=float)
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    ok = np.isfinite(a) & np.isfinite(b)
    ax.scatter(a[ok], b[ok], s=6, alpha=0.5, c=np.where(a[ok] > b[ok], "C0", "C3"))
    if ok.any():
        lo, hi = float(min(a[ok].min(), b[ok].min())), float(max(a[ok].max(), b[ok].max()))
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
    label = METRIC_LABELS[data["metric"]]
    ax.set_xlabel(f"{label}, fwRF\n{_run_label(data['run_a'])}", fontsize=8)
    ax.set_ylabel(f"{label}, ridge\n{_run_label(data['run_b'])}", fontsize=8)
    st = data["stats"]

    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    ax.set_title(f"{data['run_a']['subject']} {data['run_a']['roi']}, {data['split']}: {st['n']} voxels\n"
                 f"fwRF wins {fmt(st['share_a_greater'], '.0%')}, median fwRF - ridge = "
                 f"{fmt(st['median_diff'], '.4f')}, Wilcoxon p = {fmt(st['wilcoxon_p'], '.2g')}", fontsize=8)
    fig.tight_layout()
    return fig
