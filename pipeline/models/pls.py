"""Partial least squares: a batched PLS1 per target (kernel/Krylov form) and a PLS2 wrapper.

Batched PLS1
------------
PLS1 with ``k`` components (NIPALS, one target ``y``, centred ``X``) fits ``y`` by least
squares within the Krylov space ``X^T span{y, K y, ..., K^(k-1) y}`` with ``K = X X^T``
(Helland 1988): its training scores span ``{K y, ..., K^k y}``. We therefore build, for
every target column at once, an orthonormal basis ``q_1..q_k`` of that sample-space
Krylov space (Lanczos: ``t = K q_j`` orthogonalised against the last two basis vectors,
then one full classical Gram-Schmidt pass against all of them, i.e. full
reorthogonalisation), together with "pre-images" ``r_j`` such that ``q_j = K r_j``.
The fitted values after ``k`` components are ``sum_j q_j (q_j^T y)`` and the dual
coefficients ``sum_j r_j (q_j^T y)``, so a single pass yields the models for every
component count ``1..k_max``. Predictions for new samples are
``K_new @ dual + mean(y)``. Every step is an ``(n x v)`` matrix product or a column-wise
reduction, batched over targets.

The recursion is invariant under an orthogonal change of basis, so it runs in the
eigenbasis of the kernel (one ``eigh`` per CV fold and one for the final fit, shared by
every target): ``K`` becomes the diagonal of its eigenvalues and each Krylov step costs
``O(n)`` per target instead of an ``(n x n) @ (n x v)`` product; the targets are rotated in
once (``V^T y``) and the duals out once (``V dual``), and a fold's test predictions use
``(K_te V) dual``. The pre-images are kept as small coefficient matrices over the basis
(see :func:`pipeline.models.solvers.krylov_pls_duals`). Target chunks run on worker
threads (``n_threads``), each with single-threaded BLAS.

If a target's Krylov space stops growing (fewer informative directions than
components, or a constant target) the extra components add nothing and the model stays
at the last useful count (scikit-learn would warn and fit noise there).

``scale=True`` standardises features (ddof=0; constant features -> 0). For PLS1 this
gives the same predictions as scikit-learn's ``PLSRegression(scale=True)`` (which uses
ddof=1 and also scales y: neither changes PLS1 predictions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

from pipeline.core.errors import ConfigError
from pipeline.evaluation.splits import kfold_splits
from pipeline.models.kernels import (
    FeatureScaler,
    as_feature_matrix,
    as_target_matrix,
    fit_kernel,
    fold_kernels,
    linear_kernel,
)
from pipeline.models.loo import run_chunks
from pipeline.models.ridge import TargetFit
from pipeline.models.solvers import _check_grid, krylov_pls_duals

__all__ = [
    "DEFAULT_N_COMPONENTS",
    "PLS2",
    "BatchedPLS",
    "PLSKernel",
]



#: Default component grid searched per target.
DEFAULT_N_COMPONENTS: tuple[int, ...] = (1, 2, 3, 5, 8, 12, 17, 25)
_MEMORY_BUDGET = 32 * 2**20  # bytes of stored Krylov bases per target chunk (one chunk per worker)


@dataclass
class PLSKernel:
    """The target-independent part of a :class:`BatchedPLS` fit (no features inside).

    Attributes
    ----------
    K : ndarray, shape (n, n)
        Training kernel of the transformed features (not centred).
    grid : ndarray of int
        Component counts searched.
    cv : int or None
    random_state : int
    timings : dict
    """

    K: np.ndarray
    grid: np.ndarray
    cv: int | None
    random_state: int
    timings: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.K.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.K.nbytes + self.grid.nbytes)


def _slices(v: int, size: int) -> list[slice]:
    return [slice(a, min(a + size, v)) for a in range(0, v, size)]


def _eigh(K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (n,) and orthonormal eigenvectors (n, n) of a symmetric kernel (float64)."""
    lam, V = scipy.linalg.eigh(K, driver="evd", check_finite=False)
    return lam, V


def _fold_eigenbasis(K_tr: np.ndarray, K_te: np.ndarray) -> tuple[np.ndarray, ...]:
    """A fold's kernel in its eigenbasis ``V``: ``lam`` (n_train,), ``V`` and ``K_te V`` (n_test, n_train).

    Shared by every target: the Krylov recursions then run on the diagonal ``lam``.
    """
    lam, V = _eigh(K_tr)
    return lam, V, K_te @ V


