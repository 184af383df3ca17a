"""The ground-truth side file: :class:`GroundTruth` and :func:`load_ground_truth`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.data.layout import GROUND_TRUTH_FILE, SUBJECTS
from pipeline.data.synth.config import SynthConfig

__all__ = [
    "GroundTruth",
    "RoiAverageTruth",
    "load_ground_truth",
]



# --------------------------------------------------------------------------- ground truth
@dataclass(frozen=True, eq=False)
class RoiAverageTruth:
    """Planted truth for the average response of an ROI's NaN-free voxels.

    Attributes
    ----------
    roi : str
    voxel_ids : (n,) int64, the voxels averaged (those without a planted NaN block).
    signal_train, signal_val : (n_train,), (n_val,) noiseless average signal.
    response_train, response_val : average of the written data over those voxels.
    val_repeats : (n_rep_val, n_val) per-repeat averages; their mean is response_val.
    noise_sd : float, single-repeat noise sd of the average.
    ceiling_train, ceiling_val : float, true correlation ceilings of the averages.
    """

    roi: str
    voxel_ids: np.ndarray
    signal_train: np.ndarray
    signal_val: np.ndarray
    response_train: np.ndarray
    response_val: np.ndarray
    val_repeats: np.ndarray
    noise_sd: float
    ceiling_train: float
    ceiling_val: float


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """What was planted for one subject (all in the z-scored units of the data files).

    Attributes
    ----------
    subject : str
    config : SynthConfig
    voxel_ids : (n_vox,) int64, 1-based, same order as the data columns.
    roi_codes : (n_vox,) int16
    has_signal : (n_vox,) bool; False = pure noise (constant signal).
    nan_voxels : (n_vox,) bool, voxels given a NaN block (train and/or val).
    signal_train, signal_val : (n_train, n_vox), (n_val, n_vox) float32 noiseless signal
        after the data's z-scoring transform.
    noise_sd : (n_vox,) single-repeat noise sd (z-scored units); ``noise_sd_raw`` before.
    ceiling_train, ceiling_val : (n_vox,) correlation between the repeat-averaged
        response and the signal, sqrt(var_s / (var_s + var_n / n_reps)); 0 without signal.
    val_repeats : (n_rep_val, n_val, n_vox) float32 per-repeat validation responses in
        z-scored units, without NaN; their mean over axis 0 equals ``dataVal`` wherever
        ``dataVal`` is not NaN.
    rf_x, rf_y, rf_sd : (n_vox,) receptive-field centre and sd in feature-grid cells
        (x = column, y = row; planted but unused where ``has_signal`` is False).
    orientation_weights : (n_vox, n_orientations)
    zscore_mean, zscore_sd : (n_vox,) the transform raw -> written data.
    features_train, features_val : (n, grid, grid, n_orientations) float32 planted
        feature maps (centred per feature, one global scale); the signal of a voxel is
        their RF-and-orientation weighted sum, z-scored.
    roi_average : dict of ROI name -> RoiAverageTruth.
    """

    subject: str
    config: SynthConfig
    voxel_ids: np.ndarray
    roi_codes: np.ndarray
    has_signal: np.ndarray
    nan_voxels: np.ndarray
    signal_train: np.ndarray
    signal_val: np.ndarray
    noise_sd: np.ndarray
    noise_sd_raw: np.ndarray
    ceiling_train: np.ndarray
    ceiling_val: np.ndarray
    val_repeats: np.ndarray
    rf_x: np.ndarray
    rf_y: np.ndarray
    rf_sd: np.ndarray
    orientation_weights: np.ndarray
    zscore_mean: np.ndarray
    zscore_sd: np.ndarray
    features_train: np.ndarray
    features_val: np.ndarray
    roi_average: dict[str, RoiAverageTruth] = field(default_factory=dict)


def load_ground_truth(out_dir: str | os.PathLike, subject: str) -> GroundTruth:
    """Read the planted truth for ``subject`` from ``out_dir / GROUND_TRUTH_FILE``.

    ``out_dir`` may also be the ground-truth file itself.
    """
    if subject not in SUBJECTS:
        raise ConfigError(f"subject must be one of {', '.join(SUBJECTS)}, not {subject!r}.")
    p = Path(out_dir)
    path = p / GROUND_TRUTH_FILE if p.is_dir() else p
    if not path.is_file():
        raise DataFormatError(f"{path.name} was not found in {path.parent}: it is written only "
                              "by pipeline.data.synth.writer.generate, not part of real vim-1 data.")
    try:
        with h5py.File(path, "r") as f:
            cfg = SynthConfig.from_dict(json.loads(f.attrs["config_json"]))
            g = f[subject]
            arrays = {k: g[k][()] for k in g if isinstance(g[k], h5py.Dataset)}
            averages = {}
            for roi, rg in g["roi_average"].items():
                d = {k: rg[k][()] for k in rg}
                d.update({k: float(v) for k, v in rg.attrs.items()})
                averages[roi] = RoiAverageTruth(roi=roi, **d)
            ftr, fva = f["features_train"][()], f["features_val"][()]
    except (OSError, KeyError) as exc:
        raise DataFormatError(f"{path.name} in {path.parent} could not be read as a synthetic "
                              f"ground-truth file ({exc}).") from exc
    return GroundTruth(subject=subject, config=cfg, features_train=ftr, features_val=fva,
                       roi_average=averages, **arrays)
