"""Drawing the figures of :mod:`tracker.figures.figure_data` (data in, matplotlib figure out; no database).

Every axis that shows a score names the metric (:data:`METRIC_LABELS`); every figure
says how many voxels it shows; preprocessing is shown as readers know it ("raw",
"retina-warped": :func:`preprocessing_name`); non-negative metrics get a sequential
colormap and signed ones a diverging one (:func:`colormap_for`); the chance reference
of each metric is drawn as :func:`chance_reference` defines it. Layouts are
"constrained" (no clipped titles) and legends sit outside the data.
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


#: metrics that are never negative (sequential colormap, axis from 0)
NON_NEGATIVE = frozenset({"r2_corr"})
SEQUENTIAL_CMAP = "viridis"
DIVERGING_CMAP = "RdBu_r"


def colormap_for(metric: str, normalised: bool = False) -> str:
    """A sequential colormap for a non-negative metric, a diverging one for a signed one."""
    return SEQUENTIAL_CMAP if metric in NON_NEGATIVE else DIVERGING_CMAP


def preprocessing_name(label: str | None) -> str:
    """``caffe`` -> ``raw``, ``caffe+retinawarp`` -> ``retina-warped``; another chain keeps
    its name in parentheses (``torch+retinawarp`` -> ``retina-warped (torch)``)."""
    text = str(label)
    warped = text.endswith("+retinawarp")
    chain = text.removesuffix("+retinawarp")
    name = "retina-warped" if warped else "raw"
    return name if chain == "caffe" else f"{name} ({chain})"


def chance_reference(metric: str, chance_r2_corr: float | None = None,
                     r_threshold: float | None = None) -> tuple[float, str] | None:
    """The reference line of ``metric`` and its legend label, or None when unknown.

    r: the critical r at p < .05 (one-tailed, n test images; stored as
    ``r_threshold_p05``); r^2 of correlation: its chance level 1/(n-1); R^2: 0 (the
    score of predicting the mean).
    """
    if metric == "r":
        return None if r_threshold is None else (r_threshold, f"p < .05 (r = {r_threshold:.3f})")
    if metric == "r2_corr":
        return None if chance_r2_corr is None else (chance_r2_corr,
                                                     f"chance 1/(n-1) = {chance_r2_corr:.4f}")
    return 0.0, "R² = 0 (mean prediction)"


def chance_level(metric: str, chance_r2_corr: float | None, r_threshold: float | None = None
                 ) -> float | None:
    """The value of :func:`chance_reference` alone."""
    ref = chance_reference(metric, chance_r2_corr, r_threshold)
    return None if ref is None else ref[0]


def caption_text(fixed: dict[str, str] | None, untrained: str | None = None) -> str:
    """What a figure held fixed (its conditions differ only in what it shows), and
    ``untrained (random:SEED)`` when random weights are among its fits."""
    fixed = fixed or {}
    keep = [f"{k} {preprocessing_name(v) if k == 'preprocessing' else v}" for k, v in fixed.items()
            if k in ("model", "weights", "layer", "preprocessing", "method", "protocol", "target",
                     "grid", "cv")]
    text = "Held fixed: " + "; ".join(keep) if keep else ""
    weights = fixed.get("weights", "")
    untrained = untrained or (f"untrained ({weights})" if weights.startswith("random:") else None)
    return text + (f". Weights: {untrained}." if untrained else "")


def _caption(fig: Any, rows: list[dict]) -> None:
    """The held-fixed fields of ``rows`` (their ``fixed``) under the figure."""
    import textwrap

    if not rows:
        return
    untrained = next((r["untrained"] for r in rows if r.get("untrained")), None)
    text = caption_text(rows[0].get("fixed"), untrained)
    if text:
        fig.supxlabel(textwrap.fill(text, 120), fontsize=6, ha="center")


def _legend_outside(ax: Any) -> None:
    """The legend right of the axes, never over the data."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))


