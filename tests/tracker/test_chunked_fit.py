"""One large fit split by voxel chunks: one run, same key, same numbers as the unchunked fit.

The tiny ROI has 30 voxels; ``voxel_block=8`` gives it several block-aligned chunks (the
default block, 1000 voxels for ridge, would leave it one chunk). The reference is the
in-memory fit with the same block (:func:`pipeline.fit.protocols.run_fit` with ``prepared=``), which
the pipeline tests show equals the fit on all columns bit for bit.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.files import sha256_file
from pipeline.data.responses import load_responses
from pipeline.evaluation.significance import fdr_significant
from pipeline.features.config import FeatureConfig
from pipeline.fit.chunks import prepare
from pipeline.fit.config import FitConfig
from pipeline.fit.protocols import run_fit
from tracker.analysis.fields import SCORE_FIELDS as FIELDS
from tracker.analysis.scores import load_scores
from tracker.db.settings import Settings
from tracker.db.store import Store
from tracker.record import sweep
from tracker.record.workflows import extract_and_log, fit_and_log, fit_key, load_features

BLOCK = 8


@pytest.fixture(scope="module")
def chunk_env(tmp_path_factory, tiny_vim1_dir, mongo_uri):
    """A database holding one finished feature run of the tiny data set (extracted once)."""
    name = "chunks_" + uuid.uuid4().hex[:8]
    home = tmp_path_factory.mktemp("chunks_home")
    settings = Settings(mongo_uri=mongo_uri, db_name=name, home=home, data_dir=tiny_vim1_dir)
    store = Store(mongo_uri, name)
    store.init_schema()
    feat = extract_and_log(store, settings, tiny_vim1_dir, FeatureConfig(batch_size=40))
    yield settings, store, feat, load_features(feat.run, settings), tiny_vim1_dir
    store.client.drop_database(name)
    store.close()


def _expected(ff, data_dir, subject, config):
    clean = load_responses(data_dir, subject).select("V4")
    prep = prepare(ff.train, ff.val, config, block=BLOCK)
    return run_fit(None, None, clean.train, clean.val, config, prepared=prep), clean.voxel_ids


def _check_logged(store, run, expected, voxel_ids):
    """The run's buckets hold every voxel of every split, equal to ``expected``."""
    for split in expected.splits:
        got = load_scores(store, [run["_id"]], split.name, FIELDS)[run["_id"]]
        np.testing.assert_array_equal(got.voxel_ids, voxel_ids)
        # the CV and prediction products run in float32 (README, "Fitting and statistics"):
        # BLAS picks its kernel by matrix width and CPU, so chunks of 8 voxels and one block
        # of 30 can round differently at float32's last digits (seen on AMD EPYC / OpenBLAS
        # Haswell kernels); the same alphas and p-values, scores within float32 precision
        for name in ("hyper", "p"):
            np.testing.assert_allclose(got.values.get(name), getattr(split, name), rtol=0, atol=1e-10)
        for name in ("r", "r2"):
            np.testing.assert_allclose(got.values.get(name), getattr(split, name), rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got.values.get("significant"), split.significant.astype(float))
        # BH over all voxels of the split, not per chunk
        np.testing.assert_array_equal(split.significant, fdr_significant(split.p, 0.05))
        assert run["summary"][split.name]["n_significant"] == int(split.significant.sum())


def test_chunked_fit_logs_one_run_with_the_unchunked_key(chunk_env):
    settings, store, feat, ff, data = chunk_env
    config = FitConfig(n_permutations=100, seed=3)
    out = fit_and_log(store, settings, feat.run_id, "S1", "V4", config, data_dir=data,
                      features=ff, n_chunks=3, voxel_block=BLOCK)  # no client: chunks here
    run = out.run
    assert run["status"] == "COMPLETED"
    responses = sha256_file(Path(data) / "EstimatedResponses.mat")
    assert run["responses"]["sha256"] == responses
    assert run["config_key"] == fit_key(feat.run["config_key"], config, "S1", "V4", responses)
    ex = run["execution"]
    assert (ex["mode"], ex["n_chunks"], ex["requested_chunks"], ex["block"]) == ("local", 3, 3, BLOCK)
    assert sum(ex["chunk_voxels"]) == run["n_voxels"] == 30
    assert store.db.fit_runs.count_documents({"config_key": run["config_key"]}) == 1
    expected, ids = _expected(ff, data, "S1", config)
    _check_logged(store, run, expected, ids)
    assert run["n_alpha_at_edge"] == expected.n_alpha_at_edge
    # the unchunked fit has the same key: it finds this run instead of fitting again
    again = fit_and_log(store, settings, feat.run_id, "S1", "V4", config, data_dir=data, features=ff)
    assert again.reused and again.run_id == out.run_id
    # fits that do not split by voxels run whole and say so
    avg = fit_and_log(store, settings, feat.run_id, "S1", "V4",
                      FitConfig(target="roi_mean", n_permutations=0, seed=3),
                      data_dir=data, features=ff, n_chunks=3)
    assert avg.run["execution"]["n_chunks"] == 1 and "note" in avg.run["execution"]


def test_sweep_splits_fits_over_a_two_worker_cluster(chunk_env, tmp_path):
    settings, store, feat, ff, data = chunk_env
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(f"""
[sweep]
name = "chunks"
data_dir = "{data}"
voxel_chunks = 3

[features]
batch_size = 40

[fits]
subject = "S1"
roi = "V4"
method = ["ridge", "pls"]
n_permutations = 100
""")
    spec = sweep.load_spec(spec_path)
    result = sweep.run_sweep(spec, settings, store, data, n_workers=2, voxel_block=BLOCK)
    assert result.failed == [] and len(result.done) == 3  # the features are reused
    _, fits = sweep.expand(spec, store, data)
    for task in fits:
        docs = store.find_runs("fit_runs", {"config_key": task.key})
        assert len(docs) == 1 and docs[0]["status"] == "COMPLETED"
        ex = docs[0]["execution"]
        assert (ex["mode"], ex["n_chunks"], ex["workers"]) == ("dask", 3, 2)
        assert ex["prepared_mb"] > 0 and ex["chunk_voxels"] == [8, 8, 14]
        expected, ids = _expected(ff, data, "S1", task.config)
        _check_logged(store, docs[0], expected, ids)
    with pytest.raises(Exception, match="voxel_chunks"):
        spec.options["voxel_chunks"] = 0
        sweep.run_sweep(spec, settings, store, data, n_workers=2)
