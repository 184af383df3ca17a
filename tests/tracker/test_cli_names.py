"""#18: one validation layer for names, every CLI filter checked against the rows it returns,
empty answers that say what they looked for, and pairings that make no sense refused."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.core.errors import ConfigError
from tracker.analysis import names, queries
from tracker.cli import app

from . import seed_db
from .seed_scores import add_fit

runner = CliRunner()


@pytest.fixture
def seeded(store):
    """V4 and V1 fits of S1 and S2 (ridge / pls), one S1 V4 ROI-average fit; planted r."""
    frun = seed_db.feature_run()
    ids4 = np.arange(1, 7)
    return {
        ("S1", "V4", "ridge"): add_fit(store, "S1", "ridge", np.linspace(0.2, 0.5, 6), voxel_ids=ids4,
                                       frun=frun),
        ("S1", "V4", "pls"): add_fit(store, "S1", "pls", np.linspace(0.1, 0.4, 6), voxel_ids=ids4,
                                     frun=frun),
        ("S1", "V1", "ridge"): add_fit(store, "S1", "ridge", np.linspace(0.5, 0.9, 4), roi="V1",
                                       voxel_ids=np.arange(4) + 500, frun=frun),
        ("S2", "V4", "ridge"): add_fit(store, "S2", "ridge", np.linspace(0.0, 0.2, 5),
                                       voxel_ids=np.arange(1, 6)),
        "roi_mean": seed_db.add_fit(store, "S1", "ridge", [0.3], [0.4], roi="V4", target="roi_mean"),
    }


def ok(*args):
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res


def fails(code, *args):
    res = runner.invoke(app, list(args))
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    return res


# ------------------------------------------------------------------ the names module
def test_names_resolve_case_insensitively_and_list_choices():
    assert names.resolve_roi("v4") == "V4" and names.resolve_roi("latocc") == "LO"
    assert names.resolve_roi("v3a") == "V3A" and names.resolve_subject("s2") == "S2"
    assert names.resolve_method("RIDGE") == "ridge" and names.resolve_split("val") == "validation"
    assert names.resolve_rois("v1, V2,v1") == ["V1", "V2"] and names.resolve_rois("ALL") is None
    assert names.resolve_layer("Conv3") == "conv3" and names.resolve_layer("block7") == "block7"
    with pytest.raises(ConfigError, match=r"--roi 'V9': unknown roi; choose from V1, V2, V3, V3A"):
        names.resolve_roi("V9")
    with pytest.raises(ConfigError, match="cannot be combined"):
        names.resolve_rois("all,V1")
    with pytest.raises(ConfigError, match="choose from r, r2_corr, r2"):
        names.resolve_metric("auc")


def test_run_filter_resolves_options_and_refuses_a_where_on_an_option_field():
    assert queries.run_filter(subject="s1", roi="v1,V4") == {"subject": "S1",
                                                             "roi": {"$in": ["V1", "V4"]}}
    assert queries.run_filter(roi="all") == {}
    assert queries.run_filter(["subject=s2"]) == {"subject": {"$eq": "S2"}}
    with pytest.raises(ConfigError, match="--where names roi, which --roi also sets"):
        queries.run_filter(["method=ridge and roi=V1"], roi="V4")


# ------------------------------------------------------------- every command, same rules
@pytest.mark.parametrize("args", [
    ["scores", "top", "--roi", "V9"], ["report", "--roi", "V9"], ["compare", "--roi", "V9"],
    ["export", "voxels", "--roi", "V9", "--out", "x.csv"], ["summaries", "--roi", "V9"],
    ["plot", "bars", "--roi", "V9"], ["plot", "distributions", "--roi", "V9"],
    ["scores", "voxel", "3", "--roi", "V9"]])
def test_a_bad_roi_is_the_same_one_line_error_everywhere(env, args):
    res = fails(2, *args)
    assert "--roi 'V9': unknown roi; choose from V1, V2" in res.stderr


def test_bad_subject_in_where_and_option(env, seeded):
    assert "choose from S1, S2" in fails(2, "scores", "top", "--subject", "S3").stderr
    assert "choose from S1, S2" in fails(2, "runs", "list", "--where", "subject=S9").stderr
    assert "choose from fit, features" in fails(2, "runs", "list", "--kind", "fitz").stderr


def test_lower_case_names_find_the_runs(env, seeded):
    rows = json.loads(ok("scores", "top", "--roi", "v4", "--subject", "s1", "--n", "50", "--json").stdout)
    assert {(r["subject"], r["roi"]) for r in rows} == {("S1", "V4")} and len(rows) == 12
    where = json.loads(ok("summaries", "--where", "subject=s2", "--json").stdout)
    assert [r["run_id"] for r in where] == [seeded[("S2", "V4", "ridge")]["_id"]]


def test_an_empty_answer_says_what_it_looked_for_and_where(env, seeded, settings):
    res = fails(1, "scores", "top", "--roi", "LO")
    assert "roi=LO" in res.stderr and settings.db_name in res.stderr
    res = fails(1, "runs", "list", "--status", "failed")
    assert "status=FAILED" in res.stderr and settings.db_name in res.stderr
    res = fails(1, "report", "--roi", "V2", "--out", str(settings.home / "r.html"))
    assert "roi=V2" in res.stderr and not (settings.home / "r.html").exists()
    assert "roi=V3" in fails(1, "compare", "--roi", "V3").stderr


# ------------------------------------------------------------------ compare's --roi
def _groups(*args):
    return {tuple(r[k] for k in ("subject", "roi") if k in r): r
            for r in json.loads(ok("compare", *args, "--n-boot", "0", "--json").stdout)}


def test_compare_where_roi_is_not_overridden_by_the_roi_default(env, seeded):
    rows = json.loads(ok("compare", "--by", "subject", "--where", "roi=V1", "--n-boot", "0",
                         "--json").stdout)
    assert [(r["subject"], r["n"]) for r in rows] == [("S1", 4)]  # the V1 fit only
    assert rows[0]["mean"] == pytest.approx(np.linspace(0.5, 0.9, 4).mean())
    assert "which --roi also sets" in fails(2, "compare", "--roi", "V4", "--where", "roi=V1").stderr


def test_compare_several_rois_all_and_by_roi(env, seeded):
    # ridge only: S1 V4 also has a PLS fit of the same 6 voxels (another condition)
    by_roi = _groups("--by", "subject,roi", "--method", "ridge")  # every ROI, not the V4 default
    assert {k: r["n"] for k, r in by_roi.items()} == {("S1", "V1"): 4, ("S1", "V4"): 6, ("S2", "V4"): 5}
    assert _groups("--by", "subject,roi", "--roi", "all", "--method", "ridge") == by_roi
    two = _groups("--by", "subject,roi", "--roi", "v1,V4", "--subject", "S1", "--method", "ridge")
    assert {k: r["n"] for k, r in two.items()} == {("S1", "V1"): 4, ("S1", "V4"): 6}
    only_v4 = _groups("--by", "subject", "--method", "ridge")  # default still V4
    assert {k: r["n"] for k, r in only_v4.items()} == {("S1",): 6, ("S2",): 5}
    res = fails(2, "compare", "--by", "subject,roi")  # ridge and PLS of one voxel: refused
    assert "mixes method (pls, ridge)" in res.output


# ------------------------------------------------------------- each filter vs its rows
def test_export_voxels_writes_the_split_and_metric_asked_for(env, seeded, tmp_path):
    for split in ("test", "validation"):
        out = tmp_path / f"{split}.csv"
        ok("export", "voxels", "--subject", "S1", "--roi", "V4", "--split", split, "--out", str(out))
        rows = list(csv.DictReader(out.open()))
        assert {r["split"] for r in rows} == {split} and len(rows) == 12
        assert {r["roi"] for r in rows} == {"V4"} and {r["subject"] for r in rows} == {"S1"}
    ok("export", "voxels", "--roi", "V4", "--metric", "r2", "--out", str(tmp_path / "r2.csv"))
    rows = list(csv.DictReader((tmp_path / "r2.csv").open()))
    assert "r2" in rows[0] and "r" not in rows[0] and "r2_corr" not in rows[0]
    ridge = [float(r["r2"]) for r in rows if r["run_id"] == seeded[("S1", "V4", "ridge")]["_id"]]
    assert ridge == pytest.approx(np.linspace(0.2, 0.5, 6) ** 2 - 0.02)  # the planted R^2
    assert len(list(csv.DictReader(open(tmp_path / "r2.csv")))) == 6 + 6 + 5


@pytest.mark.parametrize("args,expect", [
    (["--subject", "S2"], {("S2", "V4", "ridge")}),
    (["--method", "pls"], {("S1", "V4", "pls")}),
    (["--roi", "V1"], {("S1", "V1", "ridge")}),
    (["--roi", "V1,V4", "--subject", "S1", "--method", "ridge"], {("S1", "V1", "ridge"),
                                                                  ("S1", "V4", "ridge")}),
    (["--where", "method=pls or roi=V1"], {("S1", "V4", "pls"), ("S1", "V1", "ridge")}),
])
def test_scores_top_and_summaries_filters_select_exactly_their_runs(env, seeded, args, expect):
    want = {seeded[k]["_id"] for k in expect}
    top = json.loads(ok("scores", "top", *args, "--n", "100", "--json").stdout)
    assert {r["run_id"] for r in top} == want
    summ = json.loads(ok("summaries", *args, "--json").stdout)
    assert {r["run_id"] for r in summ} <= want | {seeded["roi_mean"]["_id"]}
    assert want <= {r["run_id"] for r in summ}


def test_runs_list_filters_and_csv(env, seeded):
    rows = list(csv.DictReader(ok("runs", "list", "--subject", "s2", "--csv").stdout.splitlines()))
    assert [r["id"] for r in rows] == [seeded[("S2", "V4", "ridge")]["_id"]]
    rows = json.loads(ok("runs", "list", "--where", "roi=V1", "--json").stdout)
    assert [r["id"] for r in rows] == [seeded[("S1", "V1", "ridge")]["_id"]]


# ------------------------------------------------------------------ nonsense pairings
def test_scatter_refuses_pairs_across_subjects_rois_and_targets(env, seeded, tmp_path):
    a = seeded[("S1", "V4", "ridge")]["_id"]
    for other, word in ((seeded[("S2", "V4", "ridge")]["_id"], "subject"),
                        (seeded[("S1", "V1", "ridge")]["_id"], "roi"),
                        (seeded["roi_mean"]["_id"], "target")):
        res = fails(2, "plot", "scatter", a, other, "--out", str(tmp_path))
        assert f"({word} " in res.stderr and "cannot be paired" in res.stderr
    assert not list(tmp_path.iterdir())
    ok("plot", "scatter", a, seeded[("S1", "V4", "pls")]["_id"], "--out", str(tmp_path))


def test_voxel_commands_on_an_roi_average_run_say_what_it_is(env, seeded, tmp_path):
    rid = seeded["roi_mean"]["_id"]
    for args in (["plot", "volume", rid, "--out", str(tmp_path)], ["scores", "top", "--run", rid]):
        res = fails(2, *args)
        assert "ROI-average fit (target roi_mean)" in res.stderr and "voxel ids must" not in res.stderr


def test_tables_of_r_show_the_r_threshold_not_the_r2_chance(env, seeded, monkeypatch):
    from tracker.cli import common

    monkeypatch.setattr(common.console, "width", 400)  # room for every header unfolded
    summaries = ok("summaries", "--roi", "V4").stdout
    assert "r_threshold_p05" in summaries and "chance_r2_corr" not in summaries
    assert "0.15" in summaries  # the stored threshold of the seeded fits
    assert "chance_r2_corr" not in ok("compare", "--n-boot", "0").stdout
    assert "chance_r2_corr" in ok("compare", "--n-boot", "0", "--metric", "r2_corr").stdout