def draw_bars(rows: list[dict], subject: str, roi: str, metric: str, normalised: bool = False):
    """The 2019 figure: mean over voxels with 95% bootstrap CI (std where no CI), test and
    validation, per (method, preprocessing), with the chance level; ``normalised`` plots
    the fraction of the noise ceiling instead."""
    plt = _plt()
    conditions = sorted({(r["method"], r["preprocessing"], r.get("condition") or "") for r in rows})
    fig, ax = plt.subplots(figsize=(max(5.0, 3.2 + 0.7 * len(SPLITS) * max(1, len(conditions))), 4),
                           layout="constrained")
    width = 0.8 / max(1, len(conditions))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ci, cond in enumerate(conditions):
        xs, ys, err = [], [], [[], []]
        for si, split in enumerate(SPLITS):
            m = [r for r in rows if r["split"] == split
                 and (r["method"], r["preprocessing"], r.get("condition") or "") == cond]
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
               label=f"{cond[0]}, {preprocessing_name(cond[1])}" + (f", {cond[2]}" if cond[2] else ""))
    if not normalised:
        styles = ("--", ":")
        for si, split in enumerate(SPLITS):
            m = [r for r in rows if r["split"] == split]
            ref = (chance_reference(metric, m[0].get("chance_r2_corr"), m[0].get("r_threshold_p05"))
                   if m else None)
            if ref is not None:
                ax.hlines(ref[0], si - 0.45, si + 0.45, colors="k", linestyles=styles[si % 2],
                          label=f"{split}: {ref[1]}")
    n_by_split = {sp: sorted({r["n"] for r in rows if r["split"] == sp}) for sp in SPLITS}
    ax.set_xticks(range(len(SPLITS)), [f"{sp.capitalize()}\nn = {_ns(n_by_split[sp])} voxels"
                                       for sp in SPLITS])
    what = "mean / mean ceiling" if normalised else "mean across voxels, 95% bootstrap CI"
    ax.set_ylabel(_label(metric, normalised) + f"\n{what}")
    ax.set_title(f"{subject} {roi}: per-voxel encoding accuracy (one condition per bar)", fontsize=10)
    _legend_outside(ax)
    _caption(fig, rows)
    return fig


