"""Loader for the vim-1 data set (Kay et al. 2008) in its released on-disk layout.

Files (``specs/vim1-format.md``), all in one directory:

- ``EstimatedResponses.mat``: v7.3 (HDF5) with ``dataTrnS1`` (n_train, n_vox),
  ``dataValS1`` (n_val, n_vox), ``roiS1`` (1, n_vox), ``voxIdxS1`` (1, n_vox) and the same
  for S2 (h5py orientation). A v5 file is read too (MATLAB orientation, transposed).
- ``Stimuli.mat``: ``stimTrn`` (n_train, h, w), ``stimVal``, ``seqTrn``, ``seqVal``
  (v5 in the real release; v7.3 is read too, with axes reversed as MATLAB writes them).
- ``Stimuli_Trn_FullRes_01.mat`` ... ``_15.mat`` (dataset ``stimTrn``, h5py shape
  (S, S, N)) and ``Stimuli_Val_FullRes.mat`` (``stimVal``); images are
  ``np.transpose(x, (2, 1, 0))``.

Every problem with a file raises :class:`~pipeline.core.errors.DataFormatError` with one
sentence naming the file and what is wrong. Facts the spec marks as assumed (voxel
ids in 1..73728, unique, sorted) are checked and reported through ``warnings.warn``
and ``SubjectResponses.warnings`` rather than raised.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy.io import loadmat, whosmat
from scipy.io.matlab import matfile_version

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.core.files import sha256_file

__all__ = [
    "LOWRES_FILE",
    "RESPONSES_FILE",
    "ROI_CODES",
    "SPLITS",
    "SUBJECTS",
    "TRAIN_FULLRES_RE",
    "VAL_FULLRES_FILE",
    "VOLUME_SHAPE",
    "CleanROI",
    "SubjectResponses",
    "describe_dataset",
    "iter_stimuli",
    "load_lowres_stimuli",
    "load_responses",
    "mat_version",
    "stimulus_count",
    "stimulus_shape",
    "train_fullres_name",
]

ROI_CODES: dict[int, str] = {0: "other", 1: "V1", 2: "V2", 3: "V3", 4: "V3A", 5: "V3B",
                             6: "V4", 7: "LO"}
_ROI_BY_NAME = {name.lower(): code for code, name in ROI_CODES.items()}
_ROI_BY_NAME["latocc"] = 7  # the name used in the vim-1 readme
SUBJECTS = ("S1", "S2")
SPLITS = ("train", "val")
VOLUME_SHAPE = (64, 64, 18)
N_VOLUME = int(np.prod(VOLUME_SHAPE))  # 73728

RESPONSES_FILE = "EstimatedResponses.mat"
LOWRES_FILE = "Stimuli.mat"
VAL_FULLRES_FILE = "Stimuli_Val_FullRes.mat"
TRAIN_FULLRES_RE = re.compile(r"^Stimuli_Trn_FullRes_(\d+)\.mat$")
_LOWRES_VARS = ("stimTrn", "stimVal", "seqTrn", "seqVal")


def train_fullres_name(k: int) -> str:
    """Name of the k-th (1-based) full-resolution training file."""
    return f"Stimuli_Trn_FullRes_{k:02d}.mat"


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


def _check_subject(subject: str | int) -> str:
    s = f"S{subject}" if isinstance(subject, (int, np.integer)) else str(subject).upper()
    if s not in SUBJECTS:
        raise ConfigError(f"subject must be one of {', '.join(SUBJECTS)}, not {subject!r}.")
    return s


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"split must be 'train' or 'val', not {split!r}.")
    return split


def _integral(arr: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))


# --------------------------------------------------------------------------- responses
@dataclass(frozen=True, eq=False)
class CleanROI:
    """NaN-free voxels of one ROI.

    Attributes
    ----------
    roi : str
        ROI name ("V4", ... or "all").
    subject : str
    train : (n_train, n) float64
    val : (n_val, n) float64
    voxel_ids : (n,) int64, 1-based MATLAB linear indices.
    columns : (n,) int64, column of each voxel in the subject's full arrays.
    n_total : int, voxels of the ROI before dropping.
    n_dropped : int, voxels dropped for having a NaN in training or validation.
    """

    roi: str
    subject: str
    train: np.ndarray
    val: np.ndarray
    voxel_ids: np.ndarray
    columns: np.ndarray
    n_total: int
    n_dropped: int

    @property
    def n_voxels(self) -> int:
        return int(self.voxel_ids.size)


@dataclass(frozen=True, eq=False)
class SubjectResponses:
    """Responses of one subject as released (z-scored per voxel, NaN blocks kept).

    Attributes
    ----------
    subject : str
        "S1" or "S2".
    train : (n_train, n_vox) float64, may hold NaN.
    val : (n_val, n_vox) float64, may hold NaN.
    roi_codes : (n_vox,) int16, 0..7 (see ROI_CODES).
    voxel_ids : (n_vox,) int64, 1-based column-major index into a 64x64x18 volume.
    nan_mask : (n_vox,) bool, True where the voxel has a non-finite value in training
        or validation.
    source : Path of the file read.
    warnings : tuple of str, problems reported but not raised (voxel ids out of range,
        duplicated or unsorted).
    """

    subject: str
    train: np.ndarray
    val: np.ndarray
    roi_codes: np.ndarray
    voxel_ids: np.ndarray
    nan_mask: np.ndarray
    source: Path
    warnings: tuple[str, ...] = ()

    @property
    def n_voxels(self) -> int:
        return int(self.roi_codes.size)

    def roi_mask(self, roi: str | int) -> np.ndarray:
        """Boolean (n_vox,) mask of an ROI given by name (case-insensitive), "all" or code.

        Raises ConfigError for an unknown ROI, listing the valid names.
        """
        if isinstance(roi, (int, np.integer)) and not isinstance(roi, bool):
            code = int(roi)
            if code not in ROI_CODES:
                raise ConfigError(f"roi code {code} is unknown; valid codes are 0-7.")
            return self.roi_codes == code
        key = str(roi).strip().lower()
        if key == "all":
            return np.ones(self.n_voxels, dtype=bool)
        if key not in _ROI_BY_NAME:
            valid = ", ".join(["all", *ROI_CODES.values()])
            raise ConfigError(f"roi {roi!r} is unknown; valid names are {valid}.")
        return self.roi_codes == _ROI_BY_NAME[key]

    def select(self, roi: str | int) -> CleanROI:
        """The ROI's voxels without any NaN (training or validation), as copies."""
        mask = self.roi_mask(roi)
        keep = mask & ~self.nan_mask
        cols = np.flatnonzero(keep)
        return CleanROI(roi=canonical_roi(roi), subject=self.subject,
                        train=np.ascontiguousarray(self.train[:, cols]),
                        val=np.ascontiguousarray(self.val[:, cols]),
                        voxel_ids=self.voxel_ids[cols].copy(), columns=cols,
                        n_total=int(mask.sum()), n_dropped=int(mask.sum() - cols.size))

    def voxel_coordinates(self) -> np.ndarray:
        """(n_vox, 3) int64 (x, y, slice) of each voxel, assuming 1-based column-major ids."""
        ids = self.voxel_ids
        if ids.size and (ids.min() < 1 or ids.max() > N_VOLUME):
            raise DataFormatError(f"voxIdx{self.subject} in {_where(self.source)} holds ids "
                                  f"outside 1..{N_VOLUME}, so they are not indices into a "
                                  "64x64x18 volume.")
        return np.stack(np.unravel_index(ids - 1, VOLUME_SHAPE, order="F"), axis=1)


