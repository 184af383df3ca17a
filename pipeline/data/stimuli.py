"""vim-1 stimuli: counts, shapes, streaming the full-resolution images in order, and
the low-resolution ``Stimuli.mat``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.data.layout import (
    _LOWRES_VARS,
    LOWRES_FILE,
    RESPONSES_FILE,
    TRAIN_FULLRES_RE,
    VAL_FULLRES_FILE,
    _check_split,
    train_fullres_name,
)
from pipeline.data.matfiles import (
    _check_numeric,
    _fmt_shape,
    _h5_datasets,
    _integral,
    _listing,
    _load_v5,
    _names,
    _open_h5,
    _read_h5,
    _require_file,
    _v5_variables,
    _where,
    mat_version,
)
from pipeline.data.responses import _response_image_counts

__all__ = [
    "iter_stimuli",
    "load_lowres_stimuli",
    "stimulus_count",
    "stimulus_shape",
]



# --------------------------------------------------------------------------- stimuli
@dataclass(frozen=True)
class _StimFile:
    path: Path
    dataset: str
    count: int
    height: int
    width: int


def _fullres_files(data_dir: str | os.PathLike, split: str, *,
                   check_responses: bool = True) -> list[_StimFile]:
    """Validated full-resolution files of a split, in image order."""
    split = _check_split(split)
    d = Path(data_dir)
    if not d.is_dir():
        raise DataFormatError(f"the vim-1 directory {d} does not exist or is not a directory.")
    if split == "train":
        numbered = {}
        for p in d.iterdir():
            m = TRAIN_FULLRES_RE.match(p.name)
            if m:
                numbered[int(m.group(1))] = p
        if not numbered:
            raise DataFormatError(f"no training stimulus files Stimuli_Trn_FullRes_NN.mat were "
                                  f"found in {d}; {_listing(d)}.")
        expected = list(range(1, max(numbered) + 1))
        missing = [k for k in expected if k not in numbered]
        if missing:
            raise DataFormatError(
                f"{train_fullres_name(missing[0])} is missing in {d}: the training stimuli "
                f"must be numbered 01..{max(numbered):02d} without gaps, found "
                f"{', '.join(f'{k:02d}' for k in sorted(numbered))}.")
        paths, var = [numbered[k] for k in expected], "stimTrn"
    else:
        p = d / VAL_FULLRES_FILE
        _require_file(p)
        paths, var = [p], "stimVal"

    files = []
    for p in paths:
        if mat_version(p) != "v7.3":
            raise DataFormatError(f"{_where(p)} is a MATLAB v5 file, expected v7.3 (HDF5) "
                                  "full-resolution stimuli.")
        with _open_h5(p) as f:
            present = _h5_datasets(f)
            if var not in present:
                raise DataFormatError(f"{_where(p)} has no dataset {var}; expected {var}, "
                                      f"found: {_names(present)}.")
            ds = f[var]
            _check_numeric(p, f"dataset {var}", ds)
            shape = ds.shape
        if len(shape) != 3 or 0 in shape:
            raise DataFormatError(f"dataset {var} in {_where(p)} has shape {_fmt_shape(shape)}, "
                                  "expected (width, height, n_images) as in (500, 500, 120).")
        files.append(_StimFile(p, var, int(shape[2]), int(shape[1]), int(shape[0])))
    first = files[0]
    for sf in files[1:]:
        if (sf.height, sf.width) != (first.height, first.width):
            raise DataFormatError(
                f"{_where(sf.path)} holds {sf.height}x{sf.width} images but "
                f"{first.path.name} holds {first.height}x{first.width}; all training "
                "stimulus files must have the same image size.")
    if check_responses:
        _check_counts(d, split, files)
    return files


def _check_counts(d: Path, split: str, files: list[_StimFile]) -> None:
    n = sum(sf.count for sf in files)
    key = "dataTrn" if split == "train" else "dataVal"
    for subject, counts in _response_image_counts(d).items():
        if counts[split] != n:
            which = (f"the {len(files)} files Stimuli_Trn_FullRes_*.mat hold" if split == "train"
                     else f"{VAL_FULLRES_FILE} holds")
            raise DataFormatError(f"In {d}, {which} {n} images but {key}{subject} in "
                                  f"{RESPONSES_FILE} has {counts[split]} image rows.")


def stimulus_count(data_dir: str | os.PathLike, split: str) -> int:
    """Number of full-resolution images of ``split`` ("train" | "val").

    Raises DataFormatError when the files are missing, malformed, or disagree with the
    image counts of ``EstimatedResponses.mat`` (when that file is present).
    """
    return sum(sf.count for sf in _fullres_files(data_dir, split))


def stimulus_shape(data_dir: str | os.PathLike, split: str) -> tuple[int, int]:
    """(height, width) of the full-resolution images of ``split``."""
    first = _fullres_files(data_dir, split)[0]
    return first.height, first.width


def iter_stimuli(data_dir: str | os.PathLike, split: str, batch_size: int
                 ) -> Iterator[np.ndarray]:
    """Full-resolution images in dataset order, ``batch_size`` at a time.

    Batches may straddle files; the last batch may be shorter. Files are opened one at a
    time, lazily; the read strategy follows each file's HDF5 layout (see
    ``_image_reader``: a contiguous dataset is read whole, one file of at most 120
    images at a time). The file set is validated when this is called (missing or
    misnumbered files, dataset names, shapes, counts against EstimatedResponses.mat);
    an unreadable chunk raises DataFormatError during iteration.

    Yields
    ------
    np.ndarray
        (B, H, W) float32 raw pixel values (about -0.55..0.45 in vim-1).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, not {batch_size!r}.")
    files = _fullres_files(data_dir, split)
    return _iter_files(files, int(batch_size))


