"""The Keras feature extractor: a batched forward pass from raw vim-1 images to features.

:func:`build_extractor` activates the config's Keras backend (TensorFlow, JAX or PyTorch:
:mod:`pipeline.features.backend`), then builds the AlexNet (or loads a user's Keras model)
for a :class:`~pipeline.features.config.FeatureConfig`. The forward pass is compiled the
backend's way (:func:`compiled_call`). Keras and the backends are imported inside
functions only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.features.alexnet.checkpoints import read_keras_h5
from pipeline.features.alexnet.model import _lrn_layer_class, build_alexnet
from pipeline.features.alexnet.weights import weights_sha256
from pipeline.features.backend import activate, free_gpu_memory, gpu_visible
from pipeline.features.config import _LAYER_RE, FeatureConfig, _split_layers
from pipeline.features.device import AUTO_CAP, AUTO_MEMORY_FRACTION, _available_memory, auto_batch_size
from pipeline.preprocess.images import CHAINS, Chain

__all__ = [
    "Extractor",
    "build_extractor",
    "compiled_call",
    "extractor_from_model",
]



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
    runtime : dict, the backend's runtime identity (:func:`pipeline.features.backend.activate`:
        backend, version, device, precision, compilation); default: the backend Keras runs
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
        runtime: dict | None = None,
    ) -> None:
        self.model = model
        self.layers = _split_layers(layer)
        self.layer = self.layers[0]
        self.chain = chain
        self.weights_sha256 = weights_sha256
        self.config = config
        if runtime is None:
            settings = (config.precision, config.device) if config is not None else ()
            runtime = activate(_backend_of(config), *settings)
        self.runtime = runtime
        self._fn = compiled_call(model, self.layers, self.runtime["backend"])
        self.output_shapes = _output_shapes(model, self.layers, chain.input_size)
        self.output_shape = self.output_shapes[self.layer]
        if not isinstance(batch_size, bool) and (batch_size == "auto" or batch_size == 0):
            self.batch_size, self.batch_size_rule = self._auto_batch_size()
        else:
            if (
                isinstance(batch_size, bool)
                or not isinstance(batch_size, (int, np.integer))
                or batch_size < 1
            ):
                raise ConfigError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}.")
            self.batch_size = int(batch_size)
            self.batch_size_rule = "fixed"

    def _auto_batch_size(self) -> tuple[int, str]:
        """``batch_size="auto"``: from the free memory of the device the backend runs on."""
        device = "GPU" if gpu_visible(self.runtime) else "CPU"
        per_image = self.per_image_bytes()
        free = free_gpu_memory(self.runtime) if device == "GPU" else _available_memory("CPU")
        rule = (
            f"auto: {device} free {free} B x {AUTO_MEMORY_FRACTION} / {per_image} B per image, "
            f"power of two, cap {AUTO_CAP.get(device, 64)}"
        )
        return auto_batch_size(per_image, free, device), rule

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

    def preprocess(self, raw: np.ndarray) -> np.ndarray:
        """(B, H, W) raw -> (B, S, S, 3) float32 network input (see :mod:`pipeline.preprocess.images`)."""
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
        """Where and how the model runs (plain JSON): ``device`` ("CPU"|"GPU"), ``name``,
        ``memory``, ``driver``, ``cuda``, ``backend``, ``backend_version`` (also under the
        backend's own name, e.g. ``tensorflow``), ``keras``, ``precision``, ``tf32``,
        ``matmul_precision``, ``compiled``, ``xla``, ``cpu_count``, ``batch_size``,
        ``batch_size_rule``."""
        rt = self.runtime
        dev = dict(rt["device"])
        info = {"device": dev.pop("kind"), **dev, rt["backend"]: rt["backend_version"],
                **{k: v for k, v in rt.items() if k != "device"},
                "cpu_count": os.cpu_count(), "batch_size": self.batch_size,
                "batch_size_rule": self.batch_size_rule}
        if info["device"] == "CPU":
            try:
                info["memory"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            except (ValueError, OSError, AttributeError):
                pass
        return info


def _backend_of(config: FeatureConfig | None) -> str | None:
    """The backend a config asks for, else the one Keras already runs (else the default)."""
    import sys

    if config is not None and config.backend:
        return config.backend
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None


def _as_dict(out, layers: tuple[str, ...]) -> dict:
    if isinstance(out, Mapping):
        return {name: out[name] for name in layers}
    if isinstance(out, (list, tuple)):
        return dict(zip(layers, out, strict=False))
    return {layers[0]: out}


def _output_shapes(model, layers: tuple[str, ...], size: int) -> dict[str, tuple[int, ...]]:
    """{layer: output shape without the batch axis}, from the model's symbolic outputs."""
    import keras

    spec = model.compute_output_spec(keras.KerasTensor((None, size, size, 3), dtype="float32"))
    return {name: tuple(int(d) for d in t.shape[1:]) for name, t in _as_dict(spec, layers).items()}


def compiled_call(model, layers: Sequence[str], backend: str):
    """``fn(x (B, S, S, 3) float32 numpy) -> {layer: array}``: the model's inference call,
    compiled the backend's way (TensorFlow ``tf.function``, JAX ``jax.jit`` of the
    stateless call; PyTorch eager under ``no_grad``, outputs copied to the CPU)."""
    layers = tuple(layers)
    if backend == "tensorflow":
        import tensorflow as tf

        shape = [None, *model.inputs[0].shape[1:]] if model.inputs else [None, None, None, 3]
        fn = tf.function(lambda x: _as_dict(model(x, training=False), layers),
                         input_signature=[tf.TensorSpec(shape, tf.float32)])
        return fn
    if backend == "jax":
        import jax

        jitted = jax.jit(lambda tv, ntv, x: _as_dict(model.stateless_call(tv, ntv, x, training=False)[0],
                                                       layers))
        # the variables' current values at each call: Keras may donate and replace the buffers
        # (model.predict does), so values taken once could be deleted by then
        return lambda x: jitted([v.value for v in model.trainable_variables],
                                [v.value for v in model.non_trainable_variables], x)
    import torch

    def call(x):
        with torch.no_grad():
            out = _as_dict(model(x, training=False), layers)
        return {name: value.detach().cpu().numpy() for name, value in out.items()}

    return call


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
    runtime: dict | None = None,
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
    return Extractor(sub, layers, chain, weights_sha256=weights_sha256, config=config, batch_size=batch_size,
                     runtime=runtime)


def _load_keras_model(config: FeatureConfig):
    import keras

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


def build_extractor(config: FeatureConfig) -> Extractor:
    """Build the model of ``config`` up to its layer(s), with its weights and chain.

    First activates the config's backend, device and precision
    (:func:`pipeline.features.backend.activate`: GPU memory growth before the backend
    starts; ``precision="strict"``, the default, keeps TF32 off so GPU features are full
    float32 like CPU ones). Weights from a ``.npy`` file are unpickled
    (``bvlc_alexnet.npy``): only for a path the user names. A Keras model file is loaded
    with ``safe_mode`` (no Python lambdas).
    """
    if not isinstance(config, FeatureConfig):
        raise ConfigError(f"config must be a FeatureConfig, got {type(config).__name__}.")
    runtime = activate(config.backend, config.precision, config.device)
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
            runtime=runtime,
        )
    model = build_alexnet(config.variant, config.layers, config.weights, config.weights_map)
    return Extractor(
        model,
        config.layers,
        CHAINS[config.preprocess].with_warp(config.retina_warp),
        weights_sha256=wsha,
        config=config,
        batch_size=config.batch_size,
        runtime=runtime,
    )
