"""Kernels accumulated from feature column blocks equal the in-memory ones, bit for bit.

The blocks are the 4096-column blocks the in-memory kernel builder uses, so the same
float32 products are summed in the same order: scores must be identical, not close.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.errors import ConfigError
from pipeline.fit.chunks import fit_voxels, prepare
from pipeline.fit.config import FitConfig
from pipeline.fit.streamed import prepare_streamed


def _data(p: int = 9000):
    """Features and responses sharing 4 latent factors (a signal 60 images can learn)."""
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((72, 4))
    X = (Z @ rng.standard_normal((4, p)) + rng.standard_normal((72, p))).astype(np.float32)
    Y = Z @ rng.standard_normal((4, 20)) + 0.5 * rng.standard_normal((72, 20))
    return X[:60], X[60:], Y[:60], Y[60:]


def _blocks(X_train, X_val, block=4096):
    for s in range(0, X_train.shape[1], block):
        yield slice(s, s + block), {"train": X_train[:, s : s + block], "val": X_val[:, s : s + block]}


@pytest.mark.parametrize("config", [
    FitConfig(n_permutations=20),
    FitConfig(cv=3, n_permutations=0),
    FitConfig(method="pls", n_components=(1, 2, 4), n_permutations=0),
    FitConfig(target="roi_mean", n_permutations=20),
], ids=["ridge-loo", "ridge-kfold", "pls", "roi-mean"])
def test_streamed_prepare_equals_in_memory(config):
    X_train, X_val, Y_train, Y_val = _data()
    a = fit_voxels(prepare(X_train, X_val, config), Y_train, Y_val)
    prep = prepare_streamed(_blocks(X_train, X_val), 60, 12, config)
    assert prep.n_features == 9000
    b = fit_voxels(prep, Y_train, Y_val)
    assert [s.name for s in a.splits] == [s.name for s in b.splits] == ["test", "validation"]
    for sa, sb in zip(a.splits, b.splits, strict=True):
        for name in ("r", "r2", "hyper"):
            np.testing.assert_array_equal(getattr(sb, name), getattr(sa, name))
    assert np.median(b.splits[1].r) > 0.3  # the planted signal is found


def test_streamed_prepare_other_blocks_agree_closely():
    X_train, X_val, Y_train, Y_val = _data(5000)
    config = FitConfig(n_permutations=0)
    a = fit_voxels(prepare(X_train, X_val, config), Y_train, Y_val)
    b = fit_voxels(prepare_streamed(_blocks(X_train, X_val, 777), 60, 12, config), Y_train, Y_val)
    np.testing.assert_allclose(b.splits[1].r, a.splits[1].r, rtol=0, atol=1e-6)


def test_streamed_prepare_checks_its_blocks():
    X_train, X_val, _, _ = _data(100)
    with pytest.raises(ConfigError, match="training rows"):
        prepare_streamed(_blocks(X_train, X_val), 61, 12, FitConfig())
    with pytest.raises(ConfigError, match="protocol 'recommended'"):
        prepare_streamed(_blocks(X_train, X_val), 60, 12, FitConfig(protocol="cs431"))
    with pytest.raises(ConfigError, match="no columns"):
        prepare_streamed(iter(()), 60, 12, FitConfig())
