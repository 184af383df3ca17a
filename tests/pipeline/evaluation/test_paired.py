"""The paired swap test equals a direct per-voxel, per-pattern computation; Holm matches
its definition."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.errors import ConfigError
from pipeline.evaluation.paired import holm_adjust, swap_masks, swap_test


def direct(y, a, b, masks):
    """Per voxel, per pattern: swap the images, recompute both Pearson r's."""
    n, v = y.shape
    obs = np.array([np.corrcoef(y[:, j], a[:, j])[0, 1] - np.corrcoef(y[:, j], b[:, j])[0, 1]
                    for j in range(v)])
    p, p_rev = np.empty(v), np.empty(v)
    for j in range(v):
        za = (a[:, j] - a[:, j].mean()) / a[:, j].std()
        zb = (b[:, j] - b[:, j].mean()) / b[:, j].std()
        null = []
        for s in masks.astype(bool):
            sa, sb = np.where(s, zb, za), np.where(s, za, zb)
            null.append(np.corrcoef(y[:, j], sa)[0, 1] - np.corrcoef(y[:, j], sb)[0, 1])
        null = np.array(null)
        p[j] = (1 + np.sum(null >= obs[j] - 1e-12)) / (len(null) + 1)
        p_rev[j] = (1 + np.sum(null <= obs[j] + 1e-12)) / (len(null) + 1)
    return obs, p, p_rev


def test_swap_test_equals_the_direct_computation():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, 7))
    a = 0.8 * y + rng.normal(size=y.shape)
    b = 3.0 * (0.3 * y + rng.normal(size=y.shape)) + 5  # scale and offset do not matter
    diff, p, p_rev = swap_test(y, a, b, n_permutations=200, seed=3, block=3)
    obs, p_ref, p_rev_ref = direct(y, a, b, swap_masks(40, 200, 3))
    np.testing.assert_allclose(diff, obs, atol=1e-12)
    np.testing.assert_allclose(p, p_ref)
    np.testing.assert_allclose(p_rev, p_rev_ref)


def test_constant_columns_give_nan_and_bad_shapes_one_error():
    y = np.random.default_rng(1).normal(size=(10, 2))
    a = y.copy()
    a[:, 1] = 1.0
    diff, p, _ = swap_test(y, a, y + 0.1, n_permutations=10)
    assert np.isnan(p[1]) and np.isfinite(p[0]) and np.isnan(diff[1])
    with pytest.raises(ConfigError, match="one shape"):
        swap_test(y, a[:, :1], y)


def test_holm_adjust_matches_its_definition():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5])
    got = holm_adjust(p)
    # sorted 0.01, 0.03, 0.04, 0.5 with m = 4: 0.04, 0.09, 0.09 (monotone), 0.5
    np.testing.assert_allclose(got[[0, 3, 1, 4]], [0.04, 0.09, 0.09, 0.5])
    assert np.isnan(got[2])
