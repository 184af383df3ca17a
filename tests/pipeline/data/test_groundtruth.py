"""Fits and statistics against the planted truth of the synthetic vim-1 data ("tiny").

The tiny preset: 240 training images (2-repeat averages), 40 validation images
(13-repeat averages), about 500 voxels per subject, a planted linear encoding model on a
16 x 16 x 4 contrast-energy feature map that :mod:`pipeline.data.synth` exposes as
``features_train`` / ``features_val``. Fitting on those features leaves only the
estimation error from 240 noisy training images between a voxel's validation r and its
planted ceiling (the correlation of its validation average with its signal).
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.responses import load_responses
from pipeline.data.synth.truth import load_ground_truth
from pipeline.evaluation.ceiling import noise_ceiling
from pipeline.evaluation.scores import r_threshold
from pipeline.fit.config import FitConfig
from pipeline.fit.protocols import run_fit

SUBJECT = "S1"


@pytest.fixture(scope="module")
def data(tiny_vim1_dir):
    truth = load_ground_truth(tiny_vim1_dir, SUBJECT)
    responses = load_responses(tiny_vim1_dir, SUBJECT)
    X_train = truth.features_train.reshape(truth.features_train.shape[0], -1)
    X_val = truth.features_val.reshape(truth.features_val.shape[0], -1)
    return truth, responses, X_train.astype(np.float32), X_val.astype(np.float32)


@pytest.fixture(scope="module")
def voxel_fit(data):
    truth, responses, X_train, X_val = data
    keep = ~responses.nan_mask
    result = run_fit(X_train, X_val, responses.train[:, keep], responses.val[:, keep],
                     FitConfig(method="ridge"))
    return result, keep


def test_ridge_validation_r_tracks_the_planted_ceiling(data, voxel_fit):
    truth, _, _, _ = data
    result, keep = voxel_fit
    val = result.split("validation")
    n_val = val.n_test
    ceiling = truth.ceiling_val[keep]
    signal = truth.has_signal[keep]
    r, c = val.r[signal], ceiling[signal]
    assert signal.sum() > 200
    # r = ceiling x corr(prediction, signal) + sampling noise. The sampling sd of r
    # around c with n_val = 40 is about (1 - c^2) / sqrt(n_val - 1): no voxel may beat
    # its ceiling by more than 3 of those sds ...
    sd = (1 - c**2) / np.sqrt(n_val - 1)
    assert np.all(r <= c + 3 * sd), np.max((r - c) / sd)
    # ... r must follow the ceiling across voxels (observed correlation 0.85) ...
    assert np.corrcoef(r, c)[0, 1] > 0.7
    # ... and the model recovers most of each signal from 240 noisy training images
    # (median r / ceiling 0.80 observed; the per-voxel sampling noise is ~0.1).
    assert np.median(r / c) > 0.65
    # voxels without signal sit at chance (sd of their mean r about 0.01)
    assert abs(np.mean(val.r[~signal])) < 0.05


def test_fdr_flags_follow_the_planted_signal(data, voxel_fit):
    truth, _, _, _ = data
    result, keep = voxel_fit
    signal = truth.has_signal[keep]
    for name in ("test", "validation"):
        split = result.split(name)
        assert split.n_permutations == 1000 and split.p.shape == signal.shape
        # no-signal voxels: BH keeps false discoveries rare (observed 0.4%)
        assert split.significant[~signal].mean() < 0.05
    # with 40 validation images the weakest signal voxels (ceiling 0.3) are often
    # missed; most are found (observed 75%)
    assert result.split("validation").significant[signal].mean() > 0.5


@pytest.mark.parametrize("method", ["ridge", "pls"])
def test_both_methods_recover_the_v4_average(data, method):
    truth, responses, X_train, X_val = data
    v4 = responses.select("V4")
    planted = truth.roi_average["V4"]
    np.testing.assert_array_equal(v4.voxel_ids, planted.voxel_ids)
    result = run_fit(X_train, X_val, v4.train, v4.val, FitConfig(method=method,
                                                                   target="roi_mean"))
    val = result.split("validation")
    threshold = r_threshold(val.n_test, 0.001)  # 0.47 for 40 images
    r = float(val.r[0])
    assert r > threshold + 0.2
    # within sampling error of the planted ceiling (0.87; sampling sd ~0.04 at n = 40),
    # at most 0.15 below it for the estimation error
    assert planted.ceiling_val - 0.15 < r < planted.ceiling_val + 0.12
    assert val.p[0] == pytest.approx(1 / 1001) and bool(val.significant[0])
    y_true, _ = result.predictions["validation"]
    np.testing.assert_allclose(y_true, planted.response_val)


def test_nsd_ceiling_from_the_repeats_matches_the_planted_one(data):
    truth, _, _, _ = data
    nc = noise_ceiling(truth.val_repeats)
    assert nc.n_reps == truth.config.n_rep_val == nc.n_average
    est, true = nc.r_ceiling, truth.ceiling_val
    signal = truth.has_signal
    # Single-repeat SNR here is low (planted ncsnr 0.06-0.9) and there are only 40
    # images: the signal variance 1 - sigma_noise^2 is known to about +-0.065 (480 dof),
    # so weak voxels scatter widely (and no-signal voxels get positive ceilings) while
    # strong ones are tight.
    strong = signal & (true >= 0.85)
    assert np.max(np.abs(est[strong] - true[strong])) < 0.08
    assert abs(np.median(est[signal] - true[signal])) < 0.03
    assert np.corrcoef(est[signal], true[signal])[0, 1] > 0.7
    # the ROI average's ceiling from its own repeats
    planted = truth.roi_average["V4"]
    v4 = noise_ceiling(planted.val_repeats[:, :, None])
    assert v4.r_ceiling[0] == pytest.approx(planted.ceiling_val, abs=0.05)
