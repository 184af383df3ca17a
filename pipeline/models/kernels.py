"""Kernel helpers shared by ridge and PLS: feature/target matrices, :class:`FeatureScaler`,
block-wise linear kernels, the centred eigendecomposition and fold kernels.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from pipeline.core.errors import ConfigError

__all__ = [
    "FeatureScaler",
    "as_feature_matrix",
    "as_target_matrix",
    "centred_eigh",
    "fit_kernel",
    "fold_kernels",
    "linear_kernel",
    "plain_eigh",
]

_FEATURE_BLOCK = 4096  # features per block when building kernels (n x block floats)


# --------------------------------------------------------------------------------------
# Helpers shared with pipeline.models.pls
# --------------------------------------------------------------------------------------
def _compute_dtype(X: np.ndarray) -> type:
    return np.float32 if X.dtype == np.float32 else np.float64


def as_feature_matrix(X, name: str = "X") -> np.ndarray:
    """Return ``X`` as a 2-D float32/float64 array without copying when possible.

    Parameters
    ----------
    X : array-like, shape (n, p)
    name : str
        Argument name used in error messages.
    """
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.ndim != 2:
        raise ConfigError(
            f"{name} must be a 2-D array (n_samples, n_features), got shape {X.shape}."
        )
    if X.shape[0] < 2 or X.shape[1] < 1:
        raise ConfigError(f"{name} needs at least 2 samples and 1 feature, got shape {X.shape}.")
    return X


def as_target_matrix(Y, n: int, name: str = "Y") -> tuple[np.ndarray, bool]:
    """Return targets as float64 ``(n, v)`` plus whether the input was 1-D."""
    Y = np.asarray(Y, dtype=np.float64)
    one_d = Y.ndim == 1
    if one_d:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != n:
        raise ConfigError(f"{name} must have shape ({n},) or ({n}, n_targets), got {Y.shape}.")
    if not np.all(np.isfinite(Y)):
        raise ConfigError(f"{name} contains NaN or infinite values; drop those targets first.")
    return Y, one_d


class FeatureScaler:
    """Training means (and optionally inverse standard deviations) of the feature columns.

    Computed block-wise: means and variances are accumulated in float64 from the input
    precision, so a float32 ``(n, p)`` matrix is never copied whole or converted to float64.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    standardize : bool
        If True, ``inv_scale`` holds ``1 / std`` (ddof=0) and 0 for constant columns.
    center : bool
        If False, ``mean`` is all zeros (features are only scaled).
    """

    def __init__(
        self, X: np.ndarray, standardize: bool, center: bool = True, block: int = _FEATURE_BLOCK
    ):
        self._allocate(X.shape[1], standardize, center)
        for sl in _blocks(X.shape[1], block):
            self.fit_block(X, sl)

    def _allocate(self, p: int, standardize: bool, center: bool) -> None:
        self.center = bool(center)
        self.mean = np.zeros(p)
        self.inv_scale: np.ndarray | None = np.empty(p) if standardize else None

    @classmethod
    def unfitted(cls, p: int, standardize: bool, center: bool = True) -> FeatureScaler:
        """A scaler for ``p`` features whose blocks are then filled by :meth:`fit_block`."""
        scaler = cls.__new__(cls)
        scaler._allocate(p, standardize, center)
        return scaler

    def fit_block(self, X: np.ndarray, sl: slice) -> np.ndarray:
        """Compute the statistics of ``X[:, sl]``; return that block transformed.

        The returned block (compute precision, a new array) equals ``self.block(X, sl)``
        bit for bit, so a kernel can be built in the same pass as the statistics.
        """
        dtype = _compute_dtype(X)
        Xb = X[:, sl]
        n = Xb.shape[0]
        mean = Xb.sum(axis=0, dtype=np.float64) / n
        if not np.all(np.isfinite(mean)):  # a column sum is finite iff the column is
            bad = (sl.start or 0) + int(np.flatnonzero(~np.isfinite(mean))[0])
            raise ConfigError(
                f"X contains NaN or infinite values (first in feature column {bad}); "
                "features must be finite: check the feature file or the model's outputs."
            )
        mean_w = mean.astype(dtype)
        if self.center or self.inv_scale is not None:
            D = np.subtract(Xb, mean_w, dtype=dtype)  # deviations from the rounded mean
        if self.inv_scale is not None:
            # E[D^2] - E[D]^2 with E[D] = mean - mean_w (the rounding of the mean)
            shift = mean - mean_w.astype(np.float64)
            var = np.einsum("ij,ij->j", D, D, dtype=np.float64) / n - shift * shift
            constant = Xb.max(axis=0) == Xb.min(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                self.inv_scale[sl] = np.where(constant | ~(var > 0), 0.0,
                                              1.0 / np.sqrt(np.maximum(var, 0.0)))
        if self.center:
            self.mean[sl] = mean
            B = D
        else:
            B = Xb.astype(dtype, copy=True)
        if self.inv_scale is not None:
            B *= self.inv_scale[sl].astype(dtype)
        return B

    def block(self, X: np.ndarray, sl: slice) -> np.ndarray:
        """Centred (and scaled) copy of ``X[:, sl]`` in the compute precision."""
        dtype = _compute_dtype(X)
        B = np.subtract(X[:, sl], self.mean[sl].astype(dtype), dtype=dtype)
        if self.inv_scale is not None:
            B *= self.inv_scale[sl].astype(dtype)
        return B

    def std(self) -> np.ndarray | None:
        """Standard deviations used (inf for constant columns), or None."""
        if self.inv_scale is None:
            return None
        with np.errstate(divide="ignore"):
            return np.where(self.inv_scale > 0, 1.0 / self.inv_scale, np.inf)


def _blocks(p: int, block: int = _FEATURE_BLOCK) -> Iterator[slice]:
    for start in range(0, p, block):
        yield slice(start, min(start + block, p))


def fit_kernel(
    X: np.ndarray, standardize: bool, center: bool = True, block: int = _FEATURE_BLOCK
) -> tuple[np.ndarray, FeatureScaler]:
    """Feature statistics and the training kernel in ONE pass over ``X``.

    Equals ``scaler = FeatureScaler(X, standardize, center); linear_kernel(X, scaler)``
    (bit for bit) but reads every feature block once.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    standardize, center : bool
        As in :class:`FeatureScaler`.

    Returns
    -------
    K : ndarray, shape (n, n), float64
    scaler : FeatureScaler
    """
    n, p = X.shape
    scaler = FeatureScaler.unfitted(p, standardize, center)
    K = np.zeros((n, n))
    for sl in _blocks(p, block):
        B = scaler.fit_block(X, sl)
        K += B @ B.T
    return 0.5 * (K + K.T), scaler


def linear_kernel(
    X: np.ndarray,
    scaler: FeatureScaler,
    Z: np.ndarray | None = None,
    block: int = _FEATURE_BLOCK,
) -> np.ndarray:
    """Kernel of transformed features, built block-wise.

    Parameters
    ----------
    X : ndarray, shape (n, p)
        Training features (float32 products when float32).
    scaler : FeatureScaler
        Fitted on ``X``; applied to both ``X`` and ``Z``.
    Z : ndarray, shape (m, p), optional
        New samples; if given the cross kernel ``Zs Xs^T`` is returned.

    Returns
    -------
    ndarray, shape (n, n) or (m, n), float64
    """
    n, p = X.shape
    m = n if Z is None else Z.shape[0]
    K = np.zeros((m, n))
    for sl in _blocks(p, block):
        B = scaler.block(X, sl)
        if Z is None:
            K += B @ B.T
        else:
            K += scaler.block(Z, sl) @ B.T
    if not np.all(np.isfinite(K)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(K), axis=1))[0])
        raise ConfigError(
            f"{'X' if Z is None else 'the new X'} contains NaN or infinite values (first in "
            f"sample row {bad}); features must be finite."
        )
    if Z is None:
        K = 0.5 * (K + K.T)
    return K


def centred_eigh(
    K: np.ndarray, n_threads: int | None = 1, dtype: type = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of the doubly-centred kernel restricted to ``1^perp``.

    A Householder reflection ``H`` maps the unit constant vector to ``e_1``; the trailing
    ``(n-1) x (n-1)`` block of ``H K H`` is ``Q^T K Q`` with ``Q = H[:, 1:]`` an orthonormal
    basis of the vectors summing to zero, which equals ``Q^T P K P Q`` for the centring
    matrix ``P``: ``K`` itself need not be centred.

    Parameters
    ----------
    K : ndarray, shape (n, n)
        Symmetric kernel matrix.
    n_threads : int or None
        BLAS threads during the decomposition (None: leave the BLAS setting alone).
    dtype : type
        Precision of the decomposition itself (``np.float32`` halves its cost; the
        reflection and the returned arrays are float64 either way).

    Returns
    -------
    s : ndarray, shape (n - 1,)
        Eigenvalues (ascending, clipped at 0).
    U : ndarray, shape (n, n - 1)
        Orthonormal eigenvectors, each orthogonal to the constant vector.
    """
    n = K.shape[0]
    c = 1.0 / np.sqrt(n)
    v = np.full(n, c)  # H = I - beta v v^T maps 1 / sqrt(n) to e_1
    v[0] -= 1.0
    beta = 2.0 / (v @ v)
    w = K @ v
    gamma = v @ w
    # H K H = K - beta (v w^T + w v^T) + beta^2 gamma v v^T; on the trailing block v is the
    # constant c, so that block is K[1:, 1:] - a 1^T - 1 a^T with the vector a below.
    a = beta * c * w[1:] - 0.5 * beta * beta * gamma * c * c
    M = np.subtract(K[1:, 1:], a[None, :], dtype=dtype)  # LAPACK reads the lower half
    M -= a[:, None].astype(dtype)
    with threadpool_limits(limits=n_threads):
        s, V = scipy.linalg.eigh(M, driver="evd", overwrite_a=True, check_finite=False)
    # U = H[:, 1:] V: row 0 is -beta c v_0 1^T V, the others V - beta c^2 1 1^T V
    colsum = V.sum(axis=0, dtype=np.float64)
    U = np.empty((n, n - 1))
    U[1:] = V
    U[1:] -= (beta * c * c) * colsum
    U[0] = (-beta * c * v[0]) * colsum
    return np.clip(s.astype(np.float64), 0.0, None), U


