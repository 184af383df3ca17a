"""The whole path on the tiny synthetic vim-1: files -> AlexNet conv3 -> ridge/PLS ->
MongoDB (real embedded server) -> queries -> figures, checked against planted truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import IntegrityError
from pipeline.data.responses import load_responses
from pipeline.data.synth.truth import load_ground_truth
from pipeline.evaluation.scores import pearson_r, r_threshold
from pipeline.features.config import FeatureConfig
from pipeline.fit.config import FitConfig
from tracker.analysis import queries
from tracker.analysis.scores import load_scores
from tracker.figures.standard import make_all
from tracker.record.workflows import extract_and_log, fit_and_log, load_features

ROOT = Path(__file__).resolve().parents[2]
FEATURES = FeatureConfig(batch_size=40)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_vim1_dir, mongo_uri):
    """One database with a feature run and four fits (S1, V4, ridge/PLS x voxels/mean)."""
    import uuid

    from tracker.db.settings import Settings
    from tracker.db.store import Store

    name = "e2e_" + uuid.uuid4().hex[:8]
    settings = Settings(mongo_uri=mongo_uri, db_name=name, home=tmp_path_factory.mktemp("home"),
                        data_dir=tiny_vim1_dir)
    store = Store(mongo_uri, name)
    store.init_schema()
    feat = extract_and_log(store, settings, tiny_vim1_dir, FEATURES)
    fits = {}
    for method in ("ridge", "pls"):
        for target in ("voxels", "roi_mean"):
            fits[(method, target)] = fit_and_log(store, settings, feat.run_id, "S1", "V4",
                                                 FitConfig(method=method, target=target))
    yield settings, store, feat, fits
    store.client.drop_database(name)
    store.close()


def _val_r(store, run_id):
    got = load_scores(store, [run_id], "validation", ["r"])[run_id]
    return got.voxel_ids, got.values["r"]


def test_feature_run_is_recorded_and_reused(world, tiny_vim1_dir):
    settings, store, feat, _ = world
    run = feat.run
    assert not feat.reused and run["status"] == "COMPLETED"
    out = run["output"]
    assert out["shapes"]["train"] == [240, 13, 13, 384] and out["shapes"]["val"] == [40, 13, 13, 384]
    assert Path(out["path"]).is_file() and out["host"]
    again = extract_and_log(store, settings, tiny_vim1_dir, FEATURES)
    assert again.reused and again.run_id == feat.run_id
    assert store.db.feature_runs.count_documents({}) == 1


def test_validation_scores_beat_chance_and_track_the_planted_ceiling(world, tiny_vim1_dir):
    _, store, _, fits = world
    truth = load_ground_truth(tiny_vim1_dir, "S1")
    resp = load_responses(tiny_vim1_dir, "S1").select("V4")
    ceiling = dict(zip(truth.voxel_ids.tolist(), truth.ceiling_val.tolist()))
    n_val = resp.val.shape[0]
    for method in ("ridge", "pls"):
        ids, r = _val_r(store, fits[(method, "voxels")].run_id)
        assert ids.tolist() == resp.voxel_ids.tolist()
        c = np.array([ceiling[i] for i in ids])
        # Every V4 voxel carries signal here: the median must clear the p < .01 threshold
        # for n = 40 images (0.37), far above chance (0)...
        assert np.median(r) > r_threshold(n_val, 0.01), (method, np.median(r))
        # ...no voxel may beat its true ceiling by more than sampling error (~2/sqrt(n))...
        assert np.all(r <= c + 2 / np.sqrt(n_val))
        # ...and the fit recovers a large share of what is recoverable.
        assert np.mean(r) / np.mean(c) > 0.5, (method, np.mean(r), np.mean(c))


def test_roi_average_target_recovers_planted_signal(world, tiny_vim1_dir):
    _, store, _, fits = world
    truth = load_ground_truth(tiny_vim1_dir, "S1").roi_average["V4"]
    for method in ("ridge", "pls"):
        run = store.get_run(fits[(method, "roi_mean")].run_id)[1]
        pred = run["predictions"]["validation"]
        y_true, y_pred = np.array(pred["y_true"]), np.array(pred["y_pred"])
        r = float(pearson_r(y_true, y_pred))
        assert run["summary"]["validation"]["r"]["mean"] == pytest.approx(r)
        # the target is the planted ROI average as written to the files...
        np.testing.assert_allclose(y_true, truth.response_val, atol=1e-6)
        # ...and the fit recovers well over half of its true ceiling, far above chance
        assert r > 0.6 * truth.ceiling_val and r > r_threshold(len(y_true), 0.001), (method, r)


def test_fit_documents_record_splits_and_summaries(world):
    _, store, feat, fits = world
    run = store.get_run(fits[("ridge", "voxels")].run_id)[1]
    test_split = next(s for s in run["splits"] if s["name"] == "test")
    assert test_split["n_test"] == len(test_split["test_indices"]) == round(240 / 7)
    assert test_split["test_indices"] == sorted(test_split["test_indices"])
    assert run["feature_run_id"] == feat.run_id and run["features"]["layer"] == "conv3"
    ids, r = _val_r(store, run["_id"])
    assert run["summary"]["validation"]["r"]["median"] == pytest.approx(np.median(r))
    assert run["n_voxels"] == len(ids)
    assert run["provenance"]["host"] and "python" in run["provenance"]


def test_refit_is_reused_and_force_supersedes(world, tiny_vim1_dir):
    settings, store, feat, fits = world
    config = FitConfig(method="ridge", target="roi_mean")
    again = fit_and_log(store, settings, feat.run_id, "S1", "V4", config)
    assert again.reused and again.run_id == fits[("ridge", "roi_mean")].run_id
    forced = fit_and_log(store, settings, feat.run_id, "S1", "V4", config, force=True)
    assert not forced.reused
    old = store.get_run(again.run_id)[1]
    assert old["status"] == "SUPERSEDED" and old["superseded_by"] == forced.run_id
    rows = queries.compare(store, ["method"], roi="V4", target="roi_mean")
    assert {r["method"]: r["n_runs"] for r in rows} == {"ridge": 1, "pls": 1}


def test_compare_and_figures_from_database(world, tmp_path):
    _, store, _, fits = world
    rows = queries.compare(store, ["subject", "method"], roi="V4", split="validation")
    for row in rows:
        _, r = _val_r(store, fits[(row["method"], "voxels")].run_id)
        assert row["n"] == r.size and row["mean"] == pytest.approx(r.mean())
    paths = make_all(store, tmp_path)
    assert {p.name for p in paths} >= {"bars_S1_V4_r.png", "roi_average_S1_V4.svg"}


def test_changed_feature_file_is_refused(world, tmp_path):
    settings, store, feat, _ = world
    path = Path(feat.run["output"]["path"])
    backup = path.read_bytes()
    try:
        with open(path, "r+b") as fh:
            fh.seek(len(backup) // 2)
            fh.write(b"\x00\x01\x02\x03")
        with pytest.raises(IntegrityError, match="sha256"):
            load_features(feat.run, settings)
    finally:
        path.write_bytes(backup)


def test_run_fit_script_logs_a_run(world):
    settings, store, feat, _ = world
    env = {**os.environ, "TRACKER_MONGO_URI": settings.mongo_uri, "TRACKER_DB_NAME": settings.db_name,
           "TRACKER_HOME": str(settings.home)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_fit.py"), "--features", feat.run_id[:8],
         "--subject", "S2", "--roi", "V4", "--method", "pls", "--target", "voxels", "--json", "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (doc,) = json.loads(proc.stdout)
    assert doc["status"] == "COMPLETED" and doc["subject"] == "S2" and doc["config"]["method"] == "pls"
    assert store.get_run(doc["_id"])[1]["status"] == "COMPLETED"
    bad = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_fit.py"), "--features", "nope", "--subject", "S1",
         "--method", "ridge", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "no run with id" in bad.stderr and "Traceback" not in bad.stderr


def test_run_features_script_reuses_the_same_config(world, tiny_vim1_dir):
    settings, store, feat, _ = world
    env = {**os.environ, "TRACKER_MONGO_URI": settings.mongo_uri, "TRACKER_DB_NAME": settings.db_name,
           "TRACKER_HOME": str(settings.home)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_features.py"), "--data-dir", str(tiny_vim1_dir),
         "--batch-size", str(FEATURES.batch_size), "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == feat.run_id and "reusing finished feature run" in proc.stderr
    bad = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_features.py"), "--data-dir", str(tiny_vim1_dir),
         "--layer", "conv9", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "conv9" in bad.stderr and "Traceback" not in bad.stderr


def test_significance_is_stored_and_counted(world, tiny_vim1_dir):
    _, store, _, fits = world
    run = store.get_run(fits[("ridge", "voxels")].run_id)[1]
    got = load_scores(store, [run["_id"]], "validation", ["p", "significant", "r"])[run["_id"]]
    assert set(got.chunk.tolist()) == {0}  # one document per field
    p, sig = got.values["p"], got.values["significant"].astype(bool)
    assert p.min() >= 1 / 1001 and p.max() <= 1  # permutation p floor with 1000 permutations
    assert run["summary"]["validation"]["n_significant"] == int(sig.sum())
    # every V4 voxel carries planted signal: most survive BH at n = 40
    assert sig.mean() > 0.5
    rows = queries.compare(store, ["subject", "method"], roi="V4", split="validation", n_boot=200,
                           extra={"subject": "S1", "config.protocol": "recommended"})
    ridge = next(r for r in rows if r["method"] == "ridge")
    assert ridge["n_significant"] == int(sig.sum()) and ridge["n"] == sig.size


def test_noise_ceilings_are_estimated_stored_and_applied(world, tiny_vim1_dir):
    from tracker.record.datasets import compute_ceilings

    _, store, _, fits = world
    docs = compute_ceilings(store, tiny_vim1_dir, subjects=["S1"])
    assert {(d["subject"], d["split"]) for d in docs} == {("S1", "validation"), ("S1", "test")}
    truth = load_ground_truth(tiny_vim1_dir, "S1")
    val = next(d for d in docs if d["split"] == "validation")
    est = np.array(val["r_ceiling"], dtype=float)
    signal = truth.has_signal & (truth.ceiling_val > 0.6)
    # the NSD estimate from 13 repeats tracks the planted ceiling of clearly driven voxels
    assert np.median(np.abs(est[signal] - truth.ceiling_val[signal])) < 0.05
    test_c = np.array(next(d for d in docs if d["split"] == "test")["r_ceiling"], dtype=float)
    # the same ncsnr with 2 repeats averaged gives the planted training-image ceiling
    assert np.median(np.abs(test_c[signal] - truth.ceiling_train[signal])) < 0.07
    assert np.all(test_c[signal] <= est[signal])
    (row,) = queries.compare(store, ["subject"], roi="V4", split="validation", n_boot=100,
                             extra={"_id": fits[("ridge", "voxels")].run_id})
    _, r = _val_r(store, fits[("ridge", "voxels")].run_id)
    assert row["ceiling"] is not None and 0.3 < row["frac_ceiling"] < 1.2


def test_cs431_protocol_reproduces_the_2019_splits(world):
    from pipeline.evaluation.splits import cs431_splits

    settings, store, feat, _ = world
    out = fit_and_log(store, settings, feat.run_id, "S1", "V4", FitConfig(method="ridge", protocol="cs431"))
    run = out.run
    assert run["status"] == "COMPLETED" and run["config"]["protocol"] == "cs431"
    splits, _ = cs431_splits(240, round(240 / 7), 5, 0)
    recorded = {s["name"]: s["test_indices"] for s in run["splits"]}
    for i, (_, test) in enumerate(splits):
        assert recorded[f"test{i}"] == test.tolist()
    medians = []
    for i in range(5):
        got = load_scores(store, [run["_id"]], f"test{i}", ["r2_corr"])[run["_id"]]
        medians.append(np.nanmedian(got.values["r2_corr"]))
    assert run["cs431"]["test"]["mean"] == pytest.approx(np.mean(medians))
    # the 2019 alpha grid (1e-4..1) on unscaled features overfits: train r^2 near 1
    assert run["cs431"]["train"]["mean"] > 0.9


def test_retina_warped_features_are_grouped_as_their_own_preprocessing(world, tiny_vim1_dir):
    settings, store, feat, _ = world
    config = FeatureConfig(batch_size=40, retina_warp="default")
    warped = extract_and_log(store, settings, tiny_vim1_dir, config)
    assert warped.run_id != feat.run_id and warped.run["config"]["retina_warp"] == "default"
    assert warped.run["output"]["image_hashes_digest"] != feat.run["output"]["image_hashes_digest"]
    fit_and_log(store, settings, warped.run_id, "S1", "V4", FitConfig(method="ridge"))
    rows = queries.compare(store, ["method", "preprocessing"], roi="V4", n_boot=50,
                           extra={"config.protocol": "recommended", "subject": "S1"})
    assert ("ridge", "caffe+retinawarp") in {(r["method"], r["preprocessing"]) for r in rows}


def test_no_repeats_means_no_ceiling_and_says_so(world, tiny_vim1_dir, tmp_path):
    import shutil

    from pipeline.core.errors import DataFormatError
    from pipeline.data.layout import GROUND_TRUTH_FILE
    from tracker.record.datasets import compute_ceilings

    _, store, _, _ = world
    real_like = tmp_path / "vim1"
    shutil.copytree(tiny_vim1_dir, real_like, ignore=shutil.ignore_patterns(GROUND_TRUTH_FILE))
    before = store.db.noise_ceilings.count_documents({})
    with pytest.raises(DataFormatError, match="only repeat-averaged responses"):
        compute_ceilings(store, real_like, subjects=["S1"])
    assert store.db.noise_ceilings.count_documents({}) == before


def test_a_deleted_feature_file_is_one_clear_error_naming_path_and_fix(world, tmp_path):
    settings, _, feat, _ = world
    path = Path(feat.run["output"]["path"])
    moved = tmp_path / "away.h5"
    path.rename(moved)
    try:
        env = {**os.environ, "TRACKER_MONGO_URI": settings.mongo_uri, "TRACKER_DB_NAME": settings.db_name,
               "TRACKER_HOME": str(settings.home)}
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_fit.py"), "--features",
                               feat.run_id, "--subject", "S1", "--method", "ridge", "--target", "voxels",
                               "--force", "--quiet"], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert str(path) in proc.stderr and "TRACKER_PATH_MAP" in proc.stderr
    finally:
        moved.rename(path)
