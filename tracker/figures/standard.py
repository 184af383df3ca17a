"""The standard set of figures: the data of :mod:`tracker.figures.figure_data` drawn by
:mod:`tracker.figures.draw`, for whatever the database holds, saved as PNG and SVG."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from tracker.analysis import partitions, queries
from tracker.db.store import Store
from tracker.figures.draw import (
    draw_bars,
    draw_distributions,
    draw_layers,
    draw_roi_average,
    draw_scatter,
    draw_volume,
)
from tracker.figures.figure_data import (
    bars_data,
    distribution_data,
    layer_data,
    roi_average_data,
    scatter_data,
    scatter_pairs,
    volume_data,
)
from tracker.figures.partition import draw_partition_bars, draw_partition_scatter
from tracker.figures.rf_data import fwrf_vs_ridge_data, fwrf_vs_ridge_pairs, rf_data, size_fits
from tracker.figures.rf_draw import draw_fwrf_vs_ridge, draw_rf_centres, draw_rf_size


def make_all(store: Store, out_dir: Path, roi: str = "V4", metric: str = "r",
             formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Write every standard figure for which the database has data; returns the paths."""
    return [p for name, fig in standard_figures(store, roi, metric)
            for p in save(fig, Path(out_dir) / name, formats)]


def standard_figures(store: Store, roi: str = "V4", metric: str = "r") -> Iterator[tuple[str, Any]]:
    """Yield ``(name, figure)`` for every standard figure the database has data for."""
    runs = queries.completed_fits(store, roi, target=None)
    for subject in sorted({r["subject"] for r in runs}):
        rows = bars_data(store, subject, roi, metric)
        if rows:
            yield f"bars_{subject}_{roi}_{metric}", draw_bars(rows, subject, roi, metric)
            if any(r["frac_ceiling"] is not None for r in rows):
                yield (f"bars_{subject}_{roi}_{metric}_ceiling",
                       draw_bars(rows, subject, roi, metric, normalised=True))
        avg = roi_average_data(store, subject, roi)
        if avg:
            yield f"roi_average_{subject}_{roi}", draw_roi_average(avg, subject, roi, "validation")
    for subject, a, b in scatter_pairs(store, roi):
        yield f"scatter_{subject}_{roi}_{a}_vs_{b}", draw_scatter(scatter_data(store, a, b, metric=metric))
    dist = distribution_data(store, "validation", metric)
    if dist:
        yield f"distributions_validation_{metric}", draw_distributions(dist, "validation", metric)
        ceil = distribution_data(store, "validation", metric, normalise=True)
        if ceil:
            yield (f"distributions_validation_{metric}_ceiling",
                   draw_distributions(ceil, "validation", metric, normalised=True))
    layers = layer_data(store, "validation", metric)
    if layers:
        yield f"layers_validation_{metric}", draw_layers(layers, "validation", metric)
    yield from rf_figures(store, roi)
    for subject in sorted({r["subject"] for r in partitions.partition_rows(store)}):
        yield from partition_figures(store, subject)
    best = queries.fit_summaries(store, {"roi": roi, "target": "voxels"}, "validation", metric)
    for subject in sorted({b["subject"] for b in best}):
        top = next(b for b in best if b["subject"] == subject)
        yield (f"volume_{subject}_{top['run_id']}_{metric}",
               draw_volume(volume_data(store, top["run_id"], "validation", metric)))


#: resolution of saved PNGs (print quality)
PNG_DPI = 300
#: rcParams for saving: SVG text stays text (editable), PDF fonts embedded as Type 42
SAVE_RC = {"svg.fonttype": "none", "pdf.fonttype": 42}
def rf_figures(store: Store, roi: str = "V4") -> Iterator[tuple[str, Any]]:
    """The fwRF figures: RF centres and size vs eccentricity per subject (every ROI with an
    fwRF fit), and fwRF vs ridge per voxel for ``roi``."""
    rows = rf_data(store)
    for subject in sorted({r["subject"] for r in rows}):
        mine = [r for r in rows if r["subject"] == subject]
        yield f"rf_centres_{subject}", draw_rf_centres(mine, subject)
        yield f"rf_size_{subject}", draw_rf_size(mine, size_fits(mine), subject)
    for subject, a, b in fwrf_vs_ridge_pairs(store, roi):
        yield f"fwrf_vs_ridge_{subject}_{roi}", draw_fwrf_vs_ridge(fwrf_vs_ridge_data(store, a, b))
def partition_figures(store: Store, subject: str, run_id: str | None = None) -> Iterator[tuple[str, Any]]:
    """Stacked partition bars per pair of spaces of ``subject``; with ``run_id`` that
    partition's per-voxel scatter too."""
    rows = partitions.partition_rows(store, {"subject": subject})
    for a, b in dict.fromkeys((r["a"], r["b"]) for r in rows):
        pair = [r for r in rows if (r["a"], r["b"]) == (a, b)]
        stem = f"partition_{subject}_{pair[0]['run_id']}"
        yield stem, draw_partition_bars(pair, subject, a, b)
    if run_id is not None:
        _, run = store.get_run(run_id)
        if run.get("kind") != "partition":
            raise ConfigError(f"run {run['_id']} is not a partition run")
        yield (f"partition_scatter_{run['_id']}",
               draw_partition_scatter(partitions.partition_columns(store, run["_id"]), run))


def save(fig: Any, stem: Path, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Save a figure as ``stem.<fmt>`` for each format (PNG at :data:`PNG_DPI` dpi, SVG with
    text as ``<text>`` elements), close it; returns the paths."""
    import matplotlib
    import matplotlib.pyplot as plt

    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.rc_context(SAVE_RC):
        for fmt in formats:
            path = stem.with_name(f"{stem.name}.{fmt}")
            fig.savefig(path, dpi=PNG_DPI)
            paths.append(path)
    plt.close(fig)
    return paths
