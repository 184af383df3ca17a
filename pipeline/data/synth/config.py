"""The generator's configuration (:class:`SynthConfig`, ``PRESETS``) and voxel counts.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.data.layout import SUBJECTS

__all__ = [
    "IMAGES_PER_FILE",
    "PRESETS",
    "SynthConfig",
    "real_voxel_counts",
    "scaled_voxel_counts",
]

IMAGES_PER_FILE = 120
BACKGROUND = -0.05  # grey level of the aperture surround (values span about -0.55..0.45)
PIXEL_RANGE = (-0.55, 0.45)
GROUND_TRUTH_FORMAT = 1
Progress = Callable[[str, int, int], None]


# Real voxel counts (specs/vim1-format.md).
_S1_COUNTS = {0: 17127, 1: 1331, 2: 2208, 3: 1973, 4: 484, 5: 314, 6: 1550, 7: 928}
_S2_TOTAL, _S2_OTHER, _S2_V4 = 26329, 18626, 1022


# Share of voxels with NaN blocks per ROI code, from the real S1 counts; S2 V4 has none.
_NAN_SHARE_S1 = {0: 0.02, 1: 37 / 1331, 2: 125 / 2208, 3: 183 / 1973, 4: 0.0, 5: 0.0,
                 6: 15 / 1550, 7: 0.0}
_NAN_SHARE = {"S1": _NAN_SHARE_S1, "S2": {**_NAN_SHARE_S1, 6: 0.0}}


# Receptive-field sd per ROI in units of a 16-cell grid over the 20 degree image.
_RF_SD = {0: 2.0, 1: 0.5, 2: 0.7, 3: 0.9, 4: 1.2, 5: 1.3, 6: 1.6, 7: 2.5}


# Left-hemisphere centre (x, y, slice) of each visual ROI in the 64x64x18 volume;
# the right hemisphere mirrors x. Slice 0 is the most posterior (occipital pole).
_ROI_CENTRES = {1: (26, 30, 1), 2: (24, 30, 3), 3: (22, 32, 5), 4: (20, 42, 7),
                5: (18, 44, 9), 6: (20, 18, 8), 7: (12, 26, 11)}
_VOXEL_MM = np.array([2.0, 2.0, 2.5])


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SynthConfig:
    """Parameters of a synthetic vim-1 data set (serialises to JSON, see ``to_dict``).

    Parameters
    ----------
    n_train, n_val : int
        Number of training / validation images (real: 1750 / 120).
    voxel_scale : float
        Fraction of the real voxel counts per ROI (1.0 = 25,915 / 26,329 voxels);
        every ROI keeps at least ``min_roi_voxels``.
    image_size : int
        Side of the full-resolution images (real: 500).
    lowres_size : int
        Side of the images in ``Stimuli.mat`` (real: 128).
    n_rep_train, n_rep_val : int
        Simulated repeats averaged into each training / validation response.
    seed : int
        Master seed; everything is reproducible from it.
    feature_res, feature_grid, n_orientations : int
        Planted feature map: contrast energy computed at ``feature_res`` px, pooled to a
        ``feature_grid`` x ``feature_grid`` grid in ``n_orientations`` orientations.
    val_ceiling_range : tuple of float
        Range of the true correlation ceiling of the validation averages (uniform).
    other_signal_fraction, visual_signal_fraction : float
        Share of voxels with signal in ROI "other" and in the visual ROIs.
    nan_image_fraction : float
        Mean share of training images missing (NaN) for a voxel with a NaN block.
    min_roi_voxels : int
        Floor on the voxel count of every ROI after scaling.
    shared_noise_fraction : float
        Share of each voxel's noise variance that is common to all voxels of its ROI
        (per image and repeat), so that ROI averages keep some noise.
    """

    n_train: int = 700
    n_val: int = 60
    voxel_scale: float = 0.1
    image_size: int = 500
    lowres_size: int = 128
    n_rep_train: int = 2
    n_rep_val: int = 13
    seed: int = 0
    feature_res: int = 64
    feature_grid: int = 16
    n_orientations: int = 4
    val_ceiling_range: tuple[float, float] = (0.3, 0.95)
    other_signal_fraction: float = 0.3
    visual_signal_fraction: float = 1.0
    nan_image_fraction: float = 0.4
    min_roi_voxels: int = 5
    shared_noise_fraction: float = 0.1

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ConfigError(f"SynthConfig.{name} = {getattr(self, name)!r} is invalid: "
                                  f"{what}.")

        for name in ("n_train", "n_val", "image_size", "lowres_size", "n_rep_train",
                     "n_rep_val", "seed", "feature_res", "feature_grid", "n_orientations",
                     "min_roi_voxels"):
            value = getattr(self, name)
            need(isinstance(value, (int, np.integer)) and not isinstance(value, bool),
                 name, "it must be an integer")
        need(self.n_train >= 10, "n_train", "at least 10 training images are needed")
        need(self.n_val >= 5, "n_val", "at least 5 validation images are needed")
        need(0.0 < self.voxel_scale <= 1.0, "voxel_scale", "it must lie in (0, 1]")
        need(self.image_size >= 16, "image_size", "it must be at least 16 px")
        need(self.lowres_size >= 8, "lowres_size", "it must be at least 8 px")
        need(self.n_rep_train >= 1, "n_rep_train", "it must be at least 1")
        need(self.n_rep_val >= 2, "n_rep_val", "it must be at least 2 (repeats give ceilings)")
        need(self.seed >= 0, "seed", "it must be non-negative")
        need(self.feature_grid >= 2 and self.feature_res % self.feature_grid == 0,
             "feature_res", f"it must be a multiple of feature_grid = {self.feature_grid}")
        need(self.n_orientations >= 1, "n_orientations", "it must be at least 1")
        lo, hi = self.val_ceiling_range
        need(0.0 < lo <= hi < 1.0, "val_ceiling_range", "it must satisfy 0 < low <= high < 1")
        need(0.0 <= self.other_signal_fraction <= 1.0, "other_signal_fraction",
             "it must lie in [0, 1]")
        need(0.0 <= self.visual_signal_fraction <= 1.0, "visual_signal_fraction",
             "it must lie in [0, 1]")
        need(0.05 <= self.nan_image_fraction <= 0.9, "nan_image_fraction",
             "it must lie in [0.05, 0.9]")
        need(self.min_roi_voxels >= 1, "min_roi_voxels", "it must be at least 1")
        need(0.0 <= self.shared_noise_fraction < 1.0, "shared_noise_fraction",
             "it must lie in [0, 1)")

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["val_ceiling_range"] = list(self.val_ceiling_range)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SynthConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"SynthConfig has no field(s) {', '.join(unknown)}.")
        data = dict(data)
        if "val_ceiling_range" in data:
            data["val_ceiling_range"] = tuple(float(v) for v in data["val_ceiling_range"])
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
PRESETS: dict[str, SynthConfig] = {
    # Tests: generates in about a second.
    "tiny": SynthConfig(n_train=240, n_val=40, voxel_scale=0.02, image_size=96,
                        lowres_size=32),
    # The default for demos: real image size, a tenth of the voxels.
    "demo": SynthConfig(n_train=700, n_val=60, voxel_scale=0.1, image_size=500,
                        lowres_size=128),
    # Real sizes: 1750 / 120 images, 25,915 (S1) / 26,329 (S2) voxels, 500 px.
    "full": SynthConfig(n_train=1750, n_val=120, voxel_scale=1.0, image_size=500,
                        lowres_size=128),
}


# --------------------------------------------------------------------------- voxel counts
def _largest_remainder(weights: dict[int, float], total: int) -> dict[int, int]:
    raw = {k: total * w / sum(weights.values()) for k, w in weights.items()}
    out = {k: int(math.floor(v)) for k, v in raw.items()}
    rest = total - sum(out.values())
    for k in sorted(raw, key=lambda k: raw[k] - out[k], reverse=True)[:rest]:
        out[k] += 1
    return out


def real_voxel_counts(subject: str) -> dict[int, int]:
    """Voxel count per ROI code in the real data (S2's visual ROIs scaled like S1's).

    Returns
    -------
    dict
        ROI code -> count; sums to 25,915 (S1) or 26,329 (S2).
    """
    if subject == "S1":
        return dict(_S1_COUNTS)
    if subject == "S2":
        rest = {k: v for k, v in _S1_COUNTS.items() if k not in (0, 6)}
        out = _largest_remainder(rest, _S2_TOTAL - _S2_OTHER - _S2_V4)
        out.update({0: _S2_OTHER, 6: _S2_V4})
        return dict(sorted(out.items()))
    raise ConfigError(f"subject must be one of {', '.join(SUBJECTS)}, not {subject!r}.")


def scaled_voxel_counts(subject: str, scale: float, minimum: int = 5) -> dict[int, int]:
    """Real counts times ``scale`` (rounded), at least ``minimum`` per ROI."""
    return {k: max(minimum, int(round(v * scale))) for k, v in real_voxel_counts(subject).items()}
