"""Seeded percentile bootstrap intervals, ROI summaries and paired comparisons of two fits.

* :func:`bootstrap_ci` / :func:`roi_summary`: mean and median with seeded percentile
  bootstrap confidence intervals over voxels (analytic beyond a size limit).
* :func:`paired_comparison`: two fits over the same voxels (Wilcoxon signed rank and a
  paired bootstrap of the median difference).

Random streams use ``np.random.RandomState`` so a seed reproduces the same samples forever.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sp_stats

from pipeline.core.errors import ConfigError
from pipeline.evaluation.significance import _count, _level

__all__ = [
    "DEFAULT_N_BOOT",
    "BootstrapCI",
    "PairedComparison",
    "bootstrap_ci",
    "paired_comparison",
    "roi_summary",
]

DEFAULT_N_BOOT = 2000
_BOOT_ELEMENTS = 4_000_000  # resampled values held at once by the bootstrap


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
    """``fn`` of ``n_boot`` resamples (with replacement) of the rows of ``x``, axis=1.

    The mean and the median of each resample come from its counts over the sorted values
    (no copy of the resample, no sort per resample): the same numbers as ``fn(x[idx])``.
    """
    n = x.shape[0]
    out = []
    step = max(1, _BOOT_ELEMENTS // max(n, 1))
    fast = fn is np.mean or fn is np.median
    xs = np.sort(x) if fast else x
    rank = np.empty(n, dtype=np.int64)
    if fast:
        rank[np.argsort(x, kind="stable")] = np.arange(n)
    for start in range(0, n_boot, step):
        idx = rng.randint(0, n, size=(min(step, n_boot - start), n))
        if not fast:
            out.append(np.asarray(fn(x[idx], axis=1), dtype=np.float64))
            continue
        b = idx.shape[0]
        flat = rank[idx] + (np.arange(b, dtype=np.int64) * n)[:, None]
        counts = np.bincount(flat.ravel(), minlength=b * n).reshape(b, n)
        if fn is np.mean:
            out.append(counts @ xs / n)
            continue
        cum = np.cumsum(counts, axis=1)
        lo = np.argmax(cum > (n - 1) // 2, axis=1)  # sorted positions of the middle values
        hi = np.argmax(cum > n // 2, axis=1)
        out.append((xs[lo] + xs[hi]) / 2.0)
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