REPEATS_FILES = ("RepeatResponses.h5", "synthetic_ground_truth.h5")


def find_repeats_file(data_dir: str | os.PathLike) -> Path | None:
    """A file of repeat-level responses beside the data, if any (vim-1 ships none)."""
    for name in REPEATS_FILES:
        if (Path(data_dir) / name).is_file():
            return Path(data_dir) / name
    return None


def load_repeats(path: str | os.PathLike, subject: str | int) -> tuple[np.ndarray, np.ndarray]:
    """Repeat-level validation responses, for noise ceilings.

    The file is HDF5 with, per subject, ``/{S}/val_repeats`` (n_reps, n_images, n_vox)
    and ``/{S}/voxel_ids`` (n_vox,) (the layout the synthetic generator's ground-truth
    file uses; write your own re-estimated repeats the same way).

    Returns
    -------
    repeats : (n_reps, n_images, n_vox) float64
    voxel_ids : (n_vox,) int64
    """
    path, subject = Path(path), _check_subject(subject)
    with _open_h5(path) as f:
        need = [f"{subject}/val_repeats", f"{subject}/voxel_ids"]
        missing = [n for n in need if n not in f]
        if missing:
            raise DataFormatError(f"{_where(path)} has no {', '.join(missing)}: a repeats file "
                                  "holds /S1/val_repeats (n_reps, n_images, n_vox) and /S1/voxel_ids.")
        repeats = _read_h5(path, f[need[0]]).astype(np.float64)
        ids = _read_h5(path, f[need[1]]).astype(np.int64).ravel()
    if repeats.ndim != 3 or repeats.shape[2] != ids.size or repeats.shape[0] < 2:
        raise DataFormatError(f"{_where(path)}: {subject}/val_repeats has shape {_fmt_shape(repeats.shape)}; "
                              f"expected (n_reps >= 2, n_images, {ids.size}).")
    return repeats, ids


