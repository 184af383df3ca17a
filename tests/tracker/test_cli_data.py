import json

from typer.testing import CliRunner

from pipeline.data.responses import load_responses
from tracker.cli import app

runner = CliRunner()


def test_data_describe_table_and_json(tiny_vim1_dir):
    res = runner.invoke(app, ["data", "describe", str(tiny_vim1_dir), "--json"])
    assert res.exit_code == 0, res.output
    desc = json.loads(res.stdout)
    resp = load_responses(tiny_vim1_dir, "S1")
    v4 = desc["subjects"]["S1"]["rois"]["V4"]
    clean = resp.select("V4")
    assert (v4["all"], v4["clean"], v4["dropped"]) == (clean.n_total, clean.voxel_ids.size, clean.n_dropped)
    res = runner.invoke(app, ["data", "describe", str(tiny_vim1_dir)])
    assert res.exit_code == 0 and "V4" in res.stdout and f"train {resp.train.shape[0]}" in res.stdout


def test_data_describe_missing_dir_is_one_clear_error(tmp_path):
    res = runner.invoke(app, ["data", "describe", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "nope" in res.stderr and "Traceback" not in res.output
