"""Command-line options -> configs: the flags ``scripts/run_features.py``, ``run_fit.py``
and ``tracker features`` / ``tracker fit`` share (pure: no database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.data.layout import SUBJECTS


def resolve_weights(weights: str | None, data_dir: Path, model: str = "alexnet") -> str:
    """The ``--weights`` to use: as given; else seeded random weights only where that is
    the point (the synthetic demo data, or a Keras model file's own weights).

    Untrained features are never the silent default on real data: there a ConfigError
    asks for a weights file, or ``random:SEED`` to extract untrained features on purpose.
    """
    from pipeline.data.layout import GROUND_TRUTH_FILE

    if weights is not None:
        return weights
    if model.startswith("keras:") or (Path(data_dir) / GROUND_TRUTH_FILE).is_file():
        return "random:0"
    raise ConfigError(
        f"--weights is required for {data_dir} (not the synthetic demo data): give a weights "
        "file (bvlc_alexnet.npy, a TensorFlow checkpoint prefix or a Keras .weights.h5), or "
        "random:SEED to extract untrained features on purpose (every table then says "
        "'untrained (random:SEED)')")


def feature_config(
    model: str = "alexnet",
    variant: str = "caffe",
    layer: str = "conv3",
    weights: str = "random:0",
    weights_map: str | None = None,
    preprocess: str | None = None,
    retina_warp: str | None = None,
    batch_size: str = "64",
    backend: str | None = None,
    precision: str = "strict",
    device: str = "auto",
) -> Any:
    """The :class:`pipeline.features.config.FeatureConfig` that command-line options describe.

    Shared by ``scripts/run_features.py`` and ``tracker features``; the config's own
    validation names a bad field.

    Parameters
    ----------
    model
        ``alexnet`` or ``keras:PATH`` (any Keras model file; ``layer`` names its layer).
    variant, weights, preprocess, retina_warp
        As the :class:`~pipeline.features.config.FeatureConfig` fields (``preprocess`` None: the
        variant's chain).
    layer
        A layer, or several comma-separated (extracted in one pass).
    weights_map
        Checkpoint variable names as JSON text, or None.
    batch_size
        Images per batch (a whole number as text), or ``auto``.
    backend, precision, device
        ``--backend`` tensorflow|jax|torch (None: ``$KERAS_BACKEND``, else TensorFlow),
        ``--precision`` strict|fast, ``--device`` auto|cpu|gpu.
    """
    from pipeline.features.config import FeatureConfig

    batch = batch_size if batch_size == "auto" else _whole(batch_size, "--batch-size")
    extra: dict[str, Any] = {"retina_warp": retina_warp, "backend": backend, "precision": precision,
                             "device": device}
    if weights_map:
        try:
            extra["weights_map"] = json.loads(weights_map)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--weights-map is not valid JSON: {err}") from None
    layers = layer if "," not in layer else [x.strip() for x in layer.split(",")]  # "all": conv1..fc8
    if model.startswith("keras:"):
        chain = {"preprocess": preprocess} if preprocess else {}
        return FeatureConfig.for_keras(model.removeprefix("keras:"), layers, batch_size=batch,
                                       **chain, **extra)
    if preprocess is None:
        return FeatureConfig.for_variant(variant, model=model, layer=layers, weights=weights,
                                         batch_size=batch, **extra)
    return FeatureConfig(model=model, variant=variant, layer=layers, weights=weights,
                         preprocess=preprocess, batch_size=batch, **extra)


def _whole(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected a whole number or 'auto'") from None


def fit_configs(method: str | None = None, target: str | None = None, protocol: str = "recommended",
                seed: int = 0) -> list[Any]:
    """The :class:`pipeline.fit.config.FitConfig` list that fit options describe (shared by
    ``scripts/run_fit.py`` and ``tracker fit``): ``method`` None fits ridge and PLS,
    ``target`` None both per-voxel models and the ROI average."""
    from pipeline.fit.config import FitConfig

    methods = [method] if method else ["ridge", "pls"]
    targets = [target] if target else ["voxels", "roi_mean"]
    return [FitConfig(method=m, protocol=protocol, target=t, seed=seed) for m in methods for t in targets]


def fit_subjects(subject: str | None = None) -> list[str]:
    """``[subject]``, or every vim-1 subject when None."""
    return [subject] if subject else list(SUBJECTS)
