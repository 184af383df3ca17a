"""`tracker plot [FIGURE]`: figures (PNG and SVG) regenerated from the database alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.core.errors import ConfigError
from tracker.analysis import queries
from tracker.cli.common import (
    JsonOpt,
    cli_errors,
    console,
    nothing_matched,
    open_store,
    print_json,
    settings_of,
)
from tracker.cli.listing import (
    MethodOpt,
    MetricOpt,
    OneRoiOpt,
    RoiOpt,
    SplitOpt,
    SubjectOpt,
    WhereOpt,
    name_callback,
)
from tracker.figures import draw, figure_data, rf_data, rf_draw, standard

plot_app = typer.Typer(help="Figures from the database (PNG and SVG). With no figure name: all "
                            "standard figures.", invoke_without_command=True)
OutOpt = Annotated[Path | None, typer.Option(help="Output directory (default $TRACKER_HOME/plots).")]
CeilingOpt = Annotated[bool, typer.Option("--ceiling", help="Scores as a fraction of the noise ceiling.")]


def _save(ctx: typer.Context, out: Path | None, name: str, fig: Any, as_json: bool) -> None:
    paths = standard.save(fig, Path(out or settings_of(ctx).plots_dir) / name)
    if as_json:
        return print_json([str(p) for p in paths])
    for p in paths:
        console.print(str(p))
    return None


@plot_app.callback()
@cli_errors
def plot_all(ctx: typer.Context, out: OutOpt = None,
             roi: OneRoiOpt = "V4", metric: MetricOpt = "r", as_json: JsonOpt = False) -> None:
    """Regenerate every standard figure (bars, ROI average, A-vs-B scatter, distributions,
    layers, volume maps; ceiling-normalised variants where ceilings exist)."""
    if ctx.invoked_subcommand is not None:
        return
    with open_store(ctx) as store:
        paths = standard.make_all(store, out or settings_of(ctx).plots_dir, roi=roi, metric=metric)
    if as_json:
        return print_json([str(p) for p in paths])
    for p in paths:
        console.print(str(p))
    if not paths:
        nothing_matched(ctx, "completed fits to plot", {"roi": roi})


@plot_app.command("bars")
@cli_errors
def plot_bars(ctx: typer.Context, subject: Annotated[str, typer.Option(
                  help="Subject (S1, S2).", callback=name_callback("subject"))] = "S1",
              roi: OneRoiOpt = "V4", metric: MetricOpt = "r",
              ceiling: CeilingOpt = False, out: OutOpt = None, as_json: JsonOpt = False) -> None:
    """The 2019 bars: test and validation, per method and preprocessing, CIs and chance."""
    with open_store(ctx) as store:
        rows = figure_data.bars_data(store, subject, roi, metric)
    if not rows:
        nothing_matched(ctx, "completed per-voxel fits", {"subject": subject, "roi": roi})
    fig = draw.draw_bars(rows, subject, roi, metric, normalised=ceiling)
    _save(ctx, out, f"bars_{subject}_{roi}_{metric}{'_ceiling' if ceiling else ''}", fig, as_json)


@plot_app.command("scatter")
@cli_errors
def plot_scatter(ctx: typer.Context, run_a: Annotated[str, typer.Argument(help="Run A (x axis).")],
                 run_b: Annotated[str, typer.Argument(help="Run B (y axis).")],
                 split: SplitOpt = "validation", metric: MetricOpt = "r", out: OutOpt = None,
                 as_json: JsonOpt = False) -> None:
    """Per-voxel scores of run A vs run B over the voxels both scored (paired by voxel id)."""
    with open_store(ctx) as store:
        data = figure_data.scatter_data(store, run_a, run_b, split, metric)
    name = f"scatter_{data['run_a']['run_id']}_vs_{data['run_b']['run_id']}_{split}_{metric}"
    _save(ctx, out, name, draw.draw_scatter(data), as_json)


@plot_app.command("distributions")
@cli_errors
def plot_distributions(ctx: typer.Context, split: SplitOpt = "validation", metric: MetricOpt = "r",
                       by: Annotated[str, typer.Option(help="One box per value of this field.")] = "method",
                       where: WhereOpt = None, subject: SubjectOpt = None, method: MethodOpt = None,
                       roi: RoiOpt = None, ceiling: CeilingOpt = False, out: OutOpt = None,
                       as_json: JsonOpt = False) -> None:
    """Per-voxel score distributions per ROI."""
    query = queries.run_filter(where, subject=subject, method=method, roi=roi)
    with open_store(ctx) as store:
        rows = figure_data.distribution_data(store, split, metric, query, by, normalise=ceiling)
    if not rows:
        nothing_matched(ctx, "per-voxel scores" + (" with a noise ceiling" if ceiling else ""), query)
    fig = draw.draw_distributions(rows, split, metric, normalised=ceiling)
    _save(ctx, out, f"distributions_{split}_{metric}{'_ceiling' if ceiling else ''}", fig, as_json)


@plot_app.command("layers")
@cli_errors
def plot_layers(ctx: typer.Context, split: SplitOpt = "validation", metric: MetricOpt = "r",
                where: WhereOpt = None, subject: SubjectOpt = None, ceiling: CeilingOpt = False,
                out: OutOpt = None, as_json: JsonOpt = False) -> None:
    """The hierarchy figure: score vs layer per ROI, one line per condition (fits equal
    but for the layer), CIs, best layer starred. Needs fits of 2+ layers of one ROI."""
    with open_store(ctx) as store:
        rows = figure_data.layer_data(store, split, metric, queries.run_filter(where, subject=subject),
                                      strict=True)
    if not rows:
        raise ConfigError("no ROI has fits of two or more layers of one condition")
    fig = draw.draw_layers(rows, split, metric, normalised=ceiling)
    _save(ctx, out, f"layers_{split}_{metric}{'_ceiling' if ceiling else ''}", fig, as_json)


@plot_app.command("partition")
@cli_errors
def plot_partition(ctx: typer.Context, subject: Annotated[str, typer.Option(help="Subject.")] = "S1",
                   run: Annotated[str | None, typer.Option(
                       help="A partition run: also its per-voxel scatter.")] = None,
                   out: OutOpt = None, as_json: JsonOpt = False) -> None:
    """Variance partitions: per ROI stacked bars of unique A / shared / unique B (one figure
    per pair of spaces), and with --run the per-voxel R² (A) vs R² (B) scatter."""
    with open_store(ctx) as store:
        figs = list(standard.partition_figures(store, subject, run))
    if not figs:
        raise ConfigError(f"no completed partition runs for {subject} (tracker partition A B)")
    paths = [str(p) for name, fig in figs
             for p in standard.save(fig, Path(out or settings_of(ctx).plots_dir) / name)]
    if as_json:
        return print_json(paths)
    for p in paths:
        console.print(p)
    return None


@plot_app.command("volume")
@cli_errors
def plot_volume(ctx: typer.Context, run: Annotated[str, typer.Argument(help="Fit run id.")],
                split: SplitOpt = "validation", metric: MetricOpt = "r", out: OutOpt = None,
                as_json: JsonOpt = False) -> None:
    """A run's voxel scores on the 64x64x18 volume, one panel per axial slice."""
    with open_store(ctx) as store:
        data = figure_data.volume_data(store, run, split, metric)
    _save(ctx, out, f"volume_{data['run']['run_id']}_{split}_{metric}", draw.draw_volume(data), as_json)


