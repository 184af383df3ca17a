"""Train/test splits: the 2019 cs431 protocol (exactly), our held-out split, inner k-fold.

Every split is sorted integer indices (int64). :func:`index_hash` fingerprints an index
list for the fit document so leakage can be audited.

Random streams use ``np.random.RandomState``, whose output numpy guarantees never to
change across versions, so a seed reproduces the same images forever.
"""

from __future__ import annotations

import hashlib

import numpy as np

from pipeline.core.errors import ConfigError

__all__ = [
    "cs431_splits",
    "cs431_feature_subset",
    "holdout_split",
    "kfold_splits",
    "index_hash",
]


def _check_count(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def cs431_splits(
    n: int = 1750, n_test: int = 250, n_splits: int = 5, seed: int = 0
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.random.RandomState]:
    """The 2019 project's five independent random splits (not k-fold).

    ``rng = RandomState(seed)``; for each split ``perm = rng.permutation(n)``,
    ``test = sorted(perm[:n_test])``, ``train = sorted(perm[n_test:])``.

    Parameters
    ----------
    n : int
        Number of training images (1750 in vim-1).
    n_test : int
        Held-out images per split (250).
    n_splits : int
        Number of splits (5).
    seed : int
        RandomState seed (0).

    Returns
    -------
    splits : list of (train, test) tuples of sorted int64 index arrays
    rng : numpy.random.RandomState
        The generator right after the splits: pass it to :func:`cs431_feature_subset`
        to draw the 2019 feature subset.
    """
    n = _check_count(n, "n", 2)
    n_test = _check_count(n_test, "n_test")
    n_splits = _check_count(n_splits, "n_splits")
    seed = _check_count(seed, "seed", 0)
    if n_test >= n:
        raise ConfigError(f"n_test must be smaller than n ({n}), got {n_test}.")
    rng = np.random.RandomState(seed)
    splits = []
    for _ in range(n_splits):
        perm = rng.permutation(n)
        splits.append(
            (np.sort(perm[n_test:]).astype(np.int64), np.sort(perm[:n_test]).astype(np.int64))
        )
    return splits, rng


def cs431_feature_subset(
    rng: np.random.RandomState, p: int = 75264, k: int = 5000
) -> np.ndarray:
    """The 2019 random feature subset: ``rng.permutation(p)[:k]`` (order kept as drawn).

    Parameters
    ----------
    rng : numpy.random.RandomState
        The generator returned by :func:`cs431_splits` (consumed).
    p : int
        Number of features (75,264 for AlexNet conv3).
    k : int
        Features kept (5000).

    Returns
    -------
    ndarray of int64, shape (k,)
    """
    p = _check_count(p, "p")
    k = _check_count(k, "k")
    if k > p:
        raise ConfigError(f"k (features kept) must be at most p ({p}), got {k}.")
    return rng.permutation(p)[:k].astype(np.int64)


def holdout_split(
    n: int, test_fraction: float = 1 / 7, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One seeded held-out test split (our recommended protocol).

    ``perm = RandomState(seed).permutation(n)``; the first ``round(n * test_fraction)``
    indices (at least 1, at most n - 2) form the test set. With ``n=1750``,
    ``test_fraction=1/7`` and ``seed=0`` the test set is 250 images and equals the first
    cs431 split's test set.

    Returns
    -------
    train, test : sorted int64 index arrays
    """
    n = _check_count(n, "n", 3)
    seed = _check_count(seed, "seed", 0)
    try:
        fraction = float(test_fraction)
    except (TypeError, ValueError):
        raise ConfigError(
            f"test_fraction must be a number in (0, 1), got {test_fraction!r}."
        ) from None
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
    n_test = min(max(int(round(n * fraction)), 1), n - 2)
    perm = np.random.RandomState(seed).permutation(n)
    return np.sort(perm[n_test:]).astype(np.int64), np.sort(perm[:n_test]).astype(np.int64)


def kfold_splits(n: int, n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled k-fold split used for hyper-parameter selection inside training data.

    ``perm = RandomState(seed).permutation(n)`` cut into ``n_splits`` nearly equal
    consecutive parts (``np.array_split``); fold ``i`` tests on part ``i``.

    Returns
    -------
    list of (train, test) tuples of sorted int64 index arrays
    """
    n = _check_count(n, "n", 2)
    n_splits = _check_count(n_splits, "n_splits", 2)
    seed = _check_count(seed, "seed", 0)
    if n_splits > n:
        raise ConfigError(f"n_splits ({n_splits}) must not exceed the number of samples ({n}).")
    perm = np.random.RandomState(seed).permutation(n)
    folds = []
    for part in np.array_split(perm, n_splits):
        mask = np.ones(n, dtype=bool)
        mask[part] = False
        folds.append((np.flatnonzero(mask).astype(np.int64), np.sort(part).astype(np.int64)))
    return folds


def index_hash(indices) -> str:
    """sha256 (hex) of the indices as little-endian int64 bytes, in the given order."""
    arr = np.ascontiguousarray(np.asarray(indices), dtype="<i8").ravel()
    return hashlib.sha256(arr.tobytes()).hexdigest()
