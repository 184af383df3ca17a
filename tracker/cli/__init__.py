"""``tracker``: query and manage encoding-model runs recorded in MongoDB.

With no ``TRACKER_MONGO_URI`` the embedded server is started (or reused) on
``$TRACKER_HOME/db``; set the variable (or ``--uri``) to use a real MongoDB or Atlas.

One module per noun, all wired here: ``features`` and ``fit`` (the work itself),
``runs``, ``db``, ``data``, ``sweep``, ``scores``, ``plot``, ``export`` / ``report``,
``sync`` / ``gc`` (:mod:`tracker.cli.maint`) and the questions across runs
(``compare``, ``summaries``, ``runs diff``: :mod:`tracker.cli.analysis`; ``contrast``,
``best``: :mod:`tracker.cli.contrasts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracker.cli.analysis import compare_cmd, diff_cmd, summaries_cmd
from tracker.cli.contrasts import best_cmd, contrast_cmd
from tracker.cli.data import data_app
from tracker.cli.db import db_app
from tracker.cli.export import export_cmd, report_cmd
from tracker.cli.features import features_cmd
from tracker.cli.fit import fit_cmd
from tracker.cli.maint import gc_cmd, sync_cmd
from tracker.cli.partition import partition_cmd
from tracker.cli.plot import plot_app
from tracker.cli.runs import runs_app
from tracker.cli.scores import scores_app
from tracker.cli.sweep import sweep_app
from tracker.db.settings import load_settings

HELP = """Query and manage encoding-model runs (feature extractions and fits) in MongoDB.

With no TRACKER_MONGO_URI an embedded MongoDB-compatible server is started (or \
reused) on $TRACKER_HOME/db; set the variable (or --uri) to use a real MongoDB or Atlas.

Examples:

  tracker features --data-dir demo_data --layers conv3

  tracker fit --features fe-1a2b --subject S1 --roi V4 --method ridge

  tracker runs list --kind fit

  tracker compare --by subject,method,preprocessing --roi V4 --split validation

  tracker plot --out figures/
"""

app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")
app.add_typer(sweep_app, name="sweep")
app.add_typer(scores_app, name="scores")
app.add_typer(plot_app, name="plot")
app.command("features")(features_cmd)
app.command("fit")(fit_cmd)
app.command("partition")(partition_cmd)
app.command("compare")(compare_cmd)
app.command("contrast")(contrast_cmd)
app.command("best")(best_cmd)
app.command("summaries")(summaries_cmd)
app.command("export")(export_cmd)
app.command("report")(report_cmd)
app.command("sync")(sync_cmd)
app.command("gc")(gc_cmd)
runs_app.command("diff")(diff_cmd)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("vimtrack")
        except PackageNotFoundError:
            number = "unknown (not installed)"
        typer.echo(f"tracker (vimtrack) {number}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    uri: Annotated[str | None, typer.Option(envvar="TRACKER_MONGO_URI", show_envvar=True,
                                            help="MongoDB URI; unset = embedded server.")] = None,
    db_name: Annotated[str | None, typer.Option("--db-name", envvar="TRACKER_DB_NAME",
                                                help="Database name.")] = None,
    home: Annotated[Path | None, typer.Option(envvar="TRACKER_HOME",
                                              help="Tracker state directory (default ./.tracker).")] = None,
    _show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False,
) -> None:
    ctx.obj = load_settings(mongo_uri=uri, db_name=db_name, home=home)


def main() -> None:
    """Console-script entry point."""
    app()
