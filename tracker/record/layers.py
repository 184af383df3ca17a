"""Fits on one layer of a feature run, from feature blocks read off the disk.

A feature run may hold several layers (``tracker features --layers all``: conv1 ... fc8
from one forward pass). A fit names the layer it uses (:func:`fit_layer`); its
``config_key`` then includes that layer, and its document records it as
``features.layer``. A fit on a single-layer run keeps the key it always had.

Fits of the recommended protocol read the layer as blocks of feature columns
(:func:`pipeline.features.reader.iter_column_blocks`) and accumulate their kernels from
them (:func:`pipeline.fit.streamed.prepare_streamed`): memory is bounded by the number of
images (kernels of ``n x n``), not by the layer's width, and the numbers equal those of
a fit on the features held in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from tracker.record.chunked import chunked_fit

ProgressFn = Callable[[str, int, int], None]
#: (path, inode, size, mtime_ns) -> sha256 of feature files already hashed by this process
_VERIFIED: dict[tuple, str] = {}


def verified_path(output: Mapping[str, Any], settings: Any) -> Path:
    """The recorded feature file here, its sha256 checked against the record once per
    process and file state (a layer sweep fits many layers of one 5 GB file: it is hashed
    once, again only if its inode, size or modification time change)."""
    from pipeline.core.errors import IntegrityError
    from pipeline.core.files import sha256_file
    from tracker.record.feature_files import resolve_feature_path

    path = resolve_feature_path(output, settings)
    st = path.stat()
    state = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if _VERIFIED.get(state) != output["sha256"]:
        found = sha256_file(path)
        if found != output["sha256"]:
            raise IntegrityError(
                f"feature file {path} changed since it was recorded: sha256 {found[:16]}... "
                f"!= recorded {output['sha256'][:16]}...; re-extract with --force")
        _VERIFIED[state] = found
    return path


def run_layers(frun: Mapping[str, Any]) -> list[str]:
    """The layers a feature run holds, in file order (``config.layer`` split on commas)."""
    return [x for x in str((frun.get("config") or {}).get("layer", "")).split(",") if x]


def fit_layer(frun: Mapping[str, Any], layer: str | None) -> str | None:
    """The layer a fit of feature run ``frun`` uses, as recorded in its key.

    None for a single-layer run (its fits keep their keys; ``layer`` may name that one
    layer); for a several-layer run ``layer`` (default: the primary, first one), which
    must be one of its layers (ConfigError listing them otherwise).
    """
    return choose_layer(run_layers(frun), layer, f"feature run {frun['_id']}")


def choose_layer(layers: list[str], layer: str | None, what: str) -> str | None:
    """:func:`fit_layer` for the layer list of a feature run (or of a feature config)."""
    if len(layers) <= 1:
        if layer is not None and layers and layer != layers[0]:
            raise ConfigError(f"layer {layer!r}: {what} holds layer {layers[0]} only")
        return None
    if layer is None:
        return layers[0]
    if layer not in layers:
        raise ConfigError(f"layer {layer!r}: {what} holds layers {', '.join(layers)}")
    return layer


def split_layers(text: str | None) -> list[str | None]:
    """``"conv1,conv2"`` -> ``["conv1", "conv2"]``; None -> ``[None]`` (the run's layer)."""
    if text is None:
        return [None]
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ConfigError(f"--layer {text!r}: name one or more layers, comma-separated")
    return list(dict.fromkeys(names))


def streamable(config: Any, preloaded: bool) -> bool:
    """Whether a fit reads its features as column blocks: the recommended protocol (voxel
    or ROI-average targets) when no features were loaded for it already."""
    from pipeline.fit.chunks import chunkable

    return not preloaded and chunkable(config, protocol_only=True)


def streamed_fit(path: Path, layer: str | None, clean: Any, config: Any, n_chunks: int | None,
                 client: Any, voxel_block: int | None, report: ProgressFn) -> tuple[Any, dict[str, Any]]:
    """Fit ``clean`` (responses of one ROI) on one layer of the (verified) feature file at
    ``path``, kernels accumulated from column blocks: ``(FitResult, execution)``."""
    from pipeline.features.reader import file_layers, iter_column_blocks
    from pipeline.fit.chunks import chunkable, fit_voxels
    from pipeline.fit.streamed import prepare_streamed

    _, _, counts = file_layers(path)
    if "train" not in counts or "val" not in counts:
        raise ConfigError(f"feature file {path} lacks a train or val split (it has {sorted(counts)})")
    t0 = time.perf_counter()
    blocks = iter_column_blocks(path, layer, ("train", "val"))
    prep = prepare_streamed(blocks, counts["train"], counts["val"], config, block=voxel_block,
                            progress=report)
    if n_chunks is not None and n_chunks > 1 and chunkable(config):
        result, execution = chunked_fit(client, None, None, clean.train, clean.val, config, n_chunks,
                                        block=voxel_block, progress=report, prepared=prep)
        return result, {**execution, "features": "streamed"}
    result = fit_voxels(prep, clean.train, clean.val, progress=report)
    result.timings.update(prep.timings)
    result.timings["total"] = time.perf_counter() - t0
    return result, {"mode": "single", "n_chunks": 1, "features": "streamed"}


def fit_layers(store: Any, feature_run: str | None, text: str | None) -> list[str | None]:
    """The layers ``--layer`` asks for: a comma list, ``all`` (every layer of the feature
    run), or None (the run's primary layer)."""
    if text is None or text.strip() != "all":
        return split_layers(text)
    if feature_run is None:
        raise ConfigError("--layer all needs --features (a feature run holding several layers)")
    _, frun = store.get_run(feature_run)
    return list(run_layers(frun))
