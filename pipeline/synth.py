"""Synthetic vim-1 data in the real on-disk layout, with a planted encoding model.

The real vim-1 files cannot be downloaded on our machines, so the loader, the feature
extraction and the fitting code are exercised on files written here in exactly the
layout of ``specs/vim1-format.md``:

- ``EstimatedResponses.mat``: MATLAB v7.3 (HDF5 with the 512-byte MATLAB user block),
  datasets ``dataTrnS1`` ... ``voxIdxS2``, float64, chunked, gzip 3.
- ``Stimuli.mat``: MATLAB v5 (``scipy.io.savemat``) with ``stimTrn``, ``stimVal``,
  ``seqTrn``, ``seqVal``.
- ``Stimuli_Trn_FullRes_NN.mat`` (120 images per file, remainder in the last) and
  ``Stimuli_Val_FullRes.mat``: v7.3 files with h5py shape (S, S, N).

What is planted
---------------
Images have natural-image statistics (1/f amplitude spectrum texture, luminance edges,
occluding shapes, blobs), contrast-normalised inside a circular aperture on grey.
A feature map per image (local contrast energy in ``n_orientations`` orientations on a
``feature_grid`` x ``feature_grid`` grid, from the image down-sampled to
``feature_res`` px) is centred per feature and scaled by one global sd. Each voxel
with signal has a Gaussian receptive field on that grid (small in V1, large in LO),
positive orientation weights, and its signal is the weighted sum, z-scored across all
images. Voxels without signal (most of ROI "other") have a constant signal.

Each voxel gets a single-repeat noise sd chosen so that the correlation between its
repeat-averaged *validation* response and its signal is drawn uniformly from
``val_ceiling_range``; a share ``shared_noise_fraction`` of that noise variance is
common to all voxels of the ROI, so ROI averages stay noisy. Training images are
averaged over ``n_rep_train`` noisy repeats, validation images over ``n_rep_val``.
The averaged responses of each voxel are z-scored over training and validation
images together (``zscore_mean``, ``zscore_sd``), then per-voxel NaN blocks are
written over a small share of voxels.

Ground truth goes to ``out_dir / GROUND_TRUTH_FILE`` (never inside a vim-1 file):
all arrays are in the z-scored units of the written data. See :class:`GroundTruth`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from scipy.io import savemat

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.vim1 import (
    LOWRES_FILE,
    RESPONSES_FILE,
    ROI_CODES,
    SUBJECTS,
    TRAIN_FULLRES_RE,
    VAL_FULLRES_FILE,
    VOLUME_SHAPE,
    train_fullres_name,
)

__all__ = [
    "GROUND_TRUTH_FILE",
    "IMAGES_PER_FILE",
    "PRESETS",
    "GroundTruth",
    "RoiAverageTruth",
    "SynthConfig",
    "generate",
    "load_ground_truth",
    "main",
    "real_voxel_counts",
    "scaled_voxel_counts",
    "write_mat73_userblock",
]

GROUND_TRUTH_FILE = "synthetic_ground_truth.h5"
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


# --------------------------------------------------------------------------- MATLAB files
def write_mat73_userblock(path: str | os.PathLike) -> None:
    """Write the 128-byte MATLAB 7.3 header into the 512-byte user block of an HDF5 file.

    The file must have been created with ``h5py.File(path, "w", userblock_size=512)``.
    Afterwards ``scipy.io.matlab.matfile_version`` returns (2, 0) and
    ``scipy.io.loadmat`` refuses the file, exactly as for a MATLAB-written v7.3 file.
    """
    created = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(0))
    text = (f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created} "
            "HDF5 schema 1.00 .").encode("ascii")
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    assert len(header) == 128
    with open(path, "r+b") as fh:
        fh.seek(0)
        fh.write(header)


def _write_mat73(path: Path, arrays: dict[str, np.ndarray], *, compress: bool,
                 chunks: dict[str, tuple[int, ...]] | None = None) -> None:
    """Write ``arrays`` as top-level datasets of a v7.3-style HDF5 file at ``path``."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, arr in arrays.items():
            kwargs: dict = {"chunks": (chunks or {}).get(name, True)}
            if compress:
                kwargs.update(compression="gzip", compression_opts=3)
            ds = f.create_dataset(name, data=arr, **kwargs)
            ds.attrs["MATLAB_class"] = np.bytes_(
                b"single" if arr.dtype == np.float32 else b"double")
    write_mat73_userblock(path)


