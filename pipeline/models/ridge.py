"""Kernel ridge regression with a per-target penalty chosen by exact leave-one-out or k-fold.

Built for encoding models where the number of images ``n`` (about 1750) is far smaller
than the number of features ``p`` (about 65k) and there are many targets (voxels):

* the linear kernel ``K = Xs Xs^T`` (``n x n``) is built block-wise over features in the
  input precision (float32 for float32 features) and accumulated in float64;
* ONE eigendecomposition of the centred kernel serves every target and every penalty;
* the exact leave-one-out (LOO) error of every target for every penalty comes out in
  closed form from that eigendecomposition (hat-matrix diagonal), or a k-fold error is
  computed from the same kernel (one eigendecomposition per fold, in the features'
  precision: the folds only choose the penalty, the final model is float64);
* the model is kept in dual form (``dual_coef_``, ``n x v``); the ``p x v`` primal
  coefficient matrix is only formed when ``coef_`` is read.

Intercept: features and targets are centred with their training means, so the intercept
is not penalised. The LOO of that problem is exact: it equals refitting (means included)
on every ``n - 1`` subset, which is what scikit-learn's ``RidgeCV`` computes too. The
centred kernel always has the constant vector in its null space; we deflate it exactly
with a Householder reflection and decompose the remaining ``(n - 1) x (n - 1)`` block, so
no "intercept eigenvector" has to be guessed (scikit-learn instead adds ``11^T`` to the
kernel and picks the eigenvector closest to the constant; both give the same LOO errors).

Standardisation (``standardize=True``) divides features by their training standard
deviation (ddof=0, as ``StandardScaler``); constant features become 0. The scale is
computed once on all the data given to ``fit`` and is not re-estimated inside each LOO
or k-fold fold (it uses no target values; the same holds when one standardises first
and then calls scikit-learn's ``RidgeCV``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

from pipeline.core.errors import ConfigError
from pipeline.evaluation.splits import kfold_splits
from pipeline.models.kernels import (
    _FEATURE_BLOCK,
    FeatureScaler,
    _compute_dtype,
    as_feature_matrix,
    as_target_matrix,
    centred_eigh,
    fit_kernel,
    linear_kernel,
    plain_eigh,
)
from pipeline.models.loo import loo_cv
from pipeline.models.solvers import _chosen_duals, _kfold_cv

__all__ = [
    "DEFAULT_ALPHAS",
    "KernelRidgeCV",
    "RidgeKernel",
    "TargetFit",
]



#: Default penalty grid: 25 values, half a decade apart, 1e-2 ... 1e10. The useful range
#: scales with the kernel's eigenvalues (about ``n * p * mean feature correlation`` at
#: the top for standardised features): with ~65k standardised features the optimum for
#: noisy voxels lies in 1e4 ... 1e9, while small test problems need the low end.
DEFAULT_ALPHAS: np.ndarray = np.logspace(-2, 10, 25)


@dataclass
class TargetFit:
    """Per-target outcome of ``fit_targets`` (ridge and batched PLS alike).

    Attributes
    ----------
    hyper : ndarray, shape (v,)
        Chosen alpha (ridge) or component count (PLS) per target.
    dual : ndarray, shape (n, v)
        Dual coefficients: predictions are ``K_new @ dual + y_mean``.
    y_mean : ndarray, shape (v,)
    cv_errors : ndarray, shape (n_grid, v), or None
    n_at_edge : int
        Ridge: targets whose alpha is at a grid edge; PLS: targets at the largest count.
    timings : dict
    """

    hyper: np.ndarray
    dual: np.ndarray
    y_mean: np.ndarray
    cv_errors: np.ndarray | None
    n_at_edge: int
    timings: dict = field(default_factory=dict)


@dataclass
class RidgeKernel:
    """The target-independent part of a :class:`KernelRidgeCV` fit (no features inside).

    Computed once by :meth:`KernelRidgeCV.prepare` and shared by any number of
    :meth:`KernelRidgeCV.fit_targets` calls on column blocks of the targets.

    Attributes
    ----------
    alphas : ndarray
        The (sorted) penalty grid.
    cv : "loo" or int
    center : bool
        Fitted with an intercept.
    work : type
        ``np.float32`` or ``np.float64``: precision of the per-alpha products.
    s, U : ndarray
        Eigendecomposition of the (centred) training kernel.
    inv_diag : ndarray, shape (n_alphas, n), or None
        LOO: ``1 / diag((K + a)^-1)`` per alpha.
    folds : list of (train, test, s_f, U_f, Z)
        k-fold: indices, eigendecomposition of the fold's training kernel (computed in
        ``work`` precision; ``U_f`` kept in it) and ``Z = K_te U_f`` (``work`` precision).
    timings : dict
        Seconds spent in "kernel", "eigh" and "cv" (the target-free part of it).
    """

    alphas: np.ndarray
    cv: str | int
    center: bool
    work: type
    s: np.ndarray
    U: np.ndarray
    inv_diag: np.ndarray | None = None
    folds: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.U.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held (what shipping it to a worker costs)."""
        total = self.s.nbytes + self.U.nbytes
        if self.inv_diag is not None:
            total += self.inv_diag.nbytes
        for fold in self.folds:
            total += sum(a.nbytes for a in fold)
        return int(total)


