"""`tracker sweep ...`: run a model x layer x preprocessing x subject x method grid on Dask."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tracker.cli.common import JsonOpt, cli_errors, console, open_store, print_json, print_table, settings_of
from tracker.cli.progress import ProgressBars

sweep_app = typer.Typer(help="Sweeps over many configs, on a local or remote Dask cluster.",
                        no_args_is_help=True)
SpecArg = Annotated[Path, typer.Argument(
    help=escape("Sweep spec (TOML): [sweep], [features], [fits] tables."))]


@sweep_app.command("run")
@cli_errors
def sweep_run(
    ctx: typer.Context,
    spec_path: SpecArg,
    scheduler: Annotated[str | None, typer.Option(
        help="tcp://HOST:PORT of an existing Dask scheduler (needs TRACKER_MONGO_URI).")] = None,
    workers: Annotated[int | None, typer.Option(help="Local cluster size (default: cores).")] = None,
    voxel_chunks: Annotated[int | None, typer.Option(
        "--voxel-chunks", min=1,
        help="Split each voxel-target fit into up to N voxel chunks run in parallel (kernels "
             "computed once and shared; same keys and numbers). "
             "Default: voxel_chunks under \\[sweep] in the spec.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run every task whose config has not completed yet; a finished sweep is a no-op.

    Example: [bold]tracker sweep run sweeps/demo.toml --workers 2[/bold]
    """
    from tracker.record import sweep

    settings = settings_of(ctx)
    spec = sweep.load_spec(spec_path)
    with open_store(ctx) as store, ProgressBars(enabled=not as_json) as bars:
        data_dir = sweep.resolve_data_dir(spec, settings)
        result = sweep.run_sweep(spec, settings, store, data_dir, scheduler, workers,
                                 on_progress=lambda i, n, label: bars.update("sweep tasks", i, n),
                                 voxel_chunks=voxel_chunks)
    summary = {"done": len(result.done), "skipped (already completed)": result.skipped,
               "failed": len(result.failed), "dead attempts": result.dead_attempts,
               "seconds": round(result.seconds, 1)}
    if as_json:
        return print_json({"summary": summary, "tasks": result.done, "failed": result.failed})
    print_table(result.done, ["task", "run_id", "reused", "val_mean_r", "val_median_r"],
                title=f"sweep {spec.name}")
    if result.failed:
        print_table(result.failed, ["task", "error"], title="failed tasks")
    console.print(", ".join(f"{k}: {v}" for k, v in summary.items()))
    if result.failed:
        raise typer.Exit(1)


@sweep_app.command("status")
@cli_errors
def sweep_status(ctx: typer.Context, spec_path: SpecArg, as_json: JsonOpt = False) -> None:
    """Show each task of a sweep as done / running / failed / to do (runs nothing)."""
    from tracker.record import sweep

    spec = sweep.load_spec(spec_path)
    with open_store(ctx) as store:
        feats, fits = sweep.expand(spec, store, sweep.resolve_data_dir(spec, settings_of(ctx)))
        rows = sweep.task_states(store, feats, fits)
    if as_json:
        return print_json(rows)
    print_table(rows, ["kind", "task", "state", "config_key"], title=f"sweep {spec.name}")
    console.print(", ".join(f"{k}: {v}" for k, v in sorted(Counter(r["state"] for r in rows).items())))
