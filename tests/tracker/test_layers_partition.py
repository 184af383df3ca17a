"""A layer sweep from one all-layer feature run, the hierarchy figure, and partition runs.

One module-wide database holds an all-layer feature run of the tiny data set (every
AlexNet layer of 280 images from one forward pass). Fits of single layers must equal
fits of that layer read into memory (streamed kernels are the same sums in the same
order: exact equality is expected, 1e-12 allowed for the stored float64 round trip).
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.core.errors import ConfigError
from pipeline.core.vocab import ALL_LAYERS
from pipeline.data.responses import load_responses
from pipeline.features.config import FeatureConfig
from pipeline.fit.config import FitConfig
from pipeline.fit.partition import PARTITION_FIELDS, variance_partition
from pipeline.fit.protocols import run_fit
from pipeline.models.kernels import fit_kernel, linear_kernel
from tracker.analysis.partitions import partition_columns, partition_rows
from tracker.analysis.scores import load_scores
from tracker.cli import app
from tracker.db.settings import Settings
from tracker.db.store import Store
from tracker.figures import figure_data, standard
from tracker.record import sweep
from tracker.record.layers import fit_layers
from tracker.record.partition import partition_and_log
from tracker.record.workflows import extract_and_log, fit_and_log, fit_from_options, load_features

CONFIG = FitConfig(n_permutations=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_vim1_dir, mongo_uri):
    name = "layers_" + uuid.uuid4().hex[:8]
    home = tmp_path_factory.mktemp("layers_home")
    settings = Settings(mongo_uri=mongo_uri, db_name=name, home=home, data_dir=tiny_vim1_dir)
    store = Store(mongo_uri, name)
    store.init_schema()
    feat = extract_and_log(store, settings, tiny_vim1_dir, FeatureConfig(layer="all", batch_size=40))
    yield settings, store, feat, tiny_vim1_dir
    store.client.drop_database(name)
    store.close()


def test_all_layer_run_records_its_layers(world):
    _, _, feat, _ = world
    run = feat.run
    assert run["layers"] == list(ALL_LAYERS)
    assert run["output"]["layers"] == list(ALL_LAYERS)
    assert run["output"]["layer_shapes"]["conv1"] == [55, 55, 96]


def test_layer_sweep_fits_one_run_per_layer_equal_to_in_memory_fits(world):
    settings, store, feat, data = world
    layers = fit_layers(store, feat.run_id, "conv1,conv5,fc8")
    outs = fit_from_options(store, settings, feat.run_id, ["S1"], "V1", [CONFIG], data_dir=data,
                            layers=layers)
    assert [o.run["features"]["layer"] for o in outs] == ["conv1", "conv5", "fc8"]
    assert len({o.run["config_key"] for o in outs}) == 3
    clean = load_responses(data, "S1").select("V1")
    for out in outs:
        run = out.run
        assert run["execution"]["features"] == "streamed"
        assert run["features"]["run_layers"] == list(ALL_LAYERS)
        ff = load_features(feat.run, settings, run["features"]["layer"])
        assert run["n_features"] == ff.train.shape[1]
        expected = run_fit(ff.train, ff.val, clean.train, clean.val, CONFIG)
        for split in expected.splits:
            got = load_scores(store, [run["_id"]], split.name, ["r", "hyper"])[run["_id"]]
            np.testing.assert_allclose(got.values["r"], split.r, rtol=0, atol=1e-12)
            np.testing.assert_array_equal(got.values["hyper"], split.hyper)
    again = fit_and_log(store, settings, feat.run_id, "S1", "V1", CONFIG, data_dir=data, layer="conv5")
    assert again.reused and again.run_id == outs[1].run_id
    with pytest.raises(ConfigError, match="holds layers conv1, conv2"):
        fit_and_log(store, settings, feat.run_id, "S1", "V1", CONFIG, data_dir=data, layer="pool9")


def test_sweep_spec_layer_axis_expands_to_the_recorded_keys(world, tmp_path):
    settings, store, feat, data = world
    spec = tmp_path / "layers.toml"
    spec.write_text(f'[sweep]\ndata_dir = "{data}"\n[features]\nlayer = "all"\nbatch_size = 40\n'
                    '[fits]\nlayer = "all"\nsubject = "S1"\nroi = "V1"\nmethod = "ridge"\n'
                    'target = "voxels"\nn_permutations = 0\n')
    feats, fits = sweep.expand(sweep.load_spec(spec), store, data)
    assert [t.key for t in feats] == [feat.run["config_key"]]
    assert [t.layer for t in fits] == list(ALL_LAYERS)
    states = {r["task"]: r["state"] for r in sweep.task_states(store, feats, fits)}
    done = sorted(t.layer for t in fits if states[t.label] == "done")
    assert {"conv1", "conv5", "fc8"} <= set(done)  # the fits of the test above, by key


def test_hierarchy_data_marks_the_best_layer_and_refuses_ambiguity(world):
    settings, store, feat, data = world
    for layer in ("conv1", "conv3", "fc8"):
        fit_and_log(store, settings, feat.run_id, "S1", "V1", CONFIG, data_dir=data, layer=layer)
    rows = figure_data.layer_data(store, "validation", "r", n_boot=100)
    v1 = [r for r in rows if r["roi"] == "V1"]
    assert [r["layer"] for r in v1] == [x for x in ALL_LAYERS if x in {r["layer"] for r in v1}]
    assert len(v1) >= 3 and sum(r["best"] for r in v1) == 1
    best = next(r for r in v1 if r["best"])
    assert best["median"] == max(r["median"] for r in v1)
    assert all(r["median_low"] <= r["median"] <= r["median_high"] for r in v1)
    fig = standard.draw_layers(rows, "validation", "r")
    assert fig.axes[0].get_title() == "V1"
    # a second fit of one (ROI, layer) that differs outside the condition: refused, or left out
    twin = store.find_runs("fit_runs", {"_id": v1[0]["run_id"]})[0]
    twin.update({"_id": "fi-twin" + uuid.uuid4().hex[:6], "config_key": "f" * 64})
    store.insert_run("fit_runs", twin)
    with pytest.raises(ConfigError, match="differ only outside"):
        figure_data.layer_data(store, "validation", "r", n_boot=0, strict=True)
    assert not [r for r in figure_data.layer_data(store, "validation", "r", n_boot=0) if r["roi"] == "V1"]
    store.delete_run("fit_runs", twin["_id"])


def test_partition_run_stores_the_partition_of_two_layers(world, monkeypatch):
    settings, store, feat, data = world
    out = partition_and_log(store, settings, f"{feat.run_id}:conv1", f"{feat.run_id}:fc8", "S1", "V1",
                            data_dir=data)
    run = out.run
    assert run["status"] == "COMPLETED" and run["_id"].startswith("pa-")
    assert (run["spaces"]["A"]["layer"], run["spaces"]["B"]["layer"]) == ("conv1", "fc8")
    cols = partition_columns(store, run["_id"])
    clean = load_responses(data, "S1").select("V1")
    np.testing.assert_array_equal(cols["voxel_ids"], clean.voxel_ids)
    kernels = []
    for layer in ("conv1", "fc8"):
        ff = load_features(feat.run, settings, layer)
        K, scaler = fit_kernel(ff.train, True)
        kernels.append((K, linear_kernel(ff.train, scaler, Z=ff.val)))
    ref = variance_partition((kernels[0][0], kernels[1][0]), (kernels[0][1], kernels[1][1]),
                             clean.train, clean.val).columns()
    for name in PARTITION_FIELDS:
        np.testing.assert_allclose(cols[name], ref[name], rtol=0, atol=1e-9)
        assert run["summary"]["validation"][name]["mean"] == pytest.approx(float(ref[name].mean()))
    np.testing.assert_allclose(cols["unique_a"] + cols["unique_b"] + cols["shared"], cols["r2_ab"],
                               atol=1e-12)
    assert partition_and_log(store, settings, f"{feat.run_id}:conv1", f"{feat.run_id}:fc8", "S1", "V1",
                             data_dir=data).reused
    rows = partition_rows(store, {"subject": "S1"})
    assert [(r["roi"], r["a"], r["b"]) for r in rows] == [("V1", "conv1 (caffe)", "fc8 (caffe)")]
    names = [name for name, _ in standard.partition_figures(store, "S1", run["_id"])]
    assert names == [f"partition_S1_{run['_id']}", f"partition_scatter_{run['_id']}"]
    with pytest.raises(ConfigError, match="same feature space"):
        partition_and_log(store, settings, f"{feat.run_id}:conv1", f"{feat.run_id}:conv1", "S1", "V1")
    for var, value in (("TRACKER_MONGO_URI", settings.mongo_uri), ("TRACKER_DB_NAME", settings.db_name),
                       ("TRACKER_HOME", str(settings.home))):
        monkeypatch.setenv(var, value)
    fit_id = store.find_runs("fit_runs", {"features.layer": "conv5", "roi": "V1"})[0]["_id"]
    res = CliRunner().invoke(app, ["partition", fit_id, f"{feat.run_id}:fc8", "--data-dir", str(data),
                                   "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["subject"], doc["roi"], doc["spaces"]["A"]["layer"]) == ("S1", "V1", "conv5")
    res = CliRunner().invoke(app, ["plot", "partition", "--subject", "S1", "--run", doc["_id"],
                                   "--out", str(settings.home / "plots"), "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)) == 6  # bars of the two pairs of spaces and one scatter, png + svg


def test_cli_all_layer_features_and_layer_sweep(world, monkeypatch):
    settings, store, feat, data = world
    for var, value in (("TRACKER_MONGO_URI", settings.mongo_uri), ("TRACKER_DB_NAME", settings.db_name),
                       ("TRACKER_HOME", str(settings.home))):
        monkeypatch.setenv(var, value)
    runner = CliRunner()
    res = runner.invoke(app, ["features", "--data-dir", str(data), "--layers", "all", "--batch-size", "40",
                              "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["_id"] == feat.run_id  # the same all-layer run, reused
    res = runner.invoke(app, ["fit", "--features", feat.run_id, "--layer", "all", "--subject", "S1",
                              "--roi", "V3", "--method", "ridge", "--target", "voxels", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    runs = json.loads(res.stdout)
    assert [r["features"]["layer"] for r in runs] == list(ALL_LAYERS)
    assert all(r["execution"]["features"] == "streamed" for r in runs)
    rows = figure_data.layer_data(store, "validation", "r", {"roi": "V3"}, n_boot=0, strict=True)
    assert [r["layer"] for r in rows] == list(ALL_LAYERS) and sum(r["best"] for r in rows) == 1
