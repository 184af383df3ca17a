"""Split protocols: the 2019 check values, our held-out split, inner k-fold, hashes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipeline.core.errors import ConfigError
from pipeline.evaluation.splits import (
    cs431_feature_subset,
    cs431_splits,
    holdout_split,
    index_hash,
    kfold_splits,
)


def test_cs431_check_values():
    splits, rng = cs431_splits()
    assert len(splits) == 5
    train0, test0 = splits[0]
    assert test0[:8].tolist() == [5, 6, 9, 14, 17, 18, 19, 34]
    assert int(test0.sum()) == 205538
    assert [int(test.sum()) for _, test in splits[1:]] == [218346, 206446, 205018, 230370]
    for train, test in splits:
        assert test.size == 250 and train.size == 1500
        assert np.all(np.diff(test) > 0) and np.all(np.diff(train) > 0)
        assert np.intersect1d(train, test).size == 0
        assert np.union1d(train, test).tolist() == list(range(1750))
        assert test.dtype == np.int64
    keep = cs431_feature_subset(rng)
    assert keep[:5].tolist() == [66828, 62647, 25712, 45135, 10819]
    assert int(keep.sum()) == 190057386
    assert keep.size == 5000 and np.unique(keep).size == 5000


def test_holdout_split():
    train, test = holdout_split(1750)
    assert test.size == 250 and train.size == 1500
    assert np.all(np.diff(test) > 0) and np.all(np.diff(train) > 0)
    assert np.union1d(train, test).tolist() == list(range(1750))
    # seed 0 reproduces the first 2019 test split
    np.testing.assert_array_equal(test, cs431_splits()[0][0][1])
    other = holdout_split(1750, seed=1)[1]
    assert not np.array_equal(other, test)
    np.testing.assert_array_equal(holdout_split(1750, seed=1)[1], other)
    assert holdout_split(100, test_fraction=0.2)[1].size == 20
    with pytest.raises(ConfigError, match="test_fraction"):
        holdout_split(100, test_fraction=1.0)
    with pytest.raises(ConfigError, match="seed"):
        holdout_split(100, seed=-1)


def test_kfold_splits_partition():
    folds = kfold_splits(23, 4, seed=5)
    tests = [test for _, test in folds]
    assert sorted(t.size for t in tests) == [5, 6, 6, 6]
    assert np.sort(np.concatenate(tests)).tolist() == list(range(23))
    for train, test in folds:
        assert np.intersect1d(train, test).size == 0 and train.size + test.size == 23
        assert np.all(np.diff(test) > 0)
    again = kfold_splits(23, 4, seed=5)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    with pytest.raises(ConfigError, match="n_splits"):
        kfold_splits(3, 4)


def test_index_hash():
    idx = np.array([5, 6, 9], dtype=np.int32)
    expected = hashlib.sha256(np.array([5, 6, 9], dtype="<i8").tobytes()).hexdigest()
    assert index_hash(idx) == expected
    assert index_hash([5, 6, 9]) == expected
    assert index_hash([5, 9, 6]) != expected
    assert len(index_hash(np.arange(250))) == 64


def test_bad_arguments():
    with pytest.raises(ConfigError, match="n_test"):
        cs431_splits(n=100, n_test=100)
    with pytest.raises(ConfigError, match="k"):
        cs431_feature_subset(np.random.RandomState(0), p=10, k=11)
