"""Figure data from the database (not pixels): bars with CIs, scatter, distributions,
layers, volume maps, ceiling-normalised variants; files for every figure; the report."""

import html.parser
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.core.vocab import layer_sort_key
from tracker.cli import app
from tracker.figures import draw, report, standard
from tracker.figures import figure_data as plots
from tracker.figures.draw import METRIC_LABELS

from .seed_db import feature_run
from .seed_scores import add_ceiling, add_fit

ROOT = Path(__file__).resolve().parents[2]
F32 = 1e-6


@pytest.fixture
def world(store):
    rng = np.random.default_rng(2)
    frun, warped = feature_run(), feature_run(warp="default")
    planted = {k: rng.normal(mu, 0.1, 12) for k, mu in
               (("ridge", 0.3), ("pls", 0.2), ("warp", 0.35), ("conv4", 0.25), ("s2", 0.1))}
    runs = {
        "ridge": add_fit(store, "S1", "ridge", planted["ridge"], frun=frun),
        "pls": add_fit(store, "S1", "pls", planted["pls"], frun=frun),
        "warp": add_fit(store, "S1", "ridge", planted["warp"], frun=warped),
        "conv4": add_fit(store, "S1", "ridge", planted["conv4"], layer="conv4", roi="V1",
                         voxel_ids=np.arange(12) + 4097),
        "conv3_v1": add_fit(store, "S1", "ridge", planted["conv4"] - 0.1, layer="conv3", roi="V1",
                            voxel_ids=np.arange(12) + 4097),
        "s2": add_fit(store, "S2", "pls", planted["s2"]),
    }
    add_ceiling(store, "S1", np.arange(1, 13), np.full(12, 0.6))
    return runs, planted


def test_bars_have_bootstrap_cis_chance_and_ceiling_fraction(store, world):
    runs, planted = world
    rows = plots.bars_data(store, "S1", "V4", "r2_corr", n_boot=300)
    assert {(r["split"], r["method"], r["preprocessing"]) for r in rows} == {
        (s, m, p) for s in ("test", "validation") for m, p in
        (("ridge", "caffe"), ("pls", "caffe"), ("ridge", "caffe+retinawarp"))}
    val = next(r for r in rows if (r["split"], r["method"], r["preprocessing"]) ==
               ("validation", "ridge", "caffe"))
    assert val["mean"] == pytest.approx((planted["ridge"] ** 2).mean(), abs=F32)
    assert val["mean_low"] < val["mean"] < val["mean_high"]
    assert val["chance_r2_corr"] == pytest.approx(1 / 119)
    assert val["frac_ceiling"] == pytest.approx((planted["ridge"] ** 2).mean() / 0.36, rel=1e-5)
    assert plots.bars_data(store, "S1", "V4", "r2_corr", n_boot=300) == rows  # same data again
    fig = draw.draw_bars(rows, "S1", "V4", "r2_corr")
    assert METRIC_LABELS["r2_corr"] in fig.axes[0].get_ylabel()
    assert "95% bootstrap CI" in fig.axes[0].get_ylabel()


def test_scatter_pairs_same_features_and_voxels(store, world):
    runs, planted = world
    pairs = plots.scatter_pairs(store, "V4")
    assert pairs == [("S1", runs["ridge"]["_id"], runs["pls"]["_id"])]
    data = plots.scatter_data(store, runs["ridge"]["_id"], runs["pls"]["_id"], metric="r")
    np.testing.assert_allclose(data["a"], planted["ridge"], atol=F32)
    np.testing.assert_allclose(data["b"], planted["pls"], atol=F32)
    fig = draw.draw_scatter(data)
    assert "Pearson r" in fig.axes[0].get_xlabel() and "ridge" in fig.axes[0].get_xlabel()


def test_distributions_per_roi_and_normalised(store, world):
    runs, planted = world
    rows = plots.distribution_data(store, "validation", "r", by="method")
    got = {(r["roi"], r["group"]): r for r in rows}
    # one box per condition: raw and warped ridge fits of the same voxels are never pooled;
    # a box names the fields that vary among its ROI's boxes
    assert set(got) == {("V1", "ridge conv3"), ("V1", "ridge conv4"), ("V4", "ridge caffe"),
                        ("V4", "ridge caffe+retinawarp"), ("V4", "pls caffe")}
    np.testing.assert_allclose(got[("V4", "ridge caffe")]["values"], np.sort(planted["ridge"]),
                               atol=F32)
    assert got[("V4", "ridge caffe")]["n"] == 12
    assert got[("V4", "pls caffe")]["n"] == 24  # S1 and S2: distinct voxels, pooled
    ceil = {(r["roi"], r["group"]): r for r in plots.distribution_data(store, "validation", "r",
                                                                        normalise=True)}
    # V1 ids have no ceiling; S2 has none
    assert set(ceil) == {("V4", "ridge caffe"), ("V4", "ridge caffe+retinawarp"), ("V4", "pls caffe")}
    np.testing.assert_allclose(ceil[("V4", "pls caffe")]["values"], np.sort(planted["pls"]) / 0.6,
                               atol=1e-5)


