"""Winner figures of ``tracker best``: the share of voxels each candidate wins per ROI,
and the winning candidate of every voxel on the volume's axial slices.

Data come from :func:`tracker.analysis.winners.best` (the database alone); drawing takes
those rows only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tracker.analysis.scores import VOLUME_SHAPE, voxel_coords
from tracker.figures.draw import METRIC_LABELS, _plt, caption_text


def caption(rows: Sequence[Mapping[str, Any]]) -> str:
    """What the figure shows and what was held fixed (first ROI's fixed fields)."""
    if not rows:
        return ""
    untrained = next((r["untrained"] for r in rows if r.get("untrained")), None)
    return f"Candidates: {rows[0]['over']}. " + caption_text(rows[0].get("fixed"), untrained)


def draw_winner_share(rows: Sequence[Mapping[str, Any]]):
    """Per ROI, a stacked bar of the share of voxels each candidate wins (hatched part:
    won significantly against the runner-up), n voxels above each bar."""
    plt = _plt()
    values = list(dict.fromkeys(c["value"] for r in rows for c in r["conditions"]))
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(6.0, 3.2 + 0.9 * len(rows)), 4.6), layout="constrained")
    for x, row in enumerate(rows):
        bottom = 0.0
        for c in row["conditions"]:
            share = c["voxel_share"] or 0.0
            col = colors(values.index(c["value"]) % 10)
            ax.bar(x, share, bottom=bottom, color=col, width=0.7,
                   label=c["value"] if x == 0 or c["value"] not in
                   {cc["value"] for rr in rows[:x] for cc in rr["conditions"]} else None)
            if c.get("voxel_share_sig"):
                ax.bar(x, c["voxel_share_sig"], bottom=bottom, color="none", width=0.7,
                       hatch="///", edgecolor="white", linewidth=0)
            bottom += share
        ax.text(x, 1.02, f"n={row['n']}\nbest: {row['best']}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(rows)), [r["roi"] for r in rows])
    ax.set_ylim(0, 1.18)
    ax.set_ylabel("share of voxels won\n(hatched: significantly, swap test p < .05)")
    import textwrap

    fig.suptitle(f"Which {rows[0]['over']} wins each voxel ({METRIC_LABELS[rows[0]['metric']]}, "
                 f"{rows[0]['split']} images)\n" + textwrap.fill(caption(rows), 90), fontsize=8)
    ax.legend(title=rows[0]["over"], fontsize=7, frameon=False, loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    return fig


def winner_volume(rows: Sequence[Mapping[str, Any]], subject: str) -> tuple[np.ndarray, list[str]]:
    """The winning candidate's index (float, NaN where no voxel) of one subject's voxels
    in the 64 x 64 x 18 volume, and the candidate names (rows need ``voxels=True``)."""
    values = list(dict.fromkeys(c["value"] for r in rows for c in r["conditions"]))
    vol = np.full(VOLUME_SHAPE, np.nan)
    for row in rows:
        if subject not in row.get("subjects", []):
            continue
        s_i = row["subjects"].index(subject)
        keys = np.asarray(row["voxel_keys"], dtype=np.int64)
        mine = (keys >> 32) == s_i
        ids = keys[mine] & 0xFFFFFFFF
        names = [row["conditions"][w]["value"] for w in np.asarray(row["voxel_winner"])[mine]]
        vol[voxel_coords(ids)] = [values.index(n) for n in names]
    return vol, values


def draw_winner_map(rows: Sequence[Mapping[str, Any]], subject: str):
    """The winning candidate of every voxel on the axial slices that hold voxels."""
    plt = _plt()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    vol, values = winner_volume(rows, subject)
    slices = [int(k) for k in np.flatnonzero(np.isfinite(vol).any(axis=(0, 1)))] or [0]
    cols = min(6, len(slices))
    nrows = -(-len(slices) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(max(5.5, 1.9 * cols + 2.2), 2 * nrows + 1.2),
                             squeeze=False, layout="constrained")
    cmap = ListedColormap([plt.get_cmap("tab10")(i % 10) for i in range(max(len(values), 1))])
    for ax, k in zip(axes.flat, slices):
        ax.imshow(vol[:, :, k].T, origin="lower", cmap=cmap, vmin=-0.5,
                  vmax=len(values) - 0.5, interpolation="nearest")
        ax.set_title(f"k = {k}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(color=cmap(i), label=v) for i, v in enumerate(values)]
    fig.legend(handles=handles, title=rows[0]["over"] if rows else "", fontsize=7,
               loc="outside right upper", frameon=False)
    n = int(np.isfinite(vol).sum())
    import textwrap

    fig.suptitle(f"{subject}: winning {rows[0]['over'] if rows else ''} per voxel "
                 f"({n} voxels)\n" + textwrap.fill(caption(rows), 110), fontsize=8)
    return fig
