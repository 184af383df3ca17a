"""`tracker db ...`: the database and the embedded server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracker.cli.common import (
    JsonOpt,
    cli_errors,
    console,
    db_location,
    open_store,
    print_json,
    print_table,
    settings_of,
)
from tracker.db.store import Store

db_app = typer.Typer(help="The database: status, schema, the embedded server.", no_args_is_help=True)


@db_app.command("status")
@cli_errors
def db_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Server, version, collections (documents, statuses, schema versions, indexes), stale runs, spool."""
    from tracker.record.maintenance import database_status

    settings = settings_of(ctx)
    with open_store(ctx, init=False) as store:
        status = database_status(store, settings)
    status["home"] = str(settings.home.resolve())
    status["location"] = db_location(settings)
    if as_json:
        return print_json(status)
    console.print(f"data: {status['location']}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"server {status['uri']} ({'embedded' if status['embedded'] else 'external'}, version "
                  f"{status['server_version']}), database [bold]{status['database']}[/bold], "
                  f"schema version {status['schema_version']}")
    rows = [{"collection": k, "documents": v["documents"], "indexes": ", ".join(v["indexes"]),
             "statuses": ", ".join(f"{s}={n}" for s, n in sorted(v.get("by_status", {}).items(), key=str)),
             "schema_versions": ", ".join(f"v{s}={n}" for s, n in v["schema_versions"].items())}
            for k, v in status["collections"].items()]
    print_table(rows, ["collection", "documents", "statuses", "schema_versions", "indexes"])
    console.print(f"stale RUNNING runs (tracker runs reap): {len(status['stale_running'])}; "
                  f"spooled runs waiting for `tracker sync`: {len(status['spool']['pending'])}")


@db_app.command("init")
@cli_errors
def db_init(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create collections, validators and indexes from the schema definitions (idempotent)."""
    with Store.open(settings_of(ctx), init=False) as store:
        applied = store.init_schema()
    if as_json:
        return print_json(applied)
    for name, indexes in applied.items():
        console.print(f"{name}: {', '.join(indexes) or '(no indexes)'}")


@db_app.command("stop")
@cli_errors
def db_stop(ctx: typer.Context) -> None:
    """Stop the embedded server of $TRACKER_HOME (no effect on a real MongoDB)."""
    from tracker.db.server import EmbeddedServer

    stopped = EmbeddedServer(settings_of(ctx).embedded_db_dir).stop()
    console.print("embedded server stopped" if stopped else "no embedded server was running")


@db_app.command("migrate")
@cli_errors
def db_migrate(
    ctx: typer.Context,
    backup_dir: Annotated[Path | None, typer.Option(
        help="Where the JSON-lines backup goes (default $TRACKER_HOME/backups).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Back up every collection, then upgrade documents of an older schema_version."""
    from tracker.db.migrations import migrate

    settings = settings_of(ctx)
    with Store.open(settings, init=True) as store:
        report = migrate(store, backup_dir or settings.home / "backups")
    if as_json:
        return print_json(report)
    console.print(f"backup: {', '.join(report['backup'].values()) or '(empty database)'}")
    console.print("migrated to v{}: {}".format(report["target"], ", ".join(
        f"{k}={v}" for k, v in report["migrated"].items())))
    for item in report["failed"]:
        console.print(f"[red]not migrated[/red] {item['collection']} {item['id']}: {item['error']}")
