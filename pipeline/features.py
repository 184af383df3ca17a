"""Feature extraction: config, extractor, and the HDF5 feature file (atomic, hashed, checked).

The registries here are the single source of valid choices (the CLI reads them):
:data:`MODELS` (model -> its variants), :data:`VARIANTS`, :data:`LAYERS`
(variant -> layer -> output shape) and :data:`CHAINS` (preprocessing).

Models: ``model="alexnet"`` with ``variant`` "caffe" or "tfutils", or ``model="keras"``
with ``variant`` the path of a user's Keras model file (``.keras``; ``model="keras:PATH"``
is accepted and split into the two fields) and ``layer`` one of its layer names.
Several layers come from one forward pass: ``layer="conv3,conv5"`` (or a list).

Feature file layout (HDF5, one file per extraction)::

    /train               (N_train, h, w, c) float32, contiguous, uncompressed
    /val                 (N_val, h, w, c)
    /train_image_sha256  (N_train,) |S64  hex sha256 of each *preprocessed* image, in order
    /val_image_sha256    (N_val,)   |S64
    attrs: format="vimtrack-features", format_version=1, splits (JSON list, file order),
           layers (JSON list), config_json (FeatureConfig.to_dict() as JSON), config_sha256,
           weights_sha256, preprocess_json (the chain's parameters), image_hashes_digest,
           n_duplicate_rows, batch_size

With several layers the feature datasets are ``/{split}__{layer}`` (e.g. ``train__conv3``,
``val__conv5``) instead of ``/{split}``; ``layers`` lists them, the first being the
*primary* layer that :func:`read_feature_file` returns unless asked for another. The
per-image hashes are shared. A single-layer file keeps the ``/train`` ``/val`` layout.

``image_hashes_digest`` (see :func:`hashes_digest`) summarises every per-image hash in
order, so a tracker document can prove which images (and in which order) produced a file.
TensorFlow is imported inside functions only.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import queue
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from pipeline.alexnet import (
    LAYERS,
    VARIANTS,
    get_variant,
    normalize_name_map,
    weights_sha256,
)
from pipeline.core.errors import ConfigError, DataFormatError, IntegrityError
from pipeline.core.files import fsync_dir, sha256_file
from pipeline.core.keys import content_key
from pipeline.images import CHAINS, Chain, image_sha256
from pipeline.retinawarp import RetinaWarpConfig

__all__ = [
    "CHAINS",
    "LAYERS",
    "MODELS",
    "VARIANTS",
    "Extractor",
    "FeatureConfig",
    "FeatureFile",
    "FeatureFileInfo",
    "auto_batch_size",
    "build_extractor",
    "extractor_from_model",
    "hashes_digest",
    "read_feature_file",
    "write_feature_file",
]

#: model name -> its variants (each variant lists its layers in LAYERS). For "keras" the
#: variant is the path of a Keras model file, so no variants are listed.
MODELS: dict[str, tuple[str, ...]] = {"alexnet": tuple(VARIANTS), "keras": ()}

FORMAT_NAME = "vimtrack-features"
FORMAT_VERSION = 1
_SPLIT_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_LAYER_RE = re.compile(r"[A-Za-z0-9_.\-]+")
_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
#: ``batch_size="auto"``: the largest power of two whose activations fit in this share of
#: the free memory, capped per device (see :func:`auto_batch_size`).
AUTO_MEMORY_FRACTION = 0.25
AUTO_CAP = {"CPU": 64, "GPU": 256}


def hashes_digest(hashes: Mapping[str, Sequence[str]]) -> str:
    """sha256 over per-image hashes in order: for each split ``"{split}\\n"`` then each
    hex hash followed by ``"\\n"``."""
    h = hashlib.sha256()
    for split, values in hashes.items():
        h.update(f"{split}\n".encode())
        for value in values:
            h.update(f"{value}\n".encode())
    return h.hexdigest()


def auto_batch_size(
    per_image_bytes: int,
    available_bytes: int | None,
    device: str = "CPU",
    *,
    fraction: float = AUTO_MEMORY_FRACTION,
    cap: int | None = None,
) -> int:
    """The ``batch_size="auto"`` rule.

    ``batch = largest power of two <= fraction * available_bytes / per_image_bytes``,
    clamped to ``[1, cap]`` with ``cap`` 64 on CPU (bigger batches are no faster there)
    and 256 on GPU. Unknown free memory (None) gives 16.

    Parameters
    ----------
    per_image_bytes : estimated working memory of one image (see
        :meth:`Extractor.per_image_bytes`: 2 x the float32 outputs of every layer run)
    available_bytes : free memory of the device
    device : "CPU" or "GPU"
    """
    cap = AUTO_CAP.get(device, 64) if cap is None else int(cap)
    if available_bytes is None:
        return min(16, cap)
    if per_image_bytes <= 0:
        raise ConfigError(f"per_image_bytes must be positive, got {per_image_bytes!r}.")
    fit = int(fraction * available_bytes // per_image_bytes)
    if fit < 1:
        return 1
    return max(1, min(cap, 1 << (fit.bit_length() - 1)))


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
        the first is the primary layer
    weights : AlexNet: "random:SEED", a ``bvlc_alexnet.npy`` path, a Keras ``*.h5``
        weights file or a TensorFlow checkpoint (see :func:`pipeline.alexnet.load_weights`).
        Keras model: "file" (the weights saved in the model file; the default
        "random:0" means the same and is stored as "file") or a ``.weights.h5`` path.
    preprocess : a chain of :data:`CHAINS`
    batch_size : positive int, or "auto" (0 means the same): chosen from free memory
        when the extractor is built (:func:`auto_batch_size`)
    retina_warp : None (no warp), or "default" / "compat" with optional parameters,
        e.g. "default:max_ratio=5" (:class:`pipeline.retinawarp.RetinaWarpConfig`; stored
        in canonical form). Warps the full-resolution image to the network input size in
        place of the chain's resize.
    weights_map : TensorFlow checkpoints only: ``{layer: [kernel_var, bias_var]}``.

    ``retina_warp`` and ``weights_map`` appear in :meth:`to_dict` (and so in the key) only
    when set, so configs without them keep the keys they always had.
    """

    model: str = "alexnet"
    variant: str = "caffe"
    layer: str = "conv3"
    weights: str = "random:0"
    preprocess: str = "caffe"
    batch_size: int | str = 64
    retina_warp: str | None = None
    weights_map: tuple | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
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
        """Plain JSON-able dict of the fields; ``retina_warp`` and ``weights_map`` only when
        set (``weights_map`` as ``{layer: [kernel_var, bias_var]}``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("retina_warp", "weights_map"):
            if out[name] is None:
                del out[name]
        if "weights_map" in out:
            out["weights_map"] = {layer: list(pair) for layer, pair in self.weights_map}
        return out

    def key(self) -> str:
        """Hex sha256 of the canonical JSON (sorted keys, no spaces) of :meth:`to_dict`."""
        return content_key(self.to_dict())


# --------------------------------------------------------------------------- extractor


def _enable_gpu_memory_growth() -> None:
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass  # already initialised: keep TensorFlow's setting


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_smi() -> dict:
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if not exe:
        return {}
    try:
        out = (
            subprocess.run(
                [
                    exe,
                    "--query-gpu=name,memory.total,driver_version,memory.free",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            .stdout.strip()
            .splitlines()
        )
        name, mem, driver, free = (s.strip() for s in out[0].split(","))
        mib = 1024 * 1024
        return {
            "name": name,
            "memory": int(float(mem)) * mib,
            "driver": driver,
            "free": int(float(free)) * mib,
        }
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}


def _available_memory(device: str) -> int | None:
    """Free memory of the device in bytes (GPU: nvidia-smi memory.free; CPU: MemAvailable)."""
    if device == "GPU":
        free = _nvidia_smi().get("free")
        return int(free) if free is not None else None
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


class Extractor:
    """Preprocess raw vim-1 images and run a Keras model to one or more layers.

    Call it: ``extractor(raw (B, H, W) float32) -> (B, *output_shape) float32`` (the
    primary layer); or use :meth:`preprocess` and :meth:`forward` / :meth:`forward_all`
    separately (the writer hashes the preprocessed images in between). Inputs are
    processed in chunks of ``batch_size``.

    Attributes
    ----------
    layer : str, the primary (first) layer
    layers : tuple of str, every layer extracted (one forward pass)
    chain : Chain
    output_shape : tuple of int, e.g. (13, 13, 384): the primary layer's
    output_shapes : {layer: shape}
    weights_sha256 : str
    config : FeatureConfig or None
    batch_size : int (resolved when "auto" was asked for)
    batch_size_rule : "fixed" or a description of the "auto" choice
    """

    def __init__(
        self,
        model,
        layer: str | Sequence[str],
        chain: Chain,
        *,
        weights_sha256: str = "",
        config: FeatureConfig | None = None,
        batch_size: int | str = 64,
    ) -> None:
        import tensorflow as tf

        self.model = model
        self.layers = _split_layers(layer)
        self.layer = self.layers[0]
        self.chain = chain
        self.weights_sha256 = weights_sha256
        self.config = config
        size = chain.input_size
        self._fn = tf.function(
            self._forward_graph,
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
        )
        outputs = self._fn.get_concrete_function().structured_outputs
        self.output_shapes = {name: tuple(int(d) for d in outputs[name].shape[1:]) for name in self.layers}
        self.output_shape = self.output_shapes[self.layer]
        if not isinstance(batch_size, bool) and (batch_size == "auto" or batch_size == 0):
            device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
            per_image = self.per_image_bytes()
            free = _available_memory(device)
            self.batch_size = auto_batch_size(per_image, free, device)
            self.batch_size_rule = (
                f"auto: {device} free {free} B x {AUTO_MEMORY_FRACTION} / {per_image} B per image, "
                f"power of two, cap {AUTO_CAP.get(device, 64)}"
            )
        else:
            if (
                isinstance(batch_size, bool)
                or not isinstance(batch_size, (int, np.integer))
                or batch_size < 1
            ):
                raise ConfigError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}.")
            self.batch_size = int(batch_size)
            self.batch_size_rule = "fixed"

    def per_image_bytes(self) -> int:
        """Working-memory estimate for one image: 2 x (input + every layer output) x 4 bytes."""
        total = int(np.prod(self.model.inputs[0].shape[1:])) if self.model.inputs else 0
        for lay in self.model.layers:
            try:
                outs = lay.output if isinstance(lay.output, (list, tuple)) else [lay.output]
                total += sum(int(np.prod(o.shape[1:])) for o in outs)
            except (AttributeError, ValueError, TypeError):
                continue
        return 2 * 4 * max(total, 1)

    def _forward_graph(self, x):
        out = self.model(x, training=False)
        if isinstance(out, Mapping):
            return {name: out[name] for name in self.layers}
        if isinstance(out, (list, tuple)):
            return dict(zip(self.layers, out, strict=False))
        return {self.layer: out}

    def preprocess(self, raw: np.ndarray) -> np.ndarray:
        """(B, H, W) raw -> (B, S, S, 3) float32 network input (see :mod:`pipeline.images`)."""
        return self.chain(raw)

    def forward_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(B, S, S, 3) preprocessed -> {layer: (B, *output_shapes[layer]) float32}."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.layers}
        for i in range(0, len(x), self.batch_size):
            out = self._fn(x[i : i + self.batch_size])
            for name in self.layers:
                parts[name].append(np.asarray(out[name], dtype=np.float32))
        result = {}
        for name, chunks in parts.items():
            if not chunks:
                result[name] = np.zeros((0, *self.output_shapes[name]), np.float32)
            else:
                result[name] = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        return result

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) preprocessed -> (B, *output_shape) float32 features (primary layer)."""
        return self.forward_all(x)[self.layer]

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return self.forward(self.preprocess(raw))

    def device_info(self) -> dict:
        """Where the model runs: ``{device: "CPU"|"GPU", name, memory (bytes or None),
        tensorflow, keras, driver, cuda, cudnn, cpu_count, tf32, batch_size,
        batch_size_rule}`` (plain JSON)."""
        import keras
        import tensorflow as tf

        build = dict(tf.sysconfig.get_build_info())
        info = {
            "device": "CPU",
            "name": _cpu_name(),
            "memory": None,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "driver": None,
            "cuda": build.get("cuda_version"),
            "cudnn": build.get("cudnn_version"),
            "cpu_count": os.cpu_count(),
            "tf32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
            "batch_size": self.batch_size,
            "batch_size_rule": self.batch_size_rule,
        }
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            info.update(
                device="GPU",
                name=details.get("device_name", gpus[0].name),
                compute_capability=".".join(str(v) for v in details.get("compute_capability", ())) or None,
                n_gpus=len(gpus),
            )
            smi = _nvidia_smi()
            info.update({k: v for k, v in smi.items() if k != "free" and (k != "name" or not info["name"])})
        else:
            try:
                info["memory"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            except (ValueError, OSError, AttributeError):
                pass
        return info


def _model_input_size(model) -> int | None:
    """S of a model whose input is (None, S, S, 3); None if the size is not fixed."""
    try:
        shape = tuple(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError):
        return None
    if len(shape) != 4 or shape[3] not in (3, None):
        raise ConfigError(f"model {model.name!r} must take (batch, S, S, 3) images; its input is {shape}.")
    if shape[1] is None or shape[2] is None:
        return None
    if shape[1] != shape[2]:
        raise ConfigError(f"model {model.name!r} must take square images; its input is {shape}.")
    return int(shape[1])


def extractor_from_model(
    model,
    layer: str | Sequence[str],
    preprocess: str,
    *,
    weights_sha256: str = "",
    batch_size: int | str = 64,
    retina_warp: str | None = None,
    config: FeatureConfig | None = None,
) -> Extractor:
    """An :class:`Extractor` for any Keras model and one or more of its layers by name.

    The model's input must be (S, S, 3); the chain resizes (or warps) to that S (a model
    with no fixed size gets the chain's own size).
    """
    import keras

    if preprocess not in CHAINS:
        raise ConfigError(f"preprocess {preprocess!r} is unknown; valid chains: {', '.join(CHAINS)}.")
    layers = _split_layers(layer)
    names = [lay.name for lay in model.layers]
    missing = [name for name in layers if name not in names]
    if missing:
        raise ConfigError(
            f"layer(s) {', '.join(map(repr, missing))} not in model {model.name!r}; "
            f"its layers: {', '.join(names)}."
        )
    if len(layers) > 1:
        bad = [name for name in layers if not _LAYER_RE.fullmatch(name)]
        if bad:
            raise ConfigError(f"layer names {bad} cannot name feature datasets (letters, digits, _ . -).")
    chain = CHAINS[preprocess]
    size = _model_input_size(model)
    if size is not None and size != chain.input_size:
        chain = chain.with_input_size(size)
    chain = chain.with_warp(retina_warp)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    sub = keras.Model(inputs, {name: model.get_layer(name).output for name in layers})
    return Extractor(sub, layers, chain, weights_sha256=weights_sha256, config=config, batch_size=batch_size)


def _load_keras_model(config: FeatureConfig):
    import keras

    from pipeline.alexnet import _lrn_layer_class, read_keras_h5

    path = Path(config.variant).expanduser()
    if not path.is_file():
        raise DataFormatError(f"Keras model file {path} does not exist or is not a file.")
    try:
        model = keras.saving.load_model(
            path,
            compile=False,
            custom_objects={"LocalResponseNormalization": _lrn_layer_class()},
        )
    except Exception as exc:  # Keras raises many types for a bad file
        raise DataFormatError(
            f"Keras model file {path} could not be loaded ({type(exc).__name__}: {exc})."
        ) from exc
    if config.weights != "file":
        wpath = Path(config.weights).expanduser()
        held = read_keras_h5(wpath)  # DataFormatError if missing/unreadable
        try:
            model.load_weights(wpath)
        except Exception as exc:
            want = ", ".join(
                f"{lay.name} {'/'.join(str(tuple(w.shape)) for w in lay.weights)}"
                for lay in model.layers
                if lay.weights
            )
            have = ", ".join(
                f"{name} {'/'.join(str(tuple(a.shape)) for a in arrays)}" for name, arrays in held.items()
            )
            raise ConfigError(
                f"weights file {wpath} does not fit Keras model {path} ({type(exc).__name__}: "
                f"{exc}): it holds {have or 'nothing'}; expected {want or 'nothing'}."
            ) from exc
    return model


def build_extractor(config: FeatureConfig, *, tf32: bool = False) -> Extractor:
    """Build the model of ``config`` up to its layer(s), with its weights and chain.

    Weights from a ``.npy`` file are unpickled (``bvlc_alexnet.npy``): only for a path the
    user names. ``tf32=False`` (default) switches TensorFloat-32 off process-wide, so GPU
    features are full float32 like CPU ones (TensorFlow enables TF32 on Ampere and newer
    GPUs, which changes features by about 1e-3 relative). GPU memory growth is enabled
    when possible. A Keras model file is loaded with ``safe_mode`` (no Python lambdas).
    """
    if not isinstance(config, FeatureConfig):
        raise ConfigError(f"config must be a FeatureConfig, got {type(config).__name__}.")
    import tensorflow as tf

    from pipeline.alexnet import build_alexnet

    _enable_gpu_memory_growth()
    tf.config.experimental.enable_tensor_float_32_execution(bool(tf32))
    wsha = weights_sha256(config.weights, config.variant)
    if config.is_keras:
        model = _load_keras_model(config)
        return extractor_from_model(
            model,
            config.layers,
            config.preprocess,
            weights_sha256=wsha,
            batch_size=config.batch_size,
            retina_warp=config.retina_warp,
            config=config,
        )
    model = build_alexnet(config.variant, config.layers, config.weights, config.weights_map)
    return Extractor(
        model,
        config.layers,
        CHAINS[config.preprocess].with_warp(config.retina_warp),
        weights_sha256=wsha,
        config=config,
        batch_size=config.batch_size,
    )


# --------------------------------------------------------------------------- writing


@dataclass
class FeatureFileInfo:
    """What :func:`write_feature_file` wrote (plain JSON via :meth:`to_dict`)."""

    path: str
    sha256: str
    size_bytes: int
    shapes: dict[str, list[int]]
    image_hashes_digest: str
    n_duplicate_rows: int
    seconds: float
    images_per_s: float
    device: dict = field(default_factory=dict)
    config_sha256: str = ""
    weights_sha256: str = ""
    layers: list[str] = field(default_factory=list)
    layer_shapes: dict[str, list[int]] = field(default_factory=dict)
    batch_size: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _check_splits(splits) -> dict[str, tuple[int, Iterable]]:
    if not isinstance(splits, Mapping) or not splits:
        raise ConfigError("splits must be a non-empty mapping split -> (count, batches).")
    out = {}
    for name, value in splits.items():
        if not isinstance(name, str) or not _SPLIT_RE.fullmatch(name):
            raise ConfigError(f"split name {name!r} must be letters and digits, like 'train'.")
        try:
            count, batches = value
        except (TypeError, ValueError):
            raise ConfigError(f"splits[{name!r}] must be a (count, iterable of batches) pair.") from None
        if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
            raise ConfigError(f"splits[{name!r}] count must be a positive integer, got {count!r}.")
        out[name] = (int(count), batches)
    return out


def _sha256_into(path: Path, result: dict) -> None:
    try:
        result["sha256"] = sha256_file(path)
    except BaseException as exc:  # re-raised by the caller
        result["error"] = exc


def _produce(extractor, checked, stop: threading.Event | None = None, first_chunk: int = 0):
    """Yield ("batch", split, raw count, preprocessed, hashes) ... ("end", split) per split.

    ``first_chunk`` > 0 splits the very first batch into chunks of that many images, so
    that the model can start on the first chunk while the rest is preprocessed.
    """
    first = True
    for split, (_count, batches) in checked.items():
        for batch in batches:
            if stop is not None and stop.is_set():
                return
            raw = np.asarray(batch, dtype=np.float32)
            step = first_chunk if first and first_chunk > 0 else max(len(raw), 1)
            first = False
            for i in range(0, max(len(raw), 1), step):
                part = raw[i : i + step]
                x = extractor.preprocess(part)
                yield ("batch", split, len(part), x, image_sha256(x))
        yield ("end", split)


class _Prefetcher:
    """Runs :func:`_produce` in a daemon thread, ``depth`` batches ahead of the consumer.

    numpy, scipy.sparse and hashlib release the GIL for the heavy work, so the next batch
    is read, preprocessed and hashed while TensorFlow runs the model on the current one.
    An exception in the thread is re-raised by :meth:`get`.
    """

    def __init__(self, extractor, checked, depth: int = 2) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(extractor, checked), name="feature-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, extractor, checked) -> None:
        try:
            for item in _produce(extractor, checked, self._stop, first_chunk=8):
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(("error", exc))

    def get(self):
        while True:
            try:
                item = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise IntegrityError("the feature prefetch thread stopped unexpectedly.") from None
        if item[0] == "error":
            raise item[1]
        return item

    def close(self) -> None:
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=10)


