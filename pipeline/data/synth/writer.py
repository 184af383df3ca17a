"""Writing synthetic vim-1 data (:func:`generate`) in the real layout, with a planted model.

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

import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np
from scipy.io import savemat

from pipeline.core.errors import ConfigError
from pipeline.core.files import fsync_dir
from pipeline.data.layout import (
    GROUND_TRUTH_FILE,
    LOWRES_FILE,
    RESPONSES_FILE,
    SUBJECTS,
    TRAIN_FULLRES_RE,
    VAL_FULLRES_FILE,
    train_fullres_name,
)
from pipeline.data.synth.config import GROUND_TRUTH_FORMAT, IMAGES_PER_FILE, PRESETS, Progress, SynthConfig
from pipeline.data.synth.images import _area_matrix, _FeatureMaker, _ImageMaker, _resize, _sequence
from pipeline.data.synth.responses import _simulate_subject

__all__ = [
    "generate",
    "write_mat73_userblock",
]



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
        fsync_dir(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _generate_into(tmp: Path, cfg: SynthConfig, progress: Progress | None) -> None:
    """Write every file of the data set into the directory ``tmp``."""
    feats, low = _write_fullres(tmp, cfg, progress)
    n_tr, n_va = cfg.n_train, cfg.n_val
    rng = np.random.default_rng([cfg.seed, 303])
    seq_trn = _sequence(n_tr, 70, cfg.n_rep_train, 28 / 140, rng)
    seq_val = _sequence(n_va, 12, cfg.n_rep_val, 18 / 156, rng)
    with open(tmp / LOWRES_FILE, "wb") as fh:
        savemat(fh, {"stimTrn": low[:n_tr], "stimVal": low[n_tr:], "seqTrn": seq_trn,
                     "seqVal": seq_val}, format="5")
    del low
    n_img = n_tr + n_va
    flat = feats.reshape(n_img, -1)
    flat = flat - flat.mean(axis=0)
    flat /= max(float(flat.std()), 1e-12)
    feat_z = flat.reshape(feats.shape).astype(np.float32)
    _write_responses(tmp, cfg, flat, feat_z, progress)


def _write_fullres(tmp: Path, cfg: SynthConfig, progress: Progress | None) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution image files, one (<= 120 images) at a time.

    Returns the images' feature maps, (n_img, grid, grid, n_orientations), and their
    low-resolution copies, (n_img, lowres, lowres) float32.
    """
    n_tr, n_va = cfg.n_train, cfg.n_val
    n_img = n_tr + n_va
    maker = _ImageMaker(cfg.image_size, cfg.seed)
    featurize = _FeatureMaker(cfg)
    low_m = _area_matrix(cfg.image_size, cfg.lowres_size)
    low = np.empty((n_img, cfg.lowres_size, cfg.lowres_size), dtype=np.float32)
    feats = np.empty((n_img, cfg.feature_grid, cfg.feature_grid, cfg.n_orientations))
    s = cfg.image_size
    done = 0
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
    return feats, low


def _write_responses(tmp: Path, cfg: SynthConfig, flat: np.ndarray, feat_z: np.ndarray,
                     progress: Progress | None) -> None:
    """``EstimatedResponses.mat`` (v7.3) and the ground-truth file, subject by subject."""
    n_tr = cfg.n_train
    resp_path = tmp / RESPONSES_FILE
    gt_path = tmp / GROUND_TRUTH_FILE
    with h5py.File(resp_path, "w", userblock_size=512) as fr, h5py.File(gt_path, "w") as fg:
        fg.attrs["config_json"] = cfg.to_json()
        fg.attrs["format_version"] = GROUND_TRUTH_FORMAT
        fg.attrs["description"] = (
            "Ground truth of a synthetic vim-1 data set (pipeline.data.synth). Arrays are in the "
            "z-scored units of EstimatedResponses.mat unless named *_raw; ceilings are "
            "correlations between a repeat-averaged response and its noiseless signal.")
        fg.create_dataset("features_train", data=feat_z[:n_tr])
        fg.create_dataset("features_val", data=feat_z[n_tr:])
        for subject in SUBJECTS:
            res = _simulate_subject(cfg, subject, flat, progress)
            _write_subject(fr, fg, subject, res)
            del res
            if progress:
                progress("write", SUBJECTS.index(subject) + 1, len(SUBJECTS))
    write_mat73_userblock(resp_path)


def _write_subject(fr, fg, subject: str, res: dict) -> None:
    """One subject's responses (``fr``) and its ground truth group (``fg``)."""
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
