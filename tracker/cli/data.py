"""`tracker data ...`: datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tracker.cli.common import JsonOpt, cli_errors, console, jsonable, print_json

data_app = typer.Typer(help="Datasets: generate synthetic vim-1, describe a data directory.",
                       no_args_is_help=True)


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
    console.print_json(json.dumps(desc, default=jsonable))