@plot_app.command("winners")
@cli_errors
def plot_winners(ctx: typer.Context,
                 over: Annotated[str, typer.Option(
                     help="Candidates: layer, model, preprocessing, method ...")] = "layer",
                 roi: Annotated[str, typer.Option(help="ROI names (V1,V4,LO) or all.")] = "all",
                 split: SplitOpt = "validation", metric: MetricOpt = "r", where: WhereOpt = None,
                 out: OutOpt = None, as_json: JsonOpt = False) -> None:
    """Which candidate wins: share of voxels per ROI, and a winner map per subject."""
    from tracker.analysis.winners import best
    from tracker.cli.contrasts import rois
    from tracker.figures import winners as wfig

    with open_store(ctx) as store:
        rows = best(store, over, roi=rois(roi), split=split, metric=metric,
                    extra=queries.run_filter(where), n_boot=200, voxels=True)
    if not rows:
        raise ConfigError(f"no completed fits for ROI {roi}")
    folder = Path(out or settings_of(ctx).plots_dir)
    paths = standard.save(wfig.draw_winner_share(rows), folder / f"winners_{over}_{split}_{metric}")
    for subject in sorted({s for r in rows for s in r["subjects"]}):
        paths += standard.save(wfig.draw_winner_map(rows, subject),
                               folder / f"winner_map_{over}_{subject}_{split}_{metric}")
    if as_json:
        return print_json([str(p) for p in paths])
    for p in paths:
        console.print(str(p))
    return None