def canonical_roi(roi: str | int) -> str:
    """The canonical ROI name ("v4" -> "V4", "LatOcc" -> "LO", 6 -> "V4", "ALL" -> "all").

    Raises ConfigError for an unknown ROI, listing the valid names.
    """
    if isinstance(roi, (int, np.integer)) and not isinstance(roi, bool):
        if int(roi) not in ROI_CODES:
            raise ConfigError(f"roi code {int(roi)} is unknown; valid codes are 0-7.")
        return ROI_CODES[int(roi)]
    key = str(roi).strip().lower()
    if key == "all":
        return "all"
    if key not in _ROI_BY_NAME:
        valid = ", ".join(["all", *ROI_CODES.values()])
        raise ConfigError(f"roi {roi!r} is unknown; valid names are {valid}.")
    return ROI_CODES[_ROI_BY_NAME[key]]


def canonical_subject(subject: str | int) -> str:
    """"s1" / 1 / "S1" -> "S1"; ConfigError for anything else."""
    return _check_subject(subject)


def _responses_path(data_dir_or_file: str | os.PathLike) -> Path:
    p = Path(data_dir_or_file)
    path = p / RESPONSES_FILE if p.is_dir() or not p.suffix else p
    _require_file(path)
    return path


def _read_response_arrays(path: Path, subject: str) -> dict[str, np.ndarray]:
    """The four arrays of a subject in h5py orientation (images x voxels)."""
    names = (f"dataTrn{subject}", f"dataVal{subject}", f"roi{subject}", f"voxIdx{subject}")
    version = mat_version(path)
    if version == "v7.3":
        with _open_h5(path) as f:
            present = _h5_datasets(f)
            missing = [n for n in names if n not in present]
            if missing:
                raise DataFormatError(
                    f"{_where(path)} has no dataset {', '.join(missing)}; expected "
                    f"{', '.join(names)} for subject {subject}, found: {_names(present)}.")
            out = {}
            for n in names:
                _check_numeric(path, f"dataset {n}", f[n])
                out[n] = _read_h5(path, f[n])
        return out
    present_v5 = _v5_variables(path)
    missing = [n for n in names if n not in present_v5]
    if missing:
        raise DataFormatError(
            f"{_where(path)} has no variable {', '.join(missing)}; expected "
            f"{', '.join(names)} for subject {subject}, found: {_names(sorted(present_v5))}.")
    data = _load_v5(path, names)
    for n in names:
        _check_numeric(path, f"variable {n}", data[n])
    # MATLAB orientation is voxels x images; h5py (and this loader) use images x voxels.
    return {n: a.T for n, a in data.items()}


def _as_vector(path: Path, name: str, arr: np.ndarray, n_vox: int, ref: str) -> np.ndarray:
    shape = arr.shape
    ok = (arr.ndim == 1 and shape[0] == n_vox) or (
        arr.ndim == 2 and n_vox in shape and min(shape) == 1 and arr.size == n_vox)
    if not ok:
        raise DataFormatError(f"{name} in {_where(path)} has shape {_fmt_shape(shape)}, "
                              f"expected (1, {n_vox}) or ({n_vox},) to match the {n_vox} "
                              f"voxels of {ref}.")
    return arr.reshape(-1)