class _Inline:
    def __init__(self, extractor, checked) -> None:
        self._items = _produce(extractor, checked)

    def get(self):
        return next(self._items)

    def close(self) -> None:
        self._items.close()


def _extractor_layers(extractor) -> tuple[tuple[str, ...], dict[str, tuple[int, ...]], bool]:
    """(layer names, {layer: shape}, whether the names are real) of any extractor."""
    layers = tuple(getattr(extractor, "layers", ()) or ())
    named = bool(layers)
    if not layers:
        layers = (getattr(extractor, "layer", None) or "features",)
    shapes = getattr(extractor, "output_shapes", None) or {layers[0]: extractor.output_shape}
    return layers, {n: tuple(int(d) for d in shapes[n]) for n in layers}, named


def _dataset_name(split: str, layer: str, multi: bool) -> str:
    return f"{split}__{layer}" if multi else split


def write_feature_file(
    out_path: str | Path,
    extractor: Extractor,
    splits: Mapping[str, tuple[int, Iterable[np.ndarray]]],
    config: FeatureConfig,
    progress: Callable[[str, int, int], None] | None = None,
    *,
    allow_duplicates: bool = False,
    prefetch: bool = True,
) -> FeatureFileInfo:
    """Extract features for every split and write them atomically to ``out_path``.

    Parameters
    ----------
    out_path : path of the HDF5 file (parent directories are created; an existing file
        is replaced only once the new one is complete).
    extractor : :class:`Extractor` (anything with ``preprocess``, ``forward``,
        ``output_shape``, ``weights_sha256``, ``device_info``; with ``layers``,
        ``output_shapes`` and ``forward_all`` for several layers).
    splits : {"train": (N_train, batches), "val": (N_val, batches)}; each iterable yields
        (B, H, W) float32 raw images in dataset order and must yield exactly N images.
        The reading batch size need not equal the extractor's batch size.
    config : the :class:`FeatureConfig` the extractor was built from.
    progress : called as ``progress(split, done, total)`` after each batch.
    allow_duplicates : record repeated rows in ``n_duplicate_rows`` instead of failing.
    prefetch : read, preprocess and hash the next batch in a background thread while the
        model runs (default); False does everything in the calling thread.

    Raises
    ------
    IntegrityError : a split yields more or fewer images than declared; an input image
        repeats (same preprocessed-content hash, in any split); two different images give
        identical feature rows (in any layer); features are not finite. Names the split
        and the first offending index pair.

    Notes
    -----
    Written to ``.{name}.tmp-{pid}`` beside ``out_path``, fsynced, then ``os.replace``-d;
    on any exception (Ctrl-C included) the temporary file is deleted and nothing appears
    at ``out_path``. Several layers: see the module docstring for the dataset names.
    """
    out_path = Path(out_path)
    checked = _check_splits(splits)
    if not isinstance(config, FeatureConfig):
        raise ConfigError(f"config must be a FeatureConfig, got {type(config).__name__}.")
    ext_config = getattr(extractor, "config", None)
    if ext_config is not None and ext_config != config:
        raise ConfigError(
            f"config (key {config.key()[:16]}) is not the config the extractor "
            f"was built from (key {ext_config.key()[:16]})."
        )
    layers, layer_shapes, named = _extractor_layers(extractor)
    multi = len(layers) > 1
    if multi:
        bad = [n for n in layers if not _LAYER_RE.fullmatch(n)]
        if bad:
            raise ConfigError(f"layer names {bad} cannot name feature datasets (letters, digits, _ . -).")
    forward_all = getattr(extractor, "forward_all", None)
    if forward_all is None:

        def forward_all(x):
            return {layers[0]: extractor.forward(x)}

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.parent / f".{out_path.name}.tmp-{os.getpid()}"
    start = time.perf_counter()
    seen_inputs: dict[str, tuple[str, int]] = {}
    # per layer: crc32 of a row's bytes -> the (split, index) of distinct rows with that crc
    # (a match is confirmed by comparing the rows themselves)
    seen_rows: dict[str, dict[int, list[tuple[str, int]]]] = {n: {} for n in layers}
    all_dsets: dict[tuple[str, str], object] = {}
    all_hashes: dict[str, list[str]] = {}
    n_dup = 0
    total = 0
    source = None
    try:
        import h5py

        source = (_Prefetcher if prefetch else _Inline)(extractor, checked)
        with h5py.File(tmp, "w") as fh:
            for split, (count, _batches) in checked.items():
                dsets = {
                    n: fh.create_dataset(
                        _dataset_name(split, n, multi), shape=(count, *layer_shapes[n]), dtype="float32"
                    )
                    for n in layers
                }
                all_dsets.update({(split, n): d for n, d in dsets.items()})
                hashes: list[str] = []
                done = 0
                while True:
                    item = source.get()
                    if item[0] == "end":
                        break
                    _, _split, n, x, batch_hashes = item
                    if done + n > count:
                        raise IntegrityError(
                            f"split {split!r} yielded more than its declared {count} images."
                        )
                    outputs = forward_all(x)
                    dup = np.zeros(n, dtype=bool)
                    for i, img_hash in enumerate(batch_hashes):
                        prev_in = seen_inputs.get(img_hash)
                        if prev_in is not None:
                            if not allow_duplicates:
                                raise IntegrityError(
                                    f"split {split!r} image {done + i} is the same input "
                                    f"image as split {prev_in[0]!r} image {prev_in[1]} "
                                    f"(equal content hashes): images were fed twice."
                                )
                            dup[i] = True
                        else:
                            seen_inputs[img_hash] = (split, done + i)
                    for name in layers:
                        feats = np.asarray(outputs[name], dtype=np.float32)
                        if feats.shape != (n, *layer_shapes[name]):
                            raise IntegrityError(
                                f"split {split!r}: the extractor returned shape "
                                f"{feats.shape} for {n} images, expected "
                                f"{(n, *layer_shapes[name])}."
                            )
                        rows = feats.reshape(n, -1)
                        finite = np.isfinite(rows).all(axis=1)
                        if not finite.all():
                            bad = int(np.flatnonzero(~finite)[0])
                            where = f" ({name})" if multi else ""
                            raise IntegrityError(
                                f"split {split!r} image {done + bad} gave non-finite features{where}."
                            )
                        seen = seen_rows[name]
                        for i, row in enumerate(rows):
                            bits = np.ascontiguousarray(row).view(np.uint32)
                            fingerprint = zlib.crc32(memoryview(bits).cast("B"))
                            prev_row = None
                            for cand_split, cand_index in seen.get(fingerprint, ()):
                                if cand_split == split and cand_index >= done:
                                    other = rows[cand_index - done]
                                else:  # already written: read it back to compare exactly
                                    other = all_dsets[cand_split, name][cand_index].reshape(-1)
                                if np.array_equal(np.ascontiguousarray(other).view(np.uint32), bits):
                                    prev_row = (cand_split, cand_index)
                                    break
                            if prev_row is not None:
                                if not dup[i] and not allow_duplicates:
                                    where = f" ({name})" if multi else ""
                                    raise IntegrityError(
                                        f"split {split!r} image {done + i} gave the same feature row{where} "
                                        f"as split {prev_row[0]!r} image {prev_row[1]} although "
                                        f"the input images differ."
                                    )
                                dup[i] = True
                            else:
                                seen.setdefault(fingerprint, []).append((split, done + i))
                        dsets[name][done : done + n] = feats
                    n_dup += int(dup.sum())
                    hashes.extend(batch_hashes)
                    done += n
                    if progress is not None:
                        progress(split, done, count)
                if done != count:
                    raise IntegrityError(
                        f"split {split!r} yielded {done} images, fewer than its declared {count}."
                    )
                fh.create_dataset(f"{split}_image_sha256", data=np.array(hashes, dtype="S64"))
                all_hashes[split] = hashes
                total += count
            digest = hashes_digest(all_hashes)
            fh.attrs["format"] = FORMAT_NAME
            fh.attrs["format_version"] = FORMAT_VERSION
            fh.attrs["splits"] = json.dumps(list(checked))
            if named:
                fh.attrs["layers"] = json.dumps(list(layers))
            fh.attrs["config_json"] = json.dumps(config.to_dict(), sort_keys=True)
            fh.attrs["config_sha256"] = config.key()
            fh.attrs["weights_sha256"] = str(extractor.weights_sha256)
            chain = getattr(extractor, "chain", None)
            fh.attrs["preprocess_json"] = json.dumps(
                chain.to_dict() if chain is not None else None, sort_keys=True
            )
            fh.attrs["image_hashes_digest"] = digest
            fh.attrs["n_duplicate_rows"] = n_dup
            batch_size = getattr(extractor, "batch_size", 0)
            fh.attrs["batch_size"] = int(batch_size) if isinstance(batch_size, (int, np.integer)) else 0
        source.close()
        source = None
        all_dsets.clear()
        # hash the finished file while fsync waits for the disk
        file_sha: dict[str, object] = {}
        hasher = threading.Thread(target=_sha256_into, args=(tmp, file_sha), name="feature-sha256")
        hasher.start()
        with open(tmp, "rb+") as raw_fh:
            os.fsync(raw_fh.fileno())
        hasher.join()
        if "error" in file_sha:
            raise file_sha["error"]  # type: ignore[misc]
        os.replace(tmp, out_path)
        fsync_dir(out_path.parent)
    except BaseException:
        if source is not None:
            source.close()
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    seconds = time.perf_counter() - start
    return FeatureFileInfo(
        path=str(out_path.resolve()),
        sha256=str(file_sha["sha256"]),
        size_bytes=out_path.stat().st_size,
        shapes={s: [c, *layer_shapes[layers[0]]] for s, (c, _) in checked.items()},
        image_hashes_digest=digest,
        n_duplicate_rows=n_dup,
        seconds=seconds,
        images_per_s=total / seconds if seconds > 0 else float("inf"),
        device=extractor.device_info(),
        config_sha256=config.key(),
        weights_sha256=str(extractor.weights_sha256),
        layers=list(layers) if named else [],
        layer_shapes={n: list(layer_shapes[n]) for n in layers} if named else {},
        batch_size=int(batch_size) if isinstance(batch_size, (int, np.integer)) else 0,
    )


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
    found = None
    if expected_sha256 is not None:
        found = sha256_file(path)
        if found != expected_sha256.lower():
            raise IntegrityError(
                f"feature file {path} has sha256 {found} but {expected_sha256} "
                f"was expected: it changed or is not the recorded file."
            )
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            attrs = {k: _attr(v) for k, v in fh.attrs.items()}
            names = json.loads(attrs["splits"]) if "splits" in attrs else ["train", "val"]
            layers = json.loads(attrs["layers"]) if "layers" in attrs else []
            multi = len(layers) > 1
            if layer is None:
                chosen = layers[0] if layers else None
            elif layer in layers:
                chosen = layer
            else:
                raise ConfigError(
                    f"feature file {path} holds no layer {layer!r}; its layers: "
                    f"{', '.join(layers) if layers else '(not named)'}."
                )
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
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise DataFormatError(
            f"feature file {path} is not a readable feature file ({type(exc).__name__}: {exc})."
        ) from exc
    shapes = {n: a.shape for n, a in features.items()}
    if len({s[1:] for s in shapes.values()}) != 1 or any(len(s) < 2 for s in shapes.values()):
        raise DataFormatError(f"feature file {path} has inconsistent feature shapes {shapes}.")
    if hashes is not None:
        for n in names:
            if len(hashes[n]) != len(features[n]):
                raise DataFormatError(
                    f"feature file {path} has {len(hashes[n])} image hashes "
                    f"for {len(features[n])} {n!r} rows."
                )
        recorded = attrs.get("image_hashes_digest")
        if recorded is not None and recorded != hashes_digest(hashes):
            raise IntegrityError(
                f"feature file {path}: its image hashes do not match its "
                f"recorded image_hashes_digest {recorded}."
            )
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
