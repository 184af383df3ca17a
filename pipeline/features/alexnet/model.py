"""The Keras AlexNet: the LRN layer, :func:`build_alexnet` and :func:`set_weights`.

Keras is imported inside functions only (after the backend is chosen: see
:mod:`pipeline.features.backend`); the model uses Keras layers and ``keras.ops`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.features.alexnet.layers import LayerSpec, _check_layers, get_variant
from pipeline.features.alexnet.weights import _pair, load_weights

__all__ = [
    "build_alexnet",
    "set_weights",
]



# --------------------------------------------------------------------------- model

_LRN_CLASS = None


def _lrn_layer_class():
    """The Keras LRN layer, written in ``keras.ops`` so it runs on every backend (created
    lazily: Keras picks its backend when first imported)."""
    global _LRN_CLASS
    if _LRN_CLASS is None:
        import keras

        class LocalResponseNormalization(keras.layers.Layer):
            """Local response normalisation over the channel axis (channels-last).

            ``out = x / (bias + alpha * sum_{|k - c| <= depth_radius} x_k^2) ** beta``: the
            definition of TensorFlow's ``tf.nn.local_response_normalization`` (its results
            agree to float32 rounding).
            """

            def __init__(self, depth_radius=2, bias=1.0, alpha=2e-5, beta=0.75, **kwargs):
                super().__init__(**kwargs)
                self.depth_radius = int(depth_radius)
                self.bias = float(bias)
                self.alpha = float(alpha)
                self.beta = float(beta)

            def call(self, inputs):
                ops = keras.ops
                radius = self.depth_radius
                channels = inputs.shape[-1]
                squared = ops.square(inputs)
                padded = ops.pad(squared, [[0, 0]] * (len(inputs.shape) - 1) + [[radius, radius]])
                window = padded[..., 0:channels]
                for k in range(1, 2 * radius + 1):
                    window = window + padded[..., k : k + channels]
                return inputs * ops.power(self.bias + self.alpha * window, -self.beta)

            def compute_output_shape(self, input_shape):
                return input_shape

            def get_config(self):
                config = super().get_config()
                config.update(
                    depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta
                )
                return config

        _LRN_CLASS = LocalResponseNormalization
    return _LRN_CLASS


def set_weights(model, arrays: Mapping) -> None:
    """Copy ``layer -> (kernel, bias)`` arrays into the same-named layers of ``model``.

    Layers of ``arrays`` the model does not have are ignored.
    """
    names = {layer.name for layer in model.layers}
    for name, value in arrays.items():
        if name in names:
            kernel, bias = _pair(value)
            model.get_layer(name).set_weights([np.asarray(kernel, np.float32), np.asarray(bias, np.float32)])


def build_alexnet(
    variant: str = "caffe",
    layers: str | Sequence[str] = ("conv3",),
    weights: str | Path | Mapping = "random:0",
    name_map=None,
):
    """Build an AlexNet up to the deepest requested layer, with its weights set.

    Parameters
    ----------
    variant : "caffe" (227 input) or "tfutils" (224 input); see :data:`VARIANTS`.
    layers : layer name(s) to output (see :data:`LAYERS`).
    weights : "random:SEED", a path to a ``bvlc_alexnet.npy``-style file (unpickled: only
        pass a file you trust), a Keras ``*.h5`` weights file, a TensorFlow checkpoint,
        or a mapping layer -> [W, b] (see :func:`load_weights`).
    name_map : checkpoint variable names (checkpoints only; see :func:`read_checkpoint`).

    Returns
    -------
    keras.Model
        Input (B, S, S, 3) float32; output a dict ``{layer: (B, *LAYERS[variant][layer])}``
        in the requested order.
    """
    spec = get_variant(variant)
    layers = _check_layers(spec, layers)
    deepest = max(spec.layer_names.index(name) for name in layers)
    built = spec.layers[: deepest + 1]
    arrays = load_weights(weights, variant, [s.name for s in built if s.has_weights], name_map)

    import keras

    lrn_class = _lrn_layer_class()
    size = spec.input_size
    inputs = keras.Input(shape=(size, size, 3), name="image", dtype="float32")
    x = inputs
    tensors = {}
    for layer in built:
        x = _keras_layer(keras, lrn_class, layer, x)
        tensors[layer.name] = x
    model = keras.Model(inputs, {name: tensors[name] for name in layers}, name=f"alexnet_{variant}")
    set_weights(model, arrays)
    return model


def _keras_layer(keras, lrn_class, layer: LayerSpec, x):
    """Apply the Keras layer of one :class:`LayerSpec` to the tensor ``x``."""
    if layer.kind == "conv":
        return keras.layers.Conv2D(
            layer.size,
            layer.kernel,
            strides=layer.stride,
            padding=layer.padding,
            groups=layer.groups,
            activation="relu",
            name=layer.name,
        )(x)
    if layer.kind == "lrn":
        return lrn_class(layer.depth_radius, layer.bias, layer.alpha, layer.beta, name=layer.name)(x)
    if layer.kind == "pool":
        pool = keras.layers.MaxPooling2D(layer.kernel, layer.stride, padding=layer.padding, name=layer.name)
        return pool(x)
    # fc
    if len(x.shape) > 2:
        x = keras.layers.Flatten(name=f"{layer.name}_flatten")(x)
    return keras.layers.Dense(layer.size, activation="relu" if layer.relu else None, name=layer.name)(x)
