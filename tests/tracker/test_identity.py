"""A fit's identity covers the responses it read: other responses are never reused.

Regression for the fault trial's finding: a fit on a copy of the data whose
``EstimatedResponses.mat`` had shuffled rows was filed under the feature run's dataset,
and the same command on the real data then reused it.
"""

from __future__ import annotations

import os
import shutil
import uuid

import h5py
import numpy as np
import pytest

from pipeline.core.files import sha256_file
from pipeline.features.config import FeatureConfig
from pipeline.fit.config import FitConfig
from tracker.db.settings import Settings
from tracker.db.store import Store
from tracker.record.workflows import extract_and_log, fit_and_log

CONFIG = FitConfig(method="ridge", n_permutations=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_vim1_dir, mongo_uri):
    name = "ident_" + uuid.uuid4().hex[:8]
    settings = Settings(mongo_uri=mongo_uri, db_name=name, home=tmp_path_factory.mktemp("home"),
                        data_dir=tiny_vim1_dir)
    store = Store(mongo_uri, name)
    store.init_schema()
    feat = extract_and_log(store, settings, tiny_vim1_dir, FeatureConfig(batch_size=40))
    yield settings, store, feat
    store.client.drop_database(name)
    store.close()


def _shuffle_training_rows(path, seed=0):
    with h5py.File(path, "r+") as fh:
        data = fh["dataTrnS1"][()]
        fh["dataTrnS1"][...] = data[np.random.default_rng(seed).permutation(data.shape[0])]


def _val_median_r(run):
    return run["summary"]["validation"]["r"]["median"]


def test_a_copy_with_shuffled_responses_is_its_own_fit(world, tiny_vim1_dir, tmp_path):
    settings, store, feat = world
    copy = tmp_path / "copy"
    shutil.copytree(tiny_vim1_dir, copy)
    _shuffle_training_rows(copy / "EstimatedResponses.mat")
    shuffled = fit_and_log(store, settings, feat.run_id, "S1", "V4", CONFIG, data_dir=copy)
    real = fit_and_log(store, settings, feat.run_id, "S1", "V4", CONFIG)
    assert not shuffled.reused and not real.reused
    assert shuffled.run["config_key"] != real.run["config_key"]
    # each is filed under the data it read, with that file's sha256
    assert shuffled.run["responses"]["sha256"] == sha256_file(copy / "EstimatedResponses.mat")
    assert real.run["responses"]["sha256"] == sha256_file(tiny_vim1_dir / "EstimatedResponses.mat")
    assert shuffled.run["dataset_id"] != real.run["dataset_id"] == feat.run["dataset_id"]
    # shuffled training rows break the stimulus-response pairing: no signal left
    assert _val_median_r(real.run) > 0.2 > _val_median_r(shuffled.run)
    again = fit_and_log(store, settings, feat.run_id, "S1", "V4", CONFIG)
    assert again.reused and again.run_id == real.run_id


def test_a_response_file_replaced_in_place_is_not_reused(world, tiny_vim1_dir, tmp_path):
    settings, store, feat = world
    data = tmp_path / "data"
    shutil.copytree(tiny_vim1_dir, data)
    first = fit_and_log(store, settings, feat.run_id, "S1", "V4", CONFIG, data_dir=data)
    path = data / "EstimatedResponses.mat"
    stat = path.stat()
    _shuffle_training_rows(path, seed=1)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = fit_and_log(store, settings, feat.run_id, "S1", "V4", CONFIG, data_dir=data)
    assert not second.reused
    assert second.run["config_key"] != first.run["config_key"]
    assert second.run["responses"]["sha256"] == sha256_file(path) != first.run["responses"]["sha256"]