def load_responses(data_dir_or_file: str | os.PathLike, subject: str | int) -> SubjectResponses:
    """Read and validate one subject's responses from ``EstimatedResponses.mat``.

    Parameters
    ----------
    data_dir_or_file : path
        The vim-1 directory or the ``EstimatedResponses.mat`` file itself.
    subject : "S1" | "S2" (or 1 | 2)

    Returns
    -------
    SubjectResponses
        train (n_train, n_vox) and val (n_val, n_vox) float64 with NaNs kept.
    """
    subject = _check_subject(subject)
    path = _responses_path(data_dir_or_file)
    arrs = _read_response_arrays(path, subject)
    trn, val = arrs[f"dataTrn{subject}"], arrs[f"dataVal{subject}"]
    n_trn_name, n_val_name = f"dataTrn{subject}", f"dataVal{subject}"
    if trn.ndim != 2 or 0 in trn.shape:
        raise DataFormatError(f"dataset {n_trn_name} in {_where(path)} has shape "
                              f"{_fmt_shape(trn.shape)}, expected a non-empty 2-D array "
                              "(n_images, n_voxels).")
    n_vox = trn.shape[1]
    if val.ndim != 2 or val.shape[0] == 0:
        raise DataFormatError(f"dataset {n_val_name} in {_where(path)} has shape "
                              f"{_fmt_shape(val.shape)}, expected a non-empty 2-D array "
                              f"(n_images, {n_vox}).")
    if val.shape[1] != n_vox:
        raise DataFormatError(f"the training and validation voxel counts in {_where(path)} "
                              f"disagree: {n_trn_name} has {n_vox} voxels (shape "
                              f"{_fmt_shape(trn.shape)}) but {n_val_name} has {val.shape[1]} "
                              f"(shape {_fmt_shape(val.shape)}).")
    roi = _as_vector(path, f"roi{subject}", arrs[f"roi{subject}"], n_vox, n_trn_name)
    vox = _as_vector(path, f"voxIdx{subject}", arrs[f"voxIdx{subject}"], n_vox, n_trn_name)

    bad = ~np.isfinite(roi) | (roi != np.round(roi)) | (roi < 0) | (roi > 7)
    if bad.any():
        shown = ", ".join(f"{v:g}" for v in np.unique(roi[bad])[:5])
        raise DataFormatError(f"roi{subject} in {_where(path)} has {int(bad.sum())} codes "
                              f"outside the integers 0-7 (e.g. {shown}).")
    if not _integral(vox):
        raise DataFormatError(f"voxIdx{subject} in {_where(path)} holds non-integer or "
                              "non-finite values; expected 1-based MATLAB linear indices.")
    vox_i = vox.astype(np.int64)
    notes = []
    out_of_range = (vox_i < 1) | (vox_i > N_VOLUME)
    if out_of_range.any():
        notes.append(f"voxIdx{subject} in {path.name} has {int(out_of_range.sum())} ids outside "
                     f"1..{N_VOLUME} (min {vox_i.min()}, max {vox_i.max()}), so the 64x64x18 "
                     "volume assumption does not hold")
    n_dup = vox_i.size - np.unique(vox_i).size
    if n_dup:
        notes.append(f"voxIdx{subject} in {path.name} repeats {n_dup} ids")
    if vox_i.size > 1 and np.any(np.diff(vox_i) < 0):
        notes.append(f"voxIdx{subject} in {path.name} is not sorted")
    for note in notes:
        warnings.warn(note + ".", stacklevel=2)

    trn = np.asarray(trn, dtype=np.float64)
    val = np.asarray(val, dtype=np.float64)
    nan_mask = ~np.isfinite(trn).all(axis=0) | ~np.isfinite(val).all(axis=0)
    return SubjectResponses(subject=subject, train=trn, val=val,
                            roi_codes=roi.astype(np.int16), voxel_ids=vox_i,
                            nan_mask=nan_mask, source=path, warnings=tuple(notes))


def _response_image_counts(data_dir: Path) -> dict[str, dict[str, int]]:
    """{"S1": {"train": n, "val": n}, ...} from dataset shapes only (cheap); {} if absent."""
    path = data_dir / RESPONSES_FILE
    if not path.is_file():
        return {}
    out: dict[str, dict[str, int]] = {}
    if mat_version(path) == "v7.3":
        with _open_h5(path) as f:
            shapes = {n: f[n].shape for n in _h5_datasets(f)}
    else:  # MATLAB orientation: reverse
        shapes = {n: tuple(reversed(s)) for n, s in _v5_variables(path).items()}
    for s in SUBJECTS:
        trn, val = shapes.get(f"dataTrn{s}"), shapes.get(f"dataVal{s}")
        if trn and val and len(trn) == 2 and len(val) == 2:
            out[s] = {"train": int(trn[0]), "val": int(val[0])}
    return out


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


# --------------------------------------------------------------------------- describe
def _file_entry(path: Path, hash_files: bool) -> dict:
    entry = {"name": path.name, "size": int(path.stat().st_size)}
    entry["sha256"] = sha256_file(path) if hash_files else None
    return entry


def _range(a: np.ndarray) -> list[float | None]:
    fin = a[np.isfinite(a)]
    return [float(fin.min()), float(fin.max())] if fin.size else [None, None]


