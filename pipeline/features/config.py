"""The feature configuration (:class:`FeatureConfig`) and the registry of models.

The registries are the single source of valid choices (the CLI reads them):
:data:`MODELS` (model -> its variants), :data:`pipeline.features.alexnet.layers.VARIANTS`,
:data:`pipeline.features.alexnet.layers.LAYERS` (variant -> layer -> output shape) and
:data:`pipeline.preprocess.images.CHAINS` (preprocessing).

Models: ``model="alexnet"`` with ``variant`` "caffe" or "tfutils", or ``model="keras"``
with ``variant`` the path of a user's Keras model file (``.keras``; ``model="keras:PATH"``
is accepted and split into the two fields) and ``layer`` one of its layer names.
Several layers come from one forward pass: ``layer="conv3,conv5"`` (or a list);
``layer="all"`` (AlexNet) is :data:`pipeline.core.vocab.ALL_LAYERS` (conv1 ... fc8), stored
as that list, so its key is the key of the list written out.

The feature file a config produces: see :mod:`pipeline.features.writer`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.core.keys import content_key
from pipeline.core.vocab import ALL_LAYERS
from pipeline.features.alexnet.checkpoints import normalize_name_map
from pipeline.features.alexnet.layers import LAYERS, VARIANTS, get_variant
from pipeline.features.backend import DEVICES, PRECISIONS, check_choice, resolve_backend
from pipeline.preprocess.images import CHAINS
from pipeline.preprocess.retinawarp import RetinaWarpConfig

__all__ = [
    "MODELS",
    "FeatureConfig",
]



#: model name -> its variants (each variant lists its layers in LAYERS). For "keras" the
#: variant is the path of a Keras model file, so no variants are listed.
MODELS: dict[str, tuple[str, ...]] = {"alexnet": tuple(VARIANTS), "keras": ()}
_SPLIT_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_LAYER_RE = re.compile(r"[A-Za-z0-9_.\-]+")
_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
#: fields left out of to_dict (and the key) at these values
_OMITTED_DEFAULTS = {"retina_warp": None, "weights_map": None, "backend": None, "precision": "strict",
                     "device": "auto"}


# --------------------------------------------------------------------------- config


def _split_layers(layer) -> tuple[str, ...]:
    if isinstance(layer, str):
        names = tuple(part.strip() for part in layer.split(","))
    elif isinstance(layer, Sequence) and all(isinstance(n, str) for n in layer):
        names = tuple(n.strip() for n in layer)
    else:
        raise ConfigError(f"layer must be a string or a list of strings, got {layer!r}.")
    if not names or any(not n for n in names):
        raise ConfigError(f"layer must name one or more layers (comma-separated), got {layer!r}.")
    if len(set(names)) != len(names):
        raise ConfigError(f"layer must not repeat a name, got {layer!r}.")
    return names


@dataclass(frozen=True)
class FeatureConfig:
    """What to extract. Frozen; ``key()`` identifies it.

    ``key()`` hashes these fields only: for a weights *file* the tracker should record
    ``Extractor.weights_sha256`` too (the same path may hold different bytes later).

    Attributes
    ----------
    model : "alexnet" or "keras" ("keras:PATH" sets variant to PATH)
    variant : AlexNet variant ("caffe", "tfutils"), or the Keras model file's path
    layer : one layer name, or several comma-separated ("conv3,conv5"; a list is joined);
        the first is the primary layer. "all" (AlexNet): conv1 ... fc8
    weights : AlexNet: "random:SEED", a ``bvlc_alexnet.npy`` path, a Keras ``*.h5``
        weights file or a TensorFlow checkpoint (see :func:`pipeline.features.alexnet.weights.load_weights`).
        Keras model: "file" (the weights saved in the model file; the default
        "random:0" means the same and is stored as "file") or a ``.weights.h5`` path.
    preprocess : a chain of :data:`CHAINS`
    batch_size : positive int, or "auto" (0 means the same): chosen from free memory
        when the extractor is built (:func:`auto_batch_size`)
    retina_warp : None (no warp), or "default" / "compat" with optional parameters,
        e.g. "default:max_ratio=5" (:class:`pipeline.preprocess.retinawarp.RetinaWarpConfig`; stored
        in canonical form). Warps the full-resolution image to the network input size in
        place of the chain's resize.
    weights_map : TensorFlow checkpoints only: ``{layer: [kernel_var, bias_var]}``.
    backend : "tensorflow", "jax" or "torch"; None (default): ``$KERAS_BACKEND``, else
        TensorFlow, resolved when the extractor is built (:mod:`pipeline.features.backend`)
    precision : "strict" (default: full float32, TF32 off) or "fast" (TF32 allowed on GPUs)
    device : "auto" (default: a GPU when the backend sees one), "cpu" or "gpu" (an error
        when no GPU is visible)

    ``retina_warp``, ``weights_map``, ``backend``, ``precision`` and ``device`` appear in
    :meth:`to_dict` (and so in :meth:`key`) only when not at their defaults, so configs
    without them keep the keys they always had. The feature *run* keys on the resolved
    runtime (backend, version, device, precision) as well: see
    :func:`pipeline.features.backend.runtime_identity`.
    """

    model: str = "alexnet"
    variant: str = "caffe"
    layer: str = "conv3"
    weights: str = "random:0"
    preprocess: str = "caffe"
    batch_size: int | str = 64
    retina_warp: str | None = None
    weights_map: tuple | None = None
    backend: str | None = None
    precision: str = "strict"
    device: str = "auto"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.backend is not None:
            set_(self, "backend", resolve_backend(self.backend))
        set_(self, "precision", check_choice(self.precision, PRECISIONS, "precision"))
        set_(self, "device", check_choice(self.device, DEVICES, "device"))
        for name in ("model", "variant", "preprocess"):
            value = getattr(self, name)
            if not isinstance(value, (str, Path)):
                raise ConfigError(f"{name} must be a string, got {value!r}.")
            set_(self, name, str(value))
        if self.model.startswith("keras:"):
            path = self.model[len("keras:") :]
            if self.variant not in ("caffe", "keras", path):
                raise ConfigError(
                    f"model {self.model!r} names the Keras model file; variant {self.variant!r} "
                    f"would name another: give the path once."
                )
            set_(self, "model", "keras")
            set_(self, "variant", path)
        if self.model not in MODELS:
            raise ConfigError(
                f"model {self.model!r} is unknown; valid models: {', '.join(MODELS)} "
                f"(keras: variant is the path of a .keras model file)."
            )
        if self.layer == "all":
            if self.model == "keras":
                raise ConfigError("layer 'all' names AlexNet's conv1 ... fc8; for a Keras model "
                                  "list its layers (comma-separated).")
            set_(self, "layer", ",".join(ALL_LAYERS))
        layers = _split_layers(self.layer)
        set_(self, "layer", ",".join(layers))
        if isinstance(self.weights, Path):
            set_(self, "weights", str(self.weights))
        if not isinstance(self.weights, str) or not self.weights.strip():
            raise ConfigError(f"weights must be 'random:SEED' or a file path, got {self.weights!r}.")
        if self.preprocess not in CHAINS:
            raise ConfigError(
                f"preprocess {self.preprocess!r} is unknown; valid chains: {', '.join(CHAINS)}."
            )
        if self.model == "keras":
            self._check_keras()
        else:
            self._check_alexnet(layers)
        if self.weights.startswith("random:") and not re.fullmatch(r"random:\d+", self.weights):
            raise ConfigError(
                f"weights {self.weights!r} must look like 'random:SEED' with SEED a non-negative integer."
            )
        if not isinstance(self.batch_size, bool) and (self.batch_size == 0 or self.batch_size == "auto"):
            set_(self, "batch_size", "auto")
        elif (
            not isinstance(self.batch_size, (int, np.integer))
            or isinstance(self.batch_size, bool)
            or self.batch_size < 1
        ):
            raise ConfigError(
                f"batch_size must be a positive integer or 'auto' (0), got {self.batch_size!r}."
            )
        else:
            set_(self, "batch_size", int(self.batch_size))
        if self.retina_warp is not None:
            set_(self, "retina_warp", RetinaWarpConfig.parse(self.retina_warp).spec())
        if self.weights_map is not None:
            if self.model == "keras" or self.weights.startswith("random:"):
                raise ConfigError("weights_map applies to AlexNet weights from a TensorFlow checkpoint only.")
            set_(self, "weights_map", normalize_name_map(self.weights_map))

    def _check_alexnet(self, layers: tuple[str, ...]) -> None:
        if self.variant not in MODELS[self.model]:
            raise ConfigError(
                f"variant {self.variant!r} is unknown for model {self.model!r}; "
                f"valid variants: {', '.join(MODELS[self.model])}."
            )
        for name in layers:
            if name not in LAYERS[self.variant]:
                raise ConfigError(
                    f"layer {name!r} is not in variant {self.variant!r}; "
                    f"valid layers: {', '.join(LAYERS[self.variant])}."
                )
        need = VARIANTS[self.variant].input_size
        got = CHAINS[self.preprocess].input_size
        if got != need:
            raise ConfigError(
                f"preprocess {self.preprocess!r} makes {got}x{got} images but variant "
                f"{self.variant!r} needs {need}x{need}; chains of that size: "
                f"{', '.join(n for n, c in CHAINS.items() if c.input_size == need)}."
            )

    def _check_keras(self) -> None:
        if self.variant in ("caffe", "keras", "") or not self.variant.lower().endswith(_KERAS_SUFFIXES):
            raise ConfigError(
                f"model 'keras' needs variant = the path of a Keras model file "
                f"({', '.join(_KERAS_SUFFIXES)}), got {self.variant!r}."
            )
        if self.weights == "random:0":
            object.__setattr__(self, "weights", "file")
        elif self.weights.startswith("random:"):
            raise ConfigError(
                f"weights {self.weights!r}: seeded random weights exist for AlexNet only; a "
                f"Keras model takes 'file' (its own weights) or a .weights.h5 path."
            )

    @property
    def layers(self) -> tuple[str, ...]:
        """The layer names in order (the first is the primary layer)."""
        return tuple(self.layer.split(","))

    @property
    def is_keras(self) -> bool:
        return self.model == "keras"

    @classmethod
    def for_variant(cls, variant: str, **kwargs) -> FeatureConfig:
        """A config whose ``preprocess`` defaults to the chain the variant expects."""
        spec = get_variant(variant)
        kwargs.setdefault("preprocess", spec.default_preprocess)
        return cls(variant=variant, **kwargs)

    @classmethod
    def for_keras(cls, path: str | Path, layer: str | Sequence[str], **kwargs) -> FeatureConfig:
        """A config for a user's Keras model file and layer(s) (weights default "file")."""
        kwargs.setdefault("weights", "file")
        return cls(model="keras", variant=str(path), layer=layer, **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping) -> FeatureConfig:
        """Inverse of :meth:`to_dict` (unknown keys -> ConfigError naming them)."""
        names = {f.name for f in fields(cls)}
        extra = sorted(set(data) - names)
        if extra:
            raise ConfigError(f"feature config has unknown fields {extra}; valid: {sorted(names)}.")
        return cls(**dict(data))

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the fields; ``retina_warp``, ``weights_map``, ``backend``,
        ``precision`` and ``device`` only when not at their defaults (``weights_map`` as
        ``{layer: [kernel_var, bias_var]}``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, default in _OMITTED_DEFAULTS.items():
            if out[name] == default:
                del out[name]
        if "weights_map" in out:
            out["weights_map"] = {layer: list(pair) for layer, pair in self.weights_map}
        return out

    def key(self) -> str:
        """Hex sha256 of the canonical JSON (sorted keys, no spaces) of :meth:`to_dict`."""
        return content_key(self.to_dict())
