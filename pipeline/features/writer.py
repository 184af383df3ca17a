"""Writing a feature file: batched extraction into HDF5, hashed, checked and atomic.

:func:`write_feature_file` validates its inputs, runs the extractor over every split,
refuses duplicate feature rows, writes the datasets and attributes, hashes each
preprocessed image, and replaces the final path atomically while the file's sha256 is
computed. No TensorFlow here.

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
Several-layer datasets are *chunked* (:func:`chunk_shape`: one batch of rows by a slab
of the first feature axis, about 1 MiB), so that writing a batch of rows and reading a
block of feature columns for all rows (:func:`pipeline.features.reader.iter_column_blocks`)
both touch whole chunks; every batch is written as it comes (memory: one batch of every
layer, never a whole layer).

``image_hashes_digest`` (see :func:`hashes_digest`) summarises every per-image hash in
order, so a tracker document can prove which images (and in which order) produced a file.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.core.errors import ConfigError, IntegrityError
from pipeline.core.files import atomic_path, sha256_file
from pipeline.features.config import _LAYER_RE, _SPLIT_RE, FeatureConfig
from pipeline.features.duplicates import DuplicateGuard
from pipeline.features.extractor import Extractor
from pipeline.preprocess.images import image_sha256

__all__ = [
    "FeatureFileInfo",
    "chunk_shape",
    "hashes_digest",
    "write_feature_file",
]

FORMAT_NAME = "vimtrack-features"
FORMAT_VERSION = 1


def hashes_digest(hashes: Mapping[str, Sequence[str]]) -> str:
    """sha256 over per-image hashes in order: for each split ``"{split}\\n"`` then each
    hex hash followed by ``"\\n"``."""
    h = hashlib.sha256()
    for split, values in hashes.items():
        h.update(f"{split}\n".encode())
        for value in values:
            h.update(f"{value}\n".encode())
    return h.hexdigest()


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


#: target bytes of one HDF5 chunk of a several-layer file
CHUNK_BYTES = 1 << 20


def chunk_shape(count: int, shape: Sequence[int], rows: int) -> tuple[int, ...]:
    """The HDF5 chunk of a ``(count, *shape)`` float32 dataset written ``rows`` at a time.

    ``rows`` images (at most ``count``) by as many slices of the first feature axis as fit
    in :data:`CHUNK_BYTES` (at least one) by the whole of the other axes.
    """
    rows = max(1, min(int(rows) if rows > 0 else 64, int(count)))
    shape = tuple(int(d) for d in shape)
    inner = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    k = max(1, min(shape[0], CHUNK_BYTES // (4 * rows * inner)))
    return (rows, k, *shape[1:])


def _dataset_name(split: str, layer: str, multi: bool) -> str:
    return f"{split}__{layer}" if multi else split


@dataclass
class _Layout:
    """What the extractor produces: layer names, shapes and the forward pass over all."""

    layers: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    named: bool
    forward_all: Callable[[np.ndarray], Mapping[str, np.ndarray]]

    @property
    def multi(self) -> bool:
        return len(self.layers) > 1


def _check_write_args(extractor, splits, config) -> tuple[dict[str, tuple[int, Iterable]], _Layout]:
    """Validate the arguments of :func:`write_feature_file`; returns (splits, layout)."""
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
    if len(layers) > 1:
        bad = [n for n in layers if not _LAYER_RE.fullmatch(n)]
        if bad:
            raise ConfigError(f"layer names {bad} cannot name feature datasets (letters, digits, _ . -).")
    forward_all = getattr(extractor, "forward_all", None)
    if forward_all is None:

        def forward_all(x):
            return {layers[0]: extractor.forward(x)}

    return checked, _Layout(layers, layer_shapes, named, forward_all)


def _checked_rows(feats: np.ndarray, name: str, split: str, done: int, n: int, layout: _Layout
                  ) -> np.ndarray:
    """The (n, D) rows of one layer's (n, h, w, c) output; refuses wrong shapes and NaN."""
    if feats.shape != (n, *layout.shapes[name]):
        raise IntegrityError(
            f"split {split!r}: the extractor returned shape "
            f"{feats.shape} for {n} images, expected "
            f"{(n, *layout.shapes[name])}."
        )
    rows = feats.reshape(n, -1)
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        where = f" ({name})" if layout.multi else ""
        raise IntegrityError(f"split {split!r} image {done + bad} gave non-finite features{where}.")
    return rows


