"""Noise ceilings (NSD): ncsnr from repeat-level responses and the ceiling it implies.

:func:`noise_ceiling` returns None where no repeats exist (vim-1 releases only
repeat-averaged responses); :data:`NO_CEILING` is what to print then.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.evaluation.significance import _count

__all__ = [
    "NO_CEILING",
    "NoiseCeiling",
    "ceiling_from_ncsnr",
    "ncsnr",
    "noise_ceiling",
]



#: What to print instead of a ceiling when the data have no repeats.
NO_CEILING = (
    "not available: no repeat-level responses (vim-1 releases only repeat-averaged "
    "responses, so no noise ceiling can be estimated from it)"
)


# --------------------------------------------------------------------------------------
# Noise ceiling (NSD)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class NoiseCeiling:
    """NSD noise ceiling per voxel.

    Attributes
    ----------
    ncsnr : ndarray, shape (v,)
        Noise-ceiling signal-to-noise ratio ``sigma_signal / sigma_noise``.
    nc : ndarray, shape (v,)
        Noise ceiling in % of variance of a ``n_average``-repeat average:
        ``100 ncsnr^2 / (ncsnr^2 + 1 / n_average)``.
    r_ceiling : ndarray, shape (v,)
        Correlation ceiling ``sqrt(nc / 100)``: the highest expected correlation between a
        perfect model and the ``n_average``-repeat average.
    n_reps : int
        Repeats in the data the ceiling was estimated from.
    n_average : int
        Repeats averaged into the responses being modelled (what nc refers to).
    """

    ncsnr: np.ndarray
    nc: np.ndarray
    r_ceiling: np.ndarray
    n_reps: int
    n_average: int


def ncsnr(repeats) -> np.ndarray:
    """NSD noise-ceiling SNR per voxel from repeat-level responses.

    Each voxel's responses are z-scored over all repeats and images together (ddof=0);
    ``sigma_noise^2`` is the variance across repeats (ddof=1) averaged over images,
    ``sigma_signal^2 = max(0, 1 - sigma_noise^2)``, ``ncsnr = sigma_signal / sigma_noise``.

    Parameters
    ----------
    repeats : array-like, shape (n_reps, n_images, n_vox)
        Every image seen ``n_reps`` times (n_reps >= 2).

    Returns
    -------
    ndarray, shape (n_vox,)
        NaN for a voxel with a non-finite or constant response; inf if it has no noise.
    """
    R = np.asarray(repeats, dtype=np.float64)
    if R.ndim == 2:
        R = R[:, :, None]
    if R.ndim != 3 or R.shape[0] < 2 or R.shape[1] < 2:
        raise ConfigError("repeats must have shape (n_reps >= 2, n_images >= 2, n_vox), "
                          f"got {np.shape(repeats)}.")
    flat = R.reshape(-1, R.shape[2])
    sd = flat.std(axis=0)
    bad = ~np.all(np.isfinite(flat), axis=0) | ~(sd > 0)
    Z = (R - flat.mean(axis=0)) / np.where(bad, 1.0, sd)
    noise_var = Z.var(axis=0, ddof=1).mean(axis=0)
    noise_var[noise_var < 1e-12] = 0.0  # rounding residue of identical repeats
    signal_var = np.maximum(0.0, 1.0 - noise_var)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.sqrt(signal_var) / np.sqrt(noise_var)
    out[bad] = np.nan
    return out


def ceiling_from_ncsnr(snr, n_average: int) -> tuple[np.ndarray, np.ndarray]:
    """NC (%) and correlation ceiling for responses averaged over ``n_average`` repeats.

    The variant for averaged responses: given the ncsnr (from repeat-level data) and the
    number of repeats averaged into the responses being modelled (vim-1: 2 for training,
    about 13 for validation images).

    Parameters
    ----------
    snr : array-like, shape (v,)
    n_average : int

    Returns
    -------
    nc : ndarray, shape (v,)
        ``100 snr^2 / (snr^2 + 1 / n_average)``.
    r_ceiling : ndarray, shape (v,)
        ``sqrt(nc / 100)``.
    """
    n_average = _count(n_average, "n_average", 1)
    s2 = np.asarray(snr, dtype=np.float64) ** 2
    with np.errstate(invalid="ignore"):
        nc = np.where(np.isinf(s2), 100.0, 100.0 * s2 / (s2 + 1.0 / n_average))
    return nc, np.sqrt(nc / 100.0)


def noise_ceiling(repeats, n_average: int | None = None) -> NoiseCeiling | None:
    """NSD noise ceiling, or None where it cannot be estimated.

    Parameters
    ----------
    repeats : array-like, shape (n_reps, n_images, n_vox), or None
        Repeat-level responses. None (no repeats, e.g. vim-1) or a single repeat
        returns None: say :data:`NO_CEILING` instead of inventing one.
    n_average : int, optional
        Repeats averaged into the modelled responses; default ``n_reps`` (the average
        of all the given repeats).

    Returns
    -------
    NoiseCeiling or None
    """
    if repeats is None:
        return None
    R = np.asarray(repeats, dtype=np.float64)
    if R.ndim in (2, 3) and R.shape[0] < 2:
        return None
    snr = ncsnr(R)
    n_reps = int(R.shape[0])
    n_avg = n_reps if n_average is None else _count(n_average, "n_average", 1)
    nc, r_ceiling = ceiling_from_ncsnr(snr, n_avg)
    return NoiseCeiling(ncsnr=snr, nc=nc, r_ceiling=r_ceiling, n_reps=n_reps, n_average=n_avg)