def _ns(values: list[int]) -> str:
    """``[69]`` -> ``69``; ``[60, 69]`` -> ``60-69``; none -> ``0``."""
    if not values:
        return "0"
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def draw_roi_average(rows: list[dict], subject: str, roi: str, split: str):
    """Scatter of predicted vs measured ROI average, one panel per fit."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(rows), figsize=(max(4.5, 3.6 * len(rows)), 3.8), squeeze=False,
                             layout="constrained")
    for ax, row in zip(axes[0], rows):
        yt, yp = np.asarray(row["y_true"]), np.asarray(row["y_pred"])
        ax.scatter(yp, yt, s=10, alpha=0.7)
        lo, hi = float(min(yt.min(), yp.min())), float(max(yt.max(), yp.max()))
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        r = row["r"]
        cond = f"{row['method']}, {preprocessing_name(row['preprocessing'])}"
        ax.set_title(f"{cond}\nr = {r:.3f}, r² = {r * r:.3f}" if r is not None else cond, fontsize=9)
        ax.set_xlabel(f"predicted {roi} average")
        ax.set_ylabel(f"measured {roi} average")
    nvox = sorted({row["n_voxels"] for row in rows if row.get("n_voxels")})
    fig.suptitle(f"{subject} {roi} average of n = {_ns(nvox)} voxels, {split} images "
                 f"(n = {len(rows[0]['y_true'])} images)", fontsize=10)
    return fig


def _run_label(info: dict[str, Any]) -> str:
    return (f"{info['method']} ({preprocessing_name(info['preprocessing'])}, {info['layer']}) "
            f"{info['run_id'][:10]}")


def draw_scatter(data: dict[str, Any]):
    """Per-voxel scores of run A vs run B (same voxels), identity line, paired stats."""
    plt = _plt()
    a = np.array(data["a"], dtype=float)
    b = np.array(data["b"], dtype=float)
    fig, ax = plt.subplots(figsize=(4.8, 4.8), layout="constrained")
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
                 f"n = {st['n']} voxels\nmedian A-B = {diff}, Wilcoxon p = {p}", fontsize=9)
    return fig


def draw_distributions(rows: list[dict], split: str, metric: str, normalised: bool = False):
    """Box plots of per-voxel scores per ROI, one box per group (e.g. method)."""
    plt = _plt()
    rois = sorted({r["roi"] for r in rows})
    groups = sorted({r["group"] for r in rows})
    by = rows[0].get("by") if rows else None
    fig, ax = plt.subplots(figsize=(max(5.0, 3.0 + 0.6 * len(rois) * max(1, len(groups))), 4),
                           layout="constrained")
    width = 0.8 / max(1, len(groups))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for gi, group in enumerate(groups):
        data, pos = [], []
        for ri, roi in enumerate(rois):
            m = [r for r in rows if r["roi"] == roi and r["group"] == group]
            if m:
                data.append(m[0]["values"])
                pos.append(ri + (gi - (len(groups) - 1) / 2) * width)
        bp = ax.boxplot(data, positions=pos, widths=width * 0.9, showfliers=False, patch_artist=True,
                        medianprops={"color": "k"})
        for patch in bp["boxes"]:
            patch.set_facecolor(colors[gi % len(colors)])
        parts = next((r.get("parts") for r in rows if r["group"] == group and r.get("parts")), None)
        label = (" ".join(preprocessing_name(v) if f == "preprocessing" else str(v)
                          for f, v in parts.items()) if parts else
                 preprocessing_name(group) if by == "preprocessing" else group)
        ax.plot([], [], "s", color=colors[gi % len(colors)], label=label)
    ax.set_xticks(range(len(rois)), [
        f"{roi}\nn = {_ns(sorted({r['n'] for r in rows if r['roi'] == roi}))}" for roi in rois])
    ax.set_ylabel(_label(metric, normalised) + "\nper voxel (box: quartiles)")
    ax.set_title(f"Per-voxel scores per ROI, {split} images\n(n: voxels per box)", fontsize=10)
    _legend_outside(ax)
    _caption(fig, rows)
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
    _caption(fig, rows)
    fig.tight_layout()
    return fig


def draw_volume(data: dict[str, Any], normalised: bool = False):
    """Axial slices (k) of the 64 x 64 x 18 volume holding voxels, coloured by score.

    Each panel is cropped to the box around the fitted voxels (plus a 2-voxel margin), with
    the unfitted positions inside it light grey: a map of a few hundred voxels, not specks
    in an empty 64 x 64 field. Sequential colormap from 0 for a non-negative metric,
    diverging and symmetric about 0 for a signed one.
    """
    plt = _plt()
    vol, slices = data["volume"], data["slices"] or [0]
    fitted = np.isfinite(vol)
    if fitted.any():
        ii, jj = np.flatnonzero(fitted.any(axis=(1, 2))), np.flatnonzero(fitted.any(axis=(0, 2)))
        i0, i1 = max(int(ii[0]) - 2, 0), min(int(ii[-1]) + 3, vol.shape[0])
        j0, j1 = max(int(jj[0]) - 2, 0), min(int(jj[-1]) + 3, vol.shape[1])
    else:
        i0, i1, j0, j1 = 0, vol.shape[0], 0, vol.shape[1]
    cols = min(6, len(slices))
    nrows = -(-len(slices) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(max(5.5, 1.9 * cols + 1.8), 2 * nrows + 1.2),
                             squeeze=False, layout="constrained")
    finite = vol[fitted]
    metric = data["metric"]
    cmap = plt.get_cmap(colormap_for(metric, normalised)).with_extremes(bad="#e6e6e6")
    if metric in NON_NEGATIVE:
        vmin, vmax = 0.0, float(np.max(finite)) if finite.size and np.max(finite) > 0 else 1.0
    else:
        vmax = float(np.max(np.abs(finite))) if finite.size and np.max(np.abs(finite)) > 0 else 1.0
        vmin = -vmax
    image = None
    for ax, k in zip(axes.flat, slices):
        image = ax.imshow(vol[i0:i1, j0:j1, k].T, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax,
                          interpolation="nearest")
        ax.set_title(f"k = {k} (n = {int(fitted[:, :, k].sum())})", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(slices):]:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label=METRIC_LABELS[metric].split(" (")[0])
    info = data["run"]
    fig.suptitle(f"{info['subject']} {info['roi']}: {_run_label(info)}\n{data['split']} images, "
                 f"n = {int(fitted.sum())} voxels; axial slices of the 64 x 64 x 18 volume, "
                 f"i {i0}-{i1 - 1}, j {j0}-{j1 - 1} (grey: not fitted)", fontsize=9)
    return fig
