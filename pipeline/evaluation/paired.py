"""Per-voxel paired tests of two models on the same held-out images, and family-wise
corrections of a set of such contrasts.

:func:`swap_test` asks, for every voxel: does model A predict the held-out responses
better than model B, beyond what swapping the two models' predictions image by image
gives? Under the null hypothesis that A and B are equally good, the two predictions of
each image are exchangeable, so every swap pattern is as likely as the observed one;
the one-sided p-value of the observed difference ``r(y, a) - r(y, b)`` is its rank among
the differences of ``n_permutations`` seeded swap patterns (the same patterns for every
voxel, so voxels and contrasts are tested alike). Predictions are z-scored per voxel
first: Pearson r ignores their scale, and swapping values of different scales would test
the scale instead. Permuting the images of ``y`` instead would test "neither model
predicts", which is conservative for a difference between two models that both do.

Every swapped correlation comes from four matrix products (``S @ ...`` with ``S`` the
swap masks), so the test is batched over voxels with no loop over permutations.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.errors import ConfigError

__all__ = ["holm_adjust", "swap_masks", "swap_test", "zscore_columns"]


def zscore_columns(a: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to ``sum(z**2) == n`` (NaN for a constant column).

    Parameters
    ----------
    a : ndarray, shape (n, v)
    """
    x = np.asarray(a, dtype=np.float64)
    x = x - x.mean(axis=0)
    sd = np.sqrt(np.mean(x * x, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sd > 0, x / np.where(sd > 0, sd, 1.0), np.nan)


def swap_masks(n: int, n_permutations: int, seed: int = 0) -> np.ndarray:
    """Seeded swap patterns: row ``k`` says which of the ``n`` images swap A and B.

    Returns
    -------
    ndarray of float64, shape (n_permutations, n), values 0.0 / 1.0
    """
    if n < 3:
        raise ConfigError(f"a paired swap test needs at least 3 images, got {n}")
    if n_permutations < 1:
        raise ConfigError(f"n_permutations must be at least 1, got {n_permutations}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, size=(n_permutations, n)).astype(np.float64)


def swap_test(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_permutations: int = 1000,
              seed: int = 0, block: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-sided per-voxel test that A predicts ``y`` better than B (Pearson r).

    Parameters
    ----------
    y, pred_a, pred_b : ndarray, shape (n, v)
        Measured responses and the two models' predictions of the same ``n`` held-out
        images for ``v`` voxels (column ``j`` of each is voxel ``j``).
    n_permutations, seed
        Swap patterns (:func:`swap_masks`), shared by every voxel.
    block
        Voxels per batch (memory ~ ``n_permutations * block`` floats).

    Returns
    -------
    diff : ndarray, shape (v,)
        ``r(y, a) - r(y, b)`` per voxel.
    p : ndarray, shape (v,)
        ``(1 + #{swapped diff >= diff}) / (n_permutations + 1)``: A better than B; NaN
        where a column of ``y`` or of a prediction is constant or not finite.
    p_reverse : ndarray, shape (v,)
        The same for B better than A (``swapped diff <= diff``), from the same patterns.
    """
    y, a, b = (np.asarray(m, dtype=np.float64) for m in (y, pred_a, pred_b))
    if y.ndim != 2 or y.shape != a.shape or y.shape != b.shape:
        raise ConfigError(f"y, pred_a and pred_b must have one shape (n images, v voxels), "
                          f"got {y.shape}, {a.shape}, {b.shape}")
    n, v = y.shape
    masks = swap_masks(n, n_permutations, seed)
    diff, p, p_rev = (np.full(v, np.nan) for _ in range(3))
    for start in range(0, v, block):
        sl = slice(start, min(start + block, v))
        diff[sl], p[sl], p_rev[sl] = _swap_block(zscore_columns(y[:, sl]), zscore_columns(a[:, sl]),
                                                 zscore_columns(b[:, sl]), masks)
    return diff, p, p_rev


def _swap_block(zy: np.ndarray, za: np.ndarray, zb: np.ndarray, S: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed differences and p-values of z-scored columns (see :func:`swap_test`).

    Swapped A is ``za + S*d`` and swapped B ``zb - S*d`` with ``d = zb - za``; their sums,
    cross-products with ``zy`` and sums of squares are ``S`` times per-image vectors
    (``zb*d = za*d + d*d``, so four products, done as one matrix product).
    """
    n = zy.shape[0]
    v = zy.shape[1]
    ok = np.isfinite(zy).all(0) & np.isfinite(za).all(0) & np.isfinite(zb).all(0)
    zy, za, zb = (np.where(ok, m, 0.0) for m in (zy, za, zb))
    d = zb - za
    c_a, c_b = np.sum(zy * za, 0), np.sum(zy * zb, 0)
    prods = S @ np.hstack([d, zy * d, d * d, za * d])
    s_d, s_yd, s_dd, s_zad = (prods[:, i * v:(i + 1) * v] for i in range(4))
    common = np.multiply(s_d, s_d, out=s_d)
    common /= -n
    common += n                                       # n - s_d^2 / n
    qa = common + s_dd
    qa += 2.0 * s_zad                                 # n + 2 S(za d) + S(d d) - s_d^2/n
    qb = np.subtract(common, s_dd, out=common)
    qb -= 2.0 * s_zad                                 # n - 2 S(zb d) + S(d d) - s_d^2/n
    with np.errstate(invalid="ignore", divide="ignore"):
        np.sqrt(qa, out=qa)
        np.sqrt(qb, out=qb)
        null = np.add(c_a, s_yd, out=s_zad)
        null /= qa                                    # sqrt(n) * r(y, swapped A)
        xb = np.subtract(c_b, s_yd, out=s_yd)
        xb /= qb
        null -= xb                                    # sqrt(n) * swapped difference
    obs = (c_a - c_b) / n
    scaled = obs * np.sqrt(n)
    k = S.shape[0] + 1.0
    p = (1.0 + np.count_nonzero(null >= scaled - 1e-12, axis=0)) / k
    p_rev = (1.0 + np.count_nonzero(null <= scaled + 1e-12, axis=0)) / k
    return (np.where(ok, obs, np.nan), np.where(ok, p, np.nan), np.where(ok, p_rev, np.nan))


def holm_adjust(p) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error), NaN kept as NaN.

    Parameters
    ----------
    p : array-like, shape (m,)

    Returns
    -------
    ndarray, shape (m,)
        ``min(1, max over i <= rank of (m_finite - i) * p_(i))`` in the input order.
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out
