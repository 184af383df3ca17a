"""Reading AlexNet weights from TensorFlow checkpoints and Keras HDF5 weight files.

A TF1 ``tf.train.Saver`` or TF2 ``tf.train.Checkpoint`` (prefix, ``.index`` file or
directory) is read with ``tf.train.load_checkpoint`` (TensorFlow imported inside the
function); a name map ``{layer: [kernel_var, bias_var]}`` says which variables to take.
Keras ``.h5`` files are read by layer name with h5py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.features.alexnet.layers import weight_shapes

__all__ = [
    "checkpoint_prefix",
    "glob_escape",
    "normalize_name_map",
    "read_checkpoint",
    "read_keras_h5",
]

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
    reader, var_shapes = _open_checkpoint(prefix)
    shapes = weight_shapes(variant)
    needed = list(shapes) if layers is None else [n for n in shapes if n in set(layers)]
    mapped = dict(normalize_name_map(name_map) or ())
    unknown = sorted(set(mapped) - set(shapes))
    problems = [f"weights_map names layer(s) {unknown} the variant does not have"] if unknown else []
    names = sorted(var_shapes)
    out = {}
    for layer in needed:
        pair, why = _layer_variables(layer, mapped, var_shapes, names)
        if pair is None:
            problems.append(why)
            continue
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


def _open_checkpoint(prefix: str):
    """(reader, {variable name: shape}) of a checkpoint (TensorFlow imported here)."""
    tf = _tensorflow_for_checkpoints(prefix)
    try:
        reader = tf.train.load_checkpoint(prefix)
        var_shapes = reader.get_variable_to_shape_map()
    except Exception as exc:  # TF raises several types for a bad checkpoint
        raise DataFormatError(
            f"checkpoint {prefix} could not be read ({type(exc).__name__}: {exc})."
        ) from exc
    return reader, var_shapes


def _find_variable(layer: str, candidates: Sequence[str], var_shapes: Mapping, names: list[str]
                   ) -> tuple[str | None, str]:
    """(variable name, "") of ``{layer}/{candidate}``, exactly or under one unique scope;
    else (None, why)."""
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


def _layer_variables(layer: str, mapped: Mapping, var_shapes: Mapping, names: list[str]
                     ) -> tuple[tuple[str, str] | None, str]:
    """((kernel, bias) variable names, "") of a layer, from the name map or the default
    names; else (None, why)."""
    if layer in mapped:
        pair = mapped[layer]
        absent = [n for n in pair if n not in var_shapes]
        if absent:
            return None, f"{layer}: no variable {' or '.join(map(repr, absent))}"
        return pair, ""
    kernel, why_k = _find_variable(layer, _CKPT_KERNEL, var_shapes, names)
    bias, why_b = _find_variable(layer, _CKPT_BIAS, var_shapes, names)
    if kernel is None or bias is None:
        return None, why_k or why_b
    return (kernel, bias), ""


def _tensorflow_for_checkpoints(prefix: str):
    """TensorFlow, for reading a checkpoint on any Keras backend (one clear error without it).

    On the JAX or PyTorch backend TensorFlow only reads the file: its GPUs are hidden, so
    it never takes GPU memory from the backend that runs the model.
    """
    import sys

    try:
        import tensorflow as tf
    except ImportError as exc:
        keras = sys.modules.get("keras")
        backend = keras.backend.backend() if keras is not None else "tensorflow"
        raise ConfigError(
            f"checkpoint {prefix}: reading a TF1/TF2 checkpoint needs TensorFlow, also on the {backend} "
            f"backend ({exc}); pip install tensorflow, or give the weights as a .weights.h5 or "
            f"bvlc_alexnet.npy file instead."
        ) from None
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != "tensorflow":
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            pass  # TensorFlow already started its devices elsewhere in this process
    return tf


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
