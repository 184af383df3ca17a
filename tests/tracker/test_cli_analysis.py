"""The analysis commands: compare (CIs), summaries, runs diff, scores top/voxel, export."""

import csv
import io
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tracker.analysis import queries
from tracker.cli import app

from .seed_db import feature_run, stored
from .seed_scores import add_fit

runner = CliRunner()


@pytest.fixture
def seeded(store):
    rng = np.random.default_rng(5)
    frun = feature_run()
    return {
        "ridge": add_fit(store, "S1", "ridge", rng.normal(0.3, 0.1, 8), p_val=np.linspace(0, 0.1, 8),
                         frun=frun),
        "pls": add_fit(store, "S1", "pls", rng.normal(0.2, 0.1, 8), frun=frun),
        "s2": add_fit(store, "S2", "ridge", rng.normal(0.1, 0.1, 8)),
    }


def invoke(*args):
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res


def test_compare_json_csv_and_table_agree_with_the_library(env, seeded, store):
    rows = json.loads(invoke("compare", "--by", "subject,method", "--n-boot", "200", "--json").stdout)
    lib = queries.compare(store, ["subject", "method"], n_boot=200)
    assert rows == json.loads(json.dumps(lib))
    ridge = next(r for r in rows if (r["subject"], r["method"]) == ("S1", "ridge"))
    assert ridge["n_significant"] == 4 and ridge["mean_low"] < ridge["mean"] < ridge["mean_high"]
    table = list(csv.DictReader(io.StringIO(invoke("compare", "--by", "subject,method", "--n-boot",
                                                   "200", "--csv").stdout)))
    assert [r["method"] for r in table] == [r["method"] for r in rows]
    assert float(table[0]["median_low"]) == pytest.approx(rows[0]["median_low"])
    out = invoke("compare", "--by", "method", "--subject", "S1").stdout
    assert "ridge" in out and "median_low" in out
    where = json.loads(invoke("compare", "--by", "subject", "--where", "subject=S2", "--json").stdout)
    assert [r["subject"] for r in where] == ["S2"]


def test_summaries_server_side(env, seeded):
    rows = json.loads(invoke("summaries", "--json").stdout)
    assert len(rows) == 3 and rows[0]["median"] >= rows[1]["median"] >= rows[2]["median"]
    groups = json.loads(invoke("summaries", "--by", "subject", "--json").stdout)
    assert {g["subject"]: g["n_runs"] for g in groups} == {"S1": 2, "S2": 1}


def test_runs_diff(env, seeded):
    a, b = seeded["ridge"]["_id"], seeded["pls"]["_id"]
    rows = json.loads(invoke("runs", "diff", a, b, "--json").stdout)
    method = next(r for r in rows if r["field"] == "config.method")
    assert (method["a"], method["b"]) == ("ridge", "pls")
    assert "features.layer" not in {r["field"] for r in rows}
    assert "config.method" in invoke("runs", "diff", a[:10], b[:10]).stdout


def test_scores_top_and_voxel(env, seeded, store):
    rows = json.loads(invoke("scores", "top", "--roi", "V4", "--n", "3", "--json").stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3] and rows[0]["r"] >= rows[1]["r"] >= rows[2]["r"]
    one = json.loads(invoke("scores", "top", "--run", seeded["pls"]["_id"], "--n", "1", "--json").stdout)
    assert one[0]["run_id"] == seeded["pls"]["_id"]
    assert invoke("scores", "top", "--n", "2", "--csv").stdout.startswith("rank,run_id")
    vox = json.loads(invoke("scores", "voxel", "3", "--subject", "S1", "--split", "validation",
                            "--json").stdout)
    got = {r["method"]: r["r"] for r in vox}
    assert got["ridge"] == stored(store, seeded["ridge"]["_id"])[2]  # score columns: exact
    assert got["pls"] == stored(store, seeded["pls"]["_id"])[2]  # score columns: exact
    assert {r["method"]: r["significant"] for r in vox} == {"ridge": True, "pls": None}


def test_export_formats(env, seeded, tmp_path):
    res = json.loads(invoke("export", "voxels", "--subject", "S1", "--split", "all", "--out",
                            str(tmp_path / "v.csv"), "--json").stdout)
    assert res["rows"] == 2 * 2 * 8  # 2 runs x 2 splits x 8 voxels
    rows = list(csv.DictReader((tmp_path / "v.csv").open()))
    assert {r["method"] for r in rows} == {"ridge", "pls"} and rows[0]["voxel_id"] == "1"
    invoke("export", "summaries", "--out", str(tmp_path / "s.json"))
    assert len(json.loads((tmp_path / "s.json").read_text())) == 3
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    invoke("export", "voxels", "--subject", "S1", "--split", "all", "--out", str(tmp_path / "v.parquet"))
    table = pq.read_table(tmp_path / "v.parquet").to_pydict()
    assert len(table["r"]) == 32 and table["r"][:8] == pytest.approx([float(r["r"]) for r in rows[:8]])


def test_errors_are_one_clear_line(env, seeded):
    for args, needle in ((["compare", "--metric", "auc"], "--metric 'auc'"),
                         (["scores", "top", "--split", "train"], "--split 'train'"),
                         (["scores", "voxel", "0"], "between 1 and"),
                         (["export", "nothing", "--out", "x.csv"], "--what 'nothing'"),
                         (["compare", "--where", "$where=1"], "")):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert needle in res.stderr and "Traceback" not in res.output
