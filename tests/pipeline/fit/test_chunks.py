"""Voxel chunks: prepare once, fit column chunks, merge == one fit on all columns."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pipeline.core.errors import ConfigError
from pipeline.evaluation.significance import fdr_significant
from pipeline.fit.chunks import Prepared, fit_voxel_chunks, fit_voxels, merge_results, prepare, voxel_chunks
from pipeline.fit.config import FitConfig
from pipeline.fit.protocols import run_fit
from pipeline.fit.results import FitResult, SplitScores

ARRAYS = ("r", "r2_corr", "r2", "hyper", "p", "significant")


def _data(n_train=150, n_val=30, p=80, v=37, seed=0, dtype=np.float32):
    """Half the voxels carry signal (so BH has something to decide), half are noise."""
    rng = np.random.RandomState(seed)
    n = n_train + n_val
    latent = rng.randn(n, 5)
    X = (latent @ rng.randn(5, p) + rng.randn(n, p)).astype(dtype)
    Y = 3.0 * rng.randn(n, v)
    Y[:, ::2] += latent @ rng.randn(5, (v + 1) // 2)
    return X[:n_train], X[n_train:], Y[:n_train], Y[n_train:]


def _assert_same(a: FitResult, b: FitResult, exact: bool = True) -> None:
    assert [s.name for s in a.splits] == [s.name for s in b.splits]
    assert a.n_alpha_at_edge == b.n_alpha_at_edge
    for sa, sb in zip(a.splits, b.splits):
        assert (sa.n_train, sa.n_test, sa.train_indices_hash) == (sb.n_train, sb.n_test,
                                                                  sb.train_indices_hash)
        for name in ARRAYS:
            x, y = getattr(sa, name), getattr(sb, name)
            assert (x is None) == (y is None), name
            if x is None:
                continue
            if name in ("hyper", "significant") or exact:
                np.testing.assert_array_equal(x, y, err_msg=f"{sa.name}.{name}")
            else:
                np.testing.assert_allclose(x, y, rtol=0, atol=1e-10, err_msg=f"{sa.name}.{name}")


CONFIGS = {
    "ridge-loo": FitConfig(n_permutations=200),
    "ridge-kfold": FitConfig(cv=4, n_permutations=200),
    "pls-kfold": FitConfig(method="pls", n_components=(1, 2, 4, 6), cv=3, n_permutations=200),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_chunks_reproduce_the_full_fit_exactly(name):
    config = CONFIGS[name]
    X_tr, X_val, Y_tr, Y_val = _data()
    prep = prepare(X_tr, X_val, config, block=4)
    full = fit_voxels(prep, Y_tr, Y_val)
    assert full.split("test").r.shape == (37,)
    for n_chunks in (2, 3, 10):
        chunks = voxel_chunks(37, n_chunks, prep.block)
        assert len(chunks) == n_chunks
        parts = [fit_voxels(prep, Y_tr[:, sl], Y_val[:, sl]) for sl in chunks]
        merged = merge_results(parts)
        _assert_same(merged, full)  # float32 features: still bit for bit
        _assert_same(merged, full, exact=False)  # (the brief's 1e-10 criterion)
    # the one-call helper and run_fit(prepared=...) are the same computation
    _assert_same(fit_voxel_chunks(prep, Y_tr, Y_val, n_chunks=3), full)
    _assert_same(run_fit(None, None, Y_tr, Y_val, config, prepared=prep), full)
    # the fit has both signal and noise voxels: BH decisions are not trivial
    sig = full.split("validation").significant
    assert 0 < sig.sum() < sig.size


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_chunked_matches_plain_run_fit(name):
    """Against run_fit itself (default block): exact to 1e-10 with float64 features, where
    the per-block float32 product choice of ridge LOO does not arise."""
    config = CONFIGS[name]
    X_tr, X_val, Y_tr, Y_val = _data(dtype=np.float64, seed=1)
    plain = run_fit(X_tr, X_val, Y_tr, Y_val, config)
    prep = prepare(X_tr, X_val, config, block=5)
    _assert_same(fit_voxel_chunks(prep, Y_tr, Y_val, n_chunks=4), plain, exact=False)
    # and with the default block, chunked float32 fits equal run_fit bit for bit
    X_tr, X_val, Y_tr, Y_val = _data(seed=1)
    plain = run_fit(X_tr, X_val, Y_tr, Y_val, config)
    prep = prepare(X_tr, X_val, config)
    assert prep.block == (1000 if config.method == "ridge" else prep.block)
    _assert_same(fit_voxel_chunks(prep, Y_tr, Y_val, n_chunks=4), plain)


def test_merge_recomputes_bh_over_all_voxels():
    def part(p):
        p = np.asarray(p, dtype=float)
        z = np.zeros(p.size)
        split = SplitScores(name="test", kind="test", test_indices=np.arange(3), r=z, r2_corr=z,
                            r2=z, hyper=z + 1, hyper_name="alpha", n_train=10, n_test=3,
                            p=p, significant=fdr_significant(p), n_permutations=99)
        return FitResult(config=FitConfig(), splits=[split], n_alpha_at_edge={"test": 1})

    a, b = part([0.01, 0.02]), part([0.9] * 8)
    assert a.splits[0].significant.all()  # BH within the first chunk alone: both flagged
    merged = merge_results([a, b])
    np.testing.assert_array_equal(merged.split("test").p, [0.01, 0.02] + [0.9] * 8)
    assert not merged.split("test").significant.any()  # over all 10 voxels: none is
    assert merged.n_alpha_at_edge == {"test": 2}
    with pytest.raises(ConfigError, match="at least one"):
        merge_results([])


def test_voxel_chunks_are_block_aligned_and_cover_everything():
    for v, k, block in [(37, 3, 4), (26000, 8, 1000), (5, 4, 1000), (1000, 3, 1000), (7, 7, 1)]:
        chunks = voxel_chunks(v, k, block)
        assert chunks[0].start == 0 and chunks[-1].stop == v
        assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:]))
        assert all(c.start % block == 0 and c.stop > c.start for c in chunks)
        assert len(chunks) == min(k, -(-v // block))
    sizes = [c.stop - c.start for c in voxel_chunks(26000, 8, 1000)]
    assert max(sizes) - min(sizes) <= 1000
    with pytest.raises(ConfigError, match="n_chunks"):
        voxel_chunks(10, 0, 4)


def test_prepared_is_small_picklable_and_checked():
    X_tr, X_val, Y_tr, Y_val = _data()
    prep = prepare(X_tr, X_val, FitConfig(n_permutations=0), block=8)
    assert [m.name for m in prep.models] == ["test", "all"]
    assert set(prep.timings) == {"prepare:test", "prepare:all"}
    assert 0 < prep.nbytes < 2 * 150 * 150 * 8 + 100_000  # two eigenvector matrices + change
    back = pickle.loads(pickle.dumps(prep))
    assert isinstance(back, Prepared)
    _assert_same(fit_voxels(back, Y_tr, Y_val), fit_voxels(prep, Y_tr, Y_val))
    with pytest.raises(ConfigError, match="Y_train"):
        fit_voxels(prep, Y_tr[:10], Y_val)
    with pytest.raises(ConfigError, match="Y_val"):
        fit_voxels(prep, Y_tr, None)
    with pytest.raises(ConfigError, match="prepared"):
        run_fit(None, None, Y_tr, Y_val, FitConfig(seed=1), prepared=prep)
    with pytest.raises(ConfigError, match="recommended"):
        prepare(X_tr, X_val, FitConfig(protocol="cs431"))
    with pytest.raises(ConfigError, match="block"):
        prepare(X_tr, X_val, FitConfig(), block=0)
    # no validation data: only the test model
    prep_nv = prepare(X_tr, None, FitConfig(n_permutations=0), block=8)
    assert [s.name for s in fit_voxels(prep_nv, Y_tr).splits] == ["test"]


def test_roi_mean_is_never_chunked():
    X_tr, X_val, Y_tr, Y_val = _data(v=9)
    config = FitConfig(target="roi_mean", n_permutations=50)
    prep = prepare(X_tr, X_val, config, block=2)
    result = fit_voxel_chunks(prep, Y_tr, Y_val, n_chunks=3)
    plain = run_fit(X_tr, X_val, Y_tr, Y_val, config)
    _assert_same(result, plain, exact=False)
    assert set(result.predictions) == {"test", "validation"}