# --------------------------------------------------------------------------- images
def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) box-filter resampling matrix (rows sum to 1)."""
    e_in = np.arange(n_in + 1) / n_in
    e_out = np.arange(n_out + 1) / n_out
    lo = np.maximum(e_out[:-1, None], e_in[None, :-1])
    hi = np.minimum(e_out[1:, None], e_in[None, 1:])
    m = np.clip(hi - lo, 0.0, None)
    return m / m.sum(axis=1, keepdims=True)


def _resize(images: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Resize (B, S, S) images with an (s, S) area matrix -> (B, s, s)."""
    return np.matmul(np.matmul(m, images), m.T)


class _ImageMaker:
    """Natural-statistics images of one size, reproducible per (seed, split, index)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        c = (np.arange(size) + 0.5) / size * 2.0 - 1.0  # pixel centres in [-1, 1]
        self.yy, self.xx = np.meshgrid(c, c, indexing="ij")
        fy = np.fft.fftfreq(size) * size
        fx = np.fft.rfftfreq(size) * size
        self.fr = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
        self.fr[0, 0] = 1.0
        r = np.sqrt(self.xx ** 2 + self.yy ** 2) * size / 2.0  # radius in pixels
        self.aperture = np.clip(size / 2.0 - r, 0.0, 1.0)  # 1 px soft edge
        self.inside = self.aperture > 0.5

    def _pink(self, rng: np.random.Generator, alpha: float) -> np.ndarray:
        s = self.size
        spec = (rng.standard_normal(self.fr.shape) + 1j * rng.standard_normal(self.fr.shape))
        spec /= self.fr ** alpha
        spec[0, 0] = 0.0
        img = np.fft.irfft2(spec, s=(s, s))
        return img / img.std()

    def _box(self, cx: float, cy: float, r: float) -> tuple[slice, slice]:
        """Pixel slices (rows, cols) covering the square of half-side r around (cx, cy)."""
        def span(c: float) -> slice:
            lo = int(np.floor((c - r + 1.0) / 2.0 * self.size))
            hi = int(np.ceil((c + r + 1.0) / 2.0 * self.size)) + 1
            return slice(max(lo, 0), min(hi, self.size))

        return span(cy), span(cx)

    def make(self, split_code: int, index: int) -> np.ndarray:
        """One image (size, size) float32 within about -0.55..0.45."""
        rng = np.random.default_rng([self.seed, 101, split_code, index])
        xx, yy = self.xx, self.yy
        tex = self._pink(rng, rng.uniform(0.9, 1.4))
        img = tex * rng.uniform(0.3, 0.7)
        for _ in range(rng.integers(1, 4)):  # luminance edges (half-plane steps)
            th = rng.uniform(0.0, 2.0 * np.pi)
            d = xx * np.cos(th) + yy * np.sin(th) - rng.normal(0.0, 0.4)
            img += rng.normal(0.0, 0.8) * (d > 0)
        for _ in range(rng.integers(2, 7)):  # occluding shapes, textured and shaded
            cx, cy = rng.uniform(-0.8, 0.8, 2)
            a, b = rng.uniform(0.06, 0.5, 2)
            th = rng.uniform(0.0, np.pi)
            box = self._box(cx, cy, max(a, b) * np.sqrt(2.0))
            bx, by = xx[box], yy[box]
            u = (bx - cx) * np.cos(th) + (by - cy) * np.sin(th)
            v = -(bx - cx) * np.sin(th) + (by - cy) * np.cos(th)
            if rng.random() < 0.5:
                mask = (u / a) ** 2 + (v / b) ** 2 <= 1.0
            else:
                mask = (np.abs(u) <= a) & (np.abs(v) <= b)
            sy, sx = (int(k) for k in rng.integers(0, self.size, 2))
            rows = (np.arange(box[0].start, box[0].stop) - sy) % self.size
            cols = (np.arange(box[1].start, box[1].stop) - sx) % self.size
            fill = (rng.normal(0.0, 1.2) + rng.normal(0.0, 0.8) * u
                    + rng.uniform(0.1, 0.5) * tex[np.ix_(rows, cols)])
            img[box] = np.where(mask, fill, img[box])
        for _ in range(rng.integers(0, 3)):  # soft blobs
            cx, cy = rng.uniform(-0.8, 0.8, 2)
            s = rng.uniform(0.05, 0.25)
            box = self._box(cx, cy, 4.0 * s)
            img[box] += rng.normal(0.0, 1.0) * np.exp(
                -((xx[box] - cx) ** 2 + (yy[box] - cy) ** 2) / (2.0 * s * s))
        vals = img[self.inside]
        z = (img - vals.mean()) / max(vals.std(), 1e-9)
        out = BACKGROUND + rng.uniform(0.12, 0.2) * z
        np.clip(out, *PIXEL_RANGE, out=out)
        out = BACKGROUND + self.aperture * (out - BACKGROUND)
        return out.astype(np.float32)


class _FeatureMaker:
    """Planted feature map: oriented contrast energy pooled on a coarse grid."""

    def __init__(self, cfg: SynthConfig) -> None:
        r, g, o = cfg.feature_res, cfg.feature_grid, cfg.n_orientations
        self.down = _area_matrix(cfg.image_size, r)
        self.res, self.grid, self.n_or = r, g, o
        fy = np.fft.fftfreq(r) * r
        fx = np.fft.fftfreq(r) * r
        fyy, fxx = np.meshgrid(fy, fx, indexing="ij")
        rad = np.sqrt(fxx ** 2 + fyy ** 2)
        rad[0, 0] = 1.0
        f0 = r / 6.0  # centre frequency: 6 px period at feature_res
        radial = np.exp(-(np.log(rad / f0) ** 2) / (2.0 * np.log(1.6) ** 2))
        radial[0, 0] = 0.0
        ang = np.arctan2(fyy, fxx)
        filters = []
        for k in range(o):
            d = np.angle(np.exp(1j * (ang - np.pi * k / o)))  # wrapped to [-pi, pi]: one-sided
            filters.append(radial * np.exp(-(d ** 2) / (2.0 * (np.pi / (2 * o)) ** 2)))
        self.filters = np.stack(filters)  # (o, r, r)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(B, S, S) images -> (B, grid, grid, n_orientations) float64 contrast energy."""
        small = _resize(images.astype(np.float64) - BACKGROUND, self.down)
        spec = np.fft.fft2(small)[:, None]  # (B, 1, r, r)
        energy = np.abs(np.fft.ifft2(spec * self.filters[None])) ** 2  # (B, o, r, r)
        b, k = images.shape[0], self.res // self.grid
        pooled = energy.reshape(b, self.n_or, self.grid, k, self.grid, k).mean(axis=(3, 5))
        return np.sqrt(pooled).transpose(0, 2, 3, 1)