class _SplitWriter:
    """Writes the splits of one file: datasets, batches, duplicate guard, image hashes."""

    def __init__(self, fh, layout: _Layout, guard: DuplicateGuard, progress, rows: int = 64) -> None:
        self.fh = fh
        self.rows = rows
        self.layout = layout
        self.guard = guard
        self.progress = progress
        self.dsets: dict[tuple[str, str], object] = {}
        self.hashes: dict[str, list[str]] = {}
        self.n_dup = 0

    def read_back(self, split: str, index: int, name: str) -> np.ndarray:
        return self.dsets[split, name][index].reshape(-1)

    def write_split(self, split: str, count: int, source) -> None:
        """Consume ``source`` up to the end of ``split`` (``count`` images)."""
        layout = self.layout
        for n in layout.layers:
            chunks = chunk_shape(count, layout.shapes[n], self.rows) if layout.multi else None
            self.dsets[split, n] = self.fh.create_dataset(
                _dataset_name(split, n, layout.multi), shape=(count, *layout.shapes[n]), dtype="float32",
                chunks=chunks,
            )
        hashes: list[str] = []
        done = 0
        while True:
            item = source.get()
            if item[0] == "end":
                break
            _, _split, n, x, batch_hashes = item
            if done + n > count:
                raise IntegrityError(f"split {split!r} yielded more than its declared {count} images.")
            self._write_batch(split, done, n, x, batch_hashes)
            hashes.extend(batch_hashes)
            done += n
            if self.progress is not None:
                self.progress(split, done, count)
        if done != count:
            raise IntegrityError(f"split {split!r} yielded {done} images, fewer than its declared {count}.")
        self.fh.create_dataset(f"{split}_image_sha256", data=np.array(hashes, dtype="S64"))
        self.hashes[split] = hashes

    def _write_batch(self, split: str, done: int, n: int, x: np.ndarray, batch_hashes) -> None:
        outputs = self.layout.forward_all(x)
        dup = self.guard.check_inputs(split, done, batch_hashes)
        for name in self.layout.layers:
            feats = np.asarray(outputs[name], dtype=np.float32)
            rows = _checked_rows(feats, name, split, done, n, self.layout)
            self.guard.check_rows(name, split, done, rows, dup, self.read_back)
            self.dsets[split, name][done : done + n] = feats
        self.n_dup += int(dup.sum())


def _batch_size(extractor) -> int:
    batch_size = getattr(extractor, "batch_size", 0)
    return int(batch_size) if isinstance(batch_size, (int, np.integer)) else 0


def _write_attrs(fh, checked, layout: _Layout, config: FeatureConfig, extractor, digest: str,
                 n_dup: int) -> None:
    """The file's attributes (see the module docstring)."""
    fh.attrs["format"] = FORMAT_NAME
    fh.attrs["format_version"] = FORMAT_VERSION
    fh.attrs["splits"] = json.dumps(list(checked))
    if layout.named:
        fh.attrs["layers"] = json.dumps(list(layout.layers))
    fh.attrs["config_json"] = json.dumps(config.to_dict(), sort_keys=True)
    fh.attrs["config_sha256"] = config.key()
    fh.attrs["weights_sha256"] = str(extractor.weights_sha256)
    chain = getattr(extractor, "chain", None)
    fh.attrs["preprocess_json"] = json.dumps(chain.to_dict() if chain is not None else None, sort_keys=True)
    fh.attrs["image_hashes_digest"] = digest
    fh.attrs["n_duplicate_rows"] = n_dup
    fh.attrs["batch_size"] = _batch_size(extractor)


def _write_contents(tmp: Path, extractor, checked, layout: _Layout, config: FeatureConfig, progress,
                    allow_duplicates: bool, prefetch: bool) -> tuple[str, int]:
    """Write the whole HDF5 file at ``tmp``; returns (image hashes digest, duplicate rows)."""
    import h5py

    guard = DuplicateGuard(layout.layers, allow_duplicates, layout.multi)
    source = (_Prefetcher if prefetch else _Inline)(extractor, checked)
    try:
        with h5py.File(tmp, "w") as fh:
            writer = _SplitWriter(fh, layout, guard, progress, _batch_size(extractor))
            for split, (count, _batches) in checked.items():
                writer.write_split(split, count, source)
            digest = hashes_digest(writer.hashes)
            _write_attrs(fh, checked, layout, config, extractor, digest, writer.n_dup)
            writer.dsets.clear()
    finally:
        source.close()
    return digest, writer.n_dup


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
    checked, layout = _check_write_args(extractor, splits, config)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    file_sha: dict[str, str] = {}

    def hash_file(tmp: Path) -> None:  # runs while the fsync waits for the disk
        file_sha["sha256"] = sha256_file(tmp)

    with atomic_path(out_path, while_syncing=hash_file) as tmp:
        digest, n_dup = _write_contents(tmp, extractor, checked, layout, config, progress,
                                        allow_duplicates, prefetch)
    return _file_info(out_path, file_sha["sha256"], checked, layout, extractor, config, digest, n_dup,
                      time.perf_counter() - start)


def _file_info(out_path: Path, sha256: str, checked, layout: _Layout, extractor, config: FeatureConfig,
               digest: str, n_dup: int, seconds: float) -> FeatureFileInfo:
    """The :class:`FeatureFileInfo` of a file just written."""
    total = sum(count for count, _ in checked.values())
    layers, named = layout.layers, layout.named
    return FeatureFileInfo(
        path=str(out_path.resolve()),
        sha256=sha256,
        size_bytes=out_path.stat().st_size,
        shapes={s: [c, *layout.shapes[layers[0]]] for s, (c, _) in checked.items()},
        image_hashes_digest=digest,
        n_duplicate_rows=n_dup,
        seconds=seconds,
        images_per_s=total / seconds if seconds > 0 else float("inf"),
        device=extractor.device_info(),
        config_sha256=config.key(),
        weights_sha256=str(extractor.weights_sha256),
        layers=list(layers) if named else [],
        layer_shapes={n: list(layout.shapes[n]) for n in layers} if named else {},
        batch_size=_batch_size(extractor),
    )
