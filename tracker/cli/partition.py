"""`tracker partition A B`: what two feature spaces explain per voxel, jointly and alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from pipeline.fit.partition import PARTITION_FIELDS
from tracker.cli.common import cli_errors, console, err, open_store, print_json, print_table, settings_of
from tracker.cli.features import QuietOpt, RunJsonOpt
from tracker.cli.progress import ProgressBars
from tracker.record.partition import partition_and_log


@cli_errors
def partition_cmd(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(
        help="Space A: a feature run (fe-...), one layer of it (fe-...:conv1) or a fit run (fi-...).")],
    b: Annotated[str, typer.Argument(help="Space B, named the same ways.")],
    subject: Annotated[str | None, typer.Option(help="S1 or S2 (default: the fits' subject).")] = None,
    roi: Annotated[str | None, typer.Option(help="ROI (default: the fits' ROI).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="vim-1 directory (default: space A's feature run's).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute even if it was done.")] = False,
    as_json: RunJsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Variance partitioning: fit A, B and the banded joint model A+B (one ridge penalty
    per space, chosen per voxel by leave-one-out inside the training images), score
    them on the validation images and record per voxel R² (A), R² (B), R² (A+B),
    unique A = R² (A+B) - R² (B), unique B and shared. Negative estimates are kept as
    computed (see docs/queries.md).

    Example: [bold]tracker partition fe-1a2b:conv1 fe-1a2b:fc6 --subject S1 --roi V1[/bold]

    Figures: [bold]tracker plot partition --subject S1 --run pa-...[/bold]
    """
    settings = settings_of(ctx)
    if data_dir is not None:
        settings = dataclasses.replace(settings, data_dir=data_dir)
    with open_store(ctx) as store, ProgressBars(enabled=not (quiet or as_json)) as bars:
        out = partition_and_log(store, settings, a, b, subject, roi, data_dir=data_dir, force=force,
                                progress=bars.update)
    if as_json:
        return print_json(out.run)
    if out.reused:
        err.print(f"reusing finished partition run {out.run_id} (--force recomputes)")
    run = out.run
    console.print(out.run_id)
    summary = run["summary"]["validation"]
    rows = [{"field": f, "mean": summary[f]["mean"], "median": summary[f]["median"],
             "q10": summary[f]["q10"], "q90": summary[f]["q90"], "n_negative": run["negatives"][f]}
            for f in PARTITION_FIELDS]
    spaces = run["spaces"]
    print_table(rows, ["field", "mean", "median", "q10", "q90", "n_negative"],
                title=f"{run['subject']} {run['roi']} ({run['n_voxels']} voxels), validation R²: "
                      f"A = {spaces['A']['label']}, B = {spaces['B']['label']}")
    return None
