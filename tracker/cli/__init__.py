"""``tracker``: query and manage encoding-model runs recorded in MongoDB.

With no ``TRACKER_MONGO_URI`` the embedded server is started (or reused) on
``$TRACKER_HOME/db``; set the variable (or ``--uri``) to use a real MongoDB or Atlas.

One sub-app per noun, each in its own module: ``runs``, ``db``, ``data``; questions
across runs (``compare``, ``plot``) live in :mod:`tracker.cli.analysis`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracker.cli import analysis, maint
from tracker.cli.common import print_json, print_table  # noqa: F401  (re-exported for scripts)
from tracker.cli.data import data_app
from tracker.cli.db import db_app
from tracker.cli.runs import runs_app
from tracker.cli.sweep import sweep_app
from tracker.settings import load_settings

HELP = """Query and manage encoding-model runs (feature extractions and fits) in MongoDB.

With no TRACKER_MONGO_URI an embedded MongoDB-compatible server is started (or \
reused) on $TRACKER_HOME/db; set the variable (or --uri) to use a real MongoDB or Atlas.

Examples:

  tracker runs list --kind fit

  tracker compare --by subject,method,preprocessing --roi V4 --split validation

  tracker plot --out figures/
"""

app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")
app.add_typer(sweep_app, name="sweep")
analysis.register(app)
maint.register(app)


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




def main() -> None:
    """Console-script entry point."""
    app()
