"""Permutation p-values, BH FDR, bootstrap CIs, paired comparisons and noise ceilings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sp_stats

from pipeline.core.errors import ConfigError
from pipeline.evaluation.ceiling import NO_CEILING, ceiling_from_ncsnr, ncsnr, noise_ceiling
from pipeline.evaluation.intervals import bootstrap_ci, paired_comparison, roi_summary
from pipeline.evaluation.significance import (
    bh_adjust,
    fdr_significant,
    permutation_matrix,
    permutation_pvalues,
)


def _correlated(n, v, strengths, seed=0):
    """y_true (n, v) and y_pred (n, v) with column j correlated at about strengths[j]."""
    rng = np.random.RandomState(seed)
    y = rng.randn(n, v) * 2.0 + 5.0
    s = np.asarray(strengths, dtype=float)
    pred = s * (y - 5.0) / 2.0 + np.sqrt(1.0 - s**2) * rng.randn(n, v)
    return y, pred


# ------------------------------------------------------------------------------ permutations
def test_permutation_matrix_is_seeded_randomstate():
    P = permutation_matrix(30, 5, seed=3)
    assert P.shape == (5, 30)
    rng = np.random.RandomState(3)
    for row in P:
        np.testing.assert_array_equal(row, rng.permutation(30))
    np.testing.assert_array_equal(P, permutation_matrix(30, 5, seed=3))
    assert not np.array_equal(P, permutation_matrix(30, 5, seed=4))
    with pytest.raises(ConfigError, match="n_permutations"):
        permutation_matrix(30, 0)


def test_permutation_p_is_exact_count_of_the_shared_permutations():
    y, pred = _correlated(25, 6, [0.0, 0.1, 0.3, 0.5, -0.4, 0.9], seed=1)
    perms = permutation_matrix(25, 200, seed=7)
    p, null = permutation_pvalues(y, pred, permutations=perms, return_null=True)
    assert null.shape == (200, 6) and null.dtype == np.float32
    for j in range(6):
        r = np.corrcoef(y[:, j], pred[:, j])[0, 1]
        r_perm = np.array([np.corrcoef(y[perm, j], pred[:, j])[0, 1] for perm in perms])
        np.testing.assert_allclose(null[:, j], r_perm, atol=2e-6)
        assert p[j] == pytest.approx((1 + np.sum(r_perm >= r - 1e-9)) / 201)
    # the seed form uses permutation_matrix(n, n_permutations, seed)
    np.testing.assert_array_equal(permutation_pvalues(y, pred, 200, seed=7), p)
    # chunking does not change anything
    np.testing.assert_array_equal(permutation_pvalues(y, pred, 200, seed=7, chunk_size=4), p)


def test_permutation_p_agrees_with_pearsonr_for_many_permutations():
    # 5000 permutations: the Monte-Carlo sd of p is at most sqrt(.25 / 5000) = 0.007, so
    # 0.03 is > 4 sd; the t-test p of normal data is exact, so the two must agree.
    strengths = np.linspace(-0.2, 0.45, 30)
    y, pred = _correlated(60, 30, strengths, seed=2)
    p = permutation_pvalues(y, pred, 5000, seed=0)
    expected = [sp_stats.pearsonr(y[:, j], pred[:, j], alternative="greater").pvalue
                for j in range(30)]
    np.testing.assert_allclose(p, expected, atol=0.03)
    p2 = permutation_pvalues(y, pred, 5000, seed=0, alternative="two-sided")
    expected2 = [sp_stats.pearsonr(y[:, j], pred[:, j]).pvalue for j in range(30)]
    np.testing.assert_allclose(p2, expected2, atol=0.03)


def test_permutation_edge_cases():
    y, pred = _correlated(40, 3, [0.2, 0.2, 0.2], seed=3)
    pred[:, 1] = 2.0  # constant prediction: r undefined
    pred[:, 2] = 3 * y[:, 2] + 1  # perfect: the smallest possible p
    p = permutation_pvalues(y, pred, 99)
    assert np.isnan(p[1]) and p[2] == pytest.approx(1 / 100)
    assert 1 / 100 <= p[0] <= 1
    assert isinstance(permutation_pvalues(y[:, 0], pred[:, 0], 10), float)
    with pytest.raises(ConfigError, match="shape"):
        permutation_pvalues(y, pred[:, :2])
    with pytest.raises(ConfigError, match="permutation"):
        permutation_pvalues(y, pred, permutations=np.zeros((3, 40), dtype=int))
    with pytest.raises(ConfigError, match="alternative"):
        permutation_pvalues(y, pred, 10, alternative="less")


def test_no_signal_p_uniform_and_bh_finds_nothing():
    # Global null, 1000 voxels: the p < .05 share is 5% (binomial sd 0.7%); BH at
    # q = .05 rejects anything only with probability <= 5% (and here nothing).
    y, pred = _correlated(50, 1000, np.zeros(1000), seed=4)
    p = permutation_pvalues(y, pred, 1000, seed=1)
    assert np.mean(p < 0.05) == pytest.approx(0.05, abs=0.02)
    assert abs(np.mean(p) - 0.5) < 0.03
    assert fdr_significant(p).sum() == 0


def test_bh_controls_false_discoveries_with_planted_signal():
    # 100 strong voxels among 900 null ones: BH finds the strong ones and the share of
    # null voxels among its discoveries stays near (below) q.
    strengths = np.r_[np.full(100, 0.7), np.zeros(900)]
    y, pred = _correlated(60, 1000, strengths, seed=5)
    sig = fdr_significant(permutation_pvalues(y, pred, 1000, seed=2), q=0.05)
    assert sig[:100].mean() > 0.95
    assert sig[100:].sum() / max(sig.sum(), 1) < 0.1


# ------------------------------------------------------------------------------ BH
def _bh_manual(p, q):
    """Step-up rule written out as in Benjamini & Hochberg (1995)."""
    m = len(p)
    order = np.argsort(p)
    below = [i + 1 for i in range(m) if p[order[i]] <= (i + 1) * q / m]
    k = max(below) if below else 0
    out = np.zeros(m, dtype=bool)
    out[order[:k]] = True
    adjusted = np.empty(m)
    ranked = np.minimum.accumulate((np.asarray(p)[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    adjusted[order] = np.minimum(ranked, 1.0)
    return out, adjusted


def test_bh_on_a_known_vector():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2, 0.5])
    # sorted 0.005, 0.01, 0.03, 0.04, 0.2, 0.5 vs k q / 6 = .0083 .0167 .025 .033 .042 .05
    np.testing.assert_array_equal(fdr_significant(p, 0.05), [True, False, False, True, False,
                                                              False])
    np.testing.assert_allclose(bh_adjust(p), [0.03, 0.06, 0.06, 0.03, 0.24, 0.5])


def test_bh_matches_manual_step_up_and_ignores_nan():
    rng = np.random.RandomState(6)
    p = np.r_[rng.uniform(0, 0.002, 30), rng.uniform(0, 1, 300)]
    for q in (0.01, 0.05, 0.2):
        sig, adjusted = _bh_manual(p, q)
        np.testing.assert_array_equal(fdr_significant(p, q), sig)
        np.testing.assert_allclose(bh_adjust(p), adjusted, rtol=1e-12)
    with_nan = np.r_[p, np.nan, np.nan]
    np.testing.assert_array_equal(fdr_significant(with_nan)[:-2], fdr_significant(p))
    assert not fdr_significant(with_nan)[-2:].any() and np.isnan(bh_adjust(with_nan)[-1])
    assert fdr_significant(np.array([np.nan])).tolist() == [False]
    with pytest.raises(ConfigError, match="q"):
        fdr_significant(p, 1.5)
    with pytest.raises(ConfigError):
        bh_adjust(np.array([0.5, 1.2]))


# ------------------------------------------------------------------------------ bootstrap
def test_bootstrap_ci_covers_the_true_value_at_the_nominal_rate():
    # 400 data sets of 40 normal values: the 95% percentile intervals of the mean and of
    # the median should cover the true centre about 95% of the time (percentile
    # intervals under-cover slightly at n = 40); binomial sd 1.1%.
    rng = np.random.RandomState(7)
    hits = {"mean": 0, "median": 0}
    for i in range(400):
        x = 0.3 + rng.randn(40)
        for stat in hits:
            ci = bootstrap_ci(x, stat, n_boot=500, seed=i)
            hits[stat] += ci.low <= 0.3 <= ci.high
    assert 0.90 <= hits["mean"] / 400 <= 0.985
    assert 0.90 <= hits["median"] / 400 <= 0.99


def test_bootstrap_ci_details_and_roi_summary():
    x = np.r_[np.arange(10.0), np.nan]
    ci = bootstrap_ci(x, "mean", n_boot=300, seed=1)
    assert ci.estimate == pytest.approx(4.5) and ci.n == 10 and ci.low < 4.5 < ci.high
    assert ci == bootstrap_ci(x, "mean", n_boot=300, seed=1)  # seeded
    assert bootstrap_ci(x, np.mean, n_boot=300, seed=1) == ci
    empty = bootstrap_ci([np.nan], "median").to_dict()
    assert empty["estimate"] is None and empty["n"] == 0
    values = np.r_[np.full(5, 0.5), np.full(4, 0.1), np.nan]
    rois = np.array(["V4"] * 5 + ["V1"] * 4 + ["V4"])
    out = roi_summary(values, rois, n_boot=200)
    assert list(out) == ["V1", "V4"]
    assert out["V4"]["n"] == 6 and out["V4"]["n_finite"] == 5
    assert out["V4"]["median"] == out["V4"]["median_low"] == out["V4"]["median_high"] == 0.5
    assert out["V1"]["mean"] == pytest.approx(0.1)
    assert set(roi_summary(values, n_boot=10)) == {"all"}
    with pytest.raises(ConfigError, match="statistic"):
        bootstrap_ci(x, "mode")
    with pytest.raises(ConfigError, match="rois"):
        roi_summary(values, rois[:3])


# ------------------------------------------------------------------------------ paired
def test_paired_comparison():
    rng = np.random.RandomState(8)
    b = rng.uniform(0, 0.5, 300)
    a = b + 0.05 + 0.05 * rng.randn(300)
    a[0] = np.nan  # dropped as a pair
    res = paired_comparison(a, b, n_boot=1000, seed=0)
    d = (a - b)[1:]
    assert res.n == 299
    assert res.median_diff == pytest.approx(np.median(d))
    assert 0 < res.median_diff_low < 0.05 < res.median_diff_high < 0.1
    w = sp_stats.wilcoxon(d)
    assert res.wilcoxon_p == pytest.approx(w.pvalue) and res.wilcoxon_p < 1e-10
    assert res.share_a_greater == pytest.approx(np.mean(d > 0))
    same = paired_comparison(b, b)
    assert same.wilcoxon_p == 1.0 and same.median_diff == 0.0
    # no difference in distribution: the interval covers 0 and the test does not reject
    null = paired_comparison(b + 0.05 * rng.randn(300), b, n_boot=1000)
    assert null.median_diff_low < 0 < null.median_diff_high and null.wilcoxon_p > 0.01
    assert paired_comparison([np.nan], [1.0]).to_dict()["wilcoxon_p"] is None
    with pytest.raises(ConfigError, match="same voxels"):
        paired_comparison(a, b[:10])


# ------------------------------------------------------------------------------ ceiling
def _repeats(n_reps, n_images, snr, seed=0):
    """Repeat-level responses with a planted per-voxel ncsnr (signal sd / noise sd)."""
    rng = np.random.RandomState(seed)
    v = snr.size
    signal = rng.randn(n_images, v) * 3.0 + 10.0
    noise_sd = signal.std(axis=0) / snr  # in-sample signal sd / ncsnr
    reps = signal + noise_sd * rng.randn(n_reps, n_images, v)
    return reps


def test_nsd_ceiling_recovers_planted_snr():
    # 500 images x 4 repeats, ncsnr in [1, 3]: the noise variance has 1500 dof, so the
    # estimated ncsnr has a relative sd of about 4% at ncsnr = 1 (less above); we allow
    # 15% per voxel and 3% for the median.
    snr = np.linspace(1.0, 3.0, 60)
    reps = _repeats(4, 500, snr, seed=9)
    est = ncsnr(reps)
    rel = est / snr - 1
    assert np.max(np.abs(rel)) < 0.15 and abs(np.median(rel)) < 0.03
    nc = noise_ceiling(reps)
    assert (nc.n_reps, nc.n_average) == (4, 4)
    true_nc = 100 * snr**2 / (snr**2 + 1 / 4)
    # NC = 100 s^2 / (s^2 + 1/4) moves by 32 points per unit of ncsnr at s = 1, so a
    # 15% ncsnr error is about 5 points there (much less at larger s)
    np.testing.assert_allclose(nc.nc, true_nc, atol=5.0)
    np.testing.assert_allclose(nc.nc, 100 * est**2 / (est**2 + 1 / 4), rtol=1e-12)
    np.testing.assert_allclose(nc.r_ceiling, np.sqrt(nc.nc / 100))
    # the averaged-response variant: ceilings for averages of n_average repeats
    one = noise_ceiling(reps, n_average=1)
    assert np.all(one.nc < nc.nc) and one.n_average == 1
    nc13, r13 = ceiling_from_ncsnr(est, 13)
    np.testing.assert_allclose(nc13, 100 * est**2 / (est**2 + 1 / 13))
    np.testing.assert_allclose(r13, np.sqrt(nc13 / 100))


def test_noise_ceiling_not_available_and_degenerate_voxels():
    assert noise_ceiling(None) is None  # vim-1: repeat-averaged responses only
    assert noise_ceiling(np.ones((1, 10, 3))) is None  # a single repeat
    assert "not available" in NO_CEILING
    rng = np.random.RandomState(10)
    reps = rng.randn(3, 20, 4)
    reps[:, :, 1] = 2.0  # constant voxel
    reps[:, :, 2] = rng.randn(20)  # no noise at all
    est = ncsnr(reps)
    assert np.isnan(est[1]) and np.isinf(est[2]) and np.isfinite(est[[0, 3]]).all()
    nc, r = ceiling_from_ncsnr(est, 3)
    assert nc[2] == 100.0 and r[2] == 1.0
    with pytest.raises(ConfigError, match="repeats"):
        ncsnr(np.ones((3, 1, 4)))
