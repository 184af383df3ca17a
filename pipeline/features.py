"""Feature extraction: config, extractor, and the HDF5 feature file (atomic, hashed, checked).

The registries here are the single source of valid choices (the CLI reads them):
:data:`MODELS` (model -> its variants), :data:`VARIANTS`, :data:`LAYERS`
(variant -> layer -> output shape) and :data:`CHAINS` (preprocessing).

Feature file layout (HDF5, one file per extraction)::

    /train               (N_train, h, w, c) float32, contiguous, uncompressed
    /val                 (N_val, h, w, c)
    /train_image_sha256  (N_train,) |S64  hex sha256 of each *preprocessed* image, in order
    /val_image_sha256    (N_val,)   |S64
    attrs: format="vimtrack-features", format_version=1, splits (JSON list, file order),
           config_json (FeatureConfig.to_dict() as JSON), config_key, weights_sha256,
           preprocess_json (the chain's parameters), image_hashes_digest

``image_hashes_digest`` (see :func:`hashes_digest`) summarises every per-image hash in
order, so a tracker document can prove which images (and in which order) produced a file.
TensorFlow is imported inside functions only.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from pipeline.alexnet import LAYERS, VARIANTS, get_variant, weights_sha256
from pipeline.errors import ConfigError, DataFormatError, IntegrityError
from pipeline.images import CHAINS, Chain, image_sha256

__all__ = [
    "CHAINS",
    "LAYERS",
    "MODELS",
    "VARIANTS",
    "Extractor",
    "FeatureConfig",
    "FeatureFile",
    "FeatureFileInfo",
    "build_extractor",
    "extractor_from_model",
    "hashes_digest",
    "read_feature_file",
    "sha256_file",
    "write_feature_file",
]

#: model name -> its variants (each variant lists its layers in LAYERS).
MODELS: dict[str, tuple[str, ...]] = {"alexnet": tuple(VARIANTS)}

FORMAT_NAME = "vimtrack-features"
FORMAT_VERSION = 1
_CHUNK = 8 * 1024 * 1024
_SPLIT_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def sha256_file(path: str | Path, chunk_size: int = _CHUNK) -> str:
    """Hex sha256 of a file, read in 8 MB chunks (DataFormatError if it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(chunk_size):
                h.update(chunk)
    except OSError as exc:
        raise DataFormatError(f"file {path} could not be read ({exc.strerror or exc}).") from exc
    return h.hexdigest()


def hashes_digest(hashes: Mapping[str, Sequence[str]]) -> str:
    """sha256 over per-image hashes in order: for each split ``"{split}\\n"`` then each
    hex hash followed by ``"\\n"``."""
    h = hashlib.sha256()
    for split, values in hashes.items():
        h.update(f"{split}\n".encode())
        for value in values:
            h.update(f"{value}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class FeatureConfig:
    """What to extract. Frozen; ``key()`` identifies it.

    ``key()`` hashes these fields only: for a weights *file* the tracker should record
    ``Extractor.weights_sha256`` too (the same path may hold different bytes later).
    """

    model: str = "alexnet"
    variant: str = "caffe"
    layer: str = "conv3"
    weights: str = "random:0"
    preprocess: str = "caffe"
    batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("model", "variant", "layer", "preprocess"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ConfigError(f"{name} must be a string, got {value!r}.")
        if isinstance(self.weights, Path):
            object.__setattr__(self, "weights", str(self.weights))
        if not isinstance(self.weights, str) or not self.weights.strip():
            raise ConfigError(
                f"weights must be 'random:SEED' or a file path, got {self.weights!r}."
            )
        if self.model not in MODELS:
            raise ConfigError(
                f"model {self.model!r} is unknown; valid models: {', '.join(MODELS)}."
            )
        if self.variant not in MODELS[self.model]:
            raise ConfigError(
                f"variant {self.variant!r} is unknown for model {self.model!r}; "
                f"valid variants: {', '.join(MODELS[self.model])}."
            )
        if self.layer not in LAYERS[self.variant]:
            raise ConfigError(
                f"layer {self.layer!r} is not in variant {self.variant!r}; "
                f"valid layers: {', '.join(LAYERS[self.variant])}."
            )
        if self.preprocess not in CHAINS:
            raise ConfigError(
                f"preprocess {self.preprocess!r} is unknown; valid chains: {', '.join(CHAINS)}."
            )
        need = VARIANTS[self.variant].input_size
        got = CHAINS[self.preprocess].input_size
        if got != need:
            raise ConfigError(
                f"preprocess {self.preprocess!r} makes {got}x{got} images but variant "
                f"{self.variant!r} needs {need}x{need}; chains of that size: "
                f"{', '.join(n for n, c in CHAINS.items() if c.input_size == need)}."
            )
        if self.weights.startswith("random:") and not re.fullmatch(r"random:\d+", self.weights):
            raise ConfigError(
                f"weights {self.weights!r} must look like 'random:SEED' "
                f"with SEED a non-negative integer."
            )
        if (
            not isinstance(self.batch_size, (int, np.integer))
            or isinstance(self.batch_size, bool)
            or self.batch_size < 1
        ):
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}.")
        object.__setattr__(self, "batch_size", int(self.batch_size))

    @classmethod
    def for_variant(cls, variant: str, **kwargs) -> FeatureConfig:
        """A config whose ``preprocess`` defaults to the chain the variant expects."""
        spec = get_variant(variant)
        kwargs.setdefault("preprocess", spec.default_preprocess)
        return cls(variant=variant, **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping) -> FeatureConfig:
        """Inverse of :meth:`to_dict` (unknown keys -> ConfigError naming them)."""
        names = {f.name for f in fields(cls)}
        extra = sorted(set(data) - names)
        if extra:
            raise ConfigError(f"feature config has unknown fields {extra}; valid: {sorted(names)}.")
        return cls(**dict(data))

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the fields."""
        return asdict(self)

    def key(self) -> str:
        """Hex sha256 of the canonical JSON (sorted keys, no spaces) of :meth:`to_dict`."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


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
                    "--query-gpu=name,memory.total,driver_version",
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
        name, mem, driver = (s.strip() for s in out[0].split(","))
        return {"name": name, "memory": int(float(mem)) * 1024 * 1024, "driver": driver}
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}


class Extractor:
    """Preprocess raw vim-1 images and run a Keras model to one layer.

    Call it: ``extractor(raw (B, H, W) float32) -> (B, *output_shape) float32``; or use
    :meth:`preprocess` and :meth:`forward` separately (the writer hashes the
    preprocessed images in between). Inputs are processed in chunks of ``batch_size``.

    Attributes
    ----------
    layer : str
    chain : Chain
    output_shape : tuple of int, e.g. (13, 13, 384)
    weights_sha256 : str
    config : FeatureConfig or None
    batch_size : int
    """

    def __init__(
        self,
        model,
        layer: str,
        chain: Chain,
        *,
        weights_sha256: str = "",
        config: FeatureConfig | None = None,
        batch_size: int = 64,
    ) -> None:
        import tensorflow as tf

        self.model = model
        self.layer = layer
        self.chain = chain
        self.weights_sha256 = weights_sha256
        self.config = config
        self.batch_size = int(batch_size)
        size = chain.input_size
        self._fn = tf.function(
            self._forward_graph,
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
        )
        self.output_shape = tuple(
            int(d) for d in self._fn.get_concrete_function().structured_outputs.shape[1:]
        )

    def _forward_graph(self, x):
        out = self.model(x, training=False)
        if isinstance(out, Mapping):
            return out[self.layer]
        if isinstance(out, (list, tuple)):
            return out[0]
        return out

    def preprocess(self, raw: np.ndarray) -> np.ndarray:
        """(B, H, W) raw -> (B, S, S, 3) float32 network input (see :mod:`pipeline.images`)."""
        return self.chain(raw)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) preprocessed -> (B, *output_shape) float32 features."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        outs = [
            np.asarray(self._fn(x[i : i + self.batch_size]), dtype=np.float32)
            for i in range(0, len(x), self.batch_size)
        ]
        if not outs:
            return np.zeros((0, *self.output_shape), np.float32)
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return self.forward(self.preprocess(raw))

    def device_info(self) -> dict:
        """Where the model runs: ``{device: "CPU"|"GPU", name, memory (bytes or None),
        tensorflow, keras, driver, cuda, cudnn, cpu_count, tf32}`` (plain JSON)."""
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
        }
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            info.update(
                device="GPU",
                name=details.get("device_name", gpus[0].name),
                compute_capability=".".join(str(v) for v in details.get("compute_capability", ()))
                or None,
                n_gpus=len(gpus),
            )
            smi = _nvidia_smi()
            info.update({k: v for k, v in smi.items() if k != "name" or not info["name"]})
        else:
            try:
                info["memory"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            except (ValueError, OSError, AttributeError):
                pass
        return info


def extractor_from_model(
    model, layer: str, preprocess: str, *, weights_sha256: str = "", batch_size: int = 64
) -> Extractor:
    """An :class:`Extractor` for any Keras model and one of its layers by name.

    The model's input must be (S, S, 3) with S the chain's ``input_size``.
    """
    import keras

    if preprocess not in CHAINS:
        raise ConfigError(
            f"preprocess {preprocess!r} is unknown; valid chains: {', '.join(CHAINS)}."
        )
    names = [lay.name for lay in model.layers]
    if layer not in names:
        raise ConfigError(
            f"layer {layer!r} is not in model {model.name!r}; its layers: {', '.join(names)}."
        )
    sub = keras.Model(model.inputs, model.get_layer(layer).output)
    return Extractor(
        sub, layer, CHAINS[preprocess], weights_sha256=weights_sha256, batch_size=batch_size
    )


def build_extractor(config: FeatureConfig, *, tf32: bool = False) -> Extractor:
    """Build the model of ``config`` up to its layer, with its weights and chain.

    Weights from a file are unpickled (``bvlc_alexnet.npy``): only for a path the user names.
    ``tf32=False`` (default) switches TensorFloat-32 off process-wide, so GPU features are
    full float32 like CPU ones (TensorFlow enables TF32 on Ampere and newer GPUs, which
    changes features by about 1e-3 relative). GPU memory growth is enabled when possible.
    """
    if not isinstance(config, FeatureConfig):
        raise ConfigError(f"config must be a FeatureConfig, got {type(config).__name__}.")
    import tensorflow as tf

    from pipeline.alexnet import build_alexnet

    _enable_gpu_memory_growth()
    tf.config.experimental.enable_tensor_float_32_execution(bool(tf32))
    model = build_alexnet(config.variant, (config.layer,), config.weights)
    return Extractor(
        model,
        config.layer,
        CHAINS[config.preprocess],
        weights_sha256=weights_sha256(config.weights, config.variant),
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
    config_key: str = ""
    weights_sha256: str = ""

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
            raise ConfigError(
                f"splits[{name!r}] must be a (count, iterable of batches) pair."
            ) from None
        if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
            raise ConfigError(f"splits[{name!r}] count must be a positive integer, got {count!r}.")
        out[name] = (int(count), batches)
    return out


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_feature_file(
    out_path: str | Path,
    extractor: Extractor,
    splits: Mapping[str, tuple[int, Iterable[np.ndarray]]],
    config: FeatureConfig,
    progress: Callable[[str, int, int], None] | None = None,
    *,
    allow_duplicates: bool = False,
) -> FeatureFileInfo:
    """Extract features for every split and write them atomically to ``out_path``.

    Parameters
    ----------
    out_path : path of the HDF5 file (parent directories are created; an existing file
        is replaced only once the new one is complete).
    extractor : :class:`Extractor` (anything with ``preprocess``, ``forward``,
        ``output_shape``, ``weights_sha256``, ``device_info``).
    splits : {"train": (N_train, batches), "val": (N_val, batches)}; each iterable yields
        (B, H, W) float32 raw images in dataset order and must yield exactly N images.
    config : the :class:`FeatureConfig` the extractor was built from.
    progress : called as ``progress(split, done, total)`` after each batch.
    allow_duplicates : record repeated rows in ``n_duplicate_rows`` instead of failing.

    Raises
    ------
    IntegrityError : a split yields more or fewer images than declared; an input image
        repeats (same preprocessed-content hash, in any split); two different images give
        identical feature rows; features are not finite. Names the split and the first
        offending index pair.

    Notes
    -----
    Written to ``.{name}.tmp-{pid}`` beside ``out_path``, fsynced, then ``os.replace``-d;
    on any exception (Ctrl-C included) the temporary file is deleted and nothing appears
    at ``out_path``.
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
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.parent / f".{out_path.name}.tmp-{os.getpid()}"
    feature_shape = tuple(int(d) for d in extractor.output_shape)
    start = time.perf_counter()
    seen_inputs: dict[str, tuple[str, int]] = {}
    seen_rows: dict[bytes, tuple[str, int]] = {}
    all_hashes: dict[str, list[str]] = {}
    n_dup = 0
    total = 0
    try:
        import h5py

        with h5py.File(tmp, "w") as fh:
            for split, (count, batches) in checked.items():
                ds = fh.create_dataset(split, shape=(count, *feature_shape), dtype="float32")
                hashes: list[str] = []
                done = 0
                for batch in batches:
                    raw = np.asarray(batch, dtype=np.float32)
                    n = len(raw)
                    if done + n > count:
                        raise IntegrityError(
                            f"split {split!r} yielded more than its declared {count} images."
                        )
                    x = extractor.preprocess(raw)
                    batch_hashes = image_sha256(x)
                    feats = np.asarray(extractor.forward(x), dtype=np.float32)
                    if feats.shape != (n, *feature_shape):
                        raise IntegrityError(
                            f"split {split!r}: the extractor returned shape "
                            f"{feats.shape} for {n} images, expected "
                            f"{(n, *feature_shape)}."
                        )
                    if not np.isfinite(feats).all():
                        bad = int(np.flatnonzero(~np.isfinite(feats.reshape(n, -1)).all(1))[0])
                        raise IntegrityError(
                            f"split {split!r} image {done + bad} gave non-finite features."
                        )
                    for i, (img_hash, row) in enumerate(zip(batch_hashes, feats, strict=True)):
                        index = done + i
                        row_hash = hashlib.sha256(
                            memoryview(np.ascontiguousarray(row)).cast("B")
                        ).digest()
                        prev_in = seen_inputs.get(img_hash)
                        prev_row = seen_rows.get(row_hash)
                        if prev_in is not None or prev_row is not None:
                            if not allow_duplicates:
                                if prev_in is not None:
                                    raise IntegrityError(
                                        f"split {split!r} image {index} is the same input "
                                        f"image as split {prev_in[0]!r} image {prev_in[1]} "
                                        f"(equal content hashes): images were fed twice."
                                    )
                                raise IntegrityError(
                                    f"split {split!r} image {index} gave the same feature row "
                                    f"as split {prev_row[0]!r} image {prev_row[1]} although "
                                    f"the input images differ."
                                )
                            n_dup += 1
                        seen_inputs.setdefault(img_hash, (split, index))
                        seen_rows.setdefault(row_hash, (split, index))
                    ds[done : done + n] = feats
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
            fh.attrs["config_json"] = json.dumps(config.to_dict(), sort_keys=True)
            fh.attrs["config_key"] = config.key()
            fh.attrs["weights_sha256"] = str(extractor.weights_sha256)
            chain = getattr(extractor, "chain", None)
            fh.attrs["preprocess_json"] = json.dumps(
                chain.to_dict() if chain is not None else None, sort_keys=True
            )
            fh.attrs["image_hashes_digest"] = digest
            fh.attrs["n_duplicate_rows"] = n_dup
        with open(tmp, "rb+") as raw_fh:
            os.fsync(raw_fh.fileno())
        os.replace(tmp, out_path)
        _fsync_dir(out_path.parent)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    seconds = time.perf_counter() - start
    return FeatureFileInfo(
        path=str(out_path.resolve()),
        sha256=sha256_file(out_path),
        size_bytes=out_path.stat().st_size,
        shapes={s: [c, *feature_shape] for s, (c, _) in checked.items()},
        image_hashes_digest=digest,
        n_duplicate_rows=n_dup,
        seconds=seconds,
        images_per_s=total / seconds if seconds > 0 else float("inf"),
        device=extractor.device_info(),
        config_key=config.key(),
        weights_sha256=str(extractor.weights_sha256),
    )


# --------------------------------------------------------------------------- reading


@dataclass
class FeatureFile:
    """A feature file in memory.

    Attributes
    ----------
    path : str
    features : {split: (N, h, w, c) float32, or (N, h*w*c) (C order) when flattened}
    image_sha256 : {split: list of N hex str}, or None for files without hashes (the
        2019 layout had only ``train`` and ``val``)
    config : dict (FeatureConfig fields; {} when absent)
    metadata : other attributes (config_key, weights_sha256, image_hashes_digest, ...)
    sha256 : the file's sha256 when it was checked, else None
    """

    path: str
    features: dict[str, np.ndarray]
    image_sha256: dict[str, list[str]] | None
    config: dict
    metadata: dict
    sha256: str | None = None

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
    path: str | Path, expected_sha256: str | None = None, flatten: bool = False
) -> FeatureFile:
    """Read a feature file, optionally checking its sha256 first.

    Parameters
    ----------
    path : str or Path
    expected_sha256 : hex sha256 recorded when the file was written; mismatch ->
        IntegrityError naming the file, the expected and the found hash.
    flatten : return (N, h*w*c) C-order views instead of (N, h, w, c).

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
            missing = [n for n in names if n not in fh]
            if missing:
                raise DataFormatError(
                    f"feature file {path} lacks dataset(s) {missing}; it holds {sorted(fh.keys())}."
                )
            features = {n: fh[n][...] for n in names}
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
    )
