"""AlexNet weights: every source below, validation against the variant's shapes, and
the weights' sha256.

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

Checkpoints and Keras files are read by :mod:`pipeline.features.alexnet.checkpoints`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.core.files import sha256_file
from pipeline.core.keys import content_key
from pipeline.features.alexnet.checkpoints import (
    _checkpoint_files,
    checkpoint_prefix,
    read_checkpoint,
    read_keras_h5,
)
from pipeline.features.alexnet.layers import VARIANTS, get_variant, weight_shapes

__all__ = [
    "load_weights",
    "random_weights",
    "weights_kind",
    "weights_sha256",
]

_RANDOM_RE = re.compile(r"random:(\d+)")
_RANDOM_GENERATOR = "numpy.random.default_rng([seed, layer_index]).standard_normal*sqrt(2/fan_in)"


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
    return _validate_arrays(_read_npy_dict(path), variant, needed, f"file {path}")


def _read_npy_dict(path: Path) -> Mapping:
    """The pickled ``layer -> [W, b]`` dict of a ``bvlc_alexnet.npy``-style file."""
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
    return arrays


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
            return content_key(doc)

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
