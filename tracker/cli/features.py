"""`tracker features`: extract features for every vim-1 image and record the run."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from tracker.cli.common import cli_errors, console, err, open_store, print_json, settings_of
from tracker.cli.progress import ProgressBars
from tracker.record import options, workflows

QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
RunJsonOpt = Annotated[bool, typer.Option("--json", help="Print the run document(s) as JSON.")]


@cli_errors
def features_cmd(
    ctx: typer.Context,
    data_dir: Annotated[Path | None, typer.Option(
        help="vim-1 directory (default $TRACKER_DATA_DIR or ./demo_data).")] = None,
    model: Annotated[str, typer.Option(
        help="alexnet, or keras:PATH (any Keras model file; name its layer).")] = "alexnet",
    variant: Annotated[str, typer.Option(help="AlexNet variant: caffe or tfutils.")] = "caffe",
    layers: Annotated[str, typer.Option(
        "--layers", "--layer", help="Layer(s), comma-separated, extracted in one pass.")] = "conv3",
    weights: Annotated[str | None, typer.Option(
        help="bvlc_alexnet.npy (a pickle: only a file you trust), a checkpoint prefix or a "
             ".weights.h5 file; random:SEED for untrained features on purpose. Required except "
             "on the synthetic demo data.")] = None,
    weights_map: Annotated[str | None, typer.Option(
        help='Checkpoint variable names as JSON: {"conv1": ["conv1/weights", "conv1/biases"]}.')] = None,
    preprocess: Annotated[str | None, typer.Option(
        help="Preprocessing chain (default: the variant's).")] = None,
    retina_warp: Annotated[str | None, typer.Option(
        help="default | compat | default:max_ratio=10,in_size=500 (default: none).")] = None,
    batch_size: Annotated[str, typer.Option(
        help="Images per batch, or auto (fit to free memory).")] = "64",
    backend: Annotated[str | None, typer.Option(
        help="Keras backend: tensorflow, jax or torch (default $KERAS_BACKEND, else tensorflow).")] = None,
    precision: Annotated[str, typer.Option(
        help="strict (full float32, TF32 off) or fast (TF32 allowed on GPUs).")] = "strict",
    device: Annotated[str, typer.Option(
        help="auto (a GPU when visible), cpu, or gpu (an error when no GPU is visible).")] = "auto",
    force: Annotated[bool, typer.Option(
        "--force", help="Recompute even if a finished run exists.")] = False,
    as_json: RunJsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Extract features for every train and validation image and record the run.

    Prints the feature run id (--json: the run document). A finished run with the same
    config on the same data is reused (--force recomputes).

    Example: [bold]tracker features --data-dir demo_data --layers conv3,conv5 --batch-size auto[/bold]

    On a GPU: [bold]tracker features --backend jax --device gpu --batch-size auto[/bold]
    """
    settings = settings_of(ctx)
    if data_dir is not None:
        settings = dataclasses.replace(settings, data_dir=data_dir)
    flags = (variant, layers, weights or "random:0", weights_map, preprocess, retina_warp,
             batch_size, backend, precision, device)
    options.feature_config(model, *flags)  # every option checked before --weights is asked for
    weights = options.resolve_weights(weights, workflows.default_data_dir(settings), model)
    config = options.feature_config(model, variant, layers, weights, weights_map, preprocess,
                                    retina_warp, batch_size, backend, precision, device)
    with open_store(ctx) as store, ProgressBars(enabled=not (quiet or as_json)) as bars:
        outcome = workflows.extract_and_log(store, settings, workflows.default_data_dir(settings), config,
                                            force=force, progress=bars.update)
    if outcome.reused:
        err.print(f"reusing finished feature run {outcome.run_id} (same config and data; --force "
                  "recomputes)")
    if as_json:
        return print_json(outcome.run)
    console.print(outcome.run_id)
    return None