# --------------------------------------------------------------------------- sequences
def _sequence(n_images: int, per_run: int, n_reps: int, null_ratio: float,
              rng: np.random.Generator) -> np.ndarray:
    """Presentation sequence (n_seconds, n_runs): 1-based image index at each second.

    Each trial is 4 s (image, then 3 s blank = 0); null trials are all blank.
    Full sizes give (672, 25) for 1750 x 2 and (696, 10) for 120 x 13, as in vim-1.
    """
    order = rng.permutation(n_images) + 1
    runs = []
    for start in range(0, n_images, per_run):
        imgs = order[start:start + per_run]
        trials = np.concatenate([np.repeat(imgs, n_reps),
                                 np.zeros(int(round(null_ratio * imgs.size * n_reps)), int)])
        rng.shuffle(trials)
        secs = np.zeros((trials.size, 4), dtype=np.float64)
        secs[:, 0] = trials
        runs.append(secs.ravel())
    length = max(r.size for r in runs)
    out = np.zeros((length, len(runs)), dtype=np.float64)
    for j, r in enumerate(runs):
        out[: r.size, j] = r
    return out


# --------------------------------------------------------------------------- subjects
def _voxel_layout(counts: dict[int, int], rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted 1-based voxel ids (column-major into 64x64x18) and their ROI codes.

    Each visual ROI is two compact blobs (one per hemisphere) grown greedily around
    jittered centres; "other" is a random sample of the remaining brain voxels.
    """
    grid = np.indices(VOLUME_SHAPE).reshape(3, -1).T.astype(np.float64)
    centre = (np.array(VOLUME_SHAPE) - 1) / 2.0
    radii = np.array(VOLUME_SHAPE) / 2.0 + np.array([0.0, 0.0, 0.5])
    cand = grid[(((grid - centre) / radii) ** 2).sum(axis=1) <= 1.0]
    total = sum(counts.values())
    if total > cand.shape[0]:
        raise ConfigError(f"voxel_scale asks for {total} voxels but the synthetic brain holds "
                          f"only {cand.shape[0]}.")
    free = np.ones(cand.shape[0], dtype=bool)
    codes = np.full(cand.shape[0], -1, dtype=np.int16)
    for code, (x, y, z) in _ROI_CENTRES.items():
        n = counts[code]
        if n == 0:
            continue
        cs = np.array([[x, y, z], [VOLUME_SHAPE[0] - 1 - x, y, z]], dtype=np.float64)
        cs += rng.normal(0.0, 1.0, cs.shape)
        d = np.min([np.linalg.norm((cand - c) * _VOXEL_MM, axis=1) for c in cs], axis=0)
        d[~free] = np.inf
        take = np.argpartition(d, n - 1)[:n]
        free[take] = False
        codes[take] = code
    take = rng.choice(np.flatnonzero(free), counts[0], replace=False)
    codes[take] = 0
    chosen = np.flatnonzero(codes >= 0)
    xyz = cand[chosen].astype(np.int64)
    ids = np.ravel_multi_index((xyz[:, 0], xyz[:, 1], xyz[:, 2]), VOLUME_SHAPE, order="F") + 1
    order = np.argsort(ids)
    return ids[order].astype(np.int64), codes[chosen][order]


def _nan_blocks(roi_codes: np.ndarray, subject: str, n_train: int, n_val: int,
                frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel NaN blocks: (n_train, n_vox) and (n_val, n_vox) boolean masks."""
    n_vox = roi_codes.size
    m_tr = np.zeros((n_train, n_vox), dtype=bool)
    m_va = np.zeros((n_val, n_vox), dtype=bool)
    for code, share in _NAN_SHARE[subject].items():
        cols = np.flatnonzero(roi_codes == code)
        if share <= 0 or cols.size == 0:
            continue
        k = min(cols.size - 1, max(1, int(round(share * cols.size))))
        for v in rng.choice(cols, k, replace=False):
            length = max(1, int(round(n_train * rng.uniform(frac - 0.1, frac + 0.1))))
            start = int(rng.integers(0, n_train - length + 1))
            m_tr[start:start + length, v] = True
            if rng.random() < 0.25:  # some voxels also miss a block of validation images
                length = max(1, int(round(n_val * rng.uniform(frac - 0.1, frac + 0.1))))
                start = int(rng.integers(0, n_val - length + 1))
                m_va[start:start + length, v] = True
    return m_tr, m_va


def _ceiling(var_s: np.ndarray, noise_sd: np.ndarray, n_reps: int) -> np.ndarray:
    """Correlation between an n_reps-average and its signal: sqrt(vs / (vs + vn / n))."""
    var_s = np.asarray(var_s, dtype=np.float64)
    denom = var_s + np.asarray(noise_sd, dtype=np.float64) ** 2 / n_reps
    return np.sqrt(np.divide(var_s, denom, out=np.zeros_like(denom), where=denom > 0))


def _simulate_subject(cfg: SynthConfig, subject: str, feats: np.ndarray,
                      progress: Progress | None) -> dict:
    """Responses and ground truth for one subject.

    ``feats`` is (n_train + n_val, grid * grid * n_orientations), centred and scaled.
    """
    s_idx = SUBJECTS.index(subject)
    rng = np.random.default_rng([cfg.seed, 202, s_idx])
    counts = scaled_voxel_counts(subject, cfg.voxel_scale, cfg.min_roi_voxels)
    voxel_ids, roi_codes = _voxel_layout(counts, rng)
    n_vox = voxel_ids.size
    n_tr, n_va = cfg.n_train, cfg.n_val
    g, n_or = cfg.feature_grid, cfg.n_orientations

    is_other = roi_codes == 0
    p_signal = np.where(is_other, cfg.other_signal_fraction, cfg.visual_signal_fraction)
    has_signal = rng.random(n_vox) < p_signal
    # Receptive fields on the feature grid: centres uniform in a disc inside the aperture.
    ecc = np.sqrt(rng.random(n_vox)) * 0.8 * g / 2.0
    ang = rng.uniform(0.0, 2.0 * np.pi, n_vox)
    rf_x = (g - 1) / 2.0 + ecc * np.cos(ang)
    rf_y = (g - 1) / 2.0 + ecc * np.sin(ang)
    base = np.array([_RF_SD[int(c)] for c in roi_codes]) * g / 16.0
    rf_sd = base * rng.uniform(0.75, 1.33, n_vox)
    weights = rng.dirichlet(np.ones(n_or), n_vox)  # (n_vox, n_or), positive, sum 1

    gy, gx = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    signal = np.zeros((n_tr + n_va, n_vox))
    step = 2048
    for a in range(0, n_vox, step):
        sl = slice(a, min(a + step, n_vox))
        rf = np.exp(-((gx.reshape(-1, 1) - rf_x[sl]) ** 2 + (gy.reshape(-1, 1) - rf_y[sl]) ** 2)
                    / (2.0 * rf_sd[sl] ** 2))
        rf /= rf.sum(axis=0, keepdims=True)  # (g*g, n)
        w = (rf[:, None, :] * weights[sl].T[None, :, :]).reshape(g * g * n_or, -1)
        signal[:, sl] = feats @ w
    signal -= signal.mean(axis=0)
    sd = signal.std(axis=0)
    signal /= np.where(sd > 0, sd, 1.0)
    signal[:, ~has_signal] = 0.0

    lo, hi = cfg.val_ceiling_range
    target = rng.uniform(lo, hi, n_vox)
    noise_sd = np.sqrt(cfg.n_rep_val * (1.0 / target ** 2 - 1.0))  # signal variance 1

    sig_tr, sig_va = signal[:n_tr], signal[n_tr:]
    rho = cfg.shared_noise_fraction
    own, shared = np.sqrt(1.0 - rho), np.sqrt(rho)

    def unit_noise(n: int) -> np.ndarray:
        """(n, n_vox) noise of unit variance; a share rho is common to each ROI."""
        z = rng.standard_normal((n, n_vox), dtype=np.float32) * np.float32(own)
        z += rng.standard_normal((n, len(ROI_CODES)), dtype=np.float32)[:, roi_codes] \
            * np.float32(shared)
        return z

    acc = np.zeros((n_tr, n_vox))
    for _ in range(cfg.n_rep_train):
        acc += unit_noise(n_tr)
    acc *= noise_sd / cfg.n_rep_train
    acc += sig_tr
    train_avg = acc
    reps = np.empty((cfg.n_rep_val, n_va, n_vox))
    for r in range(cfg.n_rep_val):
        reps[r] = sig_va + noise_sd * unit_noise(n_va)
    if progress:
        progress("responses", 2 * s_idx + 1, 2 * len(SUBJECTS))

    # z-score the averages per voxel over training and validation images together
    val_avg = reps.mean(axis=0)
    mu = (train_avg.sum(axis=0) + val_avg.sum(axis=0)) / (n_tr + n_va)
    var = (((train_avg - mu) ** 2).sum(axis=0) + ((val_avg - mu) ** 2).sum(axis=0)) / (n_tr + n_va)
    zsd = np.sqrt(var)
    train_avg -= mu
    train_avg /= zsd
    data_val = (val_avg - mu) / zsd
    reps -= mu
    reps /= zsd
    reps_z = reps.astype(np.float32)
    del reps

    nan_tr, nan_va = _nan_blocks(roi_codes, subject, n_tr, n_va, cfg.nan_image_fraction, rng)
    nan_voxels = nan_tr.any(axis=0) | nan_va.any(axis=0)
    data_train = train_avg
    data_train[nan_tr] = np.nan
    data_val[nan_va] = np.nan

    ceil_tr = np.where(has_signal, _ceiling(sig_tr.var(axis=0), noise_sd, cfg.n_rep_train), 0.0)
    ceil_va = np.where(has_signal, _ceiling(sig_va.var(axis=0), noise_sd, cfg.n_rep_val), 0.0)
    sig_z = (signal - mu) / zsd
    noise_z = noise_sd / zsd

    roi_avg = {}
    for code in sorted(set(roi_codes.tolist())):
        cols = np.flatnonzero((roi_codes == code) & ~nan_voxels)
        if cols.size == 0:
            continue
        s_tr = sig_z[:n_tr, cols].mean(axis=1)
        s_va = sig_z[n_tr:, cols].mean(axis=1)
        a = noise_z[cols]  # shared parts are perfectly correlated within the ROI
        nsd = float(np.sqrt((1.0 - rho) * (a ** 2).sum() + rho * a.sum() ** 2) / cols.size)
        roi_avg[ROI_CODES[code]] = {
            "voxel_ids": voxel_ids[cols],
            "signal_train": s_tr,
            "signal_val": s_va,
            "response_train": data_train[:, cols].mean(axis=1),
            "response_val": data_val[:, cols].mean(axis=1),
            "val_repeats": reps_z[:, :, cols].astype(np.float64).mean(axis=2),
            "noise_sd": nsd,
            "ceiling_train": float(_ceiling(s_tr.var(), nsd, cfg.n_rep_train)),
            "ceiling_val": float(_ceiling(s_va.var(), nsd, cfg.n_rep_val)),
        }
    if progress:
        progress("responses", 2 * s_idx + 2, 2 * len(SUBJECTS))
    return {
        "data_train": data_train, "data_val": data_val,
        "voxel_ids": voxel_ids, "roi_codes": roi_codes,
        "truth": {
            "voxel_ids": voxel_ids, "roi_codes": roi_codes, "has_signal": has_signal,
            "nan_voxels": nan_voxels,
            "signal_train": sig_z[:n_tr].astype(np.float32),
            "signal_val": sig_z[n_tr:].astype(np.float32),
            "noise_sd": noise_z, "noise_sd_raw": noise_sd,
            "ceiling_train": ceil_tr, "ceiling_val": ceil_va,
            "val_repeats": reps_z,
            "rf_x": rf_x, "rf_y": rf_y, "rf_sd": rf_sd, "orientation_weights": weights,
            "zscore_mean": mu, "zscore_sd": zsd,
        },
        "roi_average": roi_avg,
    }


# --------------------------------------------------------------------------- generate
def _vim1_names_in(out_dir: Path) -> list[str]:
    names = []
    for p in out_dir.iterdir():
        if (p.name in (RESPONSES_FILE, LOWRES_FILE, VAL_FULLRES_FILE, GROUND_TRUTH_FILE)
                or TRAIN_FULLRES_RE.match(p.name)):
            names.append(p.name)
    return sorted(names)


def _chunks(n: int, size: int) -> Iterable[tuple[int, int]]:
    for a in range(0, n, size):
        yield a, min(a + size, n)


def generate(out_dir: str | os.PathLike, config: SynthConfig | None = None, *,
             progress: Progress | None = None, overwrite: bool = False) -> Path:
    """Write a synthetic vim-1 data set and its ground truth into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Target directory (created if needed).
    config : SynthConfig, optional
        Defaults to ``PRESETS["demo"]``.
    progress : callable(stage, done, total), optional
        Called with stages "images", "responses" and "write".
    overwrite : bool
        Replace an existing synthetic/vim-1 file set in ``out_dir`` (stale
        ``Stimuli_Trn_FullRes_NN.mat`` files beyond the new count are removed).
        Without it, such files make this raise ConfigError.

    Returns
    -------
    Path
        ``out_dir``. Every file is first written into a temporary directory inside
        ``out_dir`` and only renamed into place once all of them are complete, the
        ground-truth file last; nothing half-written ever sits at a final path.
    """
    cfg = config if config is not None else PRESETS["demo"]
    if not isinstance(cfg, SynthConfig):
        raise ConfigError(f"config must be a SynthConfig, not {type(cfg).__name__}.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir {out} exists and is not a directory.")
    out.mkdir(parents=True, exist_ok=True)
    existing = _vim1_names_in(out)
    if existing and not overwrite:
        raise ConfigError(f"out_dir {out} already holds {', '.join(existing[:4])}"
                          f"{' ...' if len(existing) > 4 else ''}; pass overwrite=True "
                          "(--overwrite) to replace them.")
    tmp = Path(tempfile.mkdtemp(prefix=".synth-tmp-", dir=out))
    try:
        _generate_into(tmp, cfg, progress)
        final = sorted(p.name for p in tmp.iterdir())
        for name in existing:
            if TRAIN_FULLRES_RE.match(name) and name not in final:
                (out / name).unlink()
        for name in sorted(final, key=lambda n: n == GROUND_TRUTH_FILE):
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _generate_into(tmp: Path, cfg: SynthConfig, progress: Progress | None) -> None:
    n_tr, n_va = cfg.n_train, cfg.n_val
    n_img = n_tr + n_va
    maker = _ImageMaker(cfg.image_size, cfg.seed)
    featurize = _FeatureMaker(cfg)
    low_m = _area_matrix(cfg.image_size, cfg.lowres_size)
    low = np.empty((n_img, cfg.lowres_size, cfg.lowres_size), dtype=np.float32)
    feats = np.empty((n_img, cfg.feature_grid, cfg.feature_grid, cfg.n_orientations))
    s = cfg.image_size
    done = 0

    # Full-resolution images, one file (<= 120 images) at a time.
    n_files = math.ceil(n_tr / IMAGES_PER_FILE)
    jobs = [(train_fullres_name(k + 1), "stimTrn", 0, a, b)
            for k, (a, b) in enumerate(_chunks(n_tr, IMAGES_PER_FILE))]
    jobs.append((VAL_FULLRES_FILE, "stimVal", 1, 0, n_va))
    assert len(jobs) == n_files + 1
    for name, var, split_code, a, b in jobs:
        imgs = np.stack([maker.make(split_code, i) for i in range(a, b)])
        row = a if split_code == 0 else n_tr + a
        feats[row:row + (b - a)] = featurize(imgs)
        low[row:row + (b - a)] = _resize(imgs.astype(np.float64), low_m)
        _write_mat73(tmp / name, {var: np.transpose(imgs, (2, 1, 0))}, compress=False,
                     chunks={var: (s, s, 1)})
        del imgs
        done += b - a
        if progress:
            progress("images", done, n_img)

    rng = np.random.default_rng([cfg.seed, 303])
    seq_trn = _sequence(n_tr, 70, cfg.n_rep_train, 28 / 140, rng)
    seq_val = _sequence(n_va, 12, cfg.n_rep_val, 18 / 156, rng)
    with open(tmp / LOWRES_FILE, "wb") as fh:
        savemat(fh, {"stimTrn": low[:n_tr], "stimVal": low[n_tr:], "seqTrn": seq_trn,
                     "seqVal": seq_val}, format="5")
    del low

    flat = feats.reshape(n_img, -1)
    flat = flat - flat.mean(axis=0)
    flat /= max(float(flat.std()), 1e-12)
    feat_z = flat.reshape(feats.shape).astype(np.float32)

    resp_path = tmp / RESPONSES_FILE
    gt_path = tmp / GROUND_TRUTH_FILE
    with h5py.File(resp_path, "w", userblock_size=512) as fr, h5py.File(gt_path, "w") as fg:
        fg.attrs["config_json"] = cfg.to_json()
        fg.attrs["format_version"] = GROUND_TRUTH_FORMAT
        fg.attrs["description"] = (
            "Ground truth of a synthetic vim-1 data set (pipeline.synth). Arrays are in the "
            "z-scored units of EstimatedResponses.mat unless named *_raw; ceilings are "
            "correlations between a repeat-averaged response and its noiseless signal.")
        fg.create_dataset("features_train", data=feat_z[:n_tr])
        fg.create_dataset("features_val", data=feat_z[n_tr:])
        for subject in SUBJECTS:
            res = _simulate_subject(cfg, subject, flat, progress)
            for name, arr in ((f"dataTrn{subject}", res["data_train"]),
                              (f"dataVal{subject}", res["data_val"]),
                              (f"roi{subject}", res["roi_codes"].astype(np.float64)[None, :]),
                              (f"voxIdx{subject}", res["voxel_ids"].astype(np.float64)[None, :])):
                ds = fr.create_dataset(name, data=arr, chunks=True, compression="gzip",
                                       compression_opts=3)
                ds.attrs["MATLAB_class"] = np.bytes_(b"double")
            grp = fg.create_group(subject)
            for name, arr in res["truth"].items():
                grp.create_dataset(name, data=arr)
            ra = grp.create_group("roi_average")
            for roi, d in res["roi_average"].items():
                rg = ra.create_group(roi)
                for name, val in d.items():
                    if np.ndim(val) == 0:
                        rg.attrs[name] = val
                    else:
                        rg.create_dataset(name, data=val)
            del res
            if progress:
                progress("write", SUBJECTS.index(subject) + 1, len(SUBJECTS))
    write_mat73_userblock(resp_path)


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
                              "by pipeline.synth.generate, not part of real vim-1 data.")
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


