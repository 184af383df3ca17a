"""FitConfig, the estimator registry and the fit/score protocols on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.core.errors import ConfigError
from pipeline.evaluation.scores import r_pvalue
from pipeline.evaluation.significance import fdr_significant, permutation_pvalues
from pipeline.evaluation.splits import cs431_feature_subset, cs431_splits, holdout_split, index_hash
from pipeline.fit.chunks import prepare
from pipeline.fit.config import CS431_ALPHAS, METHOD_NAMES, FitConfig
from pipeline.fit.methods import METHODS
from pipeline.fit.protocols import run_fit
from pipeline.fit.results import FitResult
from pipeline.models.fwrf_estimator import FwRF
from pipeline.models.pls import PLS2, BatchedPLS
from pipeline.models.ridge import DEFAULT_ALPHAS, KernelRidgeCV


def _planted(n_train=700, n_val=120, p=60, v=30, noise_sd=1.0, seed=0):
    """Y = signal + noise with unit signal variance: ceiling r = 1 / sqrt(1 + noise_sd^2)."""
    rng = np.random.RandomState(seed)
    n = n_train + n_val
    latent = rng.randn(n, 8)
    X = (latent @ rng.randn(8, p) + 0.5 * rng.randn(n, p)).astype(np.float32)
    signal = latent @ rng.randn(8, v)
    signal /= signal.std(axis=0)
    Y = signal + noise_sd * rng.randn(n, v)
    ceiling = 1.0 / np.sqrt(1.0 + noise_sd**2)
    return X[:n_train], X[n_train:], Y[:n_train], Y[n_train:], ceiling


# ------------------------------------------------------------------------------ config
def test_config_defaults_resolve_per_method():
    ridge = FitConfig()
    assert ridge.method == "ridge" and ridge.protocol == "recommended"
    assert ridge.alphas == tuple(DEFAULT_ALPHAS) and ridge.cv == "loo"
    assert ridge.standardize is True and ridge.n_components is None
    assert ridge.test_fraction == pytest.approx(1 / 7)
    pls = FitConfig(method="pls")
    assert pls.n_components == (1, 2, 3, 5, 8, 12, 17, 25) and pls.cv == 5
    assert pls.standardize is False and pls.alphas is None
    old = FitConfig(protocol="cs431")
    assert old.alphas == CS431_ALPHAS and old.standardize is False
    old_pls = FitConfig(method="pls", protocol="cs431")
    assert old_pls.n_components == (25,) and old_pls.cv is None
    # statistics: permutation p-values by default in the recommended protocol only
    assert (ridge.n_permutations, ridge.permutation_seed, ridge.fdr_q) == (1000, 0, 0.05)
    assert FitConfig(seed=3).permutation_seed == 3
    assert FitConfig(seed=3, permutation_seed=9).permutation_seed == 9
    assert old.n_permutations == 0 and old_pls.n_permutations == 0


def test_config_dict_and_key():
    cfg = FitConfig(method="pls", n_components=[5, 1, 2], cv=4, seed=3, target="roi_mean")
    d = cfg.to_dict()
    assert d["n_components"] == [1, 2, 5]
    text = json.dumps(d)  # plain JSON
    back = FitConfig.from_dict(json.loads(text))
    assert back == cfg and back.key() == cfg.key()
    assert len(cfg.key()) == 64
    assert FitConfig().key() == FitConfig(alphas=list(DEFAULT_ALPHAS), cv="loo").key()
    assert FitConfig().key() != FitConfig(seed=1).key()
    assert FitConfig().key() != FitConfig(standardize=False).key()
    assert FitConfig().key() != FitConfig(n_permutations=0).key()
    assert FitConfig().key() == FitConfig(permutation_seed=0).key()
    assert d["n_permutations"] == 1000 and d["permutation_seed"] == 3 and d["fdr_q"] == 0.05
    with pytest.raises(ConfigError, match="unknown"):
        FitConfig.from_dict({"methd": "ridge"})


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"method": "lasso"}, "method"),
        ({"protocol": "kfold"}, "protocol"),
        ({"target": "roi"}, "target"),
        ({"alphas": [1.0, -2.0]}, "alphas"),
        ({"alphas": []}, "alphas"),
        ({"method": "pls", "n_components": [0, 3]}, "n_components"),
        ({"n_components": [3]}, "n_components"),
        ({"method": "pls", "alphas": [1.0]}, "alphas"),
        ({"cv": 1}, "cv"),
        ({"method": "pls", "cv": "loo"}, "cv"),
        ({"method": "pls", "protocol": "cs431", "n_components": [5, 25]}, "n_components"),
        ({"standardize": "yes"}, "standardize"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"seed": -1}, "seed"),
        ({"feature_subset": 100}, "feature_subset"),
        ({"protocol": "cs431", "feature_subset": 0}, "feature_subset"),
        ({"n_splits": 3}, "n_splits"),
        ({"n_permutations": -1}, "n_permutations"),
        ({"n_permutations": 10.5}, "n_permutations"),
        ({"permutation_seed": -2}, "permutation_seed"),
        ({"fdr_q": 1.0}, "fdr_q"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        FitConfig(**kwargs)


def test_methods_registry():
    assert set(METHODS) == {"ridge", "pls", "fwrf"} == set(METHOD_NAMES)
    fw = METHODS["fwrf"](FitConfig(method="fwrf", rf_centres=3))
    assert isinstance(fw, FwRF) and fw.grid.n_centres == 3 and fw.standardize
    est = METHODS["ridge"](FitConfig(seed=4))
    assert isinstance(est, KernelRidgeCV) and est.random_state == 4 and est.standardize
    assert isinstance(METHODS["pls"](FitConfig(method="pls")), BatchedPLS)
    assert isinstance(METHODS["pls"](FitConfig(method="pls", protocol="cs431")), PLS2)
    shared = METHODS["ridge"](FitConfig(protocol="cs431"))
    assert shared.alpha_per_target is False and shared.standardize is False


# ------------------------------------------------------------------------------ protocols
@pytest.mark.parametrize("method", ["ridge", "pls"])
def test_planted_signal_tracks_the_ceiling(method):
    X_tr, X_val, Y_tr, Y_val, ceiling = _planted()
    calls = []
    result = run_fit(
        X_tr, X_val, Y_tr, Y_val, FitConfig(method=method), progress=lambda *a: calls.append(a)
    )
    assert isinstance(result, FitResult)
    test, val = result.split("test"), result.split("validation")
    # 30 voxels with r ~ 0.71: per-voxel sampling sd ~0.05 (n=100 / 120); mean within 0.05
    assert abs(np.mean(test.r) - ceiling) < 0.05
    assert abs(np.mean(val.r) - ceiling) < 0.05
    assert np.all(test.r > ceiling - 0.2)
    np.testing.assert_allclose(test.r2_corr, test.r**2)
    assert np.all(test.r2 <= test.r2_corr + 1e-12)
    assert test.hyper.shape == (30,)
    assert test.hyper_name == ("alpha" if method == "ridge" else "n_components")
    assert calls[-1] == ("done", 4, 4) and calls[0] == ("fit:test", 0, 4)
    stages = {"fit:test", "predict:test", "fit:all", "predict:validation", "total"}
    assert stages <= set(result.timings)
    if method == "ridge":
        assert set(result.n_alpha_at_edge) == {"test", "all"}
        assert all(type(k) is str and type(v) is int for k, v in result.n_alpha_at_edge.items())
    assert result.predictions == {}  # only for single-target fits
    # r ~ 0.71 on 100+ images: every voxel reaches the smallest permutation p
    for split in (test, val):
        assert split.n_permutations == 1000
        np.testing.assert_allclose(split.p, 1 / 1001)
        assert split.significant.dtype == bool and split.significant.all()
    assert {"permutation:test", "permutation:validation"} <= set(result.timings)
    assert result.summary()[0]["n_significant"] == 30


def test_pure_noise_is_at_chance():
    rng = np.random.RandomState(1)
    X = rng.randn(350, 40).astype(np.float32)
    Y = rng.randn(350, 400)
    result = run_fit(X, None, Y, None, FitConfig(seed=2))
    assert [s.name for s in result.splits] == ["test"]
    test = result.split("test")
    assert test.n_test == 50 and test.n_train == 300
    assert abs(np.nanmean(test.r)) < 0.03
    share = np.mean(r_pvalue(test.r, test.n_test) < 0.05)
    assert 0.02 <= share <= 0.09
    assert np.nanmedian(test.r2) < 0  # no skill on held-out data
    assert result.n_alpha_at_edge["test"] > 100  # many noise voxels pick the largest alpha
    # permutation p-values: about 5% below .05 (binomial sd 1.1%), no FDR discoveries
    assert 0.02 <= np.mean(test.p < 0.05) <= 0.09
    assert test.significant.sum() == 0


def test_split_indices_are_exact_and_recorded():
    X_tr, X_val, Y_tr, Y_val, _ = _planted(n_train=210, p=20, v=3)
    result = run_fit(X_tr, X_val, Y_tr, Y_val, FitConfig(seed=5, test_fraction=0.2))
    train, test = holdout_split(210, 0.2, 5)
    s = result.split("test")
    np.testing.assert_array_equal(s.test_indices, test)
    assert s.test_hash == index_hash(test) and s.train_indices_hash == index_hash(train)
    assert (s.n_train, s.n_test) == (168, 42)
    v = result.split("validation")
    assert v.test_indices is None and v.test_hash is None
    assert (v.n_train, v.n_test) == (210, 120)
    assert v.train_indices_hash == index_hash(np.arange(210))


def test_roi_mean_target():
    X_tr, X_val, Y_tr, Y_val, _ = _planted(n_train=280, p=30, v=12)
    result = run_fit(X_tr, X_val, Y_tr, Y_val, FitConfig(method="pls", target="roi_mean"))
    assert all(s.r.shape == (1,) for s in result.splits)
    y_true, y_pred = result.predictions["test"]
    test = result.split("test").test_indices
    np.testing.assert_allclose(y_true, Y_tr[test].mean(axis=1))
    assert y_pred.shape == (40,)
    assert result.split("test").r[0] == pytest.approx(np.corrcoef(y_true, y_pred)[0, 1])
    y_true_val, _ = result.predictions["validation"]
    np.testing.assert_allclose(y_true_val, Y_val.mean(axis=1))
    assert result.split("validation").r[0] > 0.6  # averaging voxels averages the noise away
    # the stored p is the permutation test of these predictions with the config's seed
    s = result.split("test")
    assert s.p[0] == pytest.approx(permutation_pvalues(y_true, y_pred, 1000, seed=0))
    np.testing.assert_array_equal(s.significant, fdr_significant(s.p))


def test_cs431_protocol_ridge_and_pls_subset():
    X_tr, X_val, Y_tr, Y_val, _ = _planted(n_train=140, p=50, v=5)
    ridge = run_fit(X_tr, X_val, Y_tr, Y_val, FitConfig(protocol="cs431", n_splits=2))
    names = [s.name for s in ridge.splits]
    assert names == [
        "train0", "test0", "validation0", "train1", "test1", "validation1", "validation"
    ]
    splits, rng = cs431_splits(140, 20, 2, 0)
    np.testing.assert_array_equal(ridge.split("test1").test_indices, splits[1][1])
    np.testing.assert_array_equal(ridge.split("train0").test_indices, splits[0][0])
    for s in ridge.splits:
        assert np.unique(s.hyper).size == 1  # one alpha shared by all voxels
        assert s.hyper[0] in CS431_ALPHAS
        assert s.p is None and s.significant is None and s.n_permutations == 0
    with_p = run_fit(X_tr, X_val, Y_tr, Y_val,
                     FitConfig(protocol="cs431", n_splits=1, n_permutations=20, seed=1))
    assert with_p.split("train0").p is None  # in-sample: no permutation test
    assert with_p.split("test0").p.shape == (5,) and with_p.split("validation").p.shape == (5,)
    assert with_p.split("test0").n_permutations == 20
    pls = run_fit(
        X_tr, X_val, Y_tr, Y_val,
        FitConfig(method="pls", protocol="cs431", n_components=3, n_splits=2, feature_subset=20),
    )
    np.testing.assert_array_equal(pls.feature_subset, cs431_feature_subset(rng, 50, 20))
    assert pls.n_features == 20 and pls.n_alpha_at_edge == {}
    assert np.all(pls.split("validation").hyper == 3)
    assert np.mean(pls.split("train0").r) > np.mean(pls.split("test0").r) - 0.05
    rows = pls.summary()
    assert rows[0]["name"] == "train0" and rows[0]["n_targets"] == 5


def test_run_fit_input_errors():
    X_tr, X_val, Y_tr, Y_val, _ = _planted(n_train=100, p=10, v=2)
    with pytest.raises(ConfigError, match="Y_train"):
        run_fit(X_tr, X_val, Y_tr[:50], Y_val, FitConfig())
    bad = Y_tr.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        run_fit(X_tr, X_val, bad, Y_val, FitConfig())
    with pytest.raises(ConfigError, match="X_val"):
        run_fit(X_tr, X_val[:, :5], Y_tr, Y_val, FitConfig())
    with pytest.raises(ConfigError, match="together"):
        run_fit(X_tr, X_val, Y_tr, None, FitConfig())
    with pytest.raises(ConfigError, match="config"):
        run_fit(X_tr, X_val, Y_tr, Y_val, {"method": "ridge"})
    # non-finite features: one error naming the array, image row and feature column, for
    # every protocol (the cs431 path hands X to scikit-learn) and for the chunked path
    X_nan = X_tr.copy()
    X_nan[7, 4] = np.nan
    for config in (FitConfig(), FitConfig(protocol="cs431", n_splits=2)):
        with pytest.raises(ConfigError, match=r"X_train contains NaN .*row 7, feature column 4"):
            run_fit(X_nan, X_val, Y_tr, Y_val, config)
    X_inf = X_val.copy()
    X_inf[2, 9] = -np.inf
    with pytest.raises(ConfigError, match=r"X_val contains NaN .*row 2, feature column 9"):
        run_fit(X_tr, X_inf, Y_tr, Y_val, FitConfig())
    with pytest.raises(ConfigError, match=r"X_train contains NaN"):
        prepare(X_nan, X_val, FitConfig())
