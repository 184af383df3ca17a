"""Reading a feature file: :func:`read_feature_file` checks format, hashes and layout;
:func:`iter_column_blocks` streams one layer as blocks of feature columns (every image,
a few thousand columns at a time: memory bounded by the number of images, not by the
layer's width); :func:`file_layers` lists a file's layers and shapes without reading
any features.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.core.errors import ConfigError, DataFormatError, IntegrityError
from pipeline.core.files import sha256_file
from pipeline.features.writer import _dataset_name, hashes_digest

__all__ = [
    "FeatureFile",
    "file_layers",
    "iter_column_blocks",
    "read_feature_file",
]



# --------------------------------------------------------------------------- reading


@dataclass
class FeatureFile:
    """A feature file in memory (one layer of it).

    Attributes
    ----------
    path : str
    features : {split: (N, h, w, c) float32, or (N, h*w*c) (C order) when flattened}
    image_sha256 : {split: list of N hex str}, or None for files without hashes (the
        2019 layout had only ``train`` and ``val``)
    config : dict (FeatureConfig fields; {} when absent)
    metadata : other attributes (config_sha256, weights_sha256, image_hashes_digest, ...)
    sha256 : the file's sha256 when it was checked, else None
    layer : the layer read (None for files that do not name their layers)
    layers : every layer the file holds ([] when it does not name them)
    """

    path: str
    features: dict[str, np.ndarray]
    image_sha256: dict[str, list[str]] | None
    config: dict
    metadata: dict
    sha256: str | None = None
    layer: str | None = None
    layers: list[str] = field(default_factory=list)

    @property
    def train(self) -> np.ndarray:
        return self.features["train"]

    @property
    def val(self) -> np.ndarray:
        return self.features["val"]

    @property
    def train_image_sha256(self) -> list[str] | None:
        return self.image_sha256["train"] if self.image_sha256 else None

    @property
    def val_image_sha256(self) -> list[str] | None:
        return self.image_sha256["val"] if self.image_sha256 else None


def _attr(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_feature_file(
    path: str | Path,
    expected_sha256: str | None = None,
    flatten: bool = False,
    layer: str | None = None,
) -> FeatureFile:
    """Read a feature file (one layer of it), optionally checking its sha256 first.

    Parameters
    ----------
    path : str or Path
    expected_sha256 : hex sha256 recorded when the file was written; mismatch ->
        IntegrityError naming the file, the expected and the found hash.
    flatten : return (N, h*w*c) C-order views instead of (N, h, w, c).
    layer : which layer of a several-layer file (default: the primary, first one);
        ConfigError listing the file's layers when it holds no such layer.

    Raises
    ------
    DataFormatError : missing, unreadable or not a feature file.
    IntegrityError : sha256 or image-hash digest mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"feature file {path} does not exist.")
    found = _check_sha256(path, expected_sha256)
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            attrs = {k: _attr(v) for k, v in fh.attrs.items()}
            names = json.loads(attrs["splits"]) if "splits" in attrs else ["train", "val"]
            layers = json.loads(attrs["layers"]) if "layers" in attrs else []
            chosen = _choose_layer(path, layers, layer)
            features, hashes = _read_datasets(fh, path, names, chosen, len(layers) > 1)
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise DataFormatError(
            f"feature file {path} is not a readable feature file ({type(exc).__name__}: {exc})."
        ) from exc
    _check_contents(path, names, features, hashes, attrs.get("image_hashes_digest"))
    if flatten:
        features = {n: a.reshape(len(a), -1) for n, a in features.items()}
    config = json.loads(attrs.pop("config_json")) if "config_json" in attrs else {}
    return FeatureFile(
        path=str(path),
        features=features,
        image_sha256=hashes,
        config=config,
        metadata=attrs,
        sha256=found,
        layer=chosen,
        layers=layers,
    )


def _check_sha256(path: Path, expected_sha256: str | None) -> str | None:
    """The file's sha256 when one is expected (IntegrityError on a mismatch), else None."""
    if expected_sha256 is None:
        return None
    found = sha256_file(path)
    if found != expected_sha256.lower():
        raise IntegrityError(
            f"feature file {path} has sha256 {found} but {expected_sha256} "
            f"was expected: it changed or is not the recorded file."
        )
    return found


def _choose_layer(path: Path, layers: list[str], layer: str | None) -> str | None:
    """The layer to read: the asked one, else the primary one (None: layers not named)."""
    if layer is None:
        return layers[0] if layers else None
    if layer in layers:
        return layer
    raise ConfigError(
        f"feature file {path} holds no layer {layer!r}; its layers: "
        f"{', '.join(layers) if layers else '(not named)'}."
    )


