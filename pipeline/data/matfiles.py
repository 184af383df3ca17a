"""MATLAB file helpers: the MAT version, v7.3 (HDF5) and v5 reads, and the checks and
messages every vim-1 reader shares.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
from scipy.io import loadmat, whosmat
from scipy.io.matlab import matfile_version

from pipeline.core.errors import DataFormatError

__all__ = [
    "mat_version",
]



# --------------------------------------------------------------------------- helpers
def _listing(directory: Path, limit: int = 20) -> str:
    if not directory.is_dir():
        return f"the directory {directory} does not exist"
    names = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    if not names:
        return f"the directory {directory} is empty"
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"it contains: {shown}{more}"


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise DataFormatError(f"{path.name} was not found in {path.parent}; "
                              f"{_listing(path.parent)}.")


def _where(path: Path) -> str:
    return f"{path.name} (in {path.parent})"


def _names(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(names) if names else "nothing"


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + (",)" if len(shape) == 1 else ")")


def mat_version(path: str | os.PathLike) -> str:
    """MATLAB file version of ``path``: "v5" or "v7.3" (HDF5).

    A plain HDF5 file without the MATLAB user block also counts as "v7.3".
    Raises DataFormatError for a missing, empty, v4 or non-MATLAB file.
    """
    p = Path(path)
    _require_file(p)
    try:
        major, _minor = matfile_version(str(p))
    except Exception as exc:  # scipy raises MatReadError / ValueError on unknown headers
        if h5py.is_hdf5(str(p)):
            return "v7.3"
        raise DataFormatError(f"{_where(p)} is not a MATLAB .mat or HDF5 file ({exc}).") from exc
    if major == 1:
        return "v5"
    if major == 2:
        return "v7.3"
    raise DataFormatError(f"{_where(p)} is a MATLAB v4 file, which is not supported; "
                          "expected v5 or v7.3.")


@contextmanager
def _open_h5(path: Path) -> Iterator[h5py.File]:
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataFormatError(f"{_where(path)} could not be opened as HDF5: the file is "
                              f"truncated or corrupt ({exc}).") from exc
    try:
        yield f
    finally:
        f.close()


def _read_h5(path: Path, ds: h5py.Dataset, sel: tuple | slice = ()) -> np.ndarray:
    try:
        return ds[sel]
    except (OSError, RuntimeError) as exc:
        raise DataFormatError(f"dataset {ds.name.lstrip('/')} in {_where(path)} could not be "
                              f"read: the file is truncated or corrupt ({exc}).") from exc


def _h5_datasets(f: h5py.File) -> list[str]:
    return sorted(k for k in f if isinstance(f.get(k, getlink=False), h5py.Dataset))


def _v5_variables(path: Path) -> dict[str, tuple[int, ...]]:
    try:
        return {name: tuple(shape) for name, shape, _cls in whosmat(str(path))}
    except Exception as exc:
        raise DataFormatError(f"{_where(path)} could not be read as a MATLAB v5 file: it is "
                              f"truncated or corrupt ({exc}).") from exc


def _load_v5(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        data = loadmat(str(path), variable_names=list(names))
    except Exception as exc:
        raise DataFormatError(f"{_where(path)} could not be read as a MATLAB v5 file: it is "
                              f"truncated or corrupt ({exc}).") from exc
    return {n: np.asarray(data[n]) for n in names}


def _check_numeric(path: Path, name: str, arr: np.ndarray | h5py.Dataset) -> None:
    if arr.dtype.kind not in "fiub":
        raise DataFormatError(f"{name} in {_where(path)} has dtype {arr.dtype}, expected a "
                              "numeric (float64) array.")


def _integral(arr: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
