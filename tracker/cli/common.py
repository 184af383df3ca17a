"""Shared pieces of the CLI: settings from the context, error handling, output."""

from __future__ import annotations

import functools
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pymongo.errors import PyMongoError
from rich.console import Console
from rich.table import Table

from pipeline.core.errors import VimtrackError
from tracker.db.security import redact_text
from tracker.db.settings import Settings, load_settings
from tracker.db.store import Store, describe_failure
from tracker.record.runs import RunInterrupted

# Piped output (files, CI logs) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the top-level options resolved (or the environment's)."""
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Settings) else load_settings()


def open_store(ctx: typer.Context, init: bool = True) -> Store:
    """Connect as the settings say; on stderr, say so when this created a new tracker home
    or started the embedded server (it keeps running: ``tracker db stop``)."""
    settings = settings_of(ctx)
    if settings.mongo_uri:
        return Store.open(settings, init=init)
    from tracker.db.server import EmbeddedServer

    fresh = not settings.embedded_db_dir.exists()
    was_running = EmbeddedServer(settings.embedded_db_dir).running(probe=False)
    store = Store.open(settings, init=init)
    if fresh:
        err.print(f"note: no tracker database in {settings.home.resolve()}: created a new, empty one "
                  "(set TRACKER_HOME or --home to use another)", highlight=False, markup=False,
                  soft_wrap=True)
    if was_running is None:
        info = EmbeddedServer(settings.embedded_db_dir).running(probe=False)
        pid = f" (pid {info.pid})" if info is not None else ""
        err.print(f"note: started the embedded database server{pid} on {settings.embedded_db_dir}; it "
                  "keeps running for the next commands: `tracker db stop` stops it",
                  highlight=False, markup=False, soft_wrap=True)
    return store


def cli_errors(fn):
    """Turn our errors into one clear line on stderr and exit code 2 (no traceback)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VimtrackError as exc:
            err.print(f"[red]error:[/red] {redact_text(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except PyMongoError as exc:
            err.print(f"[red]database error:[/red] {describe_failure(exc)}", highlight=False,
                      soft_wrap=True)
            raise typer.Exit(3) from None
        except RunInterrupted:
            err.print("terminated by SIGTERM (the run is recorded as INTERRUPTED)", highlight=False)
            raise typer.Exit(143) from None
    return wrapper


def db_location(settings: Settings) -> str:
    """Where the data lives, in words: the database name and its server or directory."""
    if settings.mongo_uri:
        from tracker.db.security import redact_uri

        return f"database {settings.db_name} on {redact_uri(settings.mongo_uri)}"
    return (f"database {settings.db_name} of the embedded server in "
            f"{settings.embedded_db_dir.resolve()} (TRACKER_HOME={settings.home})")


def describe_query(query: Any) -> str:
    """A filter as short readable text (``subject=S1, roi in [V1, V2]``)."""
    if not query:
        return "(no filter)"
    if isinstance(query, dict):
        parts = []
        for key, value in query.items():
            if value is None:
                continue
            if key in ("$and", "$or"):
                parts.append(f" {key[1:]} ".join(f"({describe_query(q)})" for q in value))
            elif isinstance(value, dict):
                ops = {"$in": "in", "$nin": "not in", "$ne": "!=", "$gt": ">", "$gte": ">=",
                       "$lt": "<", "$lte": "<=", "$eq": "="}
                parts += [f"{key} {ops.get(op, op)} {_listed(v)}" for op, v in value.items()]
            else:
                parts.append(f"{key}={value}")
        return ", ".join(parts)
    return str(query)


def _listed(value: Any) -> str:
    return f"[{', '.join(map(str, value))}]" if isinstance(value, (list, tuple)) else str(value)


def nothing_matched(ctx: typer.Context, what: str, query: Any = None, hint: str = "") -> None:
    """Say on stderr what was looked for and where, then exit 1 (an empty answer is not a
    success: a misspelt filter must not look like "no such runs")."""
    err.print(f"no {what} matched {describe_query(query)} in {db_location(settings_of(ctx))}"
              + (f"; {hint}" if hint else ""), highlight=False, soft_wrap=True, markup=False)
    raise typer.Exit(1)


def jsonable(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=jsonable, indent=2) + "\n")


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def print_table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
    table = Table(title=title, header_style="bold")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(fmt(row.get(c)) for c in columns))
    console.print(table)
