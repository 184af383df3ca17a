"""`tracker scores ...`: per-voxel questions (best voxels, one voxel across runs)."""

from __future__ import annotations

from typing import Annotated

import typer

from tracker.analysis import queries, voxels
from tracker.analysis.fields import RF_FIELDS
from tracker.cli.common import JsonOpt, cli_errors, nothing_matched, open_store
from tracker.cli.listing import (
    CsvOpt,
    MethodOpt,
    MetricOpt,
    RoiOpt,
    SplitOpt,
    SubjectOpt,
    WhereOpt,
    emit,
    name_callback,
)

scores_app = typer.Typer(help="Per-voxel scores: best voxels, one voxel across runs.",
                         no_args_is_help=True)
VOXEL_COLUMNS = ["split", "voxel_id", "i", "j", "k", "r", "r2_corr", "r2", "hyper", "p", "significant",
                 *RF_FIELDS]


@scores_app.command("top")
@cli_errors
def scores_top(
    ctx: typer.Context,
    run: Annotated[list[str] | None, typer.Option(help="Run id(s); default: all completed fits.")] = None,
    roi: RoiOpt = None, subject: SubjectOpt = None, method: MethodOpt = None, where: WhereOpt = None,
    split: SplitOpt = "validation", metric: MetricOpt = "r",
    n: Annotated[int, typer.Option("--n", help="How many voxels.")] = 20,
    lowest: Annotated[bool, typer.Option(help="The worst voxels instead.")] = False,
    as_json: JsonOpt = False, as_csv: CsvOpt = False,
) -> None:
    """Best voxels of a run, or of an ROI across runs (i, j, k: 0-based in 64x64x18).

    Example: [bold]tracker scores top --roi V4 --split validation --n 10[/bold]
    """
    query = queries.run_filter(where, subject=subject, method=method, roi=roi)
    with open_store(ctx) as store:
        runs = voxels.select_runs(store, run or (), query)
        rows = voxels.top_voxels(store, runs, split, metric, n, lowest)
    if not rows:
        nothing_matched(ctx, f"{split} scores of completed per-voxel fits",
                        {"_id": {"$in": run}} if run else query)
    emit(rows, ["rank", "run_id", "subject", "roi", "method", "preprocessing", "layer",
                *VOXEL_COLUMNS[1:]], as_json, as_csv,
         title=f"{'lowest' if lowest else 'highest'} {metric} on {split} images")


@scores_app.command("voxel")
@cli_errors
def scores_voxel(
    ctx: typer.Context,
    voxel_id: Annotated[int, typer.Argument(help="vim-1 voxel id (1-based MATLAB index).")],
    subject: SubjectOpt = None, roi: RoiOpt = None, method: MethodOpt = None, where: WhereOpt = None,
    split: Annotated[str | None, typer.Option(help="test or validation; default both.",
                                              callback=name_callback("split"))] = None,
    as_json: JsonOpt = False, as_csv: CsvOpt = False,
) -> None:
    """One voxel in every completed fit that scored it (ids are per subject: use --subject).

    Example: [bold]tracker scores voxel 40312 --subject S1[/bold]
    """
    query = queries.run_filter(where, subject=subject, method=method, roi=roi)
    with open_store(ctx) as store:
        runs = voxels.select_runs(store, query=query)
        rows = voxels.voxel_across_runs(store, voxel_id, runs, split)
    if not rows:
        nothing_matched(ctx, f"completed fits scoring voxel {voxel_id}", query)
    emit(rows, ["run_id", "subject", "roi", "method", "preprocessing", "layer",
                *[c for c in VOXEL_COLUMNS if c not in ("voxel_id", "i", "j", "k")]],
         as_json, as_csv, title=f"voxel {voxel_id}")
