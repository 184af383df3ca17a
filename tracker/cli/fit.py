"""`tracker fit`: fit encoding models from a feature run and record them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from tracker.analysis import queries
from tracker.cli.common import (
    cli_errors,
    console,
    err,
    open_store,
    print_json,
    print_table,
    settings_of,
)
from tracker.cli.features import QuietOpt, RunJsonOpt
from tracker.cli.listing import name_callback
from tracker.cli.progress import ProgressBars
from tracker.record import options, workflows
from tracker.record.layers import fit_layers


def _roi_or_all(value: str) -> str:
    """One ROI (resolved: ``v4`` -> ``V4``) or ``all``."""
    return "all" if value.strip().lower() == "all" else name_callback("roi")(value)


@cli_errors
def fit_cmd(
    ctx: typer.Context,
    features: Annotated[str | None, typer.Option(
        "--features", metavar="RUN_ID",
        help="Feature run id (or unique prefix); none: the standard comparison on the "
             "configured data (features extracted first unless a finished run matches).")] = None,
    subject: Annotated[str | None, typer.Option(help="S1 or S2 (default: both).",
                                                callback=name_callback("subject"))] = None,
    roi: Annotated[str, typer.Option(help="ROI: V1 V2 V3 V3A V3B V4 LO other all.",
                                     callback=_roi_or_all)] = "V4",
    method: Annotated[str | None, typer.Option(
        help="Fitting method: ridge, pls or fwrf (default: ridge and pls).",
        callback=name_callback("method"))] = None,
    target: Annotated[str | None, typer.Option(
        help="voxels (per-voxel models) or roi_mean (the ROI average); default: both.",
        callback=name_callback("target"))] = None,
    protocol: Annotated[str, typer.Option(
        help="recommended (CV inside training) or cs431 (the 2019 protocol).",
        callback=name_callback("protocol"))] = "recommended",
    layer: Annotated[str | None, typer.Option(
        help="Layer(s) of a several-layer feature run, comma-separated, or all: one fit per "
             "layer (default: its primary layer).")] = None,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    data_dir: Annotated[Path | None, typer.Option(
        help="vim-1 directory (default: the feature run's, or $TRACKER_DATA_DIR).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Refit even if an identical fit completed.")] = False,
    as_json: RunJsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fit encoding models and record them; prints the fit run ids and a comparison.

    --json prints the fit run documents instead. A completed fit with the same config is
    reused (--force refits).

    Example: [bold]tracker fit --features fe-1a2b --subject S1 --roi V4 --method ridge[/bold]

    Layer sweep of an all-layer feature run: [bold]tracker fit --features fe-1a2b --layer all[/bold]
    """
    configs = options.fit_configs(method, target, protocol, seed)
    settings = settings_of(ctx)
    if data_dir is not None:
        settings = dataclasses.replace(settings, data_dir=data_dir)
    with open_store(ctx) as store, ProgressBars(enabled=not (quiet or as_json)) as bars:
        outcomes = workflows.fit_from_options(
            store, settings, features, options.fit_subjects(subject), roi, configs,
            data_dir=data_dir, force=force, progress=bars.update, log=err.print,
            layers=fit_layers(store, features, layer))
        if as_json:
            return print_json([o.run for o in outcomes])
        rows, by = queries.compare_series(
            store, ["subject", "method", "layer" if layer is not None else "preprocessing"],
            roi=None if roi == "all" else roi, split="validation", metric="r", target=None,
            extra={"_id": {"$in": [o.run_id for o in outcomes]}})
    for o in outcomes:
        console.print(o.run_id + (" (reused)" if o.reused else ""))
    print_table(rows, [*by, "n_runs", "n", "mean", "sem", "median"],
                title=f"Pearson r on validation images, {roi} voxels")
    return None
