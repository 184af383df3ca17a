"""The leave-one-out solver (pipeline.models.loo): float32 against float64, against the
explicit hat matrix, and independent of the number of worker threads."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.models.loo import _loo_plan, loo_cv
from pipeline.models.ridge import DEFAULT_ALPHAS, KernelRidgeCV


def _problem(n=200, p=3000, v=300, seed=0):
    """Correlated float32 features; targets from 5 % to 80 % explainable, 40 % pure noise."""
    rng = np.random.RandomState(seed)
    latent = rng.randn(n, 20)
    X = (latent @ rng.randn(20, p) * 0.3 + rng.randn(n, p)).astype(np.float32)
    signal = latent @ (rng.randn(20, v) * (rng.rand(20, v) < 0.3))
    signal /= signal.std(axis=0) + 1e-12
    ceiling = rng.uniform(0.05, 0.8, v)
    Y = signal * (rng.rand(v) > 0.4) + np.sqrt(1 / ceiling**2 - 1) * rng.randn(n, v)
    kernel, _ = KernelRidgeCV().prepare(X)
    return kernel, Y


def _loo(kernel, Y, work, chunk_size=1000, n_threads=1, with_dual=False):
    n, v = Y.shape
    errors = np.empty((kernel.alphas.size, v))
    dual = np.empty((n, v)) if with_dual else None
    loo_cv(kernel.U, kernel.s, kernel.alphas, kernel.inv_diag, Y, Y.mean(axis=0), work,
           chunk_size, n_threads, errors, dual)
    return errors, dual


def test_float32_loo_errors_match_float64_to_1e5_with_the_same_alphas():
    kernel, Y = _problem()
    e32, _ = _loo(kernel, Y, np.float32)
    e64, _ = _loo(kernel, Y, np.float64)
    np.testing.assert_allclose(e32, e64, rtol=1e-5)
    a32, a64 = e32.argmin(axis=0), e64.argmin(axis=0)
    # the same alphas, except at exact near-ties: float32 products round by BLAS kernel
    # (width, CPU), so a voxel whose two best alphas' float64 errors agree to 1e-6 may flip
    cols = np.arange(a64.size)
    differ = np.flatnonzero(a32 != a64)
    assert differ.size <= 0.01 * a64.size
    np.testing.assert_allclose(e64[a32[differ], cols[differ]], e64[a64[differ], cols[differ]],
                               rtol=1e-6)
    # both float32 forms ran (direct at small penalties, deviation at large ones) ...
    direct, _, _ = _loo_plan(kernel.s, kernel.alphas, kernel.inv_diag,
                             kernel.U.T @ (Y - Y.mean(axis=0)), exact=False)
    assert direct[0] and not direct[-1]
    # ... and the problem has near-ties that float32 still resolves as float64 does
    ranked = np.sort(e64, axis=0)
    gaps = (ranked[1] - ranked[0]) / ranked[0]
    assert np.sum(gaps < 1e-7) >= 3
    assert np.sum(e64.argmin(axis=0) == DEFAULT_ALPHAS.size - 1) >= 10  # noise at the top


def test_float64_loo_is_the_explicit_hat_matrix_loo():
    kernel, Y = _problem(n=60, p=200, v=5, seed=1)
    e64, dual = _loo(kernel, Y, np.float64, with_dual=True)
    U, s = kernel.U, kernel.s
    Kc = (U * s) @ U.T
    n = Kc.shape[0]
    Yc = Y - Y.mean(axis=0)
    for i, a in enumerate(kernel.alphas):
        H = np.full((n, n), 1.0 / n) + Kc @ np.linalg.inv(Kc + a * np.eye(n))
        resid = (Y - H @ Y) / (1.0 - np.diag(H))[:, None]
        np.testing.assert_allclose(e64[i], np.mean(resid**2, axis=0), rtol=1e-8)
    best = kernel.alphas[e64.argmin(axis=0)]
    for j in range(Y.shape[1]):
        expected = np.linalg.solve(Kc + best[j] * np.eye(n), Yc[:, j])
        np.testing.assert_allclose(dual[:, j], expected, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("work", [np.float32, np.float64])
def test_workers_and_chunks_do_not_change_the_result(work):
    kernel, Y = _problem(n=80, p=300, v=70, seed=2)
    one, dual_one = _loo(kernel, Y, work, chunk_size=16, n_threads=1, with_dual=True)
    for n_threads in (2, 3, None):
        many, dual_many = _loo(kernel, Y, work, chunk_size=16, n_threads=n_threads, with_dual=True)
        np.testing.assert_array_equal(many, one)
        np.testing.assert_array_equal(dual_many, dual_one)
    # a chunk's columns depend on that chunk only (the column means are per column)
    part, _ = _loo(kernel, Y[:, 16:48], work, chunk_size=16, n_threads=2)
    np.testing.assert_array_equal(part, one[:, 16:48])
