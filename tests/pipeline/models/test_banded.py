"""Banded ridge and variance partitioning: scikit-learn equality and planted truth.

Tolerances of the planted-truth tests: every partition term is a difference of
validation R2 values over ``n_val`` = 100 images. A space without signal gets its
penalty at the top of the grid, so its predictions are nearly the training mean and its
validation R2 is about ``-1/n_val`` (the squared error of the mean's estimate), a little
lower from what it fits of the noise: we allow ``3 / n_val`` = 0.03 on ROI means. Voxel
by voxel the noise of R2 over 100 images is larger (about 0.05), so per-voxel checks are
on medians and means only.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from pipeline.core.errors import ConfigError
from pipeline.fit.partition import PARTITION_FIELDS, variance_partition
from pipeline.models.banded import banded_predict, banded_ridge_cv, default_ratios
from pipeline.models.kernels import fit_kernel, linear_kernel
from pipeline.models.ridge import KernelRidgeCV

N, N_VAL = 300, 100


def _kernels(X: np.ndarray, n: int = N):
    K, scaler = fit_kernel(X[:n], True)
    return K, linear_kernel(X[:n], scaler, Z=X[n:])


def test_fixed_penalties_equal_sklearn_ridge_on_scaled_spaces():
    """One (alpha_a, alpha_b) pair = sklearn Ridge(alpha=1) on [Xa / sqrt(a_a), Xb / sqrt(a_b)]."""
    rng = np.random.default_rng(0)
    Xa, Xb = rng.standard_normal((50, 30)), rng.standard_normal((50, 12)) * 3 + 1
    Y = rng.standard_normal((50, 4))
    a_a, a_b = 7.0, 0.3
    (Ka, Ka_new), (Kb, Kb_new) = _kernels(Xa, 40), _kernels(Xb, 40)
    fit = banded_ridge_cv([Ka, Kb], Y[:40], alphas=[a_a], ratios=[a_a / a_b])
    np.testing.assert_allclose(fit.alpha_a, a_a)
    np.testing.assert_allclose(fit.alpha_b, a_b)
    ours = banded_predict(fit, [Ka_new, Kb_new])
    Za = StandardScaler().fit(Xa[:40]).transform(Xa) / np.sqrt(a_a)
    Zb = StandardScaler().fit(Xb[:40]).transform(Xb) / np.sqrt(a_b)
    Z = np.hstack([Za, Zb])
    ref = Ridge(alpha=1.0).fit(Z[:40], Y[:40]).predict(Z[40:])
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)


def test_one_space_is_plain_ridge():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((80, 60))
    Y = X[:, :5] @ rng.standard_normal((5, 6)) + rng.standard_normal((80, 6))
    K, K_new = _kernels(X, 64)
    fit = banded_ridge_cv([K], Y[:64])
    plain = KernelRidgeCV().fit(X[:64], Y[:64])
    np.testing.assert_array_equal(fit.alpha_a, plain.alpha_)
    assert np.all(np.isinf(fit.alpha_b))
    np.testing.assert_allclose(banded_predict(fit, [K_new]), plain.predict(X[64:]), rtol=1e-9, atol=1e-9)


def test_the_joint_model_picks_the_space_that_carries_the_signal():
    rng = np.random.default_rng(2)
    Xa, Xb = rng.standard_normal((N, 40)), rng.standard_normal((N, 40))
    Y = np.hstack([Xa[:, :3] @ rng.standard_normal((3, 5)), Xb[:, :3] @ rng.standard_normal((3, 5))])
    Y += 0.3 * rng.standard_normal(Y.shape)
    fit = banded_ridge_cv([_kernels(Xa)[0], _kernels(Xb)[0]], Y)
    assert np.all(fit.alpha_a[:5] < fit.alpha_b[:5])  # A's voxels: B penalised harder
    assert np.all(fit.alpha_b[5:] < fit.alpha_a[5:])


def _spaces(seed: int, shared_signal: bool):
    rng = np.random.default_rng(seed)
    n, p, v = N + N_VAL, 150, 200
    if shared_signal:  # both spaces carry the same 5 latent factors; responses follow them
        Z = rng.standard_normal((n, 5))
        Xa = Z @ rng.standard_normal((5, p)) + rng.standard_normal((n, p))
        Xb = Z @ rng.standard_normal((5, p)) + rng.standard_normal((n, p))
        Y = Z @ rng.standard_normal((5, v)) * 0.5 + rng.standard_normal((n, v))
    else:  # responses from A's features only; B independent of everything
        Xa, Xb = rng.standard_normal((n, p)), rng.standard_normal((n, p))
        Y = Xa @ rng.standard_normal((p, v)) / np.sqrt(p) + rng.standard_normal((n, v))
    (Ka, Ka_val), (Kb, Kb_val) = _kernels(Xa), _kernels(Xb)
    return variance_partition((Ka, Kb), (Ka_val, Kb_val), Y[:N], Y[N:])


def test_signal_in_a_only_gives_no_unique_b():
    res = _spaces(1, shared_signal=False)
    cols = res.columns()
    assert list(cols) == list(PARTITION_FIELDS)
    assert np.median(res.r2_a) > 0.15  # the planted signal is found
    tol = 3 / N_VAL
    assert abs(res.unique_b.mean()) < tol
    assert abs(np.median(res.unique_b)) < tol
    assert abs(res.unique_a.mean() - res.r2_a.mean()) < tol
    assert abs(res.r2_b.mean()) < tol  # B alone explains nothing
    # the identities hold voxel by voxel
    np.testing.assert_allclose(res.unique_a + res.shared, res.r2_a, atol=1e-12)
    np.testing.assert_allclose(res.unique_a + res.unique_b + res.shared, res.r2_ab, atol=1e-12)


def test_signal_in_both_gives_shared_variance():
    res = _spaces(2, shared_signal=True)
    assert res.shared.mean() > 0.1
    assert np.median(res.shared) > 0.1
    assert res.shared.mean() > 2 * max(res.unique_a.mean(), res.unique_b.mean())


def test_bad_inputs_are_named():
    K = np.eye(5)
    with pytest.raises(ConfigError, match="one or two feature spaces"):
        banded_ridge_cv([K, K, K], np.zeros((5, 1)))
    with pytest.raises(ConfigError, match="kernel 1 must be"):
        banded_ridge_cv([K, np.eye(4)], np.zeros((5, 1)))
    with pytest.raises(ConfigError, match="ratios must be"):
        banded_ridge_cv([K, K], np.ones((5, 1)), ratios=[-1.0])
    assert default_ratios(2 * K, K)[0] == 0 and np.isinf(default_ratios(K, K)[-1])
