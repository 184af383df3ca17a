"""AlexNet in Keras 3, in the two variants users bring (see ``specs/alexnet.md``).

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

Weights (``weights=``)
    ``"random:SEED"``: seeded He-normal kernels (numpy ``default_rng([SEED, i])`` for the
    i-th layer of the variant, so a layer's weights do not depend on how deep the model is
    built), biases 0.1 (fc8: 0). Deterministic across runs and machines.
    A path to a ``bvlc_alexnet.npy``-style file: a pickled dict ``layer -> [W, b]``.
    **Loading a pickle can run arbitrary code**: it is done only for a path the user names
    explicitly, never for a file found by searching. A mapping ``layer -> (W, b)`` in
    memory is accepted too.
    A Keras weights file (``*.h5``: Keras 3 ``.weights.h5`` or the Keras 2 HDF5 layout),
    read by layer name with h5py (the file may hold more layers than the model needs).
    A TensorFlow checkpoint (a TF1 ``tf.train.Saver`` or TF2 ``tf.train.Checkpoint``; give
    its prefix ``.../model.ckpt-115000``, its ``.index`` file, or its directory), read
    with ``tf.train.load_checkpoint``. A *name map* ``{layer: [kernel_var, bias_var]}``
    says which variables to take; without one each layer looks for
    ``{layer}/weights|kernel|W`` and ``{layer}/biases|bias|b`` (also under one scope
    prefix, when unique). A missing name or a wrong shape raises one ConfigError listing
    the checkpoint's variables and what was expected.

TensorFlow/Keras are imported inside functions only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.core.files import sha256_file

__all__ = [
    "LAYERS",
    "VARIANTS",
    "LayerSpec",
    "Variant",
    "build_alexnet",
    "checkpoint_prefix",
    "load_weights",
    "normalize_name_map",
    "random_weights",
    "read_checkpoint",
    "read_keras_h5",
    "set_weights",
    "weight_shapes",
    "weights_kind",
    "weights_sha256",
]

_RANDOM_RE = re.compile(r"random:(\d+)")
_RANDOM_GENERATOR = "numpy.random.default_rng([seed, layer_index]).standard_normal*sqrt(2/fan_in)"


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


# --------------------------------------------------------------------------- weights


def _parse_random(spec: str) -> int | None:
    match = _RANDOM_RE.fullmatch(spec.strip())
    return int(match.group(1)) if match else None


def random_weights(
    seed: int, variant: str = "caffe", layers: Sequence[str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Seeded He-normal weights of the right shapes (the ``"random:SEED"`` source).

    Parameters
    ----------
    seed : int >= 0
    variant : str
    layers : names of weighted layers to generate (default: all of the variant)

    Returns
    -------
    dict layer -> (kernel float32, bias float32); biases are 0.1 (fc8: 0).
    """
    spec = get_variant(variant)
    shapes = weight_shapes(variant)
    wanted = set(shapes) if layers is None else set(layers) & set(shapes)
    out = {}
    for index, name in enumerate(spec.layer_names):
        if name not in wanted:
            continue
        kshape, bshape = shapes[name]
        rng = np.random.default_rng([seed, index])
        fan_in = int(np.prod(kshape[:-1]))
        kernel = rng.standard_normal(kshape, dtype=np.float32)
        kernel *= np.float32(math.sqrt(2.0 / fan_in))
        bias = np.full(bshape, 0.0 if name == "fc8" else 0.1, dtype=np.float32)
        out[name] = (kernel, bias)
    return out


def _describe(arrays: Mapping) -> str:
    parts = []
    for name, value in arrays.items():
        try:
            shapes = "/".join(str(tuple(np.shape(a))) for a in _pair(value))
        except (TypeError, ValueError, KeyError):
            shapes = f"<{type(value).__name__}>"
        parts.append(f"{name} {shapes}")
    return ", ".join(parts) if parts else "nothing"


def _pair(value) -> tuple:
    """(W, b) from a [W, b] list/tuple or a {"weights": W, "biases": b} dict."""
    if isinstance(value, Mapping):
        return (value["weights"], value["biases"])
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (value[0], value[1])
    raise TypeError("expected [W, b]")


