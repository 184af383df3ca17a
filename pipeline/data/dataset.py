"""A summary of a vim-1 directory: :func:`describe_dataset` (files, subjects, ROI counts,
value ranges, image counts), plain JSON-able.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from pipeline.core.errors import DataFormatError
from pipeline.core.files import sha256_file
from pipeline.data.layout import GROUND_TRUTH_FILE, LOWRES_FILE, RESPONSES_FILE, ROI_CODES, SPLITS, SUBJECTS
from pipeline.data.matfiles import (
    _h5_datasets,
    _names,
    _open_h5,
    _require_file,
    _v5_variables,
    _where,
    mat_version,
)
from pipeline.data.responses import load_responses
from pipeline.data.stimuli import _fullres_files, _iter_files, load_lowres_stimuli

__all__ = [
    "describe_dataset",
]



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

    d = Path(data_dir)
    if not d.is_dir():
        raise DataFormatError(f"the vim-1 directory {d} does not exist or is not a directory.")
    resp_path = d / RESPONSES_FILE
    _require_file(resp_path)
    notes: list[str] = []
    images, stim_paths = _describe_images(d, image_ranges)
    subjects = _describe_subjects(resp_path, notes)
    low_path = d / LOWRES_FILE
    lowres = _describe_lowres(low_path, images, notes)
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


def _describe_images(d: Path, image_ranges: bool) -> tuple[dict, list[Path]]:
    """Per split: count, height, width, files (and min/max); and the image file paths."""
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
    return images, stim_paths


def _describe_subjects(resp_path: Path, notes: list[str]) -> dict:
    """Per subject present: voxel counts, per-ROI counts and value ranges (notes appended)."""
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
    return subjects


def _describe_lowres(low_path: Path, images: dict, notes: list[str]) -> dict | None:
    """Shapes and min/max of ``Stimuli.mat`` (checked against the image counts), or None."""
    if not low_path.is_file():
        notes.append(f"{LOWRES_FILE} is absent (only the full-resolution stimuli are used)")
        return None
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
    return lowres