def plain_eigh(
    K: np.ndarray, n_threads: int | None = 1, dtype: type = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of a symmetric kernel (no intercept): ``s`` (n,), ``U`` (n, n).

    ``dtype`` as in :func:`centred_eigh`.
    """
    M = K.astype(dtype, copy=True)  # LAPACK reads the lower half
    with threadpool_limits(limits=n_threads):
        s, U = scipy.linalg.eigh(M, driver="evd", overwrite_a=True, check_finite=False)
    return np.clip(s.astype(np.float64), 0.0, None), U.astype(np.float64, copy=False)


def fold_kernels(
    K: np.ndarray, train: np.ndarray, test: np.ndarray, center: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Kernels of one CV fold with features re-centred on the fold's training mean.

    Parameters
    ----------
    K : ndarray, shape (n, n)
        Kernel of all samples (any common centring).
    train, test : ndarray of int
        Sample indices of the fold.
    center : bool
        False returns the plain sub-blocks (model without intercept).

    Returns
    -------
    K_tr : ndarray, shape (n_train, n_train)
        Doubly-centred training kernel.
    K_te : ndarray, shape (n_test, n_train)
        Cross kernel centred consistently (feature mean of the fold's training samples).
    """
    K_tr = K[np.ix_(train, train)]
    K_te = K[np.ix_(test, train)]
    if not center:
        return K_tr, K_te
    col = K_tr.mean(axis=0)
    grand = col.mean()
    K_te = K_te - K_te.mean(axis=1, keepdims=True) - col[None, :] + grand
    K_tr = K_tr - col[:, None] - col[None, :] + grand
    return 0.5 * (K_tr + K_tr.T), K_te
