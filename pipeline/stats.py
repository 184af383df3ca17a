"""Significance, multiple comparisons, confidence intervals and noise ceilings.

Implements ``specs/statistics.md``:

* :func:`permutation_pvalues`: per-voxel permutation test of Pearson r on a held-out
  set. The SAME seeded permutations of the held-out images serve every voxel
  (:func:`permutation_matrix`); ``p = (1 + #{r_perm >= r}) / (1 + n_permutations)``.
* :func:`bh_adjust` / :func:`fdr_significant`: Benjamini-Hochberg FDR across the voxels
  of a fit (q = 0.05).
* :func:`bootstrap_ci` / :func:`roi_summary`: mean and median with seeded percentile
  bootstrap confidence intervals over voxels.
* :func:`paired_comparison`: two fits over the same voxels (Wilcoxon signed rank and a
  paired bootstrap of the median difference).
* :func:`noise_ceiling`: the NSD noise ceiling from repeat-level responses, or None where
  no repeats exist (vim-1 releases only repeat-averaged responses).

Chance levels and parametric thresholds live in :mod:`pipeline.scores`.

Random streams use ``np.random.RandomState`` (numpy guarantees its output never changes),
so a seed reproduces the same permutations and bootstrap samples forever.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sp_stats

from pipeline.core.errors import ConfigError

__all__ = [
    "DEFAULT_FDR_Q",
    "DEFAULT_N_BOOT",
    "DEFAULT_N_PERMUTATIONS",
    "NO_CEILING",
    "BootstrapCI",
    "NoiseCeiling",
    "PairedComparison",
    "bh_adjust",
    "bootstrap_ci",
    "ceiling_from_ncsnr",
    "fdr_significant",
    "ncsnr",
    "noise_ceiling",
    "paired_comparison",
    "permutation_matrix",
    "permutation_pvalues",
    "roi_summary",
]

DEFAULT_N_PERMUTATIONS = 1000
DEFAULT_FDR_Q = 0.05
DEFAULT_N_BOOT = 2000
#: What to print instead of a ceiling when the data have no repeats.
NO_CEILING = (
    "not available: no repeat-level responses (vim-1 releases only repeat-averaged "
    "responses, so no noise ceiling can be estimated from it)"
)

_PERM_CHUNK = 512  # voxels per block in the permutation test (fits in L2 cache as float32)
_BOOT_ELEMENTS = 4_000_000  # resampled values held at once by the bootstrap
_TIE_TOL = 1e-6  # r_perm >= r - tol counts as ">=" (float32 rounding of equal values)


def _count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _level(value, name: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in (0, 1), got {value!r}.") from None
    if not 0.0 < x < 1.0:
        raise ConfigError(f"{name} must be in (0, 1), got {value!r}.")
    return x


# --------------------------------------------------------------------------------------
# Permutation test
# --------------------------------------------------------------------------------------
def permutation_matrix(n: int, n_permutations: int = DEFAULT_N_PERMUTATIONS, seed: int = 0
                       ) -> np.ndarray:
    """The seeded permutations shared by all voxels.

    Row ``k`` is the ``k``-th call of ``RandomState(seed).permutation(n)``.

    Parameters
    ----------
    n : int
        Number of held-out images.
    n_permutations : int
    seed : int

    Returns
    -------
    ndarray of intp, shape (n_permutations, n)
    """
    n = _count(n, "n", 2)
    n_permutations = _count(n_permutations, "n_permutations", 1)
    seed = _count(seed, "seed", 0)
    rng = np.random.RandomState(seed)
    out = np.empty((n_permutations, n), dtype=np.intp)
    for k in range(n_permutations):
        out[k] = rng.permutation(n)
    return out


def _unit_columns(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns centred and scaled to unit norm (float32), and which had non-zero spread."""
    a = a - a.mean(axis=0)
    norm = np.sqrt(np.einsum("ij,ij->j", a, a))
    ok = norm > 0
    a /= np.where(ok, norm, 1.0)
    a[:, ~ok] = 0.0
    return np.asarray(a, dtype=np.float32), ok