# --------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------
class KernelRidgeCV(RegressorMixin, BaseEstimator):
    """Ridge regression in kernel form with a penalty per target chosen by LOO or k-fold.

    Minimises, for each target column ``y``,
    ``||y - b - Xs w||^2 + alpha * ||w||^2`` with ``Xs`` the centred (and, with
    ``standardize=True``, scaled) features and an unpenalised intercept ``b``. This is
    scikit-learn ``Ridge(alpha)`` on the transformed features.

    Parameters
    ----------
    alphas : sequence of float, optional
        Penalty grid (positive). Sorted ascending and de-duplicated; default
        :data:`DEFAULT_ALPHAS`. Ties in CV error go to the smaller alpha.
    cv : "loo" or int, default "loo"
        ``"loo"``: exact leave-one-out from one eigendecomposition. An int ``k >= 2``:
        shuffled k-fold (:func:`pipeline.evaluation.splits.kfold_splits` with ``random_state``),
        features re-centred per fold, scale kept from all training data. With float32
        features each fold's eigendecomposition runs in float32 (its rounding is below
        that of the float32 kernel products; CV errors match float64 to ~1e-5).
    standardize : bool, default True
        Divide features by their training standard deviation (constant features -> 0).
    fit_intercept : bool, default True
        Centre features and targets on their training means (unpenalised intercept).
    alpha_per_target : bool, default True
        If False, one alpha for all targets (minimising the CV error averaged over
        targets, as scikit-learn ``RidgeCV`` does by default).
    n_threads : int or None, default 1
        BLAS threads around the eigendecompositions and the k-fold solves (one thread
        is fastest on a shared 2-core machine). None leaves the BLAS setting alone. The
        leave-one-out solves run on that many worker threads (None: the BLAS thread
        count), each with one BLAS thread, over chunks of ``chunk_size`` targets.
        Kernel builds and predictions always use the BLAS default.
    chunk_size : int, default 1000
        Targets processed together (memory about ``n * chunk_size`` floats a few times).
    random_state : int, default 0
        Seed for the k-fold split (unused for LOO).

    Attributes
    ----------
    alphas_ : ndarray, shape (n_alphas,)
        The grid actually searched (sorted).
    alpha_ : ndarray, shape (n_targets,)
        Chosen penalty per target (a float when ``y`` was 1-D).
    cv_errors_ : ndarray, shape (n_alphas, n_targets)
        Mean squared CV (LOO or k-fold) error per alpha and target.
    n_alpha_at_edge_ : int
        Targets whose alpha is the smallest or the largest of the grid (0 for a grid of
        one value). Many at the top edge usually means "no signal"; at the bottom edge
        the grid is too small.
    dual_coef_ : ndarray, shape (n_samples, n_targets)
        Dual coefficients (sum to zero over samples).
    y_mean_ : ndarray, shape (n_targets,)
    X_mean_ : ndarray, shape (n_features,)
    X_scale_ : ndarray or None, shape (n_features,)
        Standard deviations used (inf for constant features), None without standardising.
    X_fit_ : ndarray, shape (n_samples, n_features)
        The training features (a reference, not a copy: do not modify them in place).
    eigenvalues_ : ndarray, shape (n_samples - 1,)
        Eigenvalues of the centred training kernel (n_samples of them without intercept).
    timings_ : dict
        Seconds spent in "kernel", "eigh", "cv" and "dual".
    coef_ : ndarray, shape (n_targets, n_features)
        Primal coefficients in the units of the original features, computed on access.
    intercept_ : ndarray, shape (n_targets,)
        Computed on access.
    """

    def __init__(
        self,
        alphas=None,
        cv="loo",
        standardize: bool = True,
        fit_intercept: bool = True,
        alpha_per_target: bool = True,
        n_threads: int | None = 1,
        chunk_size: int = 1000,
        random_state: int = 0,
    ):
        self.alphas = alphas
        self.cv = cv
        self.standardize = standardize
        self.fit_intercept = fit_intercept
        self.alpha_per_target = alpha_per_target
        self.n_threads = n_threads
        self.chunk_size = chunk_size
        self.random_state = random_state

    # ---------------------------------------------------------------- validation
    def _check_params(self) -> np.ndarray:
        alphas = DEFAULT_ALPHAS if self.alphas is None else self.alphas
        alphas = np.unique(np.asarray(alphas, dtype=np.float64).ravel())
        if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise ConfigError("alphas must be a non-empty list of positive finite numbers.")
        cv = self.cv
        if not (cv == "loo" or (isinstance(cv, Integral) and not isinstance(cv, bool) and cv >= 2)):
            raise ConfigError(f"cv must be 'loo' or an integer >= 2, got {cv!r}.")
        if not isinstance(self.chunk_size, Integral) or self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be a positive integer, got {self.chunk_size!r}.")
        if self.n_threads is not None and (
            not isinstance(self.n_threads, Integral) or self.n_threads < 1
        ):
            raise ConfigError(
                f"n_threads must be a positive integer or None, got {self.n_threads!r}."
            )
        return alphas

    # ---------------------------------------------------------------- fitting
    def prepare(self, X) -> tuple[RidgeKernel, FeatureScaler]:
        """Everything that depends on the features only: kernel, eigendecomposition(s).

        ``fit(X, Y)`` is ``fit_targets(prepare(X)[0], Y)`` plus bookkeeping, and
        :meth:`fit_targets` on a column block of ``Y`` gives exactly the columns of the
        full fit (see :class:`RidgeKernel`).

        Returns
        -------
        kernel : RidgeKernel
            Holds no features (safe to ship to other processes).
        scaler : FeatureScaler
            The feature means / scales (for predictions on new samples).
        """
        alphas = self._check_params()
        X = as_feature_matrix(X, "X")
        n = X.shape[0]
        if isinstance(self.cv, Integral) and self.cv > n:
            raise ConfigError(f"cv={self.cv} folds need at least {self.cv} samples, got {n}.")
        timings = {}
        t0 = time.perf_counter()
        center = bool(self.fit_intercept)
        K, scaler = fit_kernel(X, bool(self.standardize), center=center)
        timings["kernel"] = time.perf_counter() - t0
        return self.decompose_kernel(K, _compute_dtype(X), alphas, timings), scaler

    def decompose_kernel(
        self, K: np.ndarray, work: type = np.float64, alphas: np.ndarray | None = None,
        timings: dict | None = None,
    ) -> RidgeKernel:
        """The :class:`RidgeKernel` of a training kernel ``K`` (n x n, from :func:`linear_kernel`).

        ``work`` is the precision of the per-alpha products (``np.float32`` for float32
        features, as :meth:`fit` does).
        """
        if alphas is None:
            alphas = self._check_params()
        timings = dict(timings or {})
        n = K.shape[0]
        center = bool(self.fit_intercept)
        decompose = centred_eigh if center else plain_eigh
        timings["eigh"] = 0.0
        t0 = time.perf_counter()
        s, U = decompose(K, self.n_threads)
        timings["eigh"] += time.perf_counter() - t0

        t0, t_folds = time.perf_counter(), 0.0
        inv_diag = None
        folds = []
        if self.cv == "loo":
            with threadpool_limits(limits=self.n_threads):
                U2 = U * U
                inv_diag = np.stack([1.0 / (U2 @ (1.0 / (s + a))) for a in alphas])  # (n_alphas, n)
                del U2
        else:
            for train, test in kfold_splits(n, int(self.cv), int(self.random_state)):
                K_tr = K[np.ix_(train, train)]
                t1 = time.perf_counter()
                # CV only: decomposed in the features' precision (the final model's
                # decomposition above is float64 whatever the features). centred_eigh
                # needs no centred K_tr, and as U_f is orthogonal to the constant, the
                # fold-centred cross kernel times U_f is K_te U_f - 1 (col. means K_tr) U_f.
                s_f, U_f = decompose(K_tr, self.n_threads, work)
                t_folds += time.perf_counter() - t1
                with threadpool_limits(limits=self.n_threads):
                    Z = K[np.ix_(test, train)] @ U_f
                    if center:
                        Z -= K_tr.mean(axis=0) @ U_f
                    Z = Z.astype(work, copy=False)
                folds.append((train, test, s_f, U_f.astype(work, copy=False), Z))
        timings["eigh"] += t_folds
        timings["cv"] = time.perf_counter() - t0 - t_folds
        return RidgeKernel(alphas=alphas, cv=self.cv, center=center, work=work, s=s, U=U,
                           inv_diag=inv_diag, folds=folds, timings=timings)

    def fit_targets(self, kernel: RidgeKernel, Y) -> TargetFit:
        """Penalty per target by CV and dual coefficients, from a prepared kernel.

        Targets are processed in blocks of ``chunk_size`` columns; the result for a
        column depends only on the block it falls in, so fitting ``Y[:, a:b]`` with ``a``
        a multiple of ``chunk_size`` reproduces those columns of the fit on all of ``Y``
        (exactly, bit for bit, on the same machine).
        """
        self._check_params()
        alphas, center, work = kernel.alphas, kernel.center, kernel.work
        s, U = kernel.s, kernel.U
        n = U.shape[0]
        Y, _ = as_target_matrix(Y, n, "y")
        timings = {"cv": 0.0}
        y_mean = Y.mean(axis=0) if center else np.zeros(Y.shape[1])
        v = Y.shape[1]
        n_alphas = alphas.size
        errors = np.empty((n_alphas, v))
        dual = np.zeros((n, v))

        t0 = time.perf_counter()
        # The per-alpha (n x n) @ (n x chunk) products dominate the cost; they run in the
        # precision of the features (float32 for float32 X: twice as fast, and no less
        # accurate than the float32 kernel products themselves). Everything else
        # (eigenvectors, U^T y, hat-matrix diagonals, errors) stays float64.
        #
        # For large alphas the CV errors of neighbouring grid points differ by tiny
        # relative amounts (noise targets: ~1e-6), below float32 resolution, so there the
        # float32 product computes only the deviation from the alpha -> infinity limit
        # (see pipeline.models.loo; in k-fold only the small squared norm of the predictions goes
        # through float32, see _fold_errors).
        if kernel.cv == "loo":
            t_dual = loo_cv(U, s, alphas, kernel.inv_diag, Y, y_mean, work, self.chunk_size,
                             self.n_threads, errors, dual if self.alpha_per_target else None)
            dual_done = bool(self.alpha_per_target)
        else:
            _kfold_cv(kernel.folds, alphas, Y, center, work, self.chunk_size, self.n_threads, errors)
            dual_done, t_dual = False, 0.0
        timings["cv"] = time.perf_counter() - t0 - t_dual

        if self.alpha_per_target:
            best_idx = np.argmin(errors, axis=0)  # first minimum: the smaller alpha
        else:
            best_idx = np.full(v, int(np.argmin(errors.mean(axis=1))))

        t0 = time.perf_counter() - t_dual
        if not dual_done:  # duals at the chosen alphas, in float64
            _chosen_duals(U, s, alphas, Y, y_mean, best_idx, self.chunk_size, self.n_threads, dual)
        timings["dual"] = time.perf_counter() - t0
        n_at_edge = (
            0
            if n_alphas == 1
            else int(np.sum((best_idx == 0) | (best_idx == n_alphas - 1)))
        )
        return TargetFit(hyper=alphas[best_idx], dual=dual, y_mean=y_mean, cv_errors=errors,
                         n_at_edge=n_at_edge, timings=timings)

    def fit(self, X, y):
        """Fit on features ``X`` (n, p) and targets ``y`` (n,) or (n, v); returns self."""
        self._check_params()
        X = as_feature_matrix(X, "X")
        n = X.shape[0]
        Y, one_d = as_target_matrix(y, n, "y")
        kernel, scaler = self.prepare(X)
        res = self.fit_targets(kernel, Y)
        timings = dict(kernel.timings)
        timings["cv"] = timings.get("cv", 0.0) + res.timings["cv"]
        timings["dual"] = res.timings["dual"]

        self.alphas_ = kernel.alphas
        self.alpha_ = res.hyper
        self.cv_errors_ = res.cv_errors
        self.n_alpha_at_edge_ = res.n_at_edge
        self.dual_coef_ = res.dual
        self.y_mean_ = res.y_mean
        self.X_mean_ = scaler.mean
        self.X_scale_ = scaler.std()
        self.X_fit_ = X
        self.eigenvalues_ = kernel.s
        self.n_features_in_ = X.shape[1]
        self.timings_ = timings
        self._scaler = scaler
        self._y_1d = one_d
        if one_d:
            self.alpha_ = float(self.alpha_[0])
        return self

    # ---------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "dual_coef_"):
            raise NotFittedError("This KernelRidgeCV instance is not fitted yet; call fit first.")

    def predict(self, X) -> np.ndarray:
        """Predict targets for ``X`` (m, p): returns (m, v), or (m,) if fitted on 1-D y."""
        self._check_fitted()
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ConfigError(
                f"X must have shape (m, {self.n_features_in_}) for this model, got {X.shape}."
            )
        K_new = linear_kernel(self.X_fit_, self._scaler, Z=X)
        Y = K_new @ self.dual_coef_ + self.y_mean_
        return Y[:, 0] if self._y_1d else Y

    @property
    def coef_(self) -> np.ndarray:
        """Primal coefficients (n_targets, n_features) in original feature units (formed now)."""
        self._check_fitted()
        X, scaler = self.X_fit_, self._scaler
        p = X.shape[1]
        W = np.empty((self.dual_coef_.shape[1], p))
        for start in range(0, p, _FEATURE_BLOCK):
            sl = slice(start, min(start + _FEATURE_BLOCK, p))
            Wb = (scaler.block(X, sl).astype(np.float64).T @ self.dual_coef_).T
            if scaler.inv_scale is not None:
                Wb *= scaler.inv_scale[sl]
            W[:, sl] = Wb
        return W[0] if self._y_1d else W

    @property
    def intercept_(self) -> np.ndarray | float:
        """Intercepts (n_targets,) such that ``predict(X) = X @ coef_.T + intercept_``."""
        coef = np.atleast_2d(self.coef_)
        b = self.y_mean_ - coef @ self.X_mean_
        return float(b[0]) if self._y_1d else b
