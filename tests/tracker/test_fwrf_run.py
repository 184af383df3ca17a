"""An fwRF fit end to end: tiny synthetic vim-1 -> AlexNet conv3 maps -> fwRF and ridge ->
MongoDB -> receptive-field columns in exports and voxel queries -> RF figures."""

from __future__ import annotations

import csv
import json
import uuid

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.data.responses import load_responses
from pipeline.features.config import FeatureConfig
from pipeline.fit.config import FitConfig
from pipeline.fit.protocols import run_fit
from tracker.analysis.fields import RF_FIELDS
from tracker.analysis.scores import load_scores
from tracker.cli import app
from tracker.figures import rf_data
from tracker.figures.standard import rf_figures
from tracker.record.feature_files import fwrf_maps
from tracker.record.workflows import extract_and_log, fit_and_log, load_features

FWRF = FitConfig(method="fwrf", rf_centres=4, rf_sizes=2, rf_size_range=(2.0, 6.0), n_permutations=200)
runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_vim1_dir, mongo_uri):
    from tracker.db.settings import Settings
    from tracker.db.store import Store

    name = "fwrf_" + uuid.uuid4().hex[:8]
    settings = Settings(mongo_uri=mongo_uri, db_name=name, home=tmp_path_factory.mktemp("home"),
                        data_dir=tiny_vim1_dir)
    store = Store(mongo_uri, name)
    store.init_schema()
    feat = extract_and_log(store, settings, tiny_vim1_dir, FeatureConfig(batch_size=40))
    fw = fit_and_log(store, settings, feat.run_id, "S1", "V4", FWRF)
    ridge = fit_and_log(store, settings, feat.run_id, "S1", "V4", FitConfig(method="ridge", n_permutations=0))
    yield settings, store, feat, fw, ridge
    store.client.drop_database(name)
    store.close()


@pytest.fixture
def cli_env(world, monkeypatch):
    settings = world[0]
    monkeypatch.setenv("TRACKER_MONGO_URI", settings.mongo_uri)
    monkeypatch.setenv("TRACKER_DB_NAME", settings.db_name)
    monkeypatch.setenv("TRACKER_HOME", str(settings.home))
    return settings


def test_the_fwrf_run_records_its_grid_and_its_fields(world, tiny_vim1_dir):
    settings, store, feat, fw, _ = world
    run = fw.run
    assert run["status"] == "COMPLETED" and run["config"]["method"] == "fwrf"
    cfg = run["config"]
    assert (cfg["rf_centres"], cfg["rf_sizes"], cfg["stimulus_deg"]) == (4, 2, 20.0)
    assert run["n_features"] == 384 and run["execution"]["mode"] == "single"
    again = fit_and_log(store, settings, feat.run_id, "S1", "V4", FWRF)
    assert again.reused and again.run_id == fw.run_id
    # the stored columns are the fit's own numbers (the same fit, recomputed here)
    ff = load_features(feat.run, settings)
    resp = load_responses(tiny_vim1_dir, "S1").select("V4")
    direct = run_fit(*fwrf_maps(ff, feat.run, settings), resp.train, resp.val, FWRF)
    fields = FWRF.field_grid().fields()
    for split in ("test", "validation"):
        got = load_scores(store, [fw.run_id], split, ["r", "hyper", *RF_FIELDS])[fw.run_id]
        want = direct.split(split)
        np.testing.assert_array_equal(got.values["r"], want.r)
        for f in RF_FIELDS:
            np.testing.assert_array_equal(got.values[f], want.extra[f])
        rf = np.stack([got.values[f] for f in RF_FIELDS], axis=1)  # every field is a grid point
        assert (np.abs(rf[:, None, :] - fields[None]).max(axis=2).min(axis=1) == 0).all()


def test_rf_columns_in_export_and_voxel_queries(world, cli_env, tmp_path):
    _, _, _, fw, ridge = world
    out = tmp_path / "v4.csv"
    res = runner.invoke(app, ["export", "voxels", "--subject", "S1", "--roi", "V4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert set(RF_FIELDS) <= set(rows[0])
    by_method = {m: [r for r in rows if r["method"] == m] for m in ("fwrf", "ridge")}
    assert all(r["rf_x_deg"] != "" and -10 <= float(r["rf_x_deg"]) <= 10 for r in by_method["fwrf"])
    assert all(r["rf_size_deg"] == "" for r in by_method["ridge"])  # absent for other methods
    vid = int(by_method["fwrf"][0]["voxel_id"])
    res = runner.invoke(app, ["scores", "voxel", str(vid), "--subject", "S1", "--json"])
    assert res.exit_code == 0, res.output
    got = {(r["method"], r["split"]): r for r in json.loads(res.stdout)}
    first = by_method["fwrf"][0]
    assert got[("fwrf", first["split"])]["rf_y_deg"] == pytest.approx(float(first["rf_y_deg"]))
    assert got[("ridge", "validation")]["rf_x_deg"] is None


def test_rf_figures_from_the_database(world, cli_env, tmp_path):
    _, store, _, fw, ridge = world
    rows = rf_data.rf_data(store, "S1", significant_only=False)
    assert [(r["roi"], r["run_id"], r["n"]) for r in rows] == [("V4", fw.run_id, fw.run["n_voxels"])]
    paired = rf_data.fwrf_vs_ridge_data(store, fw.run_id, ridge.run_id)
    a, b = np.array(paired["a"], float), np.array(paired["b"], float)
    assert paired["stats"]["share_a_greater"] == pytest.approx(np.mean(a > b))
    names = [name for name, _ in rf_figures(store, "V4")]
    assert names == ["rf_centres_S1", "rf_size_S1", "fwrf_vs_ridge_S1_V4"]
    for cmd in (["rf-centres", "--all-voxels"], ["rf-size", "--all-voxels"], ["fwrf-vs-ridge"]):
        res = runner.invoke(app, ["plot", *cmd, "--out", str(tmp_path), "--json"])
        assert res.exit_code == 0, res.output
        assert all(p.endswith((".png", ".svg")) for p in json.loads(res.stdout))
    res = runner.invoke(app, ["plot", "rf-centres", "--subject", "S2"])
    assert res.exit_code == 2 and "no completed per-voxel fwrf fits" in res.output
