"""`tracker compare`, `tracker summaries`, `tracker runs diff`: questions across runs."""

from __future__ import annotations

from typing import Annotated

import typer

from tracker.analysis import queries
from tracker.analysis.conditions import by_choices
from tracker.analysis.fields import parse_by
from tracker.analysis.rundiff import diff_runs
from tracker.cli.common import JsonOpt, cli_errors, nothing_matched, open_store
from tracker.cli.listing import (
    CsvOpt,
    MethodOpt,
    MetricOpt,
    RoiOpt,
    SplitOpt,
    SubjectOpt,
    TargetOpt,
    WhereOpt,
    emit,
    name_callback,
)

BY_CHOICES = by_choices()
COMPARE_COLUMNS = ["n_runs", "n", "mean", "mean_low", "mean_high", "median", "median_low",
                   "median_high", "n_significant", "frac_ceiling", "chance_r2_corr", "pooling"]


@cli_errors
def compare_cmd(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(
        help=f"Comma-separated fields: {', '.join(BY_CHOICES)}, or any fit-config field.")]
    = "subject,method,preprocessing",
    roi: Annotated[str | None, typer.Option(
        help="ROIs: comma-separated (V1,V2,V3,V3A,V3B,V4,LO,other) or all; default V4, or all "
             "with --by roi or a --where on roi.", callback=name_callback("roi", many=True))] = None,
    split: SplitOpt = "validation",
    metric: MetricOpt = "r",
    target: TargetOpt = "voxels",
    where: WhereOpt = None, subject: SubjectOpt = None, method: MethodOpt = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% CIs (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    over: Annotated[str | None, typer.Option(
        "--over", help="Condition fields averaged per voxel inside a group (e.g. seed).")] = None,
    as_json: JsonOpt = False, as_csv: CsvOpt = False,
) -> None:
    """Compare conditions: one value per distinct voxel, mean/median with bootstrap 95% CIs.

    A group must be one condition: every identity field of the fits (model, weights,
    layer, preprocessing, method, protocol, grid, CV, seed, dataset ...) that varies
    must be in --by, filtered with --where, or averaged per voxel with --over; else the
    command names the varying fields and exits 2. Each (subject, voxel) counts once.
    Also n significant (BH-FDR, when stored) and fraction of the noise ceiling (when known).

    Example: [bold]tracker compare --by subject,method,preprocessing --roi V4 --split validation[/bold]
    """
    fields = [t.strip() for t in by.split(",") if t.strip()]
    extra = queries.run_filter(where, subject=subject, method=method, roi=roi)
    if roi is None and "roi" not in fields and "roi" not in queries.filter_paths(extra):
        roi = "V4"
        extra = queries.run_filter(where, subject=subject, method=method, roi=roi)
    with open_store(ctx) as store:
        rows = queries.compare(store, fields, roi=None, split=split, metric=metric, target=target,
                               extra=extra, n_boot=n_boot, seed=seed,
                               over=[t.strip() for t in (over or "").split(",") if t.strip()])
    if not rows:
        nothing_matched(ctx, "completed fits", {"target": target, **extra})
    columns = [c for c in COMPARE_COLUMNS if metric != "r" or c != "chance_r2_corr"]
    notes = sorted({u for r in rows if (u := r.get("untrained"))})
    emit(rows, [*fields, *columns], as_json, as_csv,
         title=f"{metric} on {split} images, {roi or 'ROIs of the filter'} ({target}); "
               "n/a (-): not stored / no ceiling" + "".join(f"; {u}" for u in notes))


@cli_errors
def summaries_cmd(
    ctx: typer.Context,
    split: SplitOpt = "validation", metric: MetricOpt = "r",
    by: Annotated[str | None, typer.Option(help="Group fits server-side by these fields.")] = None,
    where: WhereOpt = None, subject: SubjectOpt = None, method: MethodOpt = None,
    roi: RoiOpt = None,
    as_json: JsonOpt = False, as_csv: CsvOpt = False,
) -> None:
    """Per-fit summaries (or groups of them with --by), computed and sorted by the server.

    Example: [bold]tracker summaries --by method,layer --split test --metric r2_corr[/bold]
    """
    query = queries.run_filter(where, subject=subject, method=method, roi=roi)
    with open_store(ctx) as store:
        if by:
            fields = parse_by(by)
            rows = queries.group_summaries(store, fields, query, split, metric)
            cols = [*fields, "n_runs", "n", "mean", "median_of_medians", "best_median", "max"]
        else:
            rows = queries.fit_summaries(store, query, split, metric)
            cols = ["run_id", "subject", "roi", "target", "method", "preprocessing", "layer", "n",
                    "mean", "median", "q75", "max", *(["r_threshold_p05"] if metric == "r" else []),
                    "n_above_p05", "n_significant"]
    if not rows:
        nothing_matched(ctx, "completed fits with stored summaries", query)
    emit(rows, cols, as_json, as_csv, title=f"{metric} on {split} images (stored summaries)")


@cli_errors
def diff_cmd(
    ctx: typer.Context,
    run_a: Annotated[str, typer.Argument(help="First run id (or unique prefix).")],
    run_b: Annotated[str, typer.Argument(help="Second run id (or unique prefix).")],
    show_all: Annotated[bool, typer.Option("--all", help="Also list equal fields.")] = False,
    as_json: JsonOpt = False, as_csv: CsvOpt = False,
) -> None:
    """What differs between two runs: config, inputs, splits, provenance.

    Example: [bold]tracker runs diff fi-3a9c fi-77b0[/bold]
    """
    with open_store(ctx) as store:
        (_, a), (_, b) = store.get_run(run_a), store.get_run(run_b)
    rows = diff_runs(a, b, show_all=show_all)
    emit(rows, ["field", "a", "b"], as_json, as_csv, title=f"{a['_id']} (a) vs {b['_id']} (b)")
