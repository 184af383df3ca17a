"""`tracker db ...`: the database and the embedded server."""

from __future__ import annotations

import typer

from tracker.cli.common import JsonOpt, cli_errors, console, print_json, print_table, settings_of
from tracker.store import Store

db_app = typer.Typer(help="The database: status, schema, the embedded server.", no_args_is_help=True)


@db_app.command("status")
@cli_errors
def db_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Server, version, collections with document counts and indexes."""
    with Store.open(settings_of(ctx), init=False) as store:
        status = store.status()
    if as_json:
        return print_json(status)
    console.print(f"server {status['uri']} (version {status['server_version']}), "
                  f"database [bold]{status['database']}[/bold]")
    rows = [{"collection": k, **v, "indexes": ", ".join(v["indexes"])}
            for k, v in status["collections"].items()]
    print_table(rows, ["collection", "documents", "indexes"])


@db_app.command("init")
@cli_errors
def db_init(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create collections, validators and indexes from mongo/schema.json (idempotent)."""
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
    from tracker.server import EmbeddedServer

    stopped = EmbeddedServer(settings_of(ctx).embedded_db_dir).stop()
    console.print("embedded server stopped" if stopped else "no embedded server was running")


