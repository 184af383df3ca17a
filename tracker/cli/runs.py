"""`tracker runs ...`: list and inspect runs."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tracker import queries
from tracker.cli.common import JsonOpt, cli_errors, console, jsonable, open_store, print_json, print_table

runs_app = typer.Typer(help="List and inspect runs (feature extractions and fits).", no_args_is_help=True)


@runs_app.command("list")
@cli_errors
def runs_list(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option(help="fit or features.")] = "fit",
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this subject (fits).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs (newest first).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first. Example: [bold]tracker runs list --kind fit --status completed[/bold]"""
    with open_store(ctx) as store:
        rows = queries.list_runs(store, kind, status, subject, limit)
    if as_json:
        return print_json(rows)
    cols = (["id", "status", "subject", "roi", "target", "method", "preprocessing", "layer",
             "n_voxels", "test_median_r", "val_median_r", "created"] if kind == "fit" else
            ["id", "status", "model", "variant", "layer", "preprocess", "weights", "images_per_s", "created"])
    print_table(rows, cols, title=f"{kind} runs")


@runs_app.command("show")
@cli_errors
def runs_show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix of it.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one run's whole document (config, output file, summary, provenance)."""
    with open_store(ctx) as store:
        _, doc = store.get_run(run_id)
    if as_json:
        return print_json(doc)
    console.print_json(json.dumps(doc, default=jsonable))


