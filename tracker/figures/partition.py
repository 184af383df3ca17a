"""Figures of variance partitions (data from :mod:`tracker.analysis.partitions`).

- :func:`draw_partition_bars`: per ROI, a stacked bar of unique A / shared / unique B
  (ROI means over voxels of the raw validation R2 parts; the bar's total is mean R2(A+B)).
  A negative mean part (noise, see :mod:`pipeline.fit.partition`) is drawn as 0 and its
  value is written above the bar, so nothing is hidden and no bar is pushed below zero.
- :func:`draw_partition_scatter`: per voxel, R2(A) against R2(B), coloured by R2(A+B), with
  the identity line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracker.figures.draw import _plt

PARTS = (("unique_a", "unique A"), ("shared", "shared"), ("unique_b", "unique B"))


def draw_partition_bars(rows: list[dict[str, Any]], subject: str, a: str, b: str):
    """Stacked bars of unique A / shared / unique B per ROI (one subject, one pair)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.8 + 0.9 * len(rows), 4))
    colors = {"unique_a": "tab:blue", "shared": "tab:purple", "unique_b": "tab:orange"}
    x = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    for field, name in PARTS:
        raw = np.array([r[field] for r in rows], dtype=float)
        shown = np.maximum(raw, 0.0)
        ax.bar(x, shown, 0.7, bottom=bottom, color=colors[field],
               label=f"{name}: {a if field == 'unique_a' else b if field == 'unique_b' else 'A and B'}")
        bottom += shown
    for i, r in enumerate(rows):
        neg = [f"{n} {r[f]:+.3f}" for f, n in PARTS if r[f] < 0]
        ax.text(i, bottom[i], f"n={r['n']}" + ("\n" + "\n".join(neg) if neg else ""), ha="center",
                va="bottom", fontsize=6)
    ax.plot(x, [r["r2_ab"] for r in rows], "k_", markersize=14, label="mean R² (A+B)")
    ax.set_xticks(x, [r["roi"] for r in rows])
    ax.set_ylabel("R² (coefficient of determination), validation images\nmean over voxels")
    ax.set_title(f"{subject}: variance partition, A = {a}, B = {b}", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    ax.set_ylim(bottom=min(0.0, *[r["r2_ab"] for r in rows]), top=max(0.05, float(bottom.max()) * 1.35))
    fig.tight_layout()
    return fig


def draw_partition_scatter(cols: dict[str, np.ndarray], run: dict[str, Any]):
    """Per-voxel R2(A) vs R2(B), coloured by R2(A+B)."""
    plt = _plt()
    a, b, ab = cols["r2_a"], cols["r2_b"], cols["r2_ab"]
    fig, ax = plt.subplots(figsize=(5, 4.4))
    points = ax.scatter(a, b, c=ab, s=6, cmap="viridis", alpha=0.7)
    finite = np.isfinite(a) & np.isfinite(b)
    if finite.any():
        lo = float(min(a[finite].min(), b[finite].min()))
        hi = float(max(a[finite].max(), b[finite].max()))
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
    fig.colorbar(points, ax=ax, label="R² (A+B)")
    space_a, space_b = run["spaces"]["A"]["label"], run["spaces"]["B"]["label"]
    ax.set_xlabel(f"R² (A: {space_a}), validation")
    ax.set_ylabel(f"R² (B: {space_b}), validation")
    mean = {k: float(np.nanmean(cols[k])) for k in ("unique_a", "shared", "unique_b")}
    ax.set_title(f"{run['subject']} {run['roi']}: {a.size} voxels; mean unique A {mean['unique_a']:.3f}, "
                 f"shared {mean['shared']:.3f}, unique B {mean['unique_b']:.3f}", fontsize=8)
    fig.tight_layout()
    return fig
