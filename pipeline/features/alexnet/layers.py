"""AlexNet's two variants (see ``specs/alexnet.md``): layer specs and output shapes.

``"caffe"`` (Variant A)
    Caffe BVLC AlexNet, 227 input: conv1 11x11/4 VALID, LRN, max-pool 3/2, conv2 5x5
    2 groups, LRN, pool, conv3 3x3 (13x13x384), conv4/conv5 2 groups, pool5, fc6-fc8.
    Weight file: ``bvlc_alexnet.npy``.
``"tfutils"`` (Variant B)
    The single-tower tfutils AlexNet of a published V4 study, 224 input: conv1 VALID,
    LRN (depth_radius 5), SAME pools, no groups, conv3 14x14x384.

Layer names are the same in both: ``conv1, norm1, pool1, conv2, norm2, pool2, conv3,
conv4, conv5, pool5, fc6, fc7, fc8``. Conv and fc6/fc7 outputs are taken **after the
ReLU**; fc8 is the logits (no softmax). :data:`LAYERS` lists each layer's output shape.

The Keras model is built in :mod:`pipeline.features.alexnet.model`; weights are read by
:mod:`pipeline.features.alexnet.weights`. No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import ConfigError

__all__ = [
    "LAYERS",
    "VARIANTS",
    "LayerSpec",
    "Variant",
    "get_variant",
    "weight_shapes",
]



@dataclass(frozen=True)
class LayerSpec:
    """One layer of a variant.

    kind is "conv", "lrn", "pool" or "fc". For conv: ``size`` filters, ``kernel``,
    ``stride``, ``padding`` ("valid" | "same"), ``groups``. For fc: ``size`` units and
    ``relu``. For lrn: TensorFlow ``local_response_normalization`` parameters.
    ``output_shape`` excludes the batch axis.
    """

    name: str
    kind: str
    output_shape: tuple[int, ...]
    size: int = 0
    kernel: int = 0
    stride: int = 1
    padding: str = "valid"
    groups: int = 1
    relu: bool = True
    depth_radius: int = 0
    alpha: float = 0.0
    beta: float = 0.0
    bias: float = 0.0

    @property
    def has_weights(self) -> bool:
        return self.kind in ("conv", "fc")


@dataclass(frozen=True)
class Variant:
    """An AlexNet variant: input size, the chain it expects, and its layers in order."""

    name: str
    input_size: int
    default_preprocess: str
    layers: tuple[LayerSpec, ...]
    description: str

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.layers)

    def layer(self, name: str) -> LayerSpec:
        for spec in self.layers:
            if spec.name == name:
                return spec
        raise ConfigError(
            f"layer {name!r} is not in variant {self.name!r}; valid layers: {', '.join(self.layer_names)}."
        )


def _conv(name, size, kernel, out, stride=1, padding="same", groups=1) -> LayerSpec:
    return LayerSpec(
        name, "conv", out, size=size, kernel=kernel, stride=stride, padding=padding, groups=groups
    )


def _lrn(name, out, depth_radius, alpha) -> LayerSpec:
    return LayerSpec(name, "lrn", out, depth_radius=depth_radius, alpha=alpha, beta=0.75, bias=1.0)


def _pool(name, out, padding) -> LayerSpec:
    return LayerSpec(name, "pool", out, kernel=3, stride=2, padding=padding)


def _fc(name, size, relu=True) -> LayerSpec:
    return LayerSpec(name, "fc", (size,), size=size, relu=relu)
_CAFFE = Variant(
    name="caffe",
    input_size=227,
    default_preprocess="caffe",
    description="Caffe BVLC AlexNet (227 input, grouped conv2/4/5, conv3 13x13x384)",
    layers=(
        _conv("conv1", 96, 11, (55, 55, 96), stride=4, padding="valid"),
        _lrn("norm1", (55, 55, 96), 2, 2e-5),
        _pool("pool1", (27, 27, 96), "valid"),
        _conv("conv2", 256, 5, (27, 27, 256), groups=2),
        _lrn("norm2", (27, 27, 256), 2, 2e-5),
        _pool("pool2", (13, 13, 256), "valid"),
        _conv("conv3", 384, 3, (13, 13, 384)),
        _conv("conv4", 384, 3, (13, 13, 384), groups=2),
        _conv("conv5", 256, 3, (13, 13, 256), groups=2),
        _pool("pool5", (6, 6, 256), "valid"),
        _fc("fc6", 4096),
        _fc("fc7", 4096),
        _fc("fc8", 1000, relu=False),
    ),
)
_TFUTILS = Variant(
    name="tfutils",
    input_size=224,
    default_preprocess="tf2019",
    description="single-tower tfutils AlexNet (224 input, SAME pools, conv3 14x14x384)",
    layers=(
        _conv("conv1", 96, 11, (54, 54, 96), stride=4, padding="valid"),
        _lrn("norm1", (54, 54, 96), 5, 1e-4),
        _pool("pool1", (27, 27, 96), "same"),
        _conv("conv2", 256, 5, (27, 27, 256)),
        _lrn("norm2", (27, 27, 256), 5, 1e-4),
        _pool("pool2", (14, 14, 256), "same"),
        _conv("conv3", 384, 3, (14, 14, 384)),
        _conv("conv4", 384, 3, (14, 14, 384)),
        _conv("conv5", 256, 3, (14, 14, 256)),
        _pool("pool5", (7, 7, 256), "same"),
        _fc("fc6", 4096),
        _fc("fc7", 4096),
        _fc("fc8", 1000, relu=False),
    ),
)


#: Registry of variants by name (the CLI takes its choices from here).
VARIANTS: dict[str, Variant] = {"caffe": _CAFFE, "tfutils": _TFUTILS}


#: variant -> {layer name: output shape without the batch axis}, in network order.
LAYERS: dict[str, dict[str, tuple[int, ...]]] = {
    name: {spec.name: spec.output_shape for spec in variant.layers} for name, variant in VARIANTS.items()
}


def get_variant(variant: str) -> Variant:
    """The :class:`Variant` called ``variant``; ConfigError listing valid names otherwise."""
    try:
        return VARIANTS[variant]
    except (KeyError, TypeError):
        raise ConfigError(f"variant {variant!r} is unknown; valid variants: {', '.join(VARIANTS)}.") from None


def weight_shapes(variant: str = "caffe") -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Expected ``layer -> (kernel shape, bias shape)`` for every weighted layer.

    Conv kernels are (kh, kw, in_channels / groups, filters) (the ``bvlc_alexnet.npy``
    layout); fc kernels are (inputs, units) with inputs flattened in C order over (H, W, C).
    """
    spec = get_variant(variant)
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    channels = 3
    prev_shape: tuple[int, ...] = (spec.input_size, spec.input_size, 3)
    for layer in spec.layers:
        if layer.kind == "conv":
            kernel = (layer.kernel, layer.kernel, channels // layer.groups, layer.size)
            shapes[layer.name] = (kernel, (layer.size,))
        elif layer.kind == "fc":
            shapes[layer.name] = ((int(np.prod(prev_shape)), layer.size), (layer.size,))
        prev_shape = layer.output_shape
        channels = prev_shape[-1]
    return shapes


def _check_layers(variant: Variant, layers: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(layers, str):
        layers = (layers,)
    layers = tuple(layers)
    if not layers:
        raise ConfigError("layers must name at least one layer.")
    for name in layers:
        variant.layer(name)  # raises ConfigError listing the valid names
    if len(set(layers)) != len(layers):
        raise ConfigError(f"layers must not repeat a name, got {list(layers)}.")
    return layers
