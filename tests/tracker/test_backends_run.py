"""A feature run on the JAX backend (``run_features.py --backend jax``, its own process) is
a complete run of its own identity whose features and fits equal the TensorFlow run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from pipeline.features.config import FeatureConfig
from pipeline.fit.config import FitConfig
from tracker.analysis.scores import load_scores
from tracker.db.settings import Settings
from tracker.db.store import Store
from tracker.record.workflows import extract_and_log, feature_key, fit_and_log, load_features

ROOT = Path(__file__).resolve().parents[2]
FIT = FitConfig(method="ridge", n_permutations=0)
#: measured on the tiny set (TF 2.21 vs JAX 0.10, CPU, strict): features 2.1e-6 of the
#: largest |feature| apart (see tests/pipeline/features/test_backends.py); ridge picks the
#: same alpha for every voxel and validation r differs by at most 2.5e-4 (median 2.7e-5:
#: 40 validation images, a ridge on 64,896 features amplifies float32 rounding)
FEATURE_TOL = 1e-5
R_TOL = 1e-3


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_vim1_dir, mongo_uri):
    name = "backends_" + uuid.uuid4().hex[:8]
    settings = Settings(mongo_uri=mongo_uri, db_name=name, home=tmp_path_factory.mktemp("home"),
                        data_dir=tiny_vim1_dir)
    store = Store(mongo_uri, name)
    store.init_schema()
    feat = extract_and_log(store, settings, tiny_vim1_dir, FeatureConfig(batch_size=40))
    yield settings, store, feat
    store.client.drop_database(name)
    store.close()


def test_precision_changes_the_feature_key(world, tiny_vim1_dir):
    _, store, feat = world
    strict, _, _ = feature_key(store, tiny_vim1_dir, FeatureConfig(batch_size=40))
    fast, _, _ = feature_key(store, tiny_vim1_dir, FeatureConfig(batch_size=40, precision="fast"))
    assert strict == feat.run["config_key"] and fast != strict
    assert feat.run["runtime"]["backend"] == "tensorflow" and feat.run["runtime"]["precision"] == "strict"


def test_device_gpu_without_a_gpu_is_one_clear_error(world, tiny_vim1_dir):
    settings, _, _ = world
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible here")
    env = {**os.environ, "TRACKER_MONGO_URI": settings.mongo_uri, "TRACKER_DB_NAME": settings.db_name,
           "TRACKER_HOME": str(settings.home)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_features.py"), "--data-dir", str(tiny_vim1_dir),
         "--device", "gpu", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--device gpu: the tensorflow backend sees no GPU" in proc.stderr


def _val_r(store, run_id):
    got = load_scores(store, [run_id], "validation", ["r"])[run_id]
    return got.voxel_ids, got.values["r"]


@pytest.mark.backends
def test_run_features_on_jax_is_its_own_run_with_equal_features_and_fits(world, tiny_vim1_dir):
    pytest.importorskip("jax")
    settings, store, tf_feat = world
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(TRACKER_MONGO_URI=settings.mongo_uri, TRACKER_DB_NAME=settings.db_name,
               TRACKER_HOME=str(settings.home), JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_features.py"), "--data-dir", str(tiny_vim1_dir),
         "--batch-size", "40", "--backend", "jax", "--json", "--quiet"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["status"] == "COMPLETED" and doc["config"]["backend"] == "jax"
    assert doc["runtime"]["backend"] == "jax" and doc["runtime"]["compiled"] == "jax.jit"
    assert doc["config_key"] != tf_feat.run["config_key"]
    _, jax_run = store.get_run(doc["_id"])
    tf_ff, jax_ff = load_features(tf_feat.run, settings), load_features(jax_run, settings)
    for split in ("train", "val"):
        a, b = getattr(tf_ff, split), getattr(jax_ff, split)
        np.testing.assert_allclose(b, a, rtol=0, atol=FEATURE_TOL * np.abs(a).max())
    tf_fit = fit_and_log(store, settings, tf_feat.run_id, "S1", "V4", FIT)
    jax_fit = fit_and_log(store, settings, doc["_id"], "S1", "V4", FIT)
    assert jax_fit.run["config_key"] != tf_fit.run["config_key"]
    (ids_a, r_a), (ids_b, r_b) = _val_r(store, tf_fit.run_id), _val_r(store, jax_fit.run_id)
    np.testing.assert_array_equal(ids_a, ids_b)
    alphas = [load_scores(store, [run.run_id], "validation", ["hyper"])[run.run_id].values["hyper"]
              for run in (tf_fit, jax_fit)]
    np.testing.assert_array_equal(alphas[1], alphas[0])
    np.testing.assert_allclose(r_b, r_a, rtol=0, atol=R_TOL)
    assert np.median(np.abs(r_b - r_a)) < R_TOL / 10
