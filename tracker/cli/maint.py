"""`tracker sync` and `tracker gc`: upload the offline spool, collect garbage."""

from __future__ import annotations

from typing import Annotated

import typer

from tracker.cli.common import JsonOpt, cli_errors, console, open_store, print_json, settings_of


@cli_errors
def sync_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Upload runs spooled while the database was unreachable (idempotent: safe to repeat)."""
    from tracker.record.spool import Spool

    settings = settings_of(ctx)
    with open_store(ctx) as store:
        report = Spool(settings.spool_dir, store.db_name).sync(store).to_dict()
    if as_json:
        return print_json(report)
    console.print(f"uploaded {report['runs']} run(s) and {report['buckets']} score bucket(s) "
                  f"from {report['files']} spool file(s)")
    if report["duplicates"]:
        console.print("stored as DUPLICATE (same config completed elsewhere): "
                      + ", ".join(report["duplicates"]))
    if report["skipped"]:
        console.print(f"skipped (recorded for another database): {', '.join(report['skipped'])}")


@cli_errors
def gc_cmd(
    ctx: typer.Context,
    delete: Annotated[bool, typer.Option("--delete", help="Remove what is listed (default: list only).")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """List feature files no run references, stale temp files, orphan buckets, runs whose files are gone."""
    from tracker.record.maintenance import collect_garbage

    with open_store(ctx) as store:
        report = collect_garbage(store, settings_of(ctx), delete=delete)
    if as_json:
        return print_json(report)
    verb = "deleted" if delete else "found"
    for key, label in (("orphan_files", "unreferenced feature files"), ("temp_files", "stale temp files"),
                       ("orphan_bucket_runs", "runs with orphan score buckets")):
        console.print(f"{verb} {len(report[key])} {label}: {' '.join(report[key])}")
    if report["unchecked_databases"]:
        console.print(f"[yellow]could not read databases {', '.join(report['unchecked_databases'])}: "
                      "feature files are kept, since one of them may use them[/yellow]")
    for item in report["missing_file_runs"]:
        console.print(f"feature run {item['id']}: file {item['path']} is gone "
                      f"(used by {item['used_by_fits']} fit(s)){' - kept' if item.get('kept') else ''}")