def _read_datasets(fh, path: Path, names: list[str], chosen: str | None, multi: bool
                   ) -> tuple[dict[str, np.ndarray], dict[str, list[str]] | None]:
    """The feature arrays of every split and, when all are present, the image hashes."""
    datasets = {n: _dataset_name(n, chosen or "", multi) for n in names}
    missing = [d for d in datasets.values() if d not in fh]
    if missing:
        raise DataFormatError(
            f"feature file {path} lacks dataset(s) {missing}; it holds {sorted(fh.keys())}."
        )
    features = {n: fh[d][...] for n, d in datasets.items()}
    hashes = None
    if all(f"{n}_image_sha256" in fh for n in names):
        hashes = {n: [h.decode() for h in fh[f"{n}_image_sha256"][...]] for n in names}
    return features, hashes


def _check_contents(path: Path, names: list[str], features: dict, hashes: dict | None,
                    recorded: str | None) -> None:
    """Consistent shapes, one hash per row, and hashes matching the recorded digest."""
    shapes = {n: a.shape for n, a in features.items()}
    if len({s[1:] for s in shapes.values()}) != 1 or any(len(s) < 2 for s in shapes.values()):
        raise DataFormatError(f"feature file {path} has inconsistent feature shapes {shapes}.")
    if hashes is None:
        return
    for n in names:
        if len(hashes[n]) != len(features[n]):
            raise DataFormatError(
                f"feature file {path} has {len(hashes[n])} image hashes "
                f"for {len(features[n])} {n!r} rows."
            )
    if recorded is not None and recorded != hashes_digest(hashes):
        raise IntegrityError(
            f"feature file {path}: its image hashes do not match its "
            f"recorded image_hashes_digest {recorded}."
        )


# --------------------------------------------------------------------------- streaming


def _open_layer(fh, path: Path, layer: str | None, splits: Sequence[str]):
    """(chosen layer, {split: dataset}) of an open file."""
    attrs = {k: _attr(v) for k, v in fh.attrs.items()}
    layers = json.loads(attrs["layers"]) if "layers" in attrs else []
    chosen = _choose_layer(path, layers, layer)
    names = {s: _dataset_name(s, chosen or "", len(layers) > 1) for s in splits}
    missing = [d for d in names.values() if d not in fh]
    if missing:
        raise DataFormatError(f"feature file {path} lacks dataset(s) {missing}; "
                              f"it holds {sorted(fh.keys())}.")
    return chosen, {s: fh[d] for s, d in names.items()}


def file_layers(path: str | Path) -> tuple[list[str], dict[str, tuple[int, ...]], dict[str, int]]:
    """``(layers, {layer: shape}, {split: images})`` of a feature file, no features read.

    ``layers`` is ``[]`` for a file that does not name its layer; then the one shape is
    under the key ``""``.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"feature file {path} does not exist.")
    try:
        with h5py.File(path, "r") as fh:
            attrs = {k: _attr(v) for k, v in fh.attrs.items()}
            layers = json.loads(attrs["layers"]) if "layers" in attrs else []
            splits = json.loads(attrs["splits"]) if "splits" in attrs else ["train", "val"]
            shapes, counts = {}, {}
            for name in layers or [""]:
                _, dsets = _open_layer(fh, path, name or None, splits)
                shapes[name] = tuple(int(d) for d in dsets[splits[0]].shape[1:])
                counts = {s: int(d.shape[0]) for s, d in dsets.items()}
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise DataFormatError(
            f"feature file {path} is not a readable feature file ({type(exc).__name__}: {exc})."
        ) from exc
    return layers, shapes, counts


def iter_column_blocks(
    path: str | Path,
    layer: str | None = None,
    splits: Sequence[str] = ("train", "val"),
    block: int = 4096,
) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
    """One layer of a feature file as blocks of its flattened (C-order) feature columns.

    Yields ``(columns, {split: (N_split, b) float32})`` for ``columns`` = ``slice(0,
    block)``, ``slice(block, 2 block)``, ... (the last may be shorter): the same columns
    as ``read_feature_file(path, flatten=True, layer=layer).features[split][:, columns]``,
    read as slabs of the first feature axis, so at most about ``N x (block + one slab)``
    floats per split are held. The file's sha256 is not checked here (check it first).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"feature file {path} does not exist.")
    block = int(block)
    if block < 1:
        raise ConfigError(f"block must be a positive number of columns, got {block!r}.")
    with h5py.File(path, "r") as fh:
        _, dsets = _open_layer(fh, path, layer, splits)
        shape = dsets[splits[0]].shape[1:]
        row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        step = max(1, -(-block // row))  # slices of the first axis per read
        pending = {s: np.zeros((d.shape[0], 0), np.float32) for s, d in dsets.items()}
        start = 0
        for h0 in range(0, int(shape[0]), step):
            for s, d in dsets.items():
                slab = np.asarray(d[:, h0 : h0 + step], dtype=np.float32).reshape(d.shape[0], -1)
                pending[s] = np.concatenate([pending[s], slab], axis=1) if pending[s].size else slab
            last = h0 + step >= shape[0]
            while pending[splits[0]].shape[1] >= block or (last and pending[splits[0]].shape[1]):
                b = min(block, pending[splits[0]].shape[1])
                yield slice(start, start + b), {s: np.ascontiguousarray(a[:, :b]) for s, a in pending.items()}
                pending = {s: a[:, b:] for s, a in pending.items()}
                start += b