def test_layers_in_network_order(store, world):
    runs, planted = world
    rows = plots.layer_data(store, "validation", "r", n_boot=200)
    assert [(r["roi"], r["layer"]) for r in rows] == [("V1", "conv3"), ("V1", "conv4")]
    assert rows[1]["median"] == pytest.approx(np.median(planted["conv4"]), abs=F32)
    assert rows[0]["median_low"] <= rows[0]["median"] <= rows[0]["median_high"]
    assert sorted(["fc6", "conv10", "conv2", "pool5", "x1"], key=layer_sort_key) == [
        "conv2", "pool5", "fc6", "conv10", "x1"]


def test_volume_data_slices(store, world):
    runs, planted = world
    data = plots.volume_data(store, runs["conv4"]["_id"], "validation", "r")
    assert data["slices"] == [1]  # ids 4097.. start the second axial slice (k = 1)
    np.testing.assert_allclose(data["volume"][:12, 0, 1], planted["conv4"], atol=F32)
    assert np.isfinite(data["volume"]).sum() == 12


def test_make_all_and_plot_commands_write_png_and_svg(store, world, settings, monkeypatch, tmp_path):
    runs, _ = world
    names = {p.name for p in standard.make_all(store, tmp_path / "all", roi="V4", metric="r")}
    for stem in ("bars_S1_V4_r", "bars_S1_V4_r_ceiling", "distributions_validation_r",
                 "distributions_validation_r_ceiling", "layers_validation_r",
                 f"scatter_S1_V4_{runs['ridge']['_id']}_vs_{runs['pls']['_id']}", "bars_S2_V4_r"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names, stem
    assert any(n.startswith("volume_S1_") for n in names)
    for var, value in (("URI", settings.mongo_uri), ("DB_NAME", settings.db_name),
                       ("HOME", str(settings.home))):
        monkeypatch.setenv(f"TRACKER_MONGO_{var}" if var == "URI" else f"TRACKER_{var}", value)
    runner = CliRunner()
    for args in (["scatter", runs["ridge"]["_id"], runs["pls"]["_id"]], ["volume", runs["ridge"]["_id"]],
                 ["layers", "--ceiling"], ["distributions"], ["bars", "--subject", "S1", "--ceiling"]):
        res = runner.invoke(app, ["plot", *args, "--out", str(tmp_path / "one"), "--json"])
        assert res.exit_code == 0, (args, res.output)
        assert all(Path(p).is_file() for p in json.loads(res.stdout))


class _Tables(html.parser.HTMLParser):
    """Cells of every <table id=...> in a document."""

    def __init__(self):
        super().__init__()
        self.tables, self._id, self._row, self._cell = {}, None, None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._id = dict(attrs).get("id")
            self.tables[self._id] = []
        elif tag == "tr" and self._id:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._id].append(self._row)
            self._row = None
        elif tag == "table":
            self._id = None


def _tables(text):
    parser = _Tables()
    parser.feed(text)
    return parser.tables


def test_report_is_self_contained_and_matches_the_cli(store, world, settings, monkeypatch, tmp_path):
    monkeypatch.setenv("TRACKER_MONGO_URI", settings.mongo_uri)
    monkeypatch.setenv("TRACKER_DB_NAME", settings.db_name)
    monkeypatch.setenv("TRACKER_HOME", str(settings.home))
    out = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["report", "--out", str(out), "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "http://" not in text.replace('xmlns="http://www.w3.org', "") and "https://" not in text
    assert "<script" not in text and "<link" not in text and text.count("data:image/png;base64,") >= 4
    cli = json.loads(CliRunner().invoke(app, ["compare", "--by", "subject,method,preprocessing",
                                              "--split", "validation", "--n-boot", "200",
                                              "--json"]).stdout)
    table = _tables(text)["compare-validation"]
    assert table[0] == report.compare_columns("r") and "chance_r2_corr" not in table[0]
    expected = [[report.cell(row[c]) for c in report.compare_columns("r")] for row in cli]
    assert table[1:] == expected
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed: the headless rendering check needs it")
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--dump-dom", out.as_uri()],
                          capture_output=True, text=True, timeout=120)
    dom = _tables(proc.stdout)
    assert dom.get("compare-validation") == table, proc.stderr[-2000:]
    assert len(dom["summaries-validation"]) == 1 + 4  # header + the 4 V4 fits


def test_make_plots_and_bench_scripts(store, world, settings, tmp_path):
    env = {"TRACKER_MONGO_URI": settings.mongo_uri, "TRACKER_DB_NAME": settings.db_name,
           "TRACKER_HOME": str(settings.home), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_plots.py"), "--out",
                           str(tmp_path / "figs"), "--metric", "r"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "figs" / "bars_S1_V4_r.svg").is_file()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_tracker.py"), "--fits", "3",
                           "--voxels", "40", "--repeats", "1", "--no-mlflow", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["ours"]["compare_voxels"] == 3 * 40 and res["ours"]["compare_groups"] == 3
