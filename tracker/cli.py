"""``tracker``: query and manage encoding-model runs recorded in MongoDB.

With no ``TRACKER_MONGO_URI`` the embedded server is started (or reused) on
``$TRACKER_HOME/db``; set the variable (or ``--uri``) to use a real MongoDB or Atlas.
"""

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

from pipeline.errors import VimtrackError
from tracker import queries
from tracker.security import redact_text
from tracker.settings import Settings, load_settings
from tracker.store import Store

app = typer.Typer(help=__doc__, no_args_is_help=True, rich_markup_mode="rich")
runs_app = typer.Typer(help="List and inspect runs (feature extractions and fits).", no_args_is_help=True)
db_app = typer.Typer(help="The database: status, schema, the embedded server.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets: generate synthetic vim-1, describe a data directory.",
                       no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")

# Piped output (files, CI logs) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj if isinstance(ctx.obj, Settings) else load_settings()


def _store(ctx: typer.Context) -> Store:
    return Store.open(_settings(ctx))


def cli_errors(fn):
    """Turn our errors into one clear line on stderr and exit code 2 (no traceback)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VimtrackError as exc:
            err.print(f"[red]error:[/red] {redact_text(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        except PyMongoError as exc:
            err.print(f"[red]database error:[/red] {redact_text(str(exc))[:500]}", highlight=False)
            raise typer.Exit(3) from None
    return wrapper


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=_jsonable, indent=2) + "\n")


def _fmt(value: Any) -> str:
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
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    console.print(table)


@app.callback()
def main_options(
    ctx: typer.Context,
    uri: Annotated[str | None, typer.Option(envvar="TRACKER_MONGO_URI", show_envvar=True,
                                            help="MongoDB URI; unset = embedded server.")] = None,
    db_name: Annotated[str | None, typer.Option("--db-name", envvar="TRACKER_DB_NAME",
                                                help="Database name.")] = None,
    home: Annotated[Path | None, typer.Option(envvar="TRACKER_HOME",
                                              help="Tracker state directory (default ./.tracker).")] = None,
) -> None:
    ctx.obj = load_settings(mongo_uri=uri, db_name=db_name, home=home)


# ------------------------------------------------------------------ runs
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
    with _store(ctx) as store:
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
    with _store(ctx) as store:
        _, doc = store.get_run(run_id)
    if as_json:
        return print_json(doc)
    console.print_json(json.dumps(doc, default=_jsonable))


# --------------------------------------------------------------- compare
@app.command("compare")
@cli_errors
def compare_cmd(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help=f"Comma-separated fields: {', '.join(queries.GROUP_FIELDS)}.")]
    = "subject,method,preprocessing",
    roi: Annotated[str, typer.Option(help="ROI name (V1, V2, V3, V3A, V3B, V4, LO, other, all).")] = "V4",
    split: Annotated[str, typer.Option(help="test (held out of training) or validation.")] = "validation",
    metric: Annotated[str, typer.Option(help="r, r2_corr (squared r) or r2 (R^2).")] = "r",
    target: Annotated[str, typer.Option(help="voxels or roi_mean.")] = "voxels",
    as_json: JsonOpt = False,
) -> None:
    """Compare completed fits: per group n voxels (pooled), mean ± SEM, median.

    Example: [bold]tracker compare --by subject,method --roi V4 --split validation[/bold]
    """
    fields = queries.parse_by(by)
    with _store(ctx) as store:
        rows = queries.compare(store, fields, roi=roi, split=split, metric=metric, target=target)
    if as_json:
        return print_json(rows)
    if not rows:
        err.print(f"no completed fits for ROI {roi} / target {target}")
        raise typer.Exit(1)
    print_table(rows, [*fields, "n_runs", "n", "mean", "sem", "median", "chance_r2_corr"],
                title=f"{metric} on {split} images, {roi} ({target})")


# -------------------------------------------------------------------- db
@db_app.command("status")
@cli_errors
def db_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Server, version, collections with document counts and indexes."""
    with Store.open(_settings(ctx), init=False) as store:
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
    with Store.open(_settings(ctx), init=False) as store:
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

    stopped = EmbeddedServer(_settings(ctx).embedded_db_dir).stop()
    console.print("embedded server stopped" if stopped else "no embedded server was running")


# ------------------------------------------------------------------ data
@data_app.command("synth")
@cli_errors
def data_synth(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the vim-1 layout into.")],
    preset: Annotated[str, typer.Option(
        help="tiny (tests), demo, or full (1750/120 images, 25,915/26,329 voxels).")] = "demo",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace vim-1 files already in OUT_DIR.")] = False,
) -> None:
    """Write a synthetic vim-1 dataset (real file layout, planted signal, ground truth beside)."""
    import dataclasses

    from pipeline import synth
    from pipeline.errors import ConfigError
    from tracker.progress import ProgressBars

    if preset not in synth.PRESETS:
        raise ConfigError(f"--preset {preset!r}: choose from {', '.join(synth.PRESETS)}")
    config = dataclasses.replace(synth.PRESETS[preset], seed=seed)
    with ProgressBars() as bars:
        path = synth.generate(out_dir, config, progress=bars.update, overwrite=overwrite)
    console.print(f"synthetic vim-1 ({preset}) written to {path}")


@data_app.command("describe")
@cli_errors
def data_describe(
    data_dir: Annotated[Path, typer.Argument(help="A vim-1 directory.")], as_json: JsonOpt = False
) -> None:
    """Validate a vim-1 directory and show subjects, voxel counts per ROI, NaN drops."""
    from pipeline import vim1

    desc = vim1.describe_dataset(data_dir)
    if as_json:
        return print_json(desc)
    console.print_json(json.dumps(desc, default=_jsonable))


# ------------------------------------------------------------------ plot
@app.command("plot")
@cli_errors
def plot_cmd(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="Output directory (default $TRACKER_HOME/plots).")] = None,
    roi: Annotated[str, typer.Option(help="ROI to plot.")] = "V4",
    metric: Annotated[str, typer.Option(help="r, r2_corr or r2.")] = "r2_corr",
) -> None:
    """Regenerate the standard figures (PNG and SVG) from the database alone."""
    from tracker.plots import make_all

    settings = _settings(ctx)
    with Store.open(settings) as store:
        paths = make_all(store, out or settings.plots_dir, roi=roi, metric=metric)
    for p in paths:
        console.print(str(p))
    if not paths:
        err.print("no completed fits to plot")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
