"""Options and output shared by the analysis commands: filters, ``--json``, ``--csv``."""

from __future__ import annotations

import csv
import sys
from typing import Annotated, Any

import typer

from tracker.analysis.export import rows_to_columns
from tracker.cli.common import print_json, print_table

CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")]
WhereOpt = Annotated[list[str] | None, typer.Option(
    "--where", help="Filter, repeatable (ANDed): 'subject=S1', 'method in [ridge,pls]', "
                    "'layer=conv3 or layer=conv4'. Fields: `tracker runs fields`.")]
SubjectOpt = Annotated[str | None, typer.Option(help="Only this subject.")]
MethodOpt = Annotated[str | None, typer.Option(help="Only this method (ridge, pls, ...).")]
RoiOpt = Annotated[str | None, typer.Option(help="Only this ROI (V1 ... V4, LO, other); default all.")]
SplitOpt = Annotated[str, typer.Option(help="test (held out of training) or validation.")]
MetricOpt = Annotated[str, typer.Option(help="r (Pearson), r2_corr (r squared) or r2 (R^2).")]


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