class BatchedPLS(RegressorMixin, BaseEstimator):
    """One PLS1 per target column, all fitted together; component count chosen by CV.

    Parameters
    ----------
    n_components : int or sequence of int, default (1, 2, 3, 5, 8, 12, 17, 25)
        Component counts searched per target (an int: that count for every target,
        no CV needed).
    cv : int or None, default 5
        Shuffled k-fold (:func:`pipeline.evaluation.splits.kfold_splits` with ``random_state``)
        inside the training data; features re-centred per fold (the scale, if any, is
        kept from all training data). None is allowed only with a single count.
    scale : bool, default False
        Standardise features (as ``PLSRegression(scale=True)``).
    random_state : int, default 0
        Seed of the k-fold split.
    chunk_size : int or None, default None
        Targets per batch; None picks it so the stored bases stay near 32 MiB per worker.
    n_threads : int or None, default 1
        BLAS threads for the fold eigendecompositions (one is fastest on a shared 2-core
        machine; None leaves the BLAS setting alone); the target chunks of the CV and
        final Krylov passes run on that many worker threads (None: the BLAS thread
        count), one BLAS thread each. Kernel builds and predictions use the BLAS default.

    Attributes
    ----------
    n_components_ : ndarray of int, shape (n_targets,)
        Chosen count per target (an int when ``y`` was 1-D).
    components_grid_ : ndarray of int
    cv_errors_ : ndarray, shape (n_grid, n_targets) or None
        Mean squared k-fold error per count and target.
    n_components_at_max_ : int
        Targets whose chosen count is the largest of the grid.
    dual_coef_ : ndarray, shape (n_samples, n_targets)
    y_mean_, X_mean_, X_scale_, X_fit_, timings_ : see :class:`pipeline.models.ridge.KernelRidgeCV`.
    """

    def __init__(
        self,
        n_components=DEFAULT_N_COMPONENTS,
        cv: int | None = 5,
        scale: bool = False,
        random_state: int = 0,
        chunk_size: int | None = None,
        n_threads: int | None = 1,
    ):
        self.n_components = n_components
        self.cv = cv
        self.scale = scale
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.n_threads = n_threads

    def _chunk(self, n: int, k_max: int) -> int:
        if self.chunk_size is not None:
            if not isinstance(self.chunk_size, Integral) or self.chunk_size < 1:
                raise ConfigError(
                    f"chunk_size must be a positive integer, got {self.chunk_size!r}."
                )
            return int(self.chunk_size)
        return max(16, int(_MEMORY_BUDGET // (2 * k_max * n * 8)))

    def _search(self, K, Y, grid, chunk, timings, cv=None, random_state=None, cache=None):
        """k-fold CV errors per component count and target; the chosen count per target."""
        cv = self.cv if cv is None else cv
        random_state = self.random_state if random_state is None else random_state
        t0 = time.perf_counter()
        n, v = Y.shape
        errors = None
        if grid.size > 1:
            errors = np.zeros((grid.size, v))
            position = {int(k): i for i, k in enumerate(grid)}
            folds = None if cache is None else cache.get("folds")
            if folds is None:
                folds = [(train, test, *_fold_eigenbasis(*fold_kernels(K, train, test)))
                         for train, test in kfold_splits(n, int(cv), int(random_state))]
                if cache is not None:
                    cache["folds"] = folds
            for train, test, lam, V, Z_te in folds:
                def fold_chunk(sl, train=train, test=test, lam=lam, V=V, Z_te=Z_te):
                    Y_tr = Y[train, sl]
                    m_tr = Y_tr.mean(axis=0)
                    Y_te = Y[test, sl] - m_tr

                    def score(k, dual):
                        resid = Y_te - Z_te @ dual
                        errors[position[k], sl] += np.einsum("ij,ij->j", resid, resid)

                    krylov_pls_duals(lam, V.T @ (Y_tr - m_tr), grid, score)

                run_chunks(fold_chunk, _slices(v, chunk), self.n_threads)
            errors /= n
            best = grid[np.argmin(errors, axis=0)]  # ties -> fewer components
        else:
            best = np.full(v, int(grid[-1]))
        timings["cv"] = time.perf_counter() - t0
        return errors, best

    def _final(self, K, Y, best, chunk, timings, cache=None):
        """Dual coefficients on all training data at each target's chosen count."""
        t0 = time.perf_counter()
        n, v = Y.shape
        y_mean = Y.mean(axis=0)
        eig = None if cache is None else cache.get("Kc_eigh")
        if eig is None:
            mean_col = K.mean(axis=0)
            eig = _eigh(K - mean_col[:, None] - mean_col[None, :] + mean_col.mean())
            if cache is not None:
                cache["Kc_eigh"] = eig
        lam, U = eig
        dual_all = np.zeros((n, v))

        def final_chunk(sl):
            chosen = best[sl]
            block = np.zeros((n, sl.stop - sl.start))

            def keep(k, dual):
                cols = chosen == k
                block[:, cols] = dual[:, cols]

            krylov_pls_duals(lam, U.T @ (Y[:, sl] - y_mean[sl]), np.unique(chosen), keep, last=chosen)
            dual_all[:, sl] = U @ block

        run_chunks(final_chunk, _slices(v, chunk), self.n_threads)
        timings["final"] = time.perf_counter() - t0
        return dual_all, y_mean

    def _check(self, n: int) -> np.ndarray:
        """Validated component grid for ``n`` training samples."""
        self._check_early()
        grid = _check_grid(self.n_components)
        cv = self.cv
        k_max = int(grid[-1])
        min_train = n - (-(-n // cv)) if cv is not None and grid.size > 1 else n
        if cv is not None and cv > n:
            raise ConfigError(f"cv={cv} folds need at least {cv} samples, got {n}.")
        if k_max > min_train - 1:
            raise ConfigError(
                f"n_components up to {k_max} needs more than {k_max + 1} training samples "
                f"per fold, got {min_train}."
            )
        if self.n_threads is not None and (
            not isinstance(self.n_threads, Integral) or self.n_threads < 1
        ):
            raise ConfigError(
                f"n_threads must be a positive integer or None, got {self.n_threads!r}."
            )
        return grid

    def block_size(self, n: int) -> int:
        """Targets per batch for ``n`` training samples (``chunk_size`` or the memory budget)."""
        return self._chunk(n, int(self._check(n)[-1]))

    def prepare(self, X) -> tuple[PLSKernel, FeatureScaler]:
        """The kernel of the features: everything that does not depend on the targets.

        ``fit(X, Y)`` is ``fit_targets(prepare(X)[0], Y)`` plus bookkeeping; fitting a
        column block of ``Y`` that starts at a multiple of the batch size
        (:meth:`block_size`) reproduces those columns of the full fit exactly.
        """
        X = as_feature_matrix(X, "X")
        grid = self._check(X.shape[0])
        t0 = time.perf_counter()
        K, scaler = fit_kernel(X, bool(self.scale))
        timings = {"kernel": time.perf_counter() - t0}
        cv = int(self.cv) if self.cv is not None else None
        return PLSKernel(K=K, grid=grid, cv=cv, random_state=int(self.random_state),
                         timings=timings), scaler

    def fit_targets(self, kernel: PLSKernel, Y, cache: dict | None = None) -> TargetFit:
        """Component count per target by k-fold and dual coefficients, from a kernel.

        ``cache``: a dict kept between calls on column blocks of the same kernel (holds
        the fold kernels and the centred kernel, so they are built once).
        """
        K, grid = kernel.K, kernel.grid
        n = K.shape[0]
        self._check(n)
        Y, _ = as_target_matrix(Y, n, "y")
        k_max = int(grid[-1])
        chunk = self._chunk(n, k_max)
        timings = {}
        with threadpool_limits(limits=self.n_threads):
            errors, best = self._search(K, Y, grid, chunk, timings, kernel.cv,
                                        kernel.random_state, cache)
            dual_all, y_mean = self._final(K, Y, best, chunk, timings, cache)
        n_at_max = int(np.sum(best == k_max)) if grid.size > 1 else 0
        return TargetFit(hyper=best.astype(np.int64), dual=dual_all, y_mean=y_mean,
                         cv_errors=errors, n_at_edge=n_at_max, timings=timings)

    def fit(self, X, y):
        """Fit on features ``X`` (n, p) and targets ``y`` (n,) or (n, v); returns self."""
        self._check_early()
        X = as_feature_matrix(X, "X")
        n = X.shape[0]
        Y, one_d = as_target_matrix(y, n, "y")
        kernel, scaler = self.prepare(X)
        res = self.fit_targets(kernel, Y)
        timings = {**kernel.timings, **res.timings}

        self.components_grid_ = kernel.grid
        self.n_components_ = res.hyper
        self.cv_errors_ = res.cv_errors
        self.n_components_at_max_ = res.n_at_edge
        self.dual_coef_ = res.dual
        self.y_mean_ = res.y_mean
        self.X_mean_ = scaler.mean
        self.X_scale_ = scaler.std()
        self.X_fit_ = X
        self.n_features_in_ = X.shape[1]
        self.timings_ = timings
        self._scaler = scaler
        self._y_1d = one_d
        if one_d:
            self.n_components_ = int(self.n_components_[0])
        return self

    def _check_early(self) -> None:
        """Parameter errors that do not need the data (reported before data errors)."""
        grid = _check_grid(self.n_components)
        cv = self.cv
        if cv is not None and (not isinstance(cv, Integral) or isinstance(cv, bool) or cv < 2):
            raise ConfigError(f"cv must be an integer >= 2 or None, got {cv!r}.")
        if cv is None and grid.size > 1:
            raise ConfigError(
                "cv=None needs a single n_components value; give cv folds to search a grid."
            )

    def predict(self, X) -> np.ndarray:
        """Predict targets for ``X`` (m, p): returns (m, v), or (m,) if fitted on 1-D y."""
        if not hasattr(self, "dual_coef_"):
            raise NotFittedError("This BatchedPLS instance is not fitted yet; call fit first.")
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ConfigError(
                f"X must have shape (m, {self.n_features_in_}) for this model, got {X.shape}."
            )
        Y = linear_kernel(self.X_fit_, self._scaler, Z=X) @ self.dual_coef_ + self.y_mean_
        return Y[:, 0] if self._y_1d else Y


class PLS2(RegressorMixin, BaseEstimator):
    """Multi-output PLS (scikit-learn ``PLSRegression`` semantics), for the cs431 protocol.

    A thin wrapper around :class:`sklearn.cross_decomposition.PLSRegression` (NIPALS,
    one set of components shared by all targets). Note that it converts ``X`` to float64
    (a copy of ``n x p`` doubles).

    Parameters
    ----------
    n_components : int, default 25
    scale : bool, default False
    max_iter : int, default 500
    tol : float, default 1e-6

    Attributes
    ----------
    model_ : PLSRegression
    n_components_ : ndarray of int, shape (n_targets,)
        The (shared) count, repeated per target for uniform records.
    """

    def __init__(self, n_components: int = 25, scale: bool = False, max_iter: int = 500,
                 tol: float = 1e-6):
        self.n_components = n_components
        self.scale = scale
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, y):
        """Fit on ``X`` (n, p) and ``y`` (n,) or (n, v); returns self."""
        from sklearn.cross_decomposition import PLSRegression

        grid = _check_grid(self.n_components)
        if grid.size != 1:
            raise ConfigError("PLS2 takes a single n_components value.")
        X = as_feature_matrix(X, "X")
        Y, one_d = as_target_matrix(y, X.shape[0], "y")
        k = int(grid[0])
        if k > min(X.shape[0] - 1, X.shape[1]):
            raise ConfigError(
                f"n_components={k} exceeds what {X.shape[0]} samples x {X.shape[1]} features allow."
            )
        self.model_ = PLSRegression(
            n_components=k, scale=bool(self.scale), max_iter=self.max_iter, tol=self.tol
        ).fit(X, Y)
        self.n_components_ = np.full(Y.shape[1], k, dtype=np.int64)
        self.n_features_in_ = X.shape[1]
        self._y_1d = one_d
        if one_d:
            self.n_components_ = k
        return self

    def predict(self, X) -> np.ndarray:
        """Predict (m, v), or (m,) if fitted on 1-D y."""
        if not hasattr(self, "model_"):
            raise NotFittedError("This PLS2 instance is not fitted yet; call fit first.")
        Y = np.asarray(self.model_.predict(np.asarray(X)), dtype=np.float64)
        if Y.ndim == 1:
            Y = Y[:, None]
        return Y[:, 0] if self._y_1d else Y
