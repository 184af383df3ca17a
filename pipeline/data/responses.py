"""vim-1 responses, ROI codes and repeats (Kay et al. 2008), in the released layout.

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
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.data.layout import (
    _ROI_BY_NAME,
    N_VOLUME,
    REPEATS_FILES,
    RESPONSES_FILE,
    ROI_CODES,
    SUBJECTS,
    VOLUME_SHAPE,
    _check_subject,
    canonical_roi,
)
from pipeline.data.matfiles import (
    _check_numeric,
    _fmt_shape,
    _h5_datasets,
    _integral,
    _load_v5,
    _names,
    _open_h5,
    _read_h5,
    _require_file,
    _v5_variables,
    _where,
    mat_version,
)

__all__ = [
    "CleanROI",
    "SubjectResponses",
    "find_repeats_file",
    "load_repeats",
    "load_responses",
]



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
    notes = _voxel_id_notes(path, subject, vox_i)
    for note in notes:
        warnings.warn(note + ".", stacklevel=2)

    trn = np.asarray(trn, dtype=np.float64)
    val = np.asarray(val, dtype=np.float64)
    nan_mask = ~np.isfinite(trn).all(axis=0) | ~np.isfinite(val).all(axis=0)
    return SubjectResponses(subject=subject, train=trn, val=val,
                            roi_codes=roi.astype(np.int16), voxel_ids=vox_i,
                            nan_mask=nan_mask, source=path, warnings=tuple(notes))


def _voxel_id_notes(path: Path, subject: str, vox_i: np.ndarray) -> list[str]:
    """What the (n_vox,) voxel ids break of the spec's assumptions (in 1..73728, unique,
    sorted): reported, not raised."""
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
    return notes


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
