"""`tracker data ...`: datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracker.cli.common import JsonOpt, cli_errors, console, print_json

data_app = typer.Typer(help="Datasets: generate synthetic vim-1, describe a data directory, noise ceilings.",
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

    from pipeline.core.errors import ConfigError
    from pipeline.data.synth.config import PRESETS
    from pipeline.data.synth.writer import generate
    from tracker.cli.progress import ProgressBars

    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r}: choose from {', '.join(PRESETS)}")
    config = dataclasses.replace(PRESETS[preset], seed=seed)
    with ProgressBars() as bars:
        path = generate(out_dir, config, progress=bars.update, overwrite=overwrite)
    console.print(f"synthetic vim-1 ({preset}) written to {path}")


@data_app.command("describe")
@cli_errors
def data_describe(
    data_dir: Annotated[Path, typer.Argument(help="A vim-1 directory.")], as_json: JsonOpt = False
) -> None:
    """Validate a vim-1 directory and show subjects, voxel counts per ROI, NaN drops."""
    from pipeline.data.dataset import describe_dataset

    desc = describe_dataset(data_dir)
    if as_json:
        return print_json(desc)
    from tracker.cli.common import print_table

    rows = [{"subject": subj, "roi": roi, **counts}
            for subj, info in desc["subjects"].items() for roi, counts in info["rois"].items()]
    images = ", ".join(f"{split} {d['count']} ({d['height']}x{d['width']} px, {d['n_files']} files)"
                       for split, d in desc.get("images", {}).items())
    console.print(f"{desc['data_dir']}: {len(desc['files'])} files; images {images or '?'}")
    print_table(rows, ["subject", "roi", "code", "all", "clean", "dropped"],
                title="voxels per ROI (clean = no NaN in training or validation)")
    for warning in desc.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}")




@data_app.command("ceilings")
@cli_errors
def data_ceilings(
    ctx: typer.Context,
    data_dir: Annotated[Path, typer.Argument(help="The dataset the ceilings belong to.")],
    repeats: Annotated[Path | None, typer.Option(
        help="HDF5 file with /S1/val_repeats (n_reps, n_images, n_vox) and /S1/voxel_ids "
             "(default: a repeats file beside the data, e.g. the synthetic ground truth).")] = None,
    subject: Annotated[list[str] | None, typer.Option(help="Subject(s) (default S1 and S2).")] = None,
    train_repeats: Annotated[int, typer.Option(
        help="Repeats averaged into each training-image response (vim-1: 2).")] = 2,
    as_json: JsonOpt = False,
) -> None:
    """Estimate noise ceilings (NSD formula) from repeat-level responses and store them.

    Queries then report scores as a fraction of the ceiling. vim-1 ships no repeats, so
    for it this says so instead of inventing a ceiling.
    """
    import numpy as np

    from tracker.cli.common import open_store, print_table
    from tracker.record.datasets import compute_ceilings

    with open_store(ctx) as store:
        docs = compute_ceilings(store, data_dir, subject or ("S1", "S2"), repeats, {"test": train_repeats})
    rows = [{"subject": d["subject"], "split": d["split"], "n_reps": d["n_reps"],
             "n_average": d["n_average"], "n_voxels": len(d["voxel_ids"]),
             "median_r_ceiling": float(np.nanmedian(np.array(d["r_ceiling"], dtype=float)))}
            for d in docs]
    if as_json:
        return print_json(rows)
    print_table(rows, list(rows[0]), title="noise ceilings stored")
