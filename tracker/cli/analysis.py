"""`tracker compare` and `tracker plot`: questions across runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracker import queries
from tracker.cli.common import (
    JsonOpt,
    cli_errors,
    console,
    err,
    open_store,
    print_json,
    print_table,
    settings_of,
)
from tracker.store import Store


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
    app.command("plot")(plot_cmd)


@cli_errors
def compare_cmd(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help=f"Comma-separated fields: {', '.join(queries.GROUP_FIELDS)}.")]
    = "subject,method,preprocessing",
    roi: Annotated[str, typer.Option(help="ROI name (V1, V2, V3, V3A, V3B, V4, LO, other, all).")] = "V4",
    split: Annotated[str, typer.Option(help="test (held out of training) or validation.")] = "validation",
    metric: Annotated[str, typer.Option(help="r, r2_corr (squared r) or r2 (R^2).")] = "r",
    target: Annotated[str, typer.Option(help="voxels or roi_mean.")] = "voxels",
    as_json: JsonOpt = False,
) -> None:
    """Compare completed fits: per group n voxels (pooled), mean ± SEM, median.

    Example: [bold]tracker compare --by subject,method --roi V4 --split validation[/bold]
    """
    fields = queries.parse_by(by)
    with open_store(ctx) as store:
        rows = queries.compare(store, fields, roi=roi, split=split, metric=metric, target=target)
    if as_json:
        return print_json(rows)
    if not rows:
        err.print(f"no completed fits for ROI {roi} / target {target}")
        raise typer.Exit(1)
    print_table(rows, [*fields, "n_runs", "n", "mean", "sem", "median", "chance_r2_corr"],
                title=f"{metric} on {split} images, {roi} ({target})")


@cli_errors
def plot_cmd(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="Output directory (default $TRACKER_HOME/plots).")] = None,
    roi: Annotated[str, typer.Option(help="ROI to plot.")] = "V4",
    metric: Annotated[str, typer.Option(help="r, r2_corr or r2.")] = "r2_corr",
) -> None:
    """Regenerate the standard figures (PNG and SVG) from the database alone."""
    from tracker.plots import make_all

    settings = settings_of(ctx)
    with Store.open(settings) as store:
        paths = make_all(store, out or settings.plots_dir, roi=roi, metric=metric)
    for p in paths:
        console.print(str(p))
    if not paths:
        err.print("no completed fits to plot")