def _iter_files(files: list[_StimFile], batch_size: int) -> Iterator[np.ndarray]:
    pending: list[np.ndarray] = []
    n_pending = 0
    for sf in files:
        with _open_h5(sf.path) as f:
            read = _image_reader(sf.path, f[sf.dataset])
            pos = 0
            while pos < sf.count:
                take = min(batch_size - n_pending, sf.count - pos)
                pending.append(read(pos, pos + take))
                n_pending += take
                pos += take
                if n_pending == batch_size:
                    yield _join(pending)
                    pending, n_pending = [], 0
    if n_pending:
        yield _join(pending)


def _image_reader(path: Path, ds: h5py.Dataset) -> Callable[[int, int], np.ndarray]:
    """A function (a, b) -> (b - a, H, W) float32 C-contiguous images a..b-1 of ``ds``.

    The strategy follows the storage layout of the (W, H, N) dataset: one image per
    chunk -> read image by image (a slab read would scatter every chunk with a stride of
    N elements, about 10x slower); contiguous -> read the file once (strided reads of
    it are very slow; a real file holds 120 images, ~240 MB in float64); other chunking
    -> read slabs.
    """
    w, h, _n = ds.shape
    if ds.chunks is not None and ds.chunks[2] == 1:
        def read(a: int, b: int) -> np.ndarray:
            out = np.empty((b - a, h, w), dtype=np.float32)
            for k in range(a, b):
                out[k - a] = _read_h5(path, ds, (slice(None), slice(None), k)).T
            return out
        return read
    whole = _read_h5(path, ds) if ds.chunks is None else None

    def read_slab(a: int, b: int) -> np.ndarray:
        sel = (slice(None), slice(None), slice(a, b))
        block = whole[sel] if whole is not None else _read_h5(path, ds, sel)
        return np.ascontiguousarray(np.transpose(block, (2, 1, 0)), dtype=np.float32)
    return read_slab


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def _lowres_path(data_dir: str | os.PathLike) -> Path:
    p = Path(data_dir)
    path = p / LOWRES_FILE if p.is_dir() or not p.suffix else p
    _require_file(path)
    return path


def load_lowres_stimuli(data_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read ``Stimuli.mat`` (v5 or v7.3).

    Returns
    -------
    dict
        ``stimTrn`` (n_train, h, w) float32, ``stimVal`` (n_val, h, w) float32,
        ``seqTrn`` (n_seconds, n_runs) int64, ``seqVal`` int64 (1-based image index,
        0 = blank), in MATLAB orientation whatever the file version.
    """
    path = _lowres_path(data_dir)
    if mat_version(path) == "v7.3":
        with _open_h5(path) as f:
            present = _h5_datasets(f)
            missing = [n for n in _LOWRES_VARS if n not in present]
            if missing:
                raise DataFormatError(f"{_where(path)} has no dataset {', '.join(missing)}; "
                                      f"expected {', '.join(_LOWRES_VARS)}, found: "
                                      f"{_names(present)}.")
            # MATLAB writes arrays with their axes reversed in HDF5.
            raw = {n: np.transpose(_read_h5(path, f[n])) for n in _LOWRES_VARS}
    else:
        present_v5 = _v5_variables(path)
        missing = [n for n in _LOWRES_VARS if n not in present_v5]
        if missing:
            raise DataFormatError(f"{_where(path)} has no variable {', '.join(missing)}; "
                                  f"expected {', '.join(_LOWRES_VARS)}, found: "
                                  f"{_names(sorted(present_v5))}.")
        raw = _load_v5(path, _LOWRES_VARS)
    out: dict[str, np.ndarray] = {}
    for n in ("stimTrn", "stimVal"):
        a = raw[n]
        _check_numeric(path, n, a)
        if a.ndim != 3 or 0 in a.shape:
            raise DataFormatError(f"{n} in {_where(path)} has shape {_fmt_shape(a.shape)}, "
                                  "expected (n_images, height, width) as in (1750, 128, 128).")
        out[n] = np.ascontiguousarray(a, dtype=np.float32)
    if out["stimTrn"].shape[1:] != out["stimVal"].shape[1:]:
        raise DataFormatError(f"stimTrn and stimVal in {_where(path)} have different image "
                              f"sizes {out['stimTrn'].shape[1:]} and {out['stimVal'].shape[1:]}.")
    for n, stim in (("seqTrn", "stimTrn"), ("seqVal", "stimVal")):
        a = np.asarray(raw[n])
        _check_numeric(path, n, a)
        if a.ndim != 2 or not _integral(a):
            raise DataFormatError(f"{n} in {_where(path)} must be a 2-D array of integer image "
                                  f"indices, found shape {_fmt_shape(a.shape)} dtype {a.dtype}.")
        seq = a.astype(np.int64)
        n_img = out[stim].shape[0]
        if seq.size and (seq.min() < 0 or seq.max() > n_img):
            warnings.warn(f"{n} in {path.name} holds indices {seq.min()}..{seq.max()} outside "
                          f"0..{n_img} (the {n_img} images of {stim}).", stacklevel=2)
        out[n] = seq
    return out
