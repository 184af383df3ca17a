"""KernelRidgeCV against scikit-learn on small problems, plus planted-signal recovery."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.preprocessing import StandardScaler

from pipeline.core.errors import ConfigError
from pipeline.evaluation.splits import kfold_splits
from pipeline.models.kernels import FeatureScaler, centred_eigh, fit_kernel, linear_kernel
from pipeline.models.ridge import DEFAULT_ALPHAS, KernelRidgeCV

ALPHAS = np.logspace(-2, 4, 13)


def _problem(n, p, v, seed=0, noise=2.0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, p) * rng.uniform(0.5, 3.0, p) + rng.uniform(-2, 2, p)
    W = rng.randn(p, v) * rng.uniform(0.0, 0.5, v)
    Y = X @ W + noise * rng.randn(n, v) + rng.uniform(-5, 5, v)
    X_new = rng.randn(20, p) * 2 + 1
    return X, Y, X_new


def _per_voxel_ridge(Xs, Y, Xs_new, alphas, fit_intercept=True):
    return np.column_stack(
        [
            Ridge(alpha=a, fit_intercept=fit_intercept).fit(Xs, Y[:, j]).predict(Xs_new)
            for j, a in enumerate(alphas)
        ]
    )


@pytest.mark.parametrize("n,p", [(60, 150), (90, 30)])
def test_loo_matches_sklearn_ridgecv(n, p):
    X, Y, X_new = _problem(n, p, 8)
    model = KernelRidgeCV(alphas=ALPHAS).fit(X, Y)
    Xs = StandardScaler().fit_transform(X)
    ref = RidgeCV(alphas=ALPHAS, alpha_per_target=True, store_cv_results=True).fit(Xs, Y)
    # identical LOO error curves (same centred problem, exact LOO both ways)
    ref_err = ref.cv_results_.mean(axis=0).T  # (n_alphas, v)
    np.testing.assert_allclose(model.cv_errors_, ref_err, rtol=1e-8)
    np.testing.assert_array_equal(model.alpha_, ref.alpha_)
    assert model.cv_errors_.shape == (ALPHAS.size, 8)


def test_predictions_match_ridge_per_voxel_float64():
    X, Y, X_new = _problem(70, 120, 6, seed=1)
    model = KernelRidgeCV(alphas=ALPHAS).fit(X, Y)
    scaler = StandardScaler().fit(X)
    expected = _per_voxel_ridge(
        scaler.transform(X), Y, scaler.transform(X_new), np.atleast_1d(model.alpha_)
    )
    pred = model.predict(X_new)
    scale = np.abs(expected - Y.mean(axis=0)).max(axis=0)
    assert np.max(np.abs(pred - expected) / scale) < 1e-9


def test_predictions_match_ridge_per_voxel_float32():
    X, Y, X_new = _problem(80, 200, 5, seed=2)
    X32, X_new32 = X.astype(np.float32), X_new.astype(np.float32)
    model = KernelRidgeCV(alphas=ALPHAS).fit(X32, Y)
    scaler = StandardScaler().fit(X32.astype(np.float64))
    expected = _per_voxel_ridge(
        scaler.transform(X32.astype(np.float64)),
        Y,
        scaler.transform(X_new32.astype(np.float64)),
        model.alpha_,
    )
    pred = model.predict(X_new32)
    scale = np.abs(expected - Y.mean(axis=0)).max(axis=0)
    assert np.max(np.abs(pred - expected) / scale) < 1e-4


def test_float32_loo_matches_sklearn_at_1e4():
    # float32 features: the LOO products run in float32 (the speed-up); errors, chosen
    # alphas and predictions still match scikit-learn on the float64 copy.
    rng = np.random.RandomState(11)
    n, p, v = 120, 300, 16
    latent = rng.randn(n + 20, 6)
    X = (latent @ rng.randn(6, p) + rng.randn(n + 20, p)).astype(np.float32)
    Y = latent[:n] @ rng.randn(6, v) * (np.arange(v) < 8) + rng.randn(n, v)  # 8 noise targets
    model = KernelRidgeCV().fit(X[:n], Y)
    scaler = StandardScaler().fit(X[:n].astype(np.float64))
    ref = RidgeCV(alphas=DEFAULT_ALPHAS, alpha_per_target=True, store_cv_results=True).fit(
        scaler.transform(X[:n].astype(np.float64)), Y
    )
    np.testing.assert_allclose(model.cv_errors_, ref.cv_results_.mean(axis=0).T, rtol=1e-4)
    np.testing.assert_array_equal(model.alpha_, ref.alpha_)
    expected = ref.predict(scaler.transform(X[n:].astype(np.float64)))
    np.testing.assert_allclose(model.predict(X[n:]), expected, rtol=1e-4, atol=1e-4)
    # the flat top of the noise targets' error curves is still resolved: same edge
    # count (and alphas) as the float64 computation
    model64 = KernelRidgeCV().fit(X[:n].astype(np.float64), Y)
    np.testing.assert_array_equal(model.alpha_, model64.alpha_)
    assert model.n_alpha_at_edge_ == model64.n_alpha_at_edge_ >= 1


def test_no_intercept_and_no_standardize_match_sklearn():
    X, Y, X_new = _problem(50, 80, 4, seed=3)
    model = KernelRidgeCV(alphas=ALPHAS, standardize=False, fit_intercept=False).fit(X, Y)
    ref = RidgeCV(alphas=ALPHAS, alpha_per_target=True, fit_intercept=False).fit(X, Y)
    np.testing.assert_array_equal(model.alpha_, ref.alpha_)
    np.testing.assert_allclose(model.predict(X_new), ref.predict(X_new), rtol=1e-8, atol=1e-8)


def test_shared_alpha_matches_sklearn_default():
    X, Y, X_new = _problem(60, 100, 6, seed=4)
    alphas = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]
    model = KernelRidgeCV(alphas=alphas, standardize=False, alpha_per_target=False).fit(X, Y)
    ref = RidgeCV(alphas=alphas).fit(X, Y)
    assert np.all(model.alpha_ == ref.alpha_)
    np.testing.assert_allclose(model.predict(X_new), ref.predict(X_new), rtol=1e-8, atol=1e-8)


def test_kfold_matches_manual_loop():
    X, Y, _ = _problem(64, 90, 5, seed=5)
    model = KernelRidgeCV(alphas=ALPHAS, cv=4, random_state=3).fit(X, Y)
    Xs = StandardScaler().fit_transform(X)  # scale from all training data, as documented
    errors = np.zeros((ALPHAS.size, Y.shape[1]))
    for train, test in kfold_splits(64, 4, 3):
        for i, a in enumerate(ALPHAS):
            pred = Ridge(alpha=a).fit(Xs[train], Y[train]).predict(Xs[test])
            errors[i] += np.sum((Y[test] - pred) ** 2, axis=0)
    errors /= 64
    np.testing.assert_allclose(model.cv_errors_, errors, rtol=1e-8)
    np.testing.assert_array_equal(model.alpha_, ALPHAS[np.argmin(errors, axis=0)])
    # the final model is the full-data ridge at the chosen alphas
    expected = _per_voxel_ridge(Xs, Y, Xs[:7], model.alpha_)
    np.testing.assert_allclose(model.predict(X[:7]), expected, rtol=1e-8, atol=1e-8)


def _manual_kfold_errors(Xs, Y, alphas, n_folds, seed, fit_intercept=True):
    errors = np.zeros((len(alphas), Y.shape[1]))
    for train, test in kfold_splits(Xs.shape[0], n_folds, seed):
        for i, a in enumerate(alphas):
            ridge = Ridge(alpha=a, fit_intercept=fit_intercept).fit(Xs[train], Y[train])
            errors[i] += np.sum((Y[test] - ridge.predict(Xs[test])) ** 2, axis=0)
    return errors / Xs.shape[0]


def test_kfold_without_intercept_matches_manual_loop():
    X, Y, X_new = _problem(48, 70, 4, seed=12)
    model = KernelRidgeCV(alphas=ALPHAS, cv=3, standardize=False, fit_intercept=False).fit(X, Y)
    errors = _manual_kfold_errors(X, Y, ALPHAS, 3, 0, fit_intercept=False)
    np.testing.assert_allclose(model.cv_errors_, errors, rtol=1e-8)
    np.testing.assert_array_equal(model.alpha_, ALPHAS[np.argmin(errors, axis=0)])
    expected = _per_voxel_ridge(X, Y, X_new, model.alpha_, fit_intercept=False)
    np.testing.assert_allclose(model.predict(X_new), expected, rtol=1e-8, atol=1e-8)


def test_float32_kfold_matches_float64_reference_at_1e4():
    # float32 features: each fold's eigendecomposition and the per-alpha products run in
    # float32 (the final model's decomposition stays float64). CV errors match the
    # float64 reference loop to 1e-4, the alphas exactly, including the flat tops of the
    # noise targets' curves.
    rng = np.random.RandomState(13)
    n, p, v = 150, 400, 14
    latent = rng.randn(n + 20, 6)
    X = (latent @ rng.randn(6, p) + rng.randn(n + 20, p) + 3.0).astype(np.float32)
    Y = latent[:n] @ rng.randn(6, v) * (np.arange(v) < 8) + rng.randn(n, v)  # 6 noise targets
    model = KernelRidgeCV(cv=5, random_state=2).fit(X[:n], Y)
    X64 = X.astype(np.float64)
    scaler = StandardScaler().fit(X64[:n])
    errors = _manual_kfold_errors(scaler.transform(X64[:n]), Y, DEFAULT_ALPHAS, 5, 2)
    np.testing.assert_allclose(model.cv_errors_, errors, rtol=1e-4)
    np.testing.assert_array_equal(model.alpha_, DEFAULT_ALPHAS[np.argmin(errors, axis=0)])
    model64 = KernelRidgeCV(cv=5, random_state=2).fit(X64[:n], Y)
    np.testing.assert_array_equal(model.alpha_, model64.alpha_)
    assert model.n_alpha_at_edge_ == model64.n_alpha_at_edge_ >= 1
    expected = _per_voxel_ridge(scaler.transform(X64[:n]), Y, scaler.transform(X64[n:]),
                                model.alpha_)
    np.testing.assert_allclose(model.predict(X[n:]), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("standardize,center", [(True, True), (True, False), (False, True)])
def test_fit_kernel_is_the_two_pass_kernel(dtype, standardize, center):
    rng = np.random.RandomState(14)
    X = (rng.randn(30, 9000) * rng.uniform(0.5, 3.0, 9000) + 100.0).astype(dtype)
    X[:, 17] = 2.5  # constant
    K, scaler = fit_kernel(X, standardize, center)
    ref_scaler = FeatureScaler(X, standardize, center)
    np.testing.assert_array_equal(K, linear_kernel(X, ref_scaler))  # one pass, same bits
    np.testing.assert_array_equal(scaler.mean, ref_scaler.mean)
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(scaler.mean, X64.mean(axis=0) if center else 0.0, rtol=1e-12)
    if standardize:
        sd = X64.std(axis=0)
        assert scaler.inv_scale[17] == 0.0 and np.isinf(scaler.std()[17])
        keep = np.arange(9000) != 17
        # float64 statistics of the stored values, even for float32 input with a large mean
        np.testing.assert_allclose(scaler.inv_scale[keep], 1.0 / sd[keep], rtol=1e-9)
    else:
        assert scaler.inv_scale is None
    Xs = (X64 - (X64.mean(axis=0) if center else 0.0)) * (
        scaler.inv_scale if standardize else 1.0)
    tol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(K, Xs @ Xs.T, rtol=tol, atol=tol * np.abs(K).max())


def test_centred_eigh_in_float32_is_float32_accurate():
    rng = np.random.RandomState(15)
    A = rng.randn(200, 60) * np.logspace(0, 2, 60)
    K = A @ A.T
    s32, U32 = centred_eigh(K, dtype=np.float32)
    s64, U64 = centred_eigh(K)
    assert U32.dtype == np.float64 and U32.shape == (200, 199)
    # orthogonal to the constant to float64 precision whatever the precision of eigh
    np.testing.assert_allclose(U32.sum(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(U32.T @ U32, np.eye(199), atol=1e-5)
    np.testing.assert_allclose(s32, s64, atol=1e-5 * s64.max())
    # same operator: U diag(s) U^T reproduces the centred kernel to float32 precision
    Kc = K - K.mean(axis=0) - K.mean(axis=1)[:, None] + K.mean()
    np.testing.assert_allclose((U32 * s32) @ U32.T, Kc, atol=1e-5 * s64.max())


def test_chunking_gives_identical_results():
    X, Y, X_new = _problem(40, 60, 7, seed=6)
    a = KernelRidgeCV(alphas=ALPHAS).fit(X, Y)
    b = KernelRidgeCV(alphas=ALPHAS, chunk_size=3, n_threads=None).fit(X, Y)
    np.testing.assert_array_equal(a.alpha_, b.alpha_)
    np.testing.assert_allclose(a.predict(X_new), b.predict(X_new), rtol=1e-12)


def test_planted_signal_recovery():
    # correlated features (10 latent factors spread over 600 features), as deep features are
    rng = np.random.RandomState(7)
    n, n_new, p, v = 300, 300, 600, 12
    latent = rng.randn(n + n_new, 10)
    X = (latent @ rng.randn(10, p) + rng.randn(n + n_new, p)).astype(np.float32)
    signal = latent @ rng.randn(10, v)
    signal /= signal.std(axis=0)
    Y = signal + 0.5 * rng.randn(n + n_new, v)  # ceiling r = 1 / sqrt(1 + 0.25) = 0.894
    Y[:, -3:] = rng.randn(n + n_new, 3)  # three pure-noise targets
    model = KernelRidgeCV().fit(X[:n], Y[:n])
    pred = model.predict(X[n:])
    r = np.array([np.corrcoef(pred[:, j], Y[n:, j])[0, 1] for j in range(v)])
    ceiling = 1 / np.sqrt(1.25)
    assert np.all(np.abs(r[:-3] - ceiling) < 0.06), r
    assert np.all(np.abs(r[-3:]) < 0.2), r
    # the noise targets get (much) more shrinkage than the signal targets
    assert np.min(model.alpha_[-3:]) > np.max(model.alpha_[:-3])
    assert model.n_alpha_at_edge_ >= 1  # a noise target sits at the top of the grid
    np.testing.assert_array_equal(model.alphas_, DEFAULT_ALPHAS)


def test_coef_intercept_and_constant_feature():
    X, Y, X_new = _problem(40, 30, 3, seed=8)
    X[:, 5] = 7.25  # zero variance
    X_new[:, 5] = -3.0
    model = KernelRidgeCV(alphas=ALPHAS).fit(X, Y)
    assert model.coef_.shape == (3, 30)
    assert np.all(model.coef_[:, 5] == 0.0)
    assert np.isinf(model.X_scale_[5])
    np.testing.assert_allclose(
        X_new @ model.coef_.T + model.intercept_, model.predict(X_new), rtol=1e-9, atol=1e-9
    )
    assert np.all(np.isfinite(model.predict(X_new)))


def test_one_dimensional_target():
    X, Y, X_new = _problem(30, 20, 1, seed=9)
    model = KernelRidgeCV(alphas=ALPHAS).fit(X, Y[:, 0])
    assert isinstance(model.alpha_, float)
    assert model.predict(X_new).shape == (20,)
    assert model.coef_.shape == (20,)
    assert np.isscalar(model.intercept_)


def test_centred_eigh_is_orthogonal_to_constant():
    rng = np.random.RandomState(10)
    A = rng.randn(25, 8)
    s, U = centred_eigh(A @ A.T)
    assert U.shape == (25, 24)
    np.testing.assert_allclose(U.T @ U, np.eye(24), atol=1e-12)
    np.testing.assert_allclose(U.sum(axis=0), 0, atol=1e-12)
    Ac = A - A.mean(axis=0)
    expected = np.sort(np.linalg.eigvalsh(Ac @ Ac.T))[-8:]
    np.testing.assert_allclose(np.sort(s)[-8:], expected, rtol=1e-10)


def test_errors_and_sklearn_contract():
    X, Y, _ = _problem(20, 10, 2)
    with pytest.raises(ConfigError, match="alphas"):
        KernelRidgeCV(alphas=[1.0, -1.0]).fit(X, Y)
    with pytest.raises(ConfigError, match="cv"):
        KernelRidgeCV(cv=1).fit(X, Y)
    with pytest.raises(ConfigError, match="y"):
        KernelRidgeCV().fit(X, Y[:5])
    Y_nan = Y.copy()
    Y_nan[0, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        KernelRidgeCV().fit(X, Y_nan)
    with pytest.raises(NotFittedError):
        KernelRidgeCV().predict(X)
    est = KernelRidgeCV(alphas=(1.0, 2.0), cv=3)
    assert clone(est).get_params()["cv"] == 3
    assert not hasattr(KernelRidgeCV(), "coef_")
    fitted = est.fit(X, Y)
    with pytest.raises(ConfigError, match="shape"):
        fitted.predict(X[:, :4])


@pytest.mark.parametrize("cv", ["loo", 3])
def test_non_finite_features_give_one_clear_error(cv):
    X, Y, _ = _problem(30, 5000, 2, seed=16)
    X_bad = X.astype(np.float32)
    X_bad[4, 4321] = np.nan  # in the second feature block
    with pytest.raises(ConfigError, match="NaN or infinite values .*feature column 4321"):
        KernelRidgeCV(alphas=ALPHAS, cv=cv).fit(X_bad, Y)
    model = KernelRidgeCV(alphas=ALPHAS, cv=cv).fit(X, Y)
    X_new = X[:6].copy()
    X_new[2, 7] = np.inf
    with pytest.raises(ConfigError, match="new X contains NaN or infinite values .*row 2"):
        model.predict(X_new)
