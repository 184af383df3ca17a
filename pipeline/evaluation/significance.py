"""Significance and multiple comparisons: permutation p-values and Benjamini-Hochberg FDR.

Implements ``specs/statistics.md``:

* :func:`permutation_pvalues`: per-voxel permutation test of Pearson r on a held-out
  set. The SAME seeded permutations of the held-out images serve every voxel
  (:func:`permutation_matrix`); ``p = (1 + #{r_perm >= r}) / (1 + n_permutations)``.
* :func:`bh_adjust` / :func:`fdr_significant`: Benjamini-Hochberg FDR across the voxels
  of a fit (q = 0.05).

Bootstrap intervals and paired comparisons live in :mod:`pipeline.evaluation.intervals`,
noise ceilings in :mod:`pipeline.evaluation.ceiling`.

Chance levels and parametric thresholds live in :mod:`pipeline.evaluation.scores`.

Random streams use ``np.random.RandomState`` (numpy guarantees its output never changes),
so a seed reproduces the same permutations and bootstrap samples forever.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.errors import ConfigError

__all__ = [
    "DEFAULT_FDR_Q",
    "DEFAULT_N_PERMUTATIONS",
    "bh_adjust",
    "fdr_significant",
    "permutation_matrix",
    "permutation_pvalues",
]

DEFAULT_N_PERMUTATIONS = 1000
DEFAULT_FDR_Q = 0.05
_PERM_CHUNK = 512  # voxels per block in the permutation test (fits in L2 cache as float32)
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
    perms = _checked_permutations(permutations, a.shape[0], n_permutations, seed)
    n_perm = perms.shape[0]
    A, ok_a = _unit_columns(a)
    B, ok_b = _unit_columns(b)
    valid = ok_a & ok_b & np.all(np.isfinite(a), axis=0) & np.all(np.isfinite(b), axis=0)
    counts, null = _exceedances(A, B, perms, chunk_size, alternative == "two-sided", return_null)
    p = (1.0 + counts) / (1.0 + n_perm)
    p[~valid] = np.nan
    if null is not None:
        null[:, ~valid] = np.nan
    out = float(p[0]) if one_d else p
    return (out, null) if return_null else out


def _checked_permutations(permutations, n: int, n_permutations: int, seed: int) -> np.ndarray:
    """(n_permutations, n) intp: the seeded :func:`permutation_matrix`, or the given rows
    checked to be permutations of ``range(n)``."""
    if permutations is None:
        return permutation_matrix(n, n_permutations, seed)
    perms = np.asarray(permutations)
    if perms.ndim != 2 or perms.shape[1] != n or perms.shape[0] < 1:
        raise ConfigError(f"permutations must have shape (n_permutations, {n}), "
                          f"got {perms.shape}.")
    if not np.array_equal(np.sort(perms, axis=1), np.broadcast_to(np.arange(n), perms.shape)):
        raise ConfigError("every row of permutations must be a permutation of range(n).")
    return perms.astype(np.intp, copy=False)


def _exceedances(A: np.ndarray, B: np.ndarray, perms: np.ndarray, chunk_size: int, two_sided: bool,
                 return_null: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Per column of the unit-norm (n, v) ``A``, ``B``: how many permutations reach the
    observed r, (v,) int64; and the (n_permutations, v) float32 null when asked."""
    v = A.shape[1]
    n_perm = perms.shape[0]
    counts = np.zeros(v, dtype=np.int64)
    null = np.empty((n_perm, v), dtype=np.float32) if return_null else None
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
    return counts, null


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
