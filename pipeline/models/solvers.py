"""Solvers as plain array functions: ridge leave-one-out and k-fold errors, dual
coefficients, and the Krylov PLS duals; the estimators in :mod:`.ridge` and :mod:`.pls`
are built over them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from numbers import Integral

import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.core.errors import ConfigError

__all__ = [
    "krylov_pls_duals",
]

_STACK_ROWS = 2048  # k-fold: alphas stacked until the product has about this many rows


def _fold_errors(
    Z: np.ndarray, Z64: np.ndarray, W: np.ndarray, UTy: np.ndarray, Y_te: np.ndarray
) -> np.ndarray:
    """Summed squared test residuals of one fold for every alpha, shape (n_alphas, c).

    The fold's predictions at alpha ``a`` are ``P_a = Z diag(w_a) U^T y`` with
    ``w_a = 1 / (s + a)``. We use ``||y - P_a||^2 = y.y - 2 y.P_a + P_a.P_a``:

    * ``y.y`` and the cross term ``y.P_a = w_a . ((Z^T y) * U^T y)`` are computed in
      float64 for all alphas at once (a small ``(n_alphas x n_train)`` product);
    * only ``P_a.P_a`` needs the big ``(n_test x n_train) @ (n_train x c)`` product. It
      runs in ``Z``'s precision with several alphas stacked into one taller product
      (better BLAS efficiency) and is accumulated in float64. For large alphas ``P_a`` is
      small, so its float32 rounding is small in absolute terms too: neighbouring large
      alphas stay distinguishable, as they are in float64.

    Parameters
    ----------
    Z : ndarray, shape (n_test, n_train)
        ``K_te U`` in the working precision; ``Z64`` the same in float64.
    W : ndarray, shape (n_alphas, n_train)
    UTy : ndarray, shape (n_train, c)
        In the working precision.
    Y_te : ndarray, shape (n_test, c), float64
        Test targets centred with the fold's training mean.
    """
    n_alphas = W.shape[0]
    n_te, n_tr = Z.shape
    work = Z.dtype
    err = W @ ((Z64.T @ Y_te) * UTy)  # float64: UTy is promoted
    err *= -2.0
    err += np.einsum("ij,ij->j", Y_te, Y_te)
    W_w = W.astype(work, copy=False)
    group = max(1, -(-_STACK_ROWS // max(n_te, 1)))  # alphas per product, at most
    group = -(-n_alphas // -(-n_alphas // group))  # balanced: 25 alphas -> 5 x 5, not 4 x 6 + 1
    for a0 in range(0, n_alphas, group):
        a1 = min(a0 + group, n_alphas)
        Zs = (Z[None, :, :] * W_w[a0:a1, None, :]).reshape(-1, n_tr)
        P = (Zs @ UTy).reshape(a1 - a0, n_te, -1)
        err[a0:a1] += np.einsum("gij,gij->gj", P, P, dtype=np.float64)
    return err


def _duals(
    U: np.ndarray, UTy: np.ndarray, s: np.ndarray, alphas: np.ndarray, idx: np.ndarray
) -> np.ndarray:
    """Dual coefficients ``U diag(1 / (s + alphas[idx_j])) U^T y_j`` per column (float64).

    One (n x n) @ (n x c) product: the per-column penalty goes into the scaling.
    """
    return U @ (UTy / (s[:, None] + alphas[idx][None, :]))
_BREAKDOWN_TOL = 1e-12  # relative to trace(K): a new direction smaller than this is noise


def krylov_pls_duals(
    K: np.ndarray,
    Yc: np.ndarray,
    n_components: Sequence[int],
    on_components: Callable[[int, np.ndarray], None],
    last: np.ndarray | None = None,
) -> None:
    """Run batched PLS1 and report the dual coefficients at each requested count.

    Parameters
    ----------
    K : ndarray, shape (n, n) or (n,)
        Doubly-centred training kernel, or its eigenvalues ``lam`` (the kernel in its
        eigenbasis ``V``, a diagonal operator): then ``Yc`` must be ``V^T y`` and the duals
        come back in that basis too (``V @ dual`` are the sample-space duals). The Krylov
        recursion is invariant under the orthogonal change of basis, and each step costs
        ``O(n)`` per target instead of an ``(n x n)`` product.
    Yc : ndarray, shape (n, c)
        Centred targets (each column its own PLS1).
    n_components : sequence of int
        Counts at which to report (sorted ascending, positive).
    on_components : callable
        ``on_components(k, dual)`` with ``dual`` (n, c) the dual coefficients of the
        k-component models (a buffer reused afterwards: copy what you keep).
    last : ndarray of int, shape (c,), optional
        The largest count each target needs: a target leaves the batch once it is reached
        (the others' arithmetic is unchanged; its columns of later ``dual`` are stale).
    """
    n, c = Yc.shape
    wanted = sorted(set(int(k) for k in n_components))
    k_max = wanted[-1]
    diagonal = K.ndim == 1
    trace = float(np.sum(K) if diagonal else np.trace(K))
    tol = _BREAKDOWN_TOL * max(trace, np.finfo(float).tiny)
    # Target-major layout: row b of every (c, n) array belongs to target b, so the
    # per-target Gram-Schmidt products are batched BLAS calls on contiguous rows.
    # The pre-images r_j (q_j = K r_j) are never formed: before its Gram-Schmidt step r_j
    # is B_j (B_0 = y, B_j = q_j), so r_j = sum_l C[l, j] B_l with a small upper-triangular
    # C per target, and the duals sum_j r_j coef_j = sum_l B_l d_l with d = C coef.
    Q = np.empty((c, k_max, n))
    C = np.zeros((c, k_max, k_max))
    d = np.zeros((c, k_max))
    y = np.ascontiguousarray(Yc.T)
    resid = y.copy()
    dual = np.zeros((c, n))
    rows = np.arange(c)  # the targets still in the batch
    last = np.full(c, k_max) if last is None else np.asarray(last)
    t = y * K if diagonal else y @ K  # K is symmetric: row b is (K y_b)^T
    for j in range(k_max):
        # Lanczos step (against the last two basis vectors, which carry almost all of
        # K q_{j-1}), then one full classical Gram-Schmidt pass against all of them.
        h_all = np.zeros((rows.size, j))
        for lo in (max(j - 2, 0), 0) if j else ():
            h = np.matmul(Q[:, lo:j, :], t[:, :, None])  # (c, j-lo, 1)
            t -= np.matmul(h.transpose(0, 2, 1), Q[:, lo:j, :])[:, 0, :]
            h_all[:, lo:j] += h[:, :, 0]
        norm = np.sqrt(np.einsum("cn,cn->c", t, t))
        ok = norm > tol
        inv = np.where(ok, 1.0 / np.where(ok, norm, 1.0), 0.0)
        q = Q[:, j, :]
        np.multiply(t, inv[:, None], out=q)
        # r_j = (B_j - sum_i h_i r_i) / norm, in coefficients
        col = -np.matmul(C[:, :, :j], h_all[:, :, None])[:, :, 0]
        col[:, j] += 1.0
        C[:, :, j] = col * inv[:, None]
        coef = np.einsum("cn,cn->c", q, resid)
        resid -= q * coef[:, None]
        d += C[:, :, j] * coef[:, None]
        if j + 1 in wanted:
            dual[rows] = y * d[:, :1] + np.matmul(d[:, None, 1:j + 1], Q[:, :j, :])[:, 0, :]
            on_components(j + 1, dual.T)
        keep = last > j + 1
        if not keep.all():  # drop the targets that are done (copies of the batch arrays)
            Q, C, d, y, resid, rows, last = (a[keep] for a in (Q, C, d, y, resid, rows, last))
            q = Q[:, j, :]
        if j + 1 < k_max and rows.size:
            t = q * K if diagonal else q @ K
        else:
            break


def _check_grid(n_components) -> np.ndarray:
    if isinstance(n_components, Integral) and not isinstance(n_components, bool):
        grid = np.array([n_components])
    else:
        try:
            grid = np.asarray(list(n_components))
        except TypeError:
            grid = np.array([n_components], dtype=object)
    if (
        grid.size == 0
        or grid.dtype.kind not in "iu"
        or np.any(grid < 1)
    ):
        raise ConfigError(
            f"n_components must be a positive integer or a list of them, got {n_components!r}."
        )
    return np.unique(grid.astype(np.int64))


def _chunks(v: int, size: int) -> Iterator[slice]:
    for start in range(0, v, size):
        yield slice(start, min(start + size, v))


def _kfold_cv(folds, alphas: np.ndarray, Y: np.ndarray, center: bool, work: type, chunk_size: int,
              n_threads, errors: np.ndarray) -> None:
    """Mean k-fold squared error of every penalty, (n_alphas, v), into ``errors``.

    ``folds`` holds ``(train, test, s_f, U_f, Z)`` per fold (see ``RidgeKernel``).
    """
    errors[:] = 0.0
    v = Y.shape[1]
    for train, test, s_f, U_f, Z in folds:
        with threadpool_limits(limits=n_threads):
            W = 1.0 / (s_f[None, :] + alphas[:, None])  # (n_alphas, n_train)
            Z64 = Z.astype(np.float64, copy=False)
            for sl in _chunks(v, chunk_size):
                Y_tr = Y[train, sl]
                m_tr = Y_tr.mean(axis=0) if center else np.zeros(Y_tr.shape[1])
                UTy = U_f.T @ (Y_tr - m_tr).astype(work, copy=False)
                errors[:, sl] += _fold_errors(Z, Z64, W, UTy, Y[test, sl] - m_tr)
    errors /= Y.shape[0]


def _chosen_duals(U: np.ndarray, s: np.ndarray, alphas: np.ndarray, Y: np.ndarray, y_mean: np.ndarray,
                  best_idx: np.ndarray, chunk_size: int, n_threads, dual: np.ndarray) -> None:
    """Dual coefficients (n, v) at each target's chosen penalty, in float64, into ``dual``."""
    with threadpool_limits(limits=n_threads):
        for sl in _chunks(Y.shape[1], chunk_size):
            UTy = U.T @ (Y[:, sl] - y_mean[sl])
            dual[:, sl] = _duals(U, UTy, s, alphas, best_idx[sl])
