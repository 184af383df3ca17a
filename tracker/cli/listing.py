"""Options and output shared by the analysis commands: filters, ``--json``, ``--csv``."""

from __future__ import annotations

import csv
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from pipeline.core.errors import ConfigError
from tracker.analysis import names
from tracker.analysis.export import rows_to_columns
from tracker.cli.common import err, print_json, print_table


def name_callback(kind: str, many: bool = False):
    """A Typer option callback resolving a name (:mod:`tracker.analysis.names`): ``v4`` ->
    ``V4``; ``many``: comma-separated names or ``all``. Unknown -> the one-line error of
    every command (``error: --roi 'V9': unknown roi; choose from ...``, exit 2)."""
    def resolve_value(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            if many:
                found = names.resolve_many(kind, value)
                return "all" if found is None else ",".join(found)
            return names.resolve(kind, value)
        except ConfigError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    return resolve_value


CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")]
WhereOpt = Annotated[list[str] | None, typer.Option(
    "--where", help=escape("Filter, repeatable (ANDed): 'subject=S1', 'method in [ridge,pls]', "
                           "'layer=conv3 or layer=conv4'. Fields: `tracker runs fields`. A field "
                           "an option also sets (--subject, --roi, ...) is an error."))]
SubjectOpt = Annotated[str | None, typer.Option(help="Only this subject (S1, S2).",
                                                callback=name_callback("subject"))]
MethodOpt = Annotated[str | None, typer.Option(help="Only this method (ridge, pls).",
                                               callback=name_callback("method"))]
RoiOpt = Annotated[str | None, typer.Option(
    help="Only these ROIs: comma-separated (V1,V2,V3,V3A,V3B,V4,LO,other) or all; default all.",
    callback=name_callback("roi", many=True))]
OneRoiOpt = Annotated[str, typer.Option("--roi", help="ROI (V1, V2, V3, V3A, V3B, V4, LO, other).",
                                        callback=name_callback("roi"))]
SplitOpt = Annotated[str, typer.Option(help="test (held out of training) or validation.",
                                       callback=name_callback("split"))]
MetricOpt = Annotated[str, typer.Option(help="r (Pearson), r2_corr (r squared) or r2 (R^2).",
                                        callback=name_callback("metric"))]
TargetOpt = Annotated[str, typer.Option(help="voxels (per-voxel models) or roi_mean (the ROI "
                                             "average).", callback=name_callback("target"))]

def emit(rows: list[dict[str, Any]], columns: list[str], as_json: bool = False, as_csv: bool = False,
         title: str | None = None) -> None:
    """Rows as JSON (all fields), CSV (all fields) or a rich table of ``columns``."""
    if as_json:
        return print_json(rows)
    if as_csv:
        table = rows_to_columns(rows)
        writer = csv.writer(sys.stdout)
        writer.writerow(table)
        writer.writerows(zip(*table.values()))
        return None
    print_table(rows, columns, title=title)
    return None
