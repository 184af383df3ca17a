"""`tracker export` (CSV / Parquet / JSON tables) and `tracker report` (one HTML file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracker.analysis import fields, queries
from tracker.analysis.export import FORMATS, WHAT, table_of, write_table
from tracker.cli.common import JsonOpt, cli_errors, console, nothing_matched, open_store, print_json
from tracker.cli.listing import (
    MethodOpt,
    MetricOpt,
    OneRoiOpt,
    RoiOpt,
    SubjectOpt,
    WhereOpt,
    name_callback,
)


def _split_or_all(value: str) -> str:
    return "all" if value.strip().lower() == "all" else name_callback("split")(value)


@cli_errors
def export_cmd(
    ctx: typer.Context,
    what: Annotated[str, typer.Argument(help=f"{', '.join(WHAT)}: per-fit summaries, per-voxel "
                                             "rows, or the compare table.")],
    out: Annotated[Path, typer.Option(help="Output file (.csv, .parquet or .json).")],
    fmt: Annotated[str | None, typer.Option("--format", help=f"{', '.join(FORMATS)}; default "
                                                              "from the file suffix.")] = None,
    roi: RoiOpt = None, subject: SubjectOpt = None, method: MethodOpt = None, where: WhereOpt = None,
    split: Annotated[str, typer.Option(help="test or validation: the rows (voxels) or the "
                                            "summaries of that split only; voxels also: all.",
                                       callback=_split_or_all)] = "validation",
    metric: Annotated[str | None, typer.Option(
        help="r, r2_corr or r2. summaries / compare: the metric summarised (default r); voxels: "
             "only this score column (default all of them).", callback=name_callback("metric"))] = None,
    by: Annotated[str, typer.Option(help="compare: group fields.")] = "subject,method,preprocessing",
    as_json: JsonOpt = False,
) -> None:
    """Write a table for a filter. Parquet needs pyarrow (pip install pyarrow).

    Example: [bold]tracker export voxels --subject S1 --roi V4 --out s1_v4.parquet[/bold]
    """
    query = queries.run_filter(where, subject=subject, method=method, roi=roi)
    with open_store(ctx) as store:
        table = table_of(store, what, query, None, split, metric, fields.parse_by(by))
    if not next(iter(table.values()), []):
        nothing_matched(ctx, f"{what} ({split}) of completed fits", query, hint=f"{out} not written")
    n = write_table(table, out, fmt)
    if as_json:
        return print_json({"path": str(out), "rows": n, "columns": list(table)})
    console.print(f"{n} rows -> {out}")
    return None


@cli_errors
def report_cmd(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Output HTML file.")] = Path("report.html"),
    roi: OneRoiOpt = "V4", metric: MetricOpt = "r",
    subject: SubjectOpt = None, method: MethodOpt = None, where: WhereOpt = None,
    figures: Annotated[bool, typer.Option(help="Include the figures.")] = True,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the CIs.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """One self-contained HTML report (tables + figures, no external files) for a filter.

    Example: [bold]tracker report --roi V4 --out v4.html[/bold]
    """
    from tracker.figures.report import write_report

    query = queries.run_filter(where, subject=subject, method=method)
    with open_store(ctx) as store:
        if not queries.completed_fits(store, roi, None, query, fields=("roi",)):
            nothing_matched(ctx, "completed fits", {"roi": roi, **query}, hint=f"{out} not written")
        path = write_report(store, out, roi=roi, metric=metric, query=query, figures=figures,
                            n_boot=n_boot)
    if as_json:
        return print_json({"path": str(path)})
    console.print(str(path))
    return None