def permutation_pvalues(
    y_true,
    y_pred,
    n_permutations: int = DEFAULT_N_PERMUTATIONS,
    seed: int = 0,
    *,
    alternative: str = "greater",
    permutations: np.ndarray | None = None,
    return_null: bool = False,
    chunk_size: int = _PERM_CHUNK,
):
    """Permutation p-value of Pearson r per column, the same permutations for all columns.

    For every permutation ``pi`` (a row of :func:`permutation_matrix`) the rows of
    ``y_true`` are reordered and r recomputed for every column; then
    ``p = (1 + #{r_perm >= r}) / (1 + n_permutations)`` (``|r_perm| >= |r|`` for
    ``alternative="two-sided"``). Columns are standardised once, so each r is a dot
    product; the products run in float32 over blocks of ``chunk_size`` columns (about
    2 s for 26k voxels x 120 images x 1000 permutations on one core).

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n, v) or (n,)
    n_permutations : int, default 1000
        Ignored when ``permutations`` is given.
    seed : int, default 0
        Seed of :func:`permutation_matrix`.
    alternative : {"greater", "two-sided"}
    permutations : ndarray of int, shape (n_permutations, n), optional
        Explicit permutations (each row a permutation of ``range(n)``).
    return_null : bool
        Also return the permutation distribution.
    chunk_size : int
        Columns per block.

    Returns
    -------
    p : ndarray, shape (v,), or float for 1-D input
        NaN where r is undefined (a constant column).
    null : ndarray, shape (n_permutations, v), float32
        Only with ``return_null=True``: r of every permutation and column.
    """
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.shape != b.shape:
        raise ConfigError(f"y_true and y_pred must have the same shape, got {a.shape} and {b.shape}.")
    one_d = a.ndim == 1
    if one_d:
        a, b = a[:, None], b[:, None]
    if a.ndim != 2 or a.shape[0] < 3:
        raise ConfigError(f"need arrays of shape (n,) or (n, v) with n >= 3, got {a.shape}.")
    if alternative not in ("greater", "two-sided"):
        raise ConfigError(f"alternative must be 'greater' or 'two-sided', got {alternative!r}.")
    chunk_size = _count(chunk_size, "chunk_size", 1)
    n, v = a.shape
    if permutations is None:
        perms = permutation_matrix(n, n_permutations, seed)
    else:
        perms = np.asarray(permutations)
        if perms.ndim != 2 or perms.shape[1] != n or perms.shape[0] < 1:
            raise ConfigError(f"permutations must have shape (n_permutations, {n}), "
                              f"got {perms.shape}.")
        if not np.array_equal(np.sort(perms, axis=1), np.broadcast_to(np.arange(n), perms.shape)):
            raise ConfigError("every row of permutations must be a permutation of range(n).")
        perms = perms.astype(np.intp, copy=False)
    n_perm = perms.shape[0]
    A, ok_a = _unit_columns(a)
    B, ok_b = _unit_columns(b)
    valid = ok_a & ok_b & np.all(np.isfinite(a), axis=0) & np.all(np.isfinite(b), axis=0)
    counts = np.zeros(v, dtype=np.int64)
    null = np.empty((n_perm, v), dtype=np.float32) if return_null else None
    two_sided = alternative == "two-sided"
    for start in range(0, v, chunk_size):
        sl = slice(start, min(start + chunk_size, v))
        Ac = np.ascontiguousarray(A[:, sl])
        Bc = np.ascontiguousarray(B[:, sl])
        r_obs = np.einsum("ij,ij->j", Ac, Bc)
        block = np.empty((n_perm, sl.stop - sl.start), dtype=np.float32)
        buf = np.empty_like(Ac)
        for k in range(n_perm):
            np.take(Ac, perms[k], axis=0, out=buf)
            np.einsum("ij,ij->j", buf, Bc, out=block[k])
        if two_sided:
            counts[sl] = np.sum(np.abs(block) >= np.abs(r_obs) - _TIE_TOL, axis=0)
        else:
            counts[sl] = np.sum(block >= r_obs - _TIE_TOL, axis=0)
        if null is not None:
            null[:, sl] = block
    p = (1.0 + counts) / (1.0 + n_perm)
    p[~valid] = np.nan
    if null is not None:
        null[:, ~valid] = np.nan
    out = float(p[0]) if one_d else p
    return (out, null) if return_null else out


