"""Per-voxel scores on a held-out set, chance level and significance thresholds.

Names follow ``specs/statistics.md``: ``r`` (Pearson), ``r2_corr`` (r squared, what the
2019 project called "r-squared") and ``r2`` (coefficient of determination, can be
negative). Never label ``r2_corr`` as "R^2".

Degenerate columns: where ``y_true`` or ``y_pred`` is constant over the scored samples,
``r`` (and ``r2_corr``) is NaN; ``r2`` is NaN where ``y_true`` is constant. No warnings
are emitted for these; aggregate with ``np.nanmedian`` / ``np.nanmean`` and count them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from pipeline.core.errors import ConfigError

__all__ = [
    "SCORES",
    "chance_r2_corr",
    "pearson_r",
    "r2_corr",
    "r2_score",
    "r_pvalue",
    "r_threshold",
]


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, bool]:
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.shape != b.shape:
        raise ConfigError(
            f"y_true and y_pred must have the same shape, got {a.shape} and {b.shape}."
        )
    one_d = a.ndim == 1
    if one_d:
        a, b = a[:, None], b[:, None]
    if a.ndim != 2 or a.shape[0] < 2:
        raise ConfigError(f"scores need arrays of shape (n,) or (n, v) with n >= 2, got {a.shape}.")
    return a, b, one_d


def _out(values: np.ndarray, one_d: bool):
    return float(values[0]) if one_d else values


def pearson_r(y_true, y_pred):
    """Pearson correlation per column.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n, v) or (n,)

    Returns
    -------
    ndarray, shape (v,), or float for 1-D input
        NaN where either column is constant.
    """
    a, b, one_d = _pair(y_true, y_pred)
    constant = (np.ptp(a, axis=0) == 0) | (np.ptp(b, axis=0) == 0)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    num = np.einsum("ij,ij->j", a, b)
    den = np.sqrt(np.einsum("ij,ij->j", a, a) * np.einsum("ij,ij->j", b, b))
    constant |= ~(den > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(constant, np.nan, num / np.where(constant, 1.0, den))
    return _out(np.clip(r, -1.0, 1.0), one_d)


def r2_corr(y_true, y_pred):
    """Squared Pearson correlation per column (>= 0; NaN where r is NaN)."""
    r = pearson_r(y_true, y_pred)
    return r * r


def r2_score(y_true, y_pred):
    """Coefficient of determination per column: ``1 - SS_res / SS_tot``.

    ``SS_tot`` is taken around the mean of ``y_true`` on the scored samples themselves.
    NaN where ``y_true`` is constant.
    """
    a, b, one_d = _pair(y_true, y_pred)
    ss_res = np.sum((a - b) ** 2, axis=0)
    ss_tot = np.sum((a - a.mean(axis=0)) ** 2, axis=0)
    constant = np.ptp(a, axis=0) == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(constant, np.nan, 1.0 - ss_res / np.where(constant, 1.0, ss_tot))
    return _out(r2, one_d)


def chance_r2_corr(n: int) -> float:
    """Mean of r squared between n independent samples under no signal: ``1 / (n - 1)``."""
    if n < 2:
        raise ConfigError(f"n must be at least 2, got {n!r}.")
    return 1.0 / (n - 1)


def r_threshold(n: int, p: float = 0.05) -> float:
    """One-tailed critical Pearson r for n samples at level p (t test, n - 2 df).

    ``r = t / sqrt(n - 2 + t^2)`` with ``t`` the upper-p quantile of Student's t; for
    n = 120: 0.151 (p = .05), 0.212 (.01), 0.279 (.001).
    """
    if n < 3:
        raise ConfigError(f"n must be at least 3, got {n!r}.")
    if not 0.0 < p < 1.0:
        raise ConfigError(f"p must be in (0, 1), got {p!r}.")
    df = n - 2
    t = stats.t.isf(p, df)
    return float(t / np.sqrt(df + t * t))


def r_pvalue(r, n: int):
    """One-tailed p value of Pearson r (alternative r > 0) from the t distribution.

    Parameters
    ----------
    r : float or ndarray
    n : int
        Samples the correlation was computed on.

    Returns
    -------
    float or ndarray (NaN where r is NaN)
    """
    if n < 3:
        raise ConfigError(f"n must be at least 3, got {n!r}.")
    r = np.asarray(r, dtype=np.float64)
    df = n - 2
    rc = np.clip(r, -1.0 + 1e-15, 1.0 - 1e-15)
    t = rc * np.sqrt(df / (1.0 - rc * rc))
    p = stats.t.sf(t, df)
    return float(p) if p.ndim == 0 else p


#: name -> function(y_true, y_pred) returning one value per column.
SCORES: dict[str, Callable] = {
    "r": pearson_r,
    "r2_corr": r2_corr,
    "r2": r2_score,
}
