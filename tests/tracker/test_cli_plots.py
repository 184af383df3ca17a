import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tracker.cli import app
from tracker.figures import draw
from tracker.figures import figure_data as plots

from .seed_db import add_fit, stored


@pytest.fixture
def seeded(store):
    rng = np.random.default_rng(0)
    runs = {}
    for subject in ("S1", "S2"):
        for method, mu in (("ridge", 0.3), ("pls", 0.2)):
            runs[(subject, method)] = add_fit(store, subject, method, rng.normal(0.1, 0.05, 6),
                                              rng.normal(mu, 0.05, 6))
        y = rng.normal(size=20)
        add_fit(store, subject, "pls", [0.4], [0.5], target="roi_mean",
                predictions={"validation": {"y_true": y.tolist(), "y_pred": (0.5 * y).tolist()}})
    return runs


runner = CliRunner()


def test_runs_list_and_show_json(env, seeded):
    res = runner.invoke(app, ["runs", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 6 and {r["subject"] for r in rows} == {"S1", "S2"}
    run_id = seeded[("S1", "ridge")]["_id"]
    res = runner.invoke(app, ["runs", "show", run_id[:9], "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["_id"] == run_id


def test_compare_json_and_table(env, seeded, store):
    res = runner.invoke(app, ["compare", "--by", "subject,method", "--roi", "V4", "--split",
                              "validation", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 4
    s1_ridge = next(r for r in rows if r["subject"] == "S1" and r["method"] == "ridge")
    values = stored(store, seeded[("S1", "ridge")]["_id"])
    assert s1_ridge["mean"] == pytest.approx(values.mean())
    res = runner.invoke(app, ["compare", "--by", "method"])
    assert res.exit_code == 0 and "ridge" in res.stdout and "pls" in res.stdout


def test_cli_errors_are_one_clear_line(env, seeded):
    res = runner.invoke(app, ["compare", "--by", "colour"])
    assert res.exit_code == 2
    assert "unknown field(s) colour" in res.stderr and "Traceback" not in res.output
    res = runner.invoke(app, ["runs", "show", "nope"])
    assert res.exit_code == 2 and "no run with id" in res.stderr


def test_db_status_json(env, seeded):
    res = runner.invoke(app, ["db", "status", "--json"])
    assert res.exit_code == 0, res.output
    status = json.loads(res.stdout)
    assert status["collections"]["fit_runs"]["documents"] == 6
    assert "one_completed_per_config" in status["collections"]["fit_runs"]["indexes"]


def test_plot_data_and_files(env, seeded, store, tmp_path):
    rows = plots.bars_data(store, "S1", "V4", "r")
    assert {(r["split"], r["method"]) for r in rows} == {
        (s, m) for s in ("test", "validation") for m in ("ridge", "pls")}
    val_ridge = next(r for r in rows if r["split"] == "validation" and r["method"] == "ridge")
    r = stored(store, seeded[("S1", "ridge")]["_id"])
    assert val_ridge["mean"] == pytest.approx(r.mean()) and val_ridge["std"] == pytest.approx(r.std(ddof=1))
    avg = plots.roi_average_data(store, "S1")
    assert len(avg) == 1 and len(avg[0]["y_true"]) == 20
    res = runner.invoke(app, ["plot", "--out", str(tmp_path / "figs")])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert "bars_S1_V4_r.png" in names and "roi_average_S2_V4.svg" in names
    assert draw.chance_level("r2_corr", 1 / 119) == pytest.approx(1 / 119)