def _validate_arrays(
    arrays: Mapping, variant: str, needed: Sequence[str], source: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    shapes = weight_shapes(variant)
    expected = ", ".join(f"{n} {shapes[n][0]}/{shapes[n][1]}" for n in needed)
    out = {}
    problems = []
    for name in needed:
        if name not in arrays:
            problems.append(f"{name} missing")
            continue
        try:
            kernel, bias = (np.asarray(a, dtype=np.float32) for a in _pair(arrays[name]))
        except (TypeError, ValueError, KeyError):
            problems.append(f"{name} is not a [W, b] pair")
            continue
        if kernel.shape != shapes[name][0] or bias.shape != shapes[name][1]:
            problems.append(f"{name} has {kernel.shape}/{bias.shape}")
            continue
        out[name] = (kernel, bias)
    if problems:
        raise ConfigError(
            f"weights {source} do not fit variant {variant!r} ({'; '.join(problems)}): "
            f"they hold {_describe(arrays)}; expected {expected}."
        )
    return out


_CKPT_KERNEL = ("weights", "kernel", "W", "w")
_CKPT_BIAS = ("biases", "bias", "b")
_LIST_LIMIT = 200


def normalize_name_map(name_map) -> tuple[tuple[str, tuple[str, str]], ...] | None:
    """``{layer: [kernel_var, bias_var]}`` (or ``{layer: {"kernel": .., "bias": ..}}``) ->
    a sorted tuple of ``(layer, (kernel_var, bias_var))`` pairs (hashable); None stays None."""
    if name_map is None:
        return None
    if isinstance(name_map, tuple) and all(isinstance(item, tuple) and len(item) == 2 for item in name_map):
        name_map = dict(name_map)
    if not isinstance(name_map, Mapping) or not name_map:
        raise ConfigError(
            "weights_map must be a non-empty mapping layer -> [kernel_variable, bias_variable]."
        )
    out = []
    for layer, value in name_map.items():
        if isinstance(value, Mapping):
            kernel = value.get("kernel", value.get("weights"))
            bias = value.get("bias", value.get("biases"))
            value = (kernel, bias)
        if (
            not isinstance(layer, str)
            or isinstance(value, str)
            or not isinstance(value, Sequence)
            or len(value) != 2
            or not all(isinstance(v, str) and v for v in value)
        ):
            raise ConfigError(
                f"weights_map[{layer!r}] must be [kernel_variable, bias_variable] (two names), got {value!r}."
            )
        out.append((layer, (value[0], value[1])))
    return tuple(sorted(out))


def checkpoint_prefix(path: str | Path) -> str | None:
    """The TensorFlow checkpoint prefix ``path`` names, or None if it names no checkpoint.

    Accepts the prefix itself (``model.ckpt-115000``, with ``model.ckpt-115000.index``
    beside it), the ``.index`` file, or a directory (its ``checkpoint`` file's
    ``model_checkpoint_path``, else its only ``*.index`` file).
    """
    path = Path(path).expanduser()
    text = str(path)
    if text.endswith(".index") and path.is_file():
        return text[: -len(".index")]
    if Path(text + ".index").is_file():
        return text
    if path.is_dir():
        state = path / "checkpoint"
        if state.is_file():
            match = re.search(
                r'^model_checkpoint_path:\s*"([^"]+)"',
                state.read_text(errors="replace"),
                re.M,
            )
            if match:
                candidate = Path(match.group(1))
                candidate = candidate if candidate.is_absolute() else path / candidate
                if Path(str(candidate) + ".index").is_file():
                    return str(candidate)
        indexes = sorted(path.glob("*.index"))
        if len(indexes) == 1:
            return str(indexes[0])[: -len(".index")]
    return None


def _checkpoint_files(prefix: str) -> list[Path]:
    base = Path(prefix)
    files = [Path(prefix + ".index")]
    files += sorted(base.parent.glob(glob_escape(base.name) + ".data-*"))
    return files


def glob_escape(text: str) -> str:
    """Escape glob metacharacters in a file name."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def weights_kind(weights) -> str:
    """What a weight source is: "random", "mapping", "checkpoint", "keras_h5" or "pickle".

    Files are told apart by name: ``*.h5``/``*.hdf5`` is a Keras weights file, a
    checkpoint prefix/index/directory (see :func:`checkpoint_prefix`) a checkpoint, any
    other file a pickled ``layer -> [W, b]`` dict (``bvlc_alexnet.npy``).
    """
    if isinstance(weights, Mapping):
        return "mapping"
    if isinstance(weights, str) and weights.strip().startswith("random:"):
        return "random"
    if not isinstance(weights, (str, Path)):
        raise ConfigError(f"weights must be 'random:SEED', a file path or a mapping, got {type(weights)}.")
    path = Path(weights).expanduser()
    if path.suffix.lower() in (".h5", ".hdf5") and not Path(str(path) + ".index").is_file():
        return "keras_h5"
    if checkpoint_prefix(path) is not None:
        return "checkpoint"
    return "pickle"


def _listing(items: Sequence[str]) -> str:
    if len(items) > _LIST_LIMIT:
        return ", ".join(items[:_LIST_LIMIT]) + f", ... and {len(items) - _LIST_LIMIT} more"
    return ", ".join(items) if items else "nothing"


def _expected(variant: str, needed: Sequence[str]) -> str:
    shapes = weight_shapes(variant)
    return ", ".join(f"{n} {shapes[n][0]}/{shapes[n][1]}" for n in needed)


def read_checkpoint(
    path: str | Path,
    variant: str = "caffe",
    layers: Sequence[str] | None = None,
    name_map=None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read AlexNet weights from a TensorFlow (TF1 or TF2) checkpoint, validated.

    Parameters
    ----------
    path : checkpoint prefix, its ``.index`` file, or its directory
    variant : str
    layers : weighted layers required (default: all of the variant)
    name_map : ``{layer: [kernel_var, bias_var]}``; layers it omits use the default names
        (``{layer}/weights|kernel|W|w`` and ``{layer}/biases|bias|b``, exactly or under
        one unique scope prefix)

    Raises
    ------
    DataFormatError : not a readable checkpoint.
    ConfigError : a variable is missing, ambiguous or has the wrong shape: one message
        listing every problem, the checkpoint's variables (name and shape) and what
        was expected.
    """
    prefix = checkpoint_prefix(path)
    if prefix is None:
        raise DataFormatError(
            f"weights {path} is not a TensorFlow checkpoint (no {path}.index file, "
            f"no .index file and no directory with one checkpoint)."
        )
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(prefix)
        var_shapes = reader.get_variable_to_shape_map()
    except Exception as exc:  # TF raises several types for a bad checkpoint
        raise DataFormatError(
            f"checkpoint {prefix} could not be read ({type(exc).__name__}: {exc})."
        ) from exc
    shapes = weight_shapes(variant)
    needed = list(shapes) if layers is None else [n for n in shapes if n in set(layers)]
    mapped = dict(normalize_name_map(name_map) or ())
    unknown = sorted(set(mapped) - set(shapes))
    problems = [f"weights_map names layer(s) {unknown} the variant does not have"] if unknown else []
    names = sorted(var_shapes)

    def find(layer: str, candidates: Sequence[str]) -> tuple[str | None, str]:
        for cand in (f"{layer}/{c}" for c in candidates):
            if cand in var_shapes:
                return cand, ""
        for cand in (f"/{layer}/{c}" for c in candidates):
            hits = [n for n in names if n.endswith(cand)]
            if len(hits) == 1:
                return hits[0], ""
            if len(hits) > 1:
                return None, f"{layer}: several variables end with {cand[1:]!r} ({hits})"
        return None, f"{layer}: no variable {layer}/{'|'.join(candidates)}"

    out = {}
    for layer in needed:
        if layer in mapped:
            pair = mapped[layer]
            absent = [n for n in pair if n not in var_shapes]
            if absent:
                problems.append(f"{layer}: no variable {' or '.join(map(repr, absent))}")
                continue
        else:
            kernel, why_k = find(layer, _CKPT_KERNEL)
            bias, why_b = find(layer, _CKPT_BIAS)
            if kernel is None or bias is None:
                problems.append(why_k or why_b)
                continue
            pair = (kernel, bias)
        found = tuple(tuple(var_shapes[n]) for n in pair)
        if found != shapes[layer]:
            problems.append(f"{layer}: {pair[0]} {found[0]} / {pair[1]} {found[1]}")
            continue
        out[layer] = tuple(np.asarray(reader.get_tensor(n), dtype=np.float32) for n in pair)
    if problems:
        held = [f"{n} {tuple(var_shapes[n])}" for n in names]
        raise ConfigError(
            f"checkpoint {prefix} does not fit variant {variant!r} ({'; '.join(problems)}): "
            f"it holds {_listing(held)}; expected {_expected(variant, needed)}. "
            f"Give weights_map {{layer: [kernel_variable, bias_variable]}} to name them."
        )
    return out


def _var_order(key: str):
    return (not key.isdigit(), int(key) if key.isdigit() else 0, key)


def read_keras_h5(path: str | Path) -> dict[str, list[np.ndarray]]:
    """All weights of a Keras weights file by layer name: ``{layer: [array, ...]}``.

    Keras 3 ``.weights.h5`` (groups ``.../vars`` carrying the layer's ``name`` attribute,
    datasets ``0, 1, ...``) and the Keras 2 HDF5 layout (root attribute ``layer_names``,
    each layer's ``weight_names``) are understood.
    """
    import h5py

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataFormatError(f"weights file {path} does not exist or is not a file.")
    out: dict[str, list[np.ndarray]] = {}
    try:
        with h5py.File(path, "r") as fh:
            root = fh["model_weights"] if "model_weights" in fh else fh
            if "layer_names" in root.attrs:  # Keras 2
                for raw in root.attrs["layer_names"]:
                    name = raw.decode() if isinstance(raw, bytes) else str(raw)
                    group = root[name]
                    wnames = [
                        w.decode() if isinstance(w, bytes) else str(w)
                        for w in group.attrs.get("weight_names", [])
                    ]
                    if wnames:
                        out[name] = [np.asarray(group[w][()]) for w in wnames]
            else:  # Keras 3

                def visit(name, obj):
                    if (
                        isinstance(obj, h5py.Group)
                        and name.split("/")[-1] == "vars"
                        and "name" in obj.attrs
                        and len(obj)
                    ):
                        keys = sorted(obj.keys(), key=_var_order)
                        layer = obj.attrs["name"]
                        layer = layer.decode() if isinstance(layer, bytes) else str(layer)
                        out.setdefault(layer, [np.asarray(obj[k][()]) for k in keys])

                root.visititems(visit)
    except (OSError, KeyError, ValueError) as exc:
        raise DataFormatError(
            f"weights file {path} is not a readable Keras weights file ({type(exc).__name__}: {exc})."
        ) from exc
    return out


def load_weights(
    weights: str | Path | Mapping,
    variant: str = "caffe",
    layers: Sequence[str] | None = None,
    name_map=None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Resolve a weight source to ``layer -> (kernel, bias)`` float32 arrays, validated.

    Parameters
    ----------
    weights : "random:SEED"; a path to a ``bvlc_alexnet.npy``-style pickled dict
        (**unpickling can run code**: pass only files you trust); a Keras weights file
        (``*.h5``); a TensorFlow checkpoint (prefix, ``.index`` or directory); or a mapping
        layer -> [W, b]. See :func:`weights_kind`.
    variant : str
    layers : weighted layers required (default: all of the variant); extra layers in the
        source are ignored.
    name_map : checkpoint variable names ``{layer: [kernel_var, bias_var]}`` (checkpoints
        only; see :func:`read_checkpoint`).

    Raises
    ------
    DataFormatError : the file is missing or not of its kind.
    ConfigError : a required layer is missing or has the wrong shape (the message lists
        what the source holds and what was expected).
    """
    shapes = weight_shapes(variant)
    needed = list(shapes) if layers is None else [n for n in shapes if n in set(layers)]
    kind = weights_kind(weights)
    if name_map is not None and kind != "checkpoint":
        raise ConfigError(
            f"weights_map applies to TensorFlow checkpoints only; weights {weights!r} is a {kind} source."
        )
    if kind == "mapping":
        return _validate_arrays(weights, variant, needed, "mapping")
    if kind == "random":
        seed = _parse_random(weights)
        if seed is None:
            raise ConfigError(f"weights {weights!r} must look like 'random:SEED' (SEED >= 0).")
        return random_weights(seed, variant, needed)
    if kind == "checkpoint":
        return read_checkpoint(weights, variant, needed, name_map)
    path = Path(weights).expanduser()
    if kind == "keras_h5":
        return _validate_arrays(read_keras_h5(path), variant, needed, f"file {path}")
    if not path.is_file():
        raise DataFormatError(f"weights file {path} does not exist or is not a file.")
    try:
        loaded = np.load(path, encoding="latin1", allow_pickle=True)
        if isinstance(loaded, np.ndarray) and loaded.shape == () and loaded.dtype == object:
            loaded = loaded.item()
        arrays = loaded
    except Exception as exc:  # any unpickling failure means a bad file
        raise DataFormatError(
            f"weights file {path} could not be read as a pickled layer -> [W, b] dict "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    if not isinstance(arrays, Mapping):
        raise DataFormatError(
            f"weights file {path} holds a {type(arrays).__name__}, not a layer -> [W, b] dict."
        )
    return _validate_arrays(arrays, variant, needed, f"file {path}")


def _is_keras_model_path(variant) -> bool:
    return str(variant).lower().endswith((".keras", ".h5", ".hdf5"))


def weights_sha256(weights: str | Path | Mapping, variant: str = "caffe") -> str:
    """Identity of a weight source (hex sha256).

    A file: sha256 of its bytes. A checkpoint: sha256 of the text
    ``"{file name}\t{sha256 of the file}\n"`` over its ``.index`` and ``.data-*`` files in
    that order (data files sorted). ``"random:SEED"``: sha256 of the canonical JSON of
    the spec, the generator, the variant and all its weight shapes (no arrays are
    generated). A mapping: sha256 over layer names, shapes and float32 bytes in network
    order.

    For a user's Keras model (``variant`` = the path of its ``.keras`` file, as in
    ``FeatureConfig(model="keras")``): ``weights="file"`` gives the model file's sha256;
    a separate weights file gives sha256 of ``"model\\t{model sha}\\nweights\\t{weights sha}\\n"``
    (the architecture is part of what the weights mean).
    """
    if isinstance(variant, (str, Path)) and variant not in VARIANTS and _is_keras_model_path(variant):

        model_path = Path(variant).expanduser()
        if not model_path.is_file():
            raise DataFormatError(f"Keras model file {model_path} does not exist or is not a file.")
        model_sha = sha256_file(model_path)
        if weights == "file":
            return model_sha
        if not isinstance(weights, (str, Path)):
            raise ConfigError(f"weights for a Keras model must be 'file' or a path, got {type(weights)}.")
        weights_sha = sha256_file(Path(weights).expanduser())
        return hashlib.sha256(f"model\t{model_sha}\nweights\t{weights_sha}\n".encode()).hexdigest()
    if isinstance(weights, Mapping):
        h = hashlib.sha256()
        for name in weight_shapes(variant):
            if name in weights:
                for arr in _pair(weights[name]):
                    a = np.ascontiguousarray(arr, dtype=np.float32)
                    h.update(f"{name}{a.shape}".encode())
                    h.update(memoryview(a).cast("B"))
        return h.hexdigest()
    if isinstance(weights, str):
        seed = _parse_random(weights)
        if seed is not None:
            doc = {
                "weights": f"random:{seed}",
                "generator": _RANDOM_GENERATOR,
                "bias": "0.1 (fc8: 0)",
                "variant": variant,
                "shapes": {n: [list(k), list(b)] for n, (k, b) in weight_shapes(variant).items()},
            }
            text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
            return hashlib.sha256(text.encode()).hexdigest()

    path = Path(weights).expanduser()
    if not path.is_file():
        prefix = checkpoint_prefix(path)
        if prefix is None:
            raise DataFormatError(f"weights file {path} does not exist or is not a file.")
        lines = "".join(f"{f.name}\t{sha256_file(f)}\n" for f in _checkpoint_files(prefix))
        return hashlib.sha256(lines.encode()).hexdigest()
    if path.suffix == ".index" and checkpoint_prefix(path) is not None:
        return weights_sha256(str(path)[: -len(".index")], variant)
    return sha256_file(path)


# --------------------------------------------------------------------------- model

_LRN_CLASS = None


def _lrn_layer_class():
    """A Keras layer wrapping ``tf.nn.local_response_normalization`` (created lazily)."""
    global _LRN_CLASS
    if _LRN_CLASS is None:
        import keras
        import tensorflow as tf

        class LocalResponseNormalization(keras.layers.Layer):
            """TensorFlow LRN over the channel axis (channels-last)."""

            def __init__(self, depth_radius=2, bias=1.0, alpha=2e-5, beta=0.75, **kwargs):
                super().__init__(**kwargs)
                self.depth_radius = int(depth_radius)
                self.bias = float(bias)
                self.alpha = float(alpha)
                self.beta = float(beta)

            def call(self, inputs):
                return tf.nn.local_response_normalization(
                    inputs,
                    depth_radius=self.depth_radius,
                    bias=self.bias,
                    alpha=self.alpha,
                    beta=self.beta,
                )

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
        if layer.kind == "conv":
            x = keras.layers.Conv2D(
                layer.size,
                layer.kernel,
                strides=layer.stride,
                padding=layer.padding,
                groups=layer.groups,
                activation="relu",
                name=layer.name,
            )(x)
        elif layer.kind == "lrn":
            x = lrn_class(layer.depth_radius, layer.bias, layer.alpha, layer.beta, name=layer.name)(x)
        elif layer.kind == "pool":
            x = keras.layers.MaxPooling2D(layer.kernel, layer.stride, padding=layer.padding, name=layer.name)(
                x
            )
        else:  # fc
            if len(x.shape) > 2:
                x = keras.layers.Flatten(name=f"{layer.name}_flatten")(x)
            x = keras.layers.Dense(layer.size, activation="relu" if layer.relu else None, name=layer.name)(x)
        tensors[layer.name] = x
    model = keras.Model(inputs, {name: tensors[name] for name in layers}, name=f"alexnet_{variant}")
    set_weights(model, arrays)
    return model