# --------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.synth OUT_DIR [--preset demo] ...``; returns the exit code."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.synth",
                                 description="Write a synthetic vim-1 data set "
                                             "(real file layout) with its ground truth.")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--n-train", type=int)
    ap.add_argument("--n-val", type=int)
    ap.add_argument("--voxel-scale", type=float)
    ap.add_argument("--image-size", type=int)
    ap.add_argument("--overwrite", action="store_true",
                    help="replace vim-1 files already in OUT_DIR")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    overrides = {k: v for k, v in (("seed", args.seed), ("n_train", args.n_train),
                                   ("n_val", args.n_val), ("voxel_scale", args.voxel_scale),
                                   ("image_size", args.image_size)) if v is not None}
    last: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        pct = int(100 * done / max(total, 1))
        if last.get(stage, -10) + 10 <= pct or done == total:
            last[stage] = pct
            print(f"{stage}: {done}/{total}", file=sys.stderr, flush=True)

    try:
        cfg = dataclasses.replace(PRESETS[args.preset], **overrides)
        t0 = time.perf_counter()
        out = generate(args.out_dir, cfg, progress=None if args.quiet else report,
                       overwrite=args.overwrite)
    except (ConfigError, DataFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - t0
    files = sorted(p for p in out.iterdir() if p.is_file())
    print(f"Wrote {len(files)} files ({sum(p.stat().st_size for p in files) / 1e6:.1f} MB) "
          f"to {out.resolve()} in {seconds:.1f} s (preset {args.preset}):")
    for p in files:
        print(f"  {p.name}  {p.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
