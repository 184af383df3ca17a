"""Drawing the figures of :mod:`tracker.figures.figure_data` (data in, matplotlib figure out; no database).

Every axis that shows a score names the metric (:data:`METRIC_LABELS`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.vocab import SPLITS

METRIC_LABELS = {
    "r": "Pearson r",
    "r2_corr": "r² of correlation (squared Pearson r)",
    "r2": "R² (coefficient of determination)",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(metric: str, normalised: bool = False) -> str:
    return f"{METRIC_LABELS[metric]}\n/ noise ceiling" if normalised else METRIC_LABELS[metric]


def chance_level(metric: str, chance_r2_corr: float | None) -> float | None:
    """Expected value of ``metric`` under no signal (r: 0; r^2: 1/(n-1); R^2: about -1/n)."""
    if metric == "r":
        return 0.0
    if chance_r2_corr is None:
        return None
    return chance_r2_corr if metric == "r2_corr" else -chance_r2_corr


def draw_bars(rows: list[dict], subject: str, roi: str, metric: str, normalised: bool = False):
    """The 2019 figure: mean over voxels with 95% bootstrap CI (std where no CI), test and
    validation, per (method, preprocessing), with the chance level; ``normalised`` plots
    the fraction of the noise ceiling instead."""
    plt = _plt()
    conditions = sorted({(r["method"], r["preprocessing"]) for r in rows})
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(SPLITS) * max(1, len(conditions)) / 2, 4))
    width = 0.8 / max(1, len(conditions))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ci, cond in enumerate(conditions):
        xs, ys, err = [], [], [[], []]
        for si, split in enumerate(SPLITS):
            m = [r for r in rows if r["split"] == split and (r["method"], r["preprocessing"]) == cond]
            if not m or (normalised and m[0]["frac_ceiling"] is None):
                continue
            r = m[0]
            xs.append(si + (ci - (len(conditions) - 1) / 2) * width)
            if normalised:
                ys.append(r["frac_ceiling"])
                err[0].append(0.0)
                err[1].append(0.0)
            else:
                ys.append(r["mean"])
                low = r["mean_low"] if r.get("mean_low") is not None else r["mean"] - r["std"]
                high = r["mean_high"] if r.get("mean_high") is not None else r["mean"] + r["std"]
                err[0].append(r["mean"] - low)
                err[1].append(high - r["mean"])
        ax.bar(xs, ys, width * 0.95, yerr=err, capsize=3, color=colors[ci % len(colors)],
               label=f"{cond[0]} ({cond[1]})")
    if not normalised:
        for si, split in enumerate(SPLITS):
            m = [r for r in rows if r["split"] == split]
            level = chance_level(metric, m[0]["chance_r2_corr"]) if m else None
            if level is not None:
                ax.hlines(level, si - 0.45, si + 0.45, colors="k", linestyles="--",
                          label="chance" if si == 0 else None)
    ax.set_xticks(range(len(SPLITS)), [s.capitalize() for s in SPLITS])
    what = "mean / mean ceiling" if normalised else "mean across voxels, 95% bootstrap CI"
    ax.set_ylabel(_label(metric, normalised) + f"\n{what}")
    ax.set_title(f"{subject} {roi}: per-voxel encoding accuracy")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def draw_roi_average(rows: list[dict], subject: str, roi: str, split: str):
    """Scatter of predicted vs measured ROI average, one panel per fit."""
    plt = _plt()
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


def _run_label(info: dict[str, Any]) -> str:
    return f"{info['method']} ({info['preprocessing']}, {info['layer']}) {info['run_id'][:10]}"


def draw_scatter(data: dict[str, Any]):
    """Per-voxel scores of run A vs run B (same voxels), identity line, paired stats."""
    plt = _plt()
    a = np.array(data["a"], dtype=float)
    b = np.array(data["b"], dtype=float)
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    ax.scatter(a, b, s=6, alpha=0.5)
    finite = np.isfinite(a) & np.isfinite(b)
    if finite.any():
        lo, hi = float(min(a[finite].min(), b[finite].min())), float(max(a[finite].max(), b[finite].max()))
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
    label = METRIC_LABELS[data["metric"]]
    ax.set_xlabel(f"{label}\nA: {_run_label(data['run_a'])}", fontsize=8)
    ax.set_ylabel(f"{label}\nB: {_run_label(data['run_b'])}", fontsize=8)
    st = data["stats"]
    diff = "n/a" if st.get("median_diff") is None else f"{st['median_diff']:.4f}"
    p = "n/a" if st.get("wilcoxon_p") is None else f"{st['wilcoxon_p']:.2g}"
    ax.set_title(f"{data['run_a']['subject']} {data['run_a']['roi']}, {data['split']}: "
                 f"{st['n']} voxels\nmedian A-B = {diff}, Wilcoxon p = {p}", fontsize=9)
    fig.tight_layout()
    return fig


def draw_distributions(rows: list[dict], split: str, metric: str, normalised: bool = False):
    """Box plots of per-voxel scores per ROI, one box per group (e.g. method)."""
    plt = _plt()
    rois = sorted({r["roi"] for r in rows})
    groups = sorted({r["group"] for r in rows})
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(rois) * max(1, len(groups)) / 2, 4))
    width = 0.8 / max(1, len(groups))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for gi, group in enumerate(groups):
        data, pos = [], []
        for ri, roi in enumerate(rois):
            m = [r for r in rows if r["roi"] == roi and r["group"] == group]
            if m:
                data.append(m[0]["values"])
                pos.append(ri + (gi - (len(groups) - 1) / 2) * width)
        bp = ax.boxplot(data, positions=pos, widths=width * 0.9, showfliers=False, patch_artist=True)
        for patch in bp["boxes"]:
            patch.set_facecolor(colors[gi % len(colors)])
        ax.plot([], [], "s", color=colors[gi % len(colors)], label=group)
    ax.set_xticks(range(len(rois)), rois)
    ax.set_ylabel(_label(metric, normalised) + "\nper voxel (box: quartiles)")
    ax.set_title(f"Per-voxel scores per ROI, {split} images")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def draw_layers(rows: list[dict], split: str, metric: str, normalised: bool = False):
    """The hierarchy figure: one panel per ROI, score vs layer (median over voxels, 95%
    bootstrap CI) per condition, the best layer of each condition and ROI starred."""
    from pipeline.core.vocab import layer_sort_key

    plt = _plt()
    rois = list(dict.fromkeys(r["roi"] for r in rows))
    layers = sorted({r["layer"] for r in rows}, key=layer_sort_key)
    conditions = sorted({r["condition"] for r in rows})
    cols = min(4, len(rois))
    nrows = -(-len(rois) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols + 0.6, 2.7 * nrows + 0.6), squeeze=False,
                             sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, roi in zip(axes.flat, rois):
        for ci, cond in enumerate(conditions):
            m = [r for r in rows if r["roi"] == roi and r["condition"] == cond]
            if not m or (normalised and any(r["frac_ceiling"] is None for r in m)):
                continue
            x = np.array([layers.index(r["layer"]) for r in m])
            color = colors[ci % len(colors)]
            if normalised:
                y = np.array([r["frac_ceiling"] for r in m], dtype=float)
                ax.plot(x, y, "o-", color=color, label=cond)
            else:
                y = np.array([r["median"] for r in m], dtype=float)
                lo = np.array([r["median_low"] if r["median_low"] is not None else r["median"] for r in m])
                hi = np.array([r["median_high"] if r["median_high"] is not None else r["median"] for r in m])
                ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", ms=3, capsize=2, color=color, label=cond)
            b = [i for i, r in enumerate(m) if r["best"]]
            ax.plot(x[b], y[b], "*", ms=13, color=color, markeredgecolor="k",
                    label="best layer" if ci == 0 and roi == rois[0] else None)
        ax.set_title(roi, fontsize=9)
        ax.set_xticks(range(len(layers)), layers, rotation=45, fontsize=7)
    for ax in list(axes.flat)[len(rois):]:
        ax.set_visible(False)
    what = "mean / mean ceiling" if normalised else "median over voxels, 95% bootstrap CI"
    for ax in axes[:, 0]:
        ax.set_ylabel(_label(metric, normalised) + f"\n{what}", fontsize=7)
    axes.flat[0].legend(fontsize=6, frameon=False)
    fig.suptitle(f"Score vs layer per ROI, {split} images (star: best layer)", fontsize=10)
    fig.tight_layout()
    return fig


def draw_volume(data: dict[str, Any]):
    """Axial slices (k) of the 64 x 64 x 18 volume holding voxels, coloured by score."""
    plt = _plt()
    vol, slices = data["volume"], data["slices"] or [0]
    cols = min(6, len(slices))
    nrows = -(-len(slices) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(max(5.5, 1.9 * cols + 1.8), 2 * nrows + 1.0),
                             squeeze=False, layout="constrained")
    finite = vol[np.isfinite(vol)]
    vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
    image = None
    for ax, k in zip(axes.flat, slices):
        image = ax.imshow(vol[:, :, k].T, origin="lower", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                          interpolation="nearest")
        ax.set_title(f"k = {k}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label=METRIC_LABELS[data["metric"]].split(" (")[0])
    info = data["run"]
    fig.suptitle(f"{info['subject']} {info['roi']}: {_run_label(info)}\n{data['split']} images, "
                 "axial slices of the 64 x 64 x 18 volume", fontsize=9)
    return fig
