"""Reading a feature file: :func:`read_feature_file` checks format, hashes and layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.core.errors import ConfigError, DataFormatError, IntegrityError
from pipeline.core.files import sha256_file
from pipeline.features.writer import _dataset_name, hashes_digest

__all__ = [
    "FeatureFile",
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
