"""`tracker runs ...`: list, inspect, reap and delete runs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from pipeline.core.errors import ConfigError
from tracker.analysis import fields, queries
from tracker.analysis.fields import WHERE_FIELDS, check_choice
from tracker.analysis.filters import parse_where
from tracker.analysis.runview import run_overview, short_label
from tracker.cli.common import (
    JsonOpt,
    cli_errors,
    console,
    db_location,
    err,
    nothing_matched,
    open_store,
    print_json,
    print_table,
    settings_of,
)
from tracker.cli.listing import CsvOpt, emit, name_callback
from tracker.record.runs import ENDED

runs_app = typer.Typer(help="List, inspect, reap and delete runs (feature extractions and fits).",
                       no_args_is_help=True)
WhereOpt = Annotated[list[str] | None, typer.Option(
    "--where", help=escape("Filter, repeatable (ANDed): 'subject=S1 or subject=S2', 'method in "
                           "[ridge,pls]', 'val_median_r>0.1'. Fields: see `tracker runs fields`."))]
KindOpt = Annotated[str, typer.Option(help="fit or features.", callback=name_callback("kind"))]
STATUSES = ("QUEUED", "RUNNING", *ENDED)


@runs_app.command("list")
@cli_errors
def runs_list(
    ctx: typer.Context,
    kind: KindOpt = "fit",
    status: Annotated[str | None, typer.Option(
        help=f"Only runs with this status ({', '.join(STATUSES)}).")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this subject (fits: S1, S2).",
                                                callback=name_callback("subject"))] = None,
    where: WhereOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many runs (newest first).")] = 50,
    as_json: JsonOpt = False, as_csv: CsvOpt = False,
) -> None:
    """List runs, newest first. Example: [bold]tracker runs list --where 'method=pls and r>0.1'[/bold]"""
    if status is not None:
        status = check_choice("status", status.upper(), STATUSES)
    if subject is not None and kind != "fit":
        raise ConfigError("--subject filters fit runs; feature runs have no subject")
    filt = parse_where(where or [], kind)
    with open_store(ctx) as store:
        if filt:
            ids = {d["_id"] for d in store.find_runs(fields.RUN_KINDS[kind], filt, {"_id": 1})}
            rows = [r for r in queries.list_runs(store, kind, status, subject, 0) if r["id"] in ids]
            rows = rows[:limit] if limit else rows
        else:
            rows = queries.list_runs(store, kind, status, subject, limit)
    if not rows and (status or subject or filt):
        nothing_matched(ctx, f"{kind} runs", {"status": status, "subject": subject} | filt)
    if not rows:  # an empty database: the right answer, and where it is
        err.print(f"no {kind} runs yet in {db_location(settings_of(ctx))}", highlight=False,
                  markup=False, soft_wrap=True)
    cols = (["id", "status", "subject", "roi", "target", "method", "preprocessing", "layer",
             "weights", "n_voxels", "test_median_r", "val_median_r", "created"] if kind == "fit" else
            ["id", "status", "model", "variant", "layer", "preprocess", "weights", "images_per_s", "created"])
    emit(rows, cols, as_json, as_csv, title=f"{kind} runs")


@runs_app.command("fields")
@cli_errors
def runs_fields(kind: KindOpt = "fit", as_json: JsonOpt = False, as_csv: CsvOpt = False) -> None:
    """Field names accepted by --where, with the document path each one reads."""
    rows = [{"field": k, "path": p, "type": "number" if t is float else "text"}
            for k, (p, t) in WHERE_FIELDS[kind].items()]
    emit(rows, ["field", "path", "type"], as_json, as_csv, title=f"--where fields ({kind} runs)")


@runs_app.command("show")
@cli_errors
def runs_show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix of it.")],
    as_json: JsonOpt = False,
) -> None:
    """One run: config, files, splits (sizes and hashes), summary, provenance; --json: the
    whole document."""
    with open_store(ctx) as store:
        collection, doc = store.get_run(run_id)
    if as_json:
        return print_json(doc)
    print_table(run_overview(collection, doc), ["section", "field", "value"],
                title=f"{collection.removesuffix('_runs').replace('_', ' ')} run {doc['_id']} "
                      "(--json: the whole document)")
    return None


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
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; needs the full run id.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a run and its score buckets (a feature run only once no fit uses it).

    Asks for confirmation, showing the full id a prefix matched; --yes skips the question
    and then takes only a full id.
    """
    from tracker.record.maintenance import delete_run

    with open_store(ctx) as store:
        _, doc = store.get_run(run_id)
        if yes and doc["_id"] != run_id:
            raise ConfigError(f"--yes needs the full run id: {run_id!r} is a prefix of {doc['_id']}")
        if not yes and not typer.confirm(f"delete run {short_label(doc)}?", default=False, err=True):
            console.print("nothing deleted")
            raise typer.Exit(1)
        report = delete_run(store, settings_of(ctx), doc["_id"], with_files=with_files)
    if as_json:
        return print_json(report)
    console.print(f"deleted {report['collection']} run {report['id']}: {report['buckets']} score "
                  f"bucket(s), {len(report['files'])} file(s) {' '.join(report['files'])}")
