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
    return Store.open(settings_of(ctx), init=init)


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
