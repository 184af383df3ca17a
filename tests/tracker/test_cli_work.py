"""`tracker features` and `tracker fit` on the tiny synthetic vim-1: the installed CLI does
the whole job (real extraction, real fits, real embedded server)."""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from tracker.cli import app

runner = CliRunner()


def invoke(*args: str):
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res


def test_features_then_fit_record_runs_and_print_them(env, store, tiny_vim1_dir):
    res = invoke("features", "--data-dir", str(tiny_vim1_dir), "--layers", "conv3",
                 "--batch-size", "40", "--quiet", "--json")
    feat = json.loads(res.stdout)
    assert feat["status"] == "COMPLETED" and feat["kind"] == "features"
    assert feat["config"]["layer"] == "conv3" and feat["config"]["batch_size"] == 40
    assert feat["output"]["shapes"]["train"] == [240, 13, 13, 384]
    assert store.get_run(feat["_id"])[1]["config_key"] == feat["config_key"]
    again = invoke("features", "--data-dir", str(tiny_vim1_dir), "--layer", "conv3", "--batch-size", "40",
                   "--quiet")
    assert again.stdout.strip() == feat["_id"]  # same config on the same data: reused

    res = invoke("fit", "--features", feat["_id"][:8], "--subject", "S1", "--roi", "V4",
                 "--method", "ridge", "--target", "voxels", "--seed", "0", "--quiet", "--json")
    (fit,) = json.loads(res.stdout)
    assert (fit["subject"], fit["roi"], fit["target"]) == ("S1", "V4", "voxels")
    assert fit["config"]["method"] == "ridge" and fit["feature_run_id"] == feat["_id"]
    median = fit["summary"]["validation"]["r"]["median"]
    assert math.isfinite(median) and fit["summary"]["validation"]["r"]["n"] == fit["n_voxels"] > 0
    stored = store.get_run(fit["_id"])[1]
    assert stored["status"] == "COMPLETED" and stored["summary"]["validation"]["r"]["median"] == median

    table = invoke("fit", "--features", feat["_id"], "--subject", "S1", "--method", "ridge",
                   "--target", "voxels", "--quiet")
    assert f"{fit['_id']} (reused)" in table.stdout and "Pearson r on validation images" in table.stdout


def test_features_and_fit_reject_bad_options_with_one_line(env):
    res = runner.invoke(app, ["features", "--batch-size", "many", "--quiet"])
    assert res.exit_code == 2 and "--batch-size 'many'" in res.output
    res = runner.invoke(app, ["fit", "--features", "fe-nope", "--subject", "S1", "--method", "ridge",
                              "--target", "voxels", "--quiet"])
    assert res.exit_code == 2 and "no run with id" in res.output


def test_fit_without_a_feature_run_runs_the_standard_comparison(env, store, tiny_vim1_dir, monkeypatch):
    monkeypatch.setenv("TRACKER_DATA_DIR", str(tiny_vim1_dir))
    res = invoke("fit", "--method", "ridge", "--target", "voxels", "--quiet", "--json")
    fits = json.loads(res.stdout)
    assert [(f["subject"], f["roi"], f["config"]["method"]) for f in fits] == [
        ("S1", "V4", "ridge"), ("S2", "V4", "ridge")]
    (feature_run,) = store.find_runs("feature_runs", {"status": "COMPLETED"})
    assert {f["feature_run_id"] for f in fits} == {feature_run["_id"]}
    assert all(math.isfinite(f["summary"]["validation"]["r"]["mean"]) for f in fits)
