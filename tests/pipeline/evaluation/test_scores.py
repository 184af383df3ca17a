"""Column-wise scores, chance level and significance thresholds."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import r2_score as sk_r2_score

from pipeline.core.errors import ConfigError
from pipeline.evaluation.scores import (
    SCORES,
    chance_r2_corr,
    pearson_r,
    r2_corr,
    r2_score,
    r_pvalue,
    r_threshold,
)


def _data(n=50, v=6, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randn(n, v) * 3 + 1
    pred = 0.5 * y + rng.randn(n, v)
    return y, pred


def test_pearson_matches_corrcoef():
    y, pred = _data()
    r = pearson_r(y, pred)
    expected = [np.corrcoef(y[:, j], pred[:, j])[0, 1] for j in range(y.shape[1])]
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    np.testing.assert_allclose(r2_corr(y, pred), np.square(expected), rtol=1e-12)
    assert isinstance(pearson_r(y[:, 0], pred[:, 0]), float)
    assert pearson_r(y[:, 0], 2 * y[:, 0] + 1) == pytest.approx(1.0)
    assert pearson_r(y[:, 0], -y[:, 0]) == pytest.approx(-1.0)


def test_r2_score_matches_sklearn_per_column():
    y, pred = _data(seed=1)
    expected = sk_r2_score(y, pred, multioutput="raw_values")
    np.testing.assert_allclose(r2_score(y, pred), expected, rtol=1e-12)
    # SS_tot is around the mean of y_true on the scored set: predicting that mean gives 0
    assert r2_score(y[:, 0], np.full(50, y[:, 0].mean())) == pytest.approx(0.0, abs=1e-12)
    assert r2_score(y[:, 0], y[:, 0] + 100.0) < -100  # can be very negative


def test_constant_columns_give_nan_without_warnings():
    y, pred = _data(seed=2)
    y[:, 1] = 0.3  # constant truth
    pred[:, 2] = 4.0  # constant prediction
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = pearson_r(y, pred)
        r2 = r2_score(y, pred)
        rc = r2_corr(y, pred)
    assert np.isnan(r[1]) and np.isnan(r[2])
    assert np.isnan(rc[1]) and np.isnan(rc[2])
    assert np.isnan(r2[1]) and np.isfinite(r2[2])
    assert np.all(np.isfinite(np.delete(r, [1, 2])))


def test_chance_and_thresholds():
    assert chance_r2_corr(250) == pytest.approx(0.0040, abs=5e-5)
    assert chance_r2_corr(120) == pytest.approx(0.0084, abs=5e-5)
    assert round(r_threshold(120, 0.05), 3) == 0.151
    assert round(r_threshold(120, 0.01), 3) == 0.212
    assert round(r_threshold(120, 0.001), 3) == 0.279
    assert round(r_threshold(120, 0.05 / 1535), 3) == 0.356
    assert r_pvalue(r_threshold(120, 0.05), 120) == pytest.approx(0.05, rel=1e-9)
    np.testing.assert_allclose(r_pvalue(np.array([0.0, 0.279]), 120), [0.5, 0.001], atol=2e-5)


def test_chance_level_under_no_signal():
    rng = np.random.RandomState(3)
    r = pearson_r(rng.randn(120, 4000), rng.randn(120, 4000))
    assert np.mean(r * r) == pytest.approx(chance_r2_corr(120), rel=0.06)
    assert np.mean(r > r_threshold(120, 0.05)) == pytest.approx(0.05, abs=0.01)


def test_registry_and_errors():
    assert set(SCORES) == {"r", "r2_corr", "r2"}
    y, pred = _data(seed=4)
    for name, fn in SCORES.items():
        assert fn(y, pred).shape == (6,), name
    with pytest.raises(ConfigError, match="shape"):
        pearson_r(y, pred[:, :3])
    with pytest.raises(ConfigError):
        r_threshold(2)
    with pytest.raises(ConfigError):
        r_threshold(120, 1.5)
    with pytest.raises(ConfigError):
        chance_r2_corr(1)