# --------------------------------------------------------------------------------------
# Multiple comparisons
# --------------------------------------------------------------------------------------
def bh_adjust(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), NaN-aware.

    ``q_(i) = min_{j >= i} min(1, m p_(j) / j)`` over the ``m`` finite p-values sorted
    ascending (statsmodels ``multipletests(method="fdr_bh")``); NaN stays NaN and does
    not count in ``m``.

    Parameters
    ----------
    p : array-like, shape (v,)

    Returns
    -------
    ndarray, shape (v,)
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ConfigError(f"p must be 1-D, got shape {p.shape}.")
    finite = np.isfinite(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ConfigError("p-values must lie in [0, 1].")
    out = np.full(p.shape, np.nan)
    x = p[finite]
    m = x.size
    if m == 0:
        return out
    order = np.argsort(x, kind="stable")
    scaled = x[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(q, 1.0)
    out[finite] = adjusted
    return out


def fdr_significant(p, q: float = DEFAULT_FDR_Q) -> np.ndarray:
    """Benjamini-Hochberg decision at FDR level ``q`` (False where p is NaN).

    Rejects every p-value up to the largest ``p_(k) <= k q / m``; equivalently
    ``bh_adjust(p) <= q``.

    Parameters
    ----------
    p : array-like, shape (v,)
    q : float, default 0.05

    Returns
    -------
    ndarray of bool, shape (v,)
    """
    q = _level(q, "q")
    adjusted = bh_adjust(p)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(adjusted, nan=np.inf) <= q


# --------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BootstrapCI:
    """A statistic over voxels with its percentile bootstrap confidence interval.

    Attributes
    ----------
    estimate, low, high : float
        NaN when there are no finite values.
    n : int
        Finite values used.
    n_boot : int
    level : float
        Confidence level (0.95).
    """

    estimate: float
    low: float
    high: float
    n: int
    n_boot: int
    level: float

    def to_dict(self) -> dict:
        """Plain dict; NaN becomes None (JSON/BSON friendly)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}


_STATISTICS: dict[str, Callable[..., np.ndarray]] = {"mean": np.mean, "median": np.median}


def _statistic(statistic) -> Callable[..., np.ndarray]:
    if callable(statistic):
        return statistic
    if statistic not in _STATISTICS:
        raise ConfigError(f"statistic must be 'mean', 'median' or a callable, got {statistic!r}.")
    return _STATISTICS[statistic]


def _bootstrap_values(x: np.ndarray, fn, n_boot: int, rng: np.random.RandomState) -> np.ndarray:
    """``fn`` of ``n_boot`` resamples (with replacement) of the rows of ``x``, axis=1."""
    n = x.shape[0]
    out = []
    step = max(1, _BOOT_ELEMENTS // max(n, 1))
    for start in range(0, n_boot, step):
        idx = rng.randint(0, n, size=(min(step, n_boot - start), n))
        out.append(np.asarray(fn(x[idx], axis=1), dtype=np.float64))
    return np.concatenate(out)


def bootstrap_ci(
    values,
    statistic: str | Callable = "median",
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile bootstrap confidence interval of a statistic over voxels.

    Non-finite values are dropped first. Resamples are drawn with
    ``RandomState(seed).randint`` (reproducible).

    Parameters
    ----------
    values : array-like, shape (v,)
    statistic : "median", "mean" or callable ``f(array, axis=1)``
    n_boot : int, default 2000
    level : float, default 0.95
    seed : int, default 0

    Returns
    -------
    BootstrapCI
    """
    fn = _statistic(statistic)
    n_boot = _count(n_boot, "n_boot", 1)
    level = _level(level, "level")
    seed = _count(seed, "seed", 0)
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return BootstrapCI(math.nan, math.nan, math.nan, 0, n_boot, level)
    boots = _bootstrap_values(x, fn, n_boot, np.random.RandomState(seed))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boots, [alpha, 1.0 - alpha])
    return BootstrapCI(float(fn(x)), float(low), float(high), int(x.size), n_boot, level)


def roi_summary(
    values,
    rois: Sequence | np.ndarray | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict]:
    """Per-ROI mean and median over voxels with bootstrap confidence intervals.

    Parameters
    ----------
    values : array-like, shape (v,)
        One score per voxel (NaN allowed: counted in ``n``, not used).
    rois : array-like, shape (v,), optional
        ROI label per voxel (names or codes); None puts every voxel in ROI "all".
    n_boot, level, seed
        As :func:`bootstrap_ci`; every ROI uses the same seed.

    Returns
    -------
    dict
        ``str(roi) -> {"n", "n_finite", "mean", "mean_low", "mean_high", "median",
        "median_low", "median_high"}`` with plain floats (None where undefined),
        ROIs in sorted order.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    labels = np.full(x.shape, "all", dtype=object) if rois is None else np.asarray(rois).ravel()
    if labels.shape != x.shape:
        raise ConfigError(f"rois must have one label per value ({x.size}), got {labels.size}.")
    out = {}
    for roi in sorted(set(labels.tolist()), key=str):
        sel = x[labels == roi]
        row: dict = {"n": int(sel.size), "n_finite": int(np.isfinite(sel).sum())}
        for name in ("mean", "median"):
            ci = bootstrap_ci(sel, name, n_boot, level, seed).to_dict()
            row[name], row[f"{name}_low"], row[f"{name}_high"] = ci["estimate"], ci["low"], ci["high"]
        out[str(roi)] = row
    return out


# --------------------------------------------------------------------------------------
# Paired comparison
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedComparison:
    """Two fits compared over the same voxels (``a - b``).

    Attributes
    ----------
    n : int
        Voxels where both scores are finite.
    median_a, median_b : float
    median_diff : float
        Median of the paired differences ``a - b``.
    median_diff_low, median_diff_high : float
        Paired percentile bootstrap interval (voxels resampled as pairs).
    mean_diff : float
    share_a_greater : float
        Share of voxels with ``a > b``.
    wilcoxon_statistic, wilcoxon_p : float
        ``scipy.stats.wilcoxon(a - b)`` (two-sided; zero differences dropped); p = 1
        when every difference is zero, NaN when n == 0.
    n_boot : int
    level : float
    """

    n: int
    median_a: float
    median_b: float
    median_diff: float
    median_diff_low: float
    median_diff_high: float
    mean_diff: float
    share_a_greater: float
    wilcoxon_statistic: float
    wilcoxon_p: float
    n_boot: int
    level: float

    def to_dict(self) -> dict:
        """Plain dict; NaN becomes None."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}


def paired_comparison(
    a, b, n_boot: int = DEFAULT_N_BOOT, level: float = 0.95, seed: int = 0
) -> PairedComparison:
    """Compare two per-voxel scores over the same voxels.

    Parameters
    ----------
    a, b : array-like, shape (v,)
        Scores of the two fits, voxel by voxel (same order).
    n_boot, level, seed
        Bootstrap of the median difference, as :func:`bootstrap_ci`.

    Returns
    -------
    PairedComparison
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ConfigError(f"a and b must hold the same voxels, got {x.size} and {y.size} values.")
    both = np.isfinite(x) & np.isfinite(y)
    x, y = x[both], y[both]
    d = x - y
    ci = bootstrap_ci(d, "median", n_boot, level, seed)
    nan = math.nan
    if d.size == 0:
        stat, p = nan, nan
    elif np.all(d == 0):
        stat, p = 0.0, 1.0
    else:
        res = sp_stats.wilcoxon(d)
        stat, p = float(res.statistic), float(res.pvalue)
    return PairedComparison(
        n=int(d.size),
        median_a=float(np.median(x)) if d.size else nan,
        median_b=float(np.median(y)) if d.size else nan,
        median_diff=ci.estimate,
        median_diff_low=ci.low,
        median_diff_high=ci.high,
        mean_diff=float(d.mean()) if d.size else nan,
        share_a_greater=float(np.mean(d > 0)) if d.size else nan,
        wilcoxon_statistic=stat,
        wilcoxon_p=p,
        n_boot=ci.n_boot,
        level=ci.level,
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
