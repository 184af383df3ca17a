"""`tracker runs ...`: list, inspect, reap and delete runs."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tracker.analysis import fields, queries
from tracker.analysis.fields import WHERE_FIELDS
from tracker.analysis.filters import parse_where
from tracker.cli.common import (
    JsonOpt,
    cli_errors,
    console,
    jsonable,
    open_store,
    print_json,
    print_table,
    settings_of,
)

runs_app = typer.Typer(help="List, inspect, reap and delete runs (feature extractions and fits).",
                       no_args_is_help=True)
WhereOpt = Annotated[list[str] | None, typer.Option(
    "--where", help="Filter, repeatable (ANDed): 'subject=S1 or subject=S2', 'method in [ridge,pls]', "
                    "'val_median_r>0.1'. Fields: see `tracker runs fields`.")]


@runs_app.command("list")
@cli_errors
def runs_list(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option(help="fit or features.")] = "fit",
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this subject (fits).")] = None,
    where: WhereOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many runs (newest first).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first. Example: [bold]tracker runs list --where 'method=pls and r>0.1'[/bold]"""
    filt = parse_where(where or [], kind)
    with open_store(ctx) as store:
        if filt:
            ids = {d["_id"] for d in store.find_runs(fields.RUN_KINDS[kind], filt, {"_id": 1})}
            rows = [r for r in queries.list_runs(store, kind, status, subject, 0) if r["id"] in ids]
            rows = rows[:limit] if limit else rows
        else:
            rows = queries.list_runs(store, kind, status, subject, limit)
    if as_json:
        return print_json(rows)
    cols = (["id", "status", "subject", "roi", "target", "method", "preprocessing", "layer",
             "weights", "n_voxels", "test_median_r", "val_median_r", "created"] if kind == "fit" else
            ["id", "status", "model", "variant", "layer", "preprocess", "weights", "images_per_s", "created"])
    print_table(rows, cols, title=f"{kind} runs")


@runs_app.command("fields")
@cli_errors
def runs_fields(kind: Annotated[str, typer.Option(help="fit or features.")] = "fit",
                as_json: JsonOpt = False) -> None:
    """Field names accepted by --where, with the document path each one reads."""
    rows = [{"field": k, "path": p, "type": "number" if t is float else "text"}
            for k, (p, t) in WHERE_FIELDS.get(kind, {}).items()]
    if as_json:
        return print_json(rows)
    print_table(rows, ["field", "path", "type"], title=f"--where fields ({kind} runs)")


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


@runs_app.command("reap")
@cli_errors
def runs_reap(
    ctx: typer.Context,
    stale_factor: Annotated[float, typer.Option(
        help="Mark DEAD when the heartbeat is older than this many heartbeat intervals.")] = 4.0,
    as_json: JsonOpt = False,
) -> None:
    """Mark RUNNING runs whose heartbeat stopped (killed, host lost) as DEAD."""
    from tracker.record.runs import reap

    with open_store(ctx) as store:
        reaped = reap(store, stale_factor)
    if as_json:
        return print_json(reaped)
    print_table(reaped, ["id", "collection", "heartbeat", "silent_s"],
                title=f"{len(reaped)} run(s) marked DEAD")


@runs_app.command("delete")
@cli_errors
def runs_delete(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix of it.")],
    with_files: Annotated[bool, typer.Option(
        help="Also delete a feature run's HDF5 file (refused if another run records it).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a run and its score buckets (a feature run only once no fit uses it)."""
    from tracker.record.maintenance import delete_run

    with open_store(ctx) as store:
        report = delete_run(store, settings_of(ctx), run_id, with_files=with_files)
    if as_json:
        return print_json(report)
    console.print(f"deleted {report['collection']} run {report['id']}: {report['buckets']} score "
                  f"bucket(s), {len(report['files'])} file(s) {' '.join(report['files'])}")
