"""Simulated subjects: voxel layout, receptive fields, noise, NaN blocks and the
repeat-averaged, z-scored responses.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.data.layout import ROI_CODES, SUBJECTS, VOLUME_SHAPE
from pipeline.data.synth.config import (
    _NAN_SHARE,
    _RF_SD,
    _ROI_CENTRES,
    _VOXEL_MM,
    Progress,
    SynthConfig,
    scaled_voxel_counts,
)


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


def _receptive_fields(cfg: SynthConfig, roi_codes: np.ndarray, rng: np.random.Generator) -> dict:
    """Which voxels carry signal, their Gaussian receptive fields and orientation weights.

    Returns has_signal (n_vox,) bool, rf_x, rf_y, rf_sd (n_vox,) in feature-grid cells and
    orientation_weights (n_vox, n_orientations), positive and summing to 1.
    """
    n_vox, g, n_or = roi_codes.size, cfg.feature_grid, cfg.n_orientations
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
    return {"has_signal": has_signal, "rf_x": rf_x, "rf_y": rf_y, "rf_sd": rf_sd,
            "orientation_weights": weights}


def _signal(cfg: SynthConfig, feats: np.ndarray, rfs: dict) -> np.ndarray:
    """(n_images, n_vox) signal: RF- and orientation-weighted features, z-scored per voxel
    (0 for voxels without signal)."""
    g, n_or = cfg.feature_grid, cfg.n_orientations
    rf_x, rf_y, rf_sd, weights = rfs["rf_x"], rfs["rf_y"], rfs["rf_sd"], rfs["orientation_weights"]
    n_vox = rf_x.size
    gy, gx = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    signal = np.zeros((cfg.n_train + cfg.n_val, n_vox))
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
    signal[:, ~rfs["has_signal"]] = 0.0
    return signal


def _noisy_responses(cfg: SynthConfig, signal: np.ndarray, roi_codes: np.ndarray, noise_sd: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Training responses averaged over ``n_rep_train`` noisy repeats, (n_train, n_vox),
    and the validation repeats, (n_rep_val, n_val, n_vox)."""
    n_tr, n_va, n_vox = cfg.n_train, cfg.n_val, roi_codes.size
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
    reps = np.empty((cfg.n_rep_val, n_va, n_vox))
    for r in range(cfg.n_rep_val):
        reps[r] = sig_va + noise_sd * unit_noise(n_va)
    return acc, reps


def _zscore(train_avg: np.ndarray, reps: np.ndarray) -> tuple:
    """z-score the averages per voxel over training and validation images together.

    Returns (train (n_train, n_vox), val (n_val, n_vox), val repeats float32
    (n_rep, n_val, n_vox), mean (n_vox,), sd (n_vox,)); ``train_avg`` and ``reps`` are
    changed in place.
    """
    n_tr, n_va = train_avg.shape[0], reps.shape[1]
    val_avg = reps.mean(axis=0)
    mu = (train_avg.sum(axis=0) + val_avg.sum(axis=0)) / (n_tr + n_va)
    var = (((train_avg - mu) ** 2).sum(axis=0) + ((val_avg - mu) ** 2).sum(axis=0)) / (n_tr + n_va)
    zsd = np.sqrt(var)
    train_avg -= mu
    train_avg /= zsd
    data_val = (val_avg - mu) / zsd
    reps -= mu
    reps /= zsd
    return train_avg, data_val, reps.astype(np.float32), mu, zsd


def _roi_averages(cfg: SynthConfig, roi_codes: np.ndarray, voxel_ids: np.ndarray, nan_voxels: np.ndarray,
                  sig_z: np.ndarray, noise_z: np.ndarray, data: tuple) -> dict:
    """Ground truth of each ROI's average over its NaN-free voxels (ROI name -> dict)."""
    data_train, data_val, reps_z = data
    n_tr, rho = cfg.n_train, cfg.shared_noise_fraction
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
    return roi_avg


def _simulate_subject(cfg: SynthConfig, subject: str, feats: np.ndarray,
                      progress: Progress | None) -> dict:
    """Responses and ground truth for one subject.

    ``feats`` is (n_train + n_val, grid * grid * n_orientations), centred and scaled.
    """
    s_idx = SUBJECTS.index(subject)
    rng = np.random.default_rng([cfg.seed, 202, s_idx])
    counts = scaled_voxel_counts(subject, cfg.voxel_scale, cfg.min_roi_voxels)
    voxel_ids, roi_codes = _voxel_layout(counts, rng)
    n_tr, n_va = cfg.n_train, cfg.n_val
    rfs = _receptive_fields(cfg, roi_codes, rng)
    has_signal = rfs["has_signal"]
    signal = _signal(cfg, feats, rfs)
    lo, hi = cfg.val_ceiling_range
    target = rng.uniform(lo, hi, voxel_ids.size)
    noise_sd = np.sqrt(cfg.n_rep_val * (1.0 / target ** 2 - 1.0))  # signal variance 1
    train_avg, reps = _noisy_responses(cfg, signal, roi_codes, noise_sd, rng)
    if progress:
        progress("responses", 2 * s_idx + 1, 2 * len(SUBJECTS))
    data_train, data_val, reps_z, mu, zsd = _zscore(train_avg, reps)
    del reps

    nan_tr, nan_va = _nan_blocks(roi_codes, subject, n_tr, n_va, cfg.nan_image_fraction, rng)
    nan_voxels = nan_tr.any(axis=0) | nan_va.any(axis=0)
    data_train[nan_tr] = np.nan
    data_val[nan_va] = np.nan

    sig_tr, sig_va = signal[:n_tr], signal[n_tr:]
    ceil_tr = np.where(has_signal, _ceiling(sig_tr.var(axis=0), noise_sd, cfg.n_rep_train), 0.0)
    ceil_va = np.where(has_signal, _ceiling(sig_va.var(axis=0), noise_sd, cfg.n_rep_val), 0.0)
    sig_z = (signal - mu) / zsd
    noise_z = noise_sd / zsd
    roi_avg = _roi_averages(cfg, roi_codes, voxel_ids, nan_voxels, sig_z, noise_z,
                            (data_train, data_val, reps_z))
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
            "rf_x": rfs["rf_x"], "rf_y": rfs["rf_y"], "rf_sd": rfs["rf_sd"],
            "orientation_weights": rfs["orientation_weights"],
            "zscore_mean": mu, "zscore_sd": zsd,
        },
        "roi_average": roi_avg,
    }