def _rf_rows(ctx: typer.Context, subject: str, split: str, all_voxels: bool) -> list[dict]:
    """The fwRF rows of ``subject`` (BH-significant voxels unless ``all_voxels``)."""
    with open_store(ctx) as store:
        rows = rf_data.rf_data(store, subject, split, significant_only=not all_voxels)
    if not rows:
        raise ConfigError(f"no completed per-voxel fwrf fits with receptive fields for {subject}")
    return rows


@plot_app.command("rf-centres")
@cli_errors
def plot_rf_centres(ctx: typer.Context, subject: Annotated[str, typer.Option(help="Subject.")] = "S1",
                    split: SplitOpt = "validation",
                    all_voxels: Annotated[bool, typer.Option(
                        "--all-voxels", help="Every voxel, not only the BH-significant ones.")] = False,
                    out: OutOpt = None, as_json: JsonOpt = False) -> None:
    """fwRF receptive-field centres on the visual field (degrees), one panel per ROI."""
    rows = _rf_rows(ctx, subject, split, all_voxels)
    _save(ctx, out, f"rf_centres_{subject}", rf_draw.draw_rf_centres(rows, subject), as_json)


@plot_app.command("rf-size")
@cli_errors
def plot_rf_size(ctx: typer.Context, subject: Annotated[str, typer.Option(help="Subject.")] = "S1",
                 split: SplitOpt = "validation",
                 all_voxels: Annotated[bool, typer.Option(
                     "--all-voxels", help="Every voxel, not only the BH-significant ones.")] = False,
                 out: OutOpt = None, as_json: JsonOpt = False) -> None:
    """fwRF receptive-field size against eccentricity per ROI, with a fitted line each."""
    rows = _rf_rows(ctx, subject, split, all_voxels)
    fig = rf_draw.draw_rf_size(rows, rf_data.size_fits(rows), subject)
    _save(ctx, out, f"rf_size_{subject}", fig, as_json)


@plot_app.command("fwrf-vs-ridge")
@cli_errors
def plot_fwrf_vs_ridge(ctx: typer.Context, subject: Annotated[str, typer.Option(help="Subject.")] = "S1",
                       roi: Annotated[str, typer.Option(help="ROI.")] = "V4", split: SplitOpt = "validation",
                       metric: MetricOpt = "r", out: OutOpt = None, as_json: JsonOpt = False) -> None:
    """fwRF against ridge per voxel (same subject, ROI and features): share where fwRF wins,
    paired Wilcoxon test."""
    with open_store(ctx) as store:
        pair = next((p for p in rf_data.fwrf_vs_ridge_pairs(store, roi) if p[0] == subject), None)
        if pair is None:
            raise ConfigError(f"no completed fwrf and ridge fits of {subject} {roi} on the same features")
        data = rf_data.fwrf_vs_ridge_data(store, pair[1], pair[2], split, metric)
    _save(ctx, out, f"fwrf_vs_ridge_{subject}_{roi}_{split}_{metric}", rf_draw.draw_fwrf_vs_ridge(data),
          as_json)
