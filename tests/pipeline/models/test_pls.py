"""Batched PLS1 against scikit-learn PLSRegression fitted one target at a time."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression

from pipeline.core.errors import ConfigError
from pipeline.evaluation.splits import kfold_splits
from pipeline.models.pls import PLS2, BatchedPLS


def _problem(n, p, v, seed=0):
    rng = np.random.RandomState(seed)
    latent = rng.randn(n + 25, 8)
    X = latent @ rng.randn(8, p) + 0.7 * rng.randn(n + 25, p) + rng.uniform(0, 3, p)
    X *= rng.uniform(0.5, 2.0, p)
    Y = latent[:, :4] @ rng.randn(4, v) + rng.randn(n + 25, v) + rng.uniform(-3, 3, v)
    return X[:n], Y[:n], X[n:]


def _sklearn_per_target(X, Y, X_new, k, scale):
    return np.column_stack(
        [
            PLSRegression(n_components=k, scale=scale).fit(X, Y[:, j]).predict(X_new).ravel()
            for j in range(Y.shape[1])
        ]
    )


def _rel_err(pred, expected):
    scale = np.abs(expected - expected.mean(axis=0)).max(axis=0)
    return float(np.max(np.abs(pred - expected) / scale))


@pytest.mark.parametrize("n,p", [(60, 300), (120, 50)])
@pytest.mark.parametrize("scale", [False, True])
def test_matches_sklearn_per_target(n, p, scale):
    X, Y, X_new = _problem(n, p, 4, seed=n + p)
    for k in (1, 2, 5, 12):
        model = BatchedPLS(n_components=k, cv=None, scale=scale).fit(X, Y)
        expected = _sklearn_per_target(X, Y, X_new, k, scale)
        assert _rel_err(model.predict(X_new), expected) < 1e-6, k
        assert np.all(model.n_components_ == k)


def test_float32_features_within_1e4():
    X, Y, X_new = _problem(90, 200, 3, seed=3)
    X32, X_new32 = X.astype(np.float32), X_new.astype(np.float32)
    for k in (1, 3, 8):
        model = BatchedPLS(n_components=k, cv=None).fit(X32, Y)
        expected = _sklearn_per_target(
            X32.astype(np.float64), Y, X_new32.astype(np.float64), k, False
        )
        assert _rel_err(model.predict(X_new32), expected) < 1e-4, k


def test_cv_matches_manual_kfold_loop():
    X, Y, X_new = _problem(80, 60, 3, seed=4)
    grid = (1, 2, 4, 7)
    model = BatchedPLS(n_components=grid, cv=4, random_state=2).fit(X, Y)
    errors = np.zeros((len(grid), 3))
    for train, test in kfold_splits(80, 4, 2):
        for i, k in enumerate(grid):
            pred = _sklearn_per_target(X[train], Y[train], X[test], k, False)
            errors[i] += np.sum((Y[test] - pred) ** 2, axis=0)
    errors /= 80
    np.testing.assert_allclose(model.cv_errors_, errors, rtol=1e-7)
    chosen = np.asarray(grid)[np.argmin(errors, axis=0)]
    np.testing.assert_array_equal(model.n_components_, chosen)
    # final model: each target refitted on all data with its chosen count
    expected = np.column_stack(
        [
            _sklearn_per_target(X, Y[:, [j]], X_new, int(k), False)[:, 0]
            for j, k in enumerate(chosen)
        ]
    )
    assert _rel_err(model.predict(X_new), expected) < 1e-6


def test_grid_defaults_and_chunking():
    X, Y, X_new = _problem(100, 40, 5, seed=5)
    a = BatchedPLS(n_components=(1, 3, 6), cv=3).fit(X, Y)
    b = BatchedPLS(n_components=(6, 3, 1), cv=3, chunk_size=2).fit(X, Y)
    np.testing.assert_array_equal(a.n_components_, b.n_components_)
    np.testing.assert_allclose(a.predict(X_new), b.predict(X_new), rtol=1e-10)
    assert a.components_grid_.tolist() == [1, 3, 6]
    assert BatchedPLS().get_params()["n_components"] == (1, 2, 3, 5, 8, 12, 17, 25)


def test_constant_target_and_saturated_krylov_space():
    X, Y, X_new = _problem(50, 4, 2, seed=6)  # only 4 features: at most 4 useful components
    Y[:, 1] = 3.5
    model = BatchedPLS(n_components=8, cv=None).fit(X, Y)
    pred = model.predict(X_new)
    assert np.all(np.isfinite(pred))
    np.testing.assert_allclose(pred[:, 1], 3.5)
    # with every direction used, PLS1 equals ordinary least squares
    Xc = np.column_stack([X, np.ones(50)])
    beta = np.linalg.lstsq(Xc, Y[:, 0], rcond=None)[0]
    np.testing.assert_allclose(pred[:, 0], np.column_stack([X_new, np.ones(25)]) @ beta, rtol=1e-6)


def test_one_dimensional_target_and_errors():
    X, Y, X_new = _problem(40, 30, 1, seed=7)
    model = BatchedPLS(n_components=(1, 2), cv=3).fit(X, Y[:, 0])
    assert isinstance(model.n_components_, int)
    assert model.predict(X_new).shape == (25,)
    with pytest.raises(ConfigError, match="n_components"):
        BatchedPLS(n_components=(0, 2)).fit(X, Y)
    with pytest.raises(ConfigError, match="cv"):
        BatchedPLS(n_components=(1, 2), cv=None).fit(X, Y)
    with pytest.raises(ConfigError, match="n_components"):
        BatchedPLS(n_components=40, cv=None).fit(X, Y)


def test_pls2_matches_plsregression_multi_output():
    X, Y, X_new = _problem(70, 90, 6, seed=8)
    model = PLS2(n_components=5).fit(X.astype(np.float32), Y)
    ref = PLSRegression(n_components=5, scale=False).fit(X.astype(np.float32).astype(np.float64), Y)
    np.testing.assert_allclose(model.predict(X_new), ref.predict(X_new), rtol=1e-6, atol=1e-8)
    assert model.n_components_.tolist() == [5] * 6
    single = PLS2(n_components=2).fit(X, Y[:, 0])
    assert single.predict(X_new).shape == (25,)
    with pytest.raises(ConfigError, match="n_components"):
        PLS2(n_components=(1, 2)).fit(X, Y)


def test_non_finite_features_give_one_clear_error():
    X, Y, X_new = _problem(40, 30, 3, seed=9)
    X_bad = X.copy()
    X_bad[5, 11] = -np.inf
    with pytest.raises(ConfigError, match="NaN or infinite values .*feature column 11"):
        BatchedPLS(n_components=2, cv=None).fit(X_bad, Y)
    model = BatchedPLS(n_components=2, cv=None).fit(X, Y)
    X_new = X_new.copy()
    X_new[0, 3] = np.nan
    with pytest.raises(ConfigError, match="new X contains NaN or infinite values .*row 0"):
        model.predict(X_new)


def test_krylov_in_the_eigenbasis_is_the_sample_space_krylov():
    # the CV and final fits run the recursion on the eigenvalues of the kernel (a diagonal
    # operator) with the targets rotated into its eigenbasis: the same duals, rotated
    from pipeline.models.kernels import fit_kernel, fold_kernels
    from pipeline.models.solvers import krylov_pls_duals

    X, Y, _ = _problem(70, 120, 6, seed=9)
    K, _ = fit_kernel(X, standardize=False)
    K_tr, _ = fold_kernels(K, np.arange(70), np.arange(0))
    Yc = Y - Y.mean(axis=0)
    lam, V = np.linalg.eigh(K_tr)
    got, want = {}, {}
    krylov_pls_duals(K_tr, Yc, [1, 4, 9], lambda k, d: want.__setitem__(k, d.copy()))
    krylov_pls_duals(lam, V.T @ Yc, [1, 4, 9], lambda k, d: got.__setitem__(k, V @ d))
    for k in (1, 4, 9):
        fitted = K_tr @ want[k]
        np.testing.assert_allclose(K_tr @ got[k], fitted, atol=1e-9 * np.abs(fitted).max())


def test_worker_threads_do_not_change_the_fit():
    X, Y, X_new = _problem(90, 60, 40, seed=10)
    one = BatchedPLS(cv=3, chunk_size=7, n_threads=1).fit(X, Y)
    two = BatchedPLS(cv=3, chunk_size=7, n_threads=2).fit(X, Y)
    # the same choices; numbers equal to float64 rounding (BLAS may split its products
    # differently with another thread count, which changes the last bits on some CPUs)
    np.testing.assert_array_equal(one.n_components_, two.n_components_)
    np.testing.assert_allclose(one.cv_errors_, two.cv_errors_, rtol=1e-12, atol=0)
    np.testing.assert_allclose(one.dual_coef_, two.dual_coef_, rtol=1e-10, atol=1e-15)


def test_targets_leave_the_batch_at_their_last_count_with_unchanged_duals():
    from pipeline.models.solvers import krylov_pls_duals

    X, Y, _ = _problem(60, 90, 9, seed=11)
    K = X @ X.T
    lam = np.linalg.eigvalsh(K)
    Z = np.random.RandomState(0).randn(60, 9)
    last = np.array([1, 4, 2, 4, 1, 9, 2, 9, 4])
    full, short = {}, {}
    krylov_pls_duals(lam, Z, [1, 2, 4, 9], lambda k, d: full.__setitem__(k, d.copy()))
    krylov_pls_duals(lam, Z, [1, 2, 4, 9], lambda k, d: short.__setitem__(k, d.copy()), last=last)
    for k in (1, 2, 4, 9):
        cols = last >= k
        np.testing.assert_array_equal(short[k][:, cols], full[k][:, cols])
