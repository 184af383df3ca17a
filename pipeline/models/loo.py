"""Exact leave-one-out errors of kernel ridge for a grid of penalties, all targets at once.

With the eigendecomposition ``K = U diag(s) U^T`` of the centred kernel and
``Z = U^T y`` (computed once per target), the LOO residuals at penalty ``a`` are
``e = (U diag(w) Z) * d`` with ``w = 1 / (s + a)`` and ``d = 1 / diag((K + a)^-1)``. Per
penalty the only large operation is ONE ``(v x n) @ (n x n)`` product; everything else is
elementwise work on the product's output, done block by block (``_BLOCK`` targets, the
block's arrays stay in cache) straight after the product, in preallocated buffers.

Precision (float32 work, float32 features): the product runs in float32 and the squared
residuals are reduced with a weighted BLAS sum, in one of two forms chosen per penalty
(whichever has the smaller float32 product, as measured on the chunk):

* direct: ``err = sum_i d_i^2 p_i^2`` with ``p = U (w * Z)``: positive terms, no
  cancellation (small penalties);
* deviation: ``e = (y - p) g`` with ``p = U (h * Z)``, ``h = s / (s + a)`` (the fitted
  values) and ``g = d / a``; ``err = sum_i g_i^2 y_i^2 + sum_i g_i^2 p_i (p_i - 2 y_i)``.
  The first sum is exact (float64, all penalties in one small product); only the
  correction, small where this form is chosen (large penalties), sees float32. That keeps
  the flat error curves of noise targets resolved at large penalties as in float64.

Both cores: the targets are split into chunks; each worker thread runs its own chunks
with single-threaded BLAS (products and elementwise work both run in parallel; the
result of a chunk does not depend on the number of workers).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

_BLOCK = 512  # targets per product: the block's float32 arrays (3 x 512 x n) fit in cache


def n_workers(n_threads: int | None) -> int:
    """Worker threads for ``n_threads`` (None: as many as the BLAS uses now)."""
    if n_threads is not None:
        return max(1, int(n_threads))
    counts = [int(i.get("num_threads") or 1) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else 1


def run_chunks(fn, items, n_threads: int | None) -> list:
    """``[fn(item) for item in items]``, on worker threads with single-threaded BLAS each.

    With one worker (or one item) it runs here, BLAS limited to ``n_threads``. Each call must
    write only its own outputs; its result does not depend on the number of workers.
    """
    items = list(items)
    workers = n_workers(n_threads)
    if workers == 1 or len(items) <= 1:
        with threadpool_limits(limits=n_threads):
            return [fn(item) for item in items]
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def _loo_plan(s: np.ndarray, alphas: np.ndarray, inv_diag: np.ndarray, UTy: np.ndarray, exact: bool):
    """Per penalty: the form (direct or not), the scaling of ``Z`` and the reduction weights.

    Parameters
    ----------
    s : ndarray, shape (k,)
    alphas : ndarray, shape (n_alphas,)
    inv_diag : ndarray, shape (n_alphas, n)
        ``d`` per penalty (float64).
    UTy : ndarray, shape (k, c), float64
    exact : bool
        float64 work: always the direct form.

    Returns
    -------
    direct : ndarray of bool, shape (n_alphas,)
    scale : ndarray, shape (n_alphas, k), float64
        ``w`` (direct) or ``h`` (deviation).
    weight : ndarray, shape (n_alphas, n), float64
        ``d^2`` (direct) or ``g^2`` (deviation).
    """
    zz = np.einsum("ij,ij->i", UTy, UTy)  # squared norms per eigen-direction
    w_direct = 1.0 / (s[None, :] + alphas[:, None])  # (n_alphas, k)
    shrink = s[None, :] * w_direct  # h = s / (s + a)
    if exact:
        direct = np.ones(alphas.size, dtype=bool)
    else:  # |U (w z)| vs |U (w_dev z)| with w_dev = h / a
        direct = (w_direct**2) @ zz <= (shrink**2) @ zz / alphas**2
    scale = np.where(direct[:, None], w_direct, shrink)
    g = inv_diag / np.where(direct, 1.0, alphas)[:, None]
    return direct, scale, g * g


def _loo_block(Zt, Ym2, Ut, direct, scale, weight, base, out, bufs) -> None:
    """Summed squared LOO residuals of one block of targets for every penalty, into ``out``.

    Parameters
    ----------
    Zt : ndarray, shape (b, k)
        ``(U^T y)^T`` in the working precision.
    Ym2 : ndarray, shape (b, n), or None
        ``-2 y^T`` in the working precision (needed by the deviation form only).
    Ut : ndarray, shape (k, n)
        ``U^T`` in the working precision, C-contiguous.
    direct, scale, weight : see :func:`_loo_plan` (``scale``, ``weight`` in working precision).
    base : ndarray, shape (n_alphas, b), float64
        ``sum_i g_i^2 y_i^2`` (used for the deviation rows).
    out : ndarray, shape (n_alphas, b), float64
    bufs : tuple of three ndarrays, shapes (>= b, k), (>= b, n), (>= b, n), working precision
    """
    b = Zt.shape[0]
    W, P, Q = (buf[:b] for buf in bufs)
    for i in range(direct.size):
        np.multiply(Zt, scale[i], out=W)
        np.matmul(W, Ut, out=P)  # row j: U (scale * z_j), the product of this penalty
        if direct[i]:
            np.square(P, out=P)
            out[i] = P @ weight[i]
        else:
            np.add(P, Ym2, out=Q)  # p - 2 y
            Q *= P
            out[i] = base[i] + Q @ weight[i]


def _loo_chunk(U, Ut, s, alphas, inv_diag, Yc, errors, dual) -> float:
    """LOO errors (n_alphas, c) of one chunk of centred targets ``Yc`` (n, c) into ``errors``.

    With ``dual`` (n, c) given, the float64 duals at each target's best penalty too; returns
    the seconds spent on those.
    """
    n, c = Yc.shape
    work = Ut.dtype
    UTy = U.T @ Yc  # float64
    direct, scale, weight = _loo_plan(s, alphas, inv_diag, UTy, work == np.float64)
    Zt = np.ascontiguousarray(UTy.T, dtype=work)
    Ym2 = None
    base = np.zeros((alphas.size, c))
    if not direct.all():
        Ym2 = np.ascontiguousarray(Yc.T, dtype=work) * work.type(-2.0)
        base[~direct] = weight[~direct] @ (Yc * Yc)
    scale_w, weight_w = scale.astype(work), weight.astype(work)
    b = min(_BLOCK, c)
    bufs = (np.empty((b, Ut.shape[0]), work), np.empty((b, n), work), np.empty((b, n), work))
    for lo in range(0, c, b):
        sl = slice(lo, min(lo + b, c))
        _loo_block(Zt[sl], None if Ym2 is None else Ym2[sl], Ut, direct, scale_w, weight_w,
                   base[:, sl], errors[:, sl], bufs)
    errors /= n
    if dual is None:
        return 0.0
    t0 = time.perf_counter()
    best = np.argmin(errors, axis=0)
    dual[:] = U @ (UTy / (s[:, None] + alphas[best][None, :]))
    return time.perf_counter() - t0


def loo_cv(U: np.ndarray, s: np.ndarray, alphas: np.ndarray, inv_diag: np.ndarray, Y: np.ndarray,
           y_mean: np.ndarray, work: type, chunk_size: int, n_threads: int | None, errors: np.ndarray,
           dual: np.ndarray | None) -> float:
    """Exact leave-one-out errors of every penalty, (n_alphas, v), into ``errors``.

    Parameters
    ----------
    U : ndarray, shape (n, k)
        Eigenvectors of the centred kernel (float64); ``s`` (k,) its eigenvalues.
    alphas : ndarray, shape (n_alphas,)
    inv_diag : ndarray, shape (n_alphas, n)
        ``1 / diag((K + a)^-1)`` per penalty.
    Y : ndarray, shape (n, v)
        Targets; ``y_mean`` (v,) the means removed from them.
    work : type
        Precision of the per-penalty products.
    chunk_size : int
        Targets per chunk (a chunk's result depends on its columns only).
    n_threads : int or None
        Worker threads, each with single-threaded BLAS (None: the BLAS thread count).
    errors : ndarray, shape (n_alphas, v)
    dual : ndarray, shape (n, v), or None
        If given, receives the float64 duals at each target's best penalty.

    Returns
    -------
    float
        Seconds spent on the duals (summed over workers, divided by their number).
    """
    v = Y.shape[1]
    Ut = np.ascontiguousarray(U.T, dtype=work)

    def run(lo: int) -> float:
        sl = slice(lo, min(lo + chunk_size, v))
        Yc = Y[:, sl] - y_mean[sl]
        return _loo_chunk(U, Ut, s, alphas, inv_diag, Yc, errors[:, sl],
                          None if dual is None else dual[:, sl])

    starts = range(0, v, chunk_size)
    seconds = run_chunks(run, starts, n_threads)
    return float(sum(seconds)) / min(n_workers(n_threads), len(starts))