def describe_dataset(data_dir: str | os.PathLike, *, hash_files: bool = True,
                     image_ranges: bool = False) -> dict:
    """A plain JSON-able description of a vim-1 directory (validates it on the way).

    Parameters
    ----------
    data_dir : path
    hash_files : bool
        Compute the sha256 of every file (streamed in 8 MB chunks).
    image_ranges : bool
        Also read every full-resolution image for its min/max (slow on real data).

    Returns
    -------
    dict
        ``data_dir``; ``files`` (name, size, sha256) of the vim-1 files present;
        ``subjects`` per subject: n_voxels, n_train, n_val, n_nan_voxels, per-ROI
        ``rois`` {name: {code, all, clean, dropped}}, ``value_range`` {train, val};
        ``images`` per split: count, height, width, n_files (and min/max when asked);
        ``lowres``: shapes and min/max of ``Stimuli.mat`` or None when absent;
        ``synthetic``: the ground-truth file entry when the data are synthetic, else None;
        ``warnings``: problems reported but not raised.
    """
    from pipeline.synth import GROUND_TRUTH_FILE  # lazy: synth imports this module

    d = Path(data_dir)
    if not d.is_dir():
        raise DataFormatError(f"the vim-1 directory {d} does not exist or is not a directory.")
    resp_path = d / RESPONSES_FILE
    _require_file(resp_path)
    notes: list[str] = []

    images = {}
    stim_paths: list[Path] = []
    for split in SPLITS:
        files = _fullres_files(d, split)
        stim_paths += [sf.path for sf in files]
        entry = {"count": sum(sf.count for sf in files), "height": files[0].height,
                 "width": files[0].width, "n_files": len(files),
                 "per_file": [sf.count for sf in files]}
        if image_ranges:
            lo, hi = np.inf, -np.inf
            for batch in _iter_files(files, 120):
                lo, hi = min(lo, float(batch.min())), max(hi, float(batch.max()))
            entry.update(min=lo, max=hi)
        images[split] = entry

    if mat_version(resp_path) == "v7.3":
        with _open_h5(resp_path) as f:
            present = _h5_datasets(f)
    else:
        present = sorted(_v5_variables(resp_path))
    subjects = {}
    for s in SUBJECTS:
        if not any(n.endswith(s) for n in present):
            notes.append(f"{RESPONSES_FILE} holds no data for subject {s}")
            continue
        resp = load_responses(resp_path, s)
        notes += list(resp.warnings)
        rois = {}
        for code, name in ROI_CODES.items():
            mask = resp.roi_codes == code
            n_all, n_clean = int(mask.sum()), int((mask & ~resp.nan_mask).sum())
            rois[name] = {"code": code, "all": n_all, "clean": n_clean,
                          "dropped": n_all - n_clean}
        subjects[s] = {
            "n_voxels": resp.n_voxels, "n_train": int(resp.train.shape[0]),
            "n_val": int(resp.val.shape[0]), "n_nan_voxels": int(resp.nan_mask.sum()),
            "rois": rois,
            "value_range": {"train": _range(resp.train), "val": _range(resp.val)},
            "voxel_id_range": [int(resp.voxel_ids.min()), int(resp.voxel_ids.max())],
        }
        del resp
    if not subjects:
        raise DataFormatError(f"{_where(resp_path)} holds data for no subject; expected "
                              f"datasets such as dataTrnS1, found: {_names(present)}.")

    lowres = None
    low_path = d / LOWRES_FILE
    if low_path.is_file():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            low = load_lowres_stimuli(low_path)
        notes += [str(w.message) for w in caught]
        lowres = {n: list(a.shape) for n, a in low.items()}
        lo = min(float(low["stimTrn"].min()), float(low["stimVal"].min()))
        hi = max(float(low["stimTrn"].max()), float(low["stimVal"].max()))
        lowres.update(min=lo, max=hi)
        for split, key in (("train", "stimTrn"), ("val", "stimVal")):
            if low[key].shape[0] != images[split]["count"]:
                raise DataFormatError(f"{key} in {_where(low_path)} holds {low[key].shape[0]} "
                                      f"images but the full-resolution {split} files hold "
                                      f"{images[split]['count']}.")
        del low
    else:
        notes.append(f"{LOWRES_FILE} is absent (only the full-resolution stimuli are used)")

    listed = [resp_path] + ([low_path] if low_path.is_file() else []) + stim_paths
    gt = d / GROUND_TRUTH_FILE
    return {
        "data_dir": str(d.resolve()),
        "files": [_file_entry(p, hash_files) for p in listed],
        "subjects": subjects,
        "images": images,
        "lowres": lowres,
        "synthetic": _file_entry(gt, hash_files) if gt.is_file() else None,
        "warnings": notes,
    }
