"""Queries on planted per-voxel scores: compare with CIs, significance, ceilings,
server-side summaries, per-voxel lookups, paired voxels, volumes, run diffs."""

import numpy as np
import pytest

from pipeline.core.errors import ConfigError
from pipeline.evaluation.intervals import bootstrap_ci
from tracker.analysis import queries, voxels
from tracker.analysis import scores as arrays
from tracker.analysis.rundiff import diff_runs

from .seed_db import feature_run
from .seed_scores import add_ceiling, add_fit

RNG = np.random.default_rng(11)
F32 = 1e-6


@pytest.fixture
def world(store):
    frun = feature_run()
    planted = {
        "ridge": RNG.normal(0.3, 0.1, 10), "pls": RNG.normal(0.2, 0.1, 10),
        "s2": RNG.normal(0.1, 0.1, 7), "conv4": RNG.normal(0.25, 0.1, 10),
    }
    p = np.array([0.001, 0.2, 0.01, 0.04, 0.9, 0.5, 0.03, 0.06, 0.002, 0.7])
    runs = {
        "ridge": add_fit(store, "S1", "ridge", planted["ridge"], p_val=p, frun=frun),
        # same voxels in another order: pairing must go by voxel id
        "pls": add_fit(store, "S1", "pls", planted["pls"][::-1], voxel_ids=np.arange(10, 0, -1), frun=frun),
        "s2": add_fit(store, "S2", "ridge", planted["s2"]),
        "conv4": add_fit(store, "S1", "ridge", planted["conv4"], layer="conv4"),
    }
    add_fit(store, "S1", "ridge", np.ones(10), status="FAILED")
    ceiling = np.linspace(0.5, 0.9, 10)
    add_ceiling(store, "S1", np.arange(1, 11), ceiling)
    return runs, planted, p, ceiling


def test_compare_bootstrap_ci_significance_and_ceiling(store, world):
    runs, planted, p, ceiling = world
    rows = queries.compare(store, ["subject", "method", "layer"], split="validation", n_boot=500, seed=3)
    assert len(rows) == 4  # the FAILED run is not a group of its own and adds no voxels
    row = next(r for r in rows if (r["subject"], r["method"], r["layer"]) == ("S1", "ridge", "conv3"))
    v = planted["ridge"]  # score columns: the float64 values exactly
    assert row["n"] == 10 and row["n_runs"] == 1
    assert row["mean"] == pytest.approx(planted["ridge"].mean(), abs=1e-15)
    assert row["median"] == pytest.approx(np.median(planted["ridge"]), abs=1e-15)
    for stat in ("mean", "median"):
        ci = bootstrap_ci(v, stat, 500, 0.95, 3)
        assert row[f"{stat}_low"] == pytest.approx(ci.low, abs=1e-12)
        assert row[f"{stat}_high"] == pytest.approx(ci.high, abs=1e-12)
        assert row[f"{stat}_low"] <= row[stat] <= row[f"{stat}_high"]
    assert row["n_significant"] == int(np.sum(p < 0.05)) == 5
    assert row["frac_significant"] == pytest.approx(0.5)
    assert row["frac_ceiling"] == pytest.approx(planted["ridge"].mean() / ceiling.mean(), abs=1e-15)
    assert row["ceiling"] == pytest.approx(ceiling.mean())
    s2 = next(r for r in rows if r["subject"] == "S2")
    assert s2["n_significant"] is None and s2["frac_ceiling"] is None  # not stored / no ceiling
    # seeded: the same call gives the same intervals
    again = queries.compare(store, ["subject", "method", "layer"], split="validation", n_boot=500, seed=3)
    assert [r["median_low"] for r in again] == [r["median_low"] for r in rows]


def test_compare_r2_corr_ceiling_is_squared(store, world):
    runs, planted, _, ceiling = world
    rows = queries.compare(store, ["subject", "layer"], metric="r2_corr", n_boot=0,
                           extra={"subject": "S1", "features.layer": "conv4"})
    assert len(rows) == 1 and rows[0]["mean_low"] is None and rows[0]["ci_method"] is None
    assert rows[0]["frac_ceiling"] == pytest.approx((planted["conv4"] ** 2).mean() / (ceiling ** 2).mean(),
                                                    rel=1e-5)


def test_analytic_intervals_beyond_the_bootstrap_budget(monkeypatch):
    v = np.random.default_rng(0).normal(0.2, 0.1, 5001)
    monkeypatch.setattr(queries, "BOOT_BUDGET", 10)
    ci = queries.intervals(v, n_boot=100)
    assert ci["ci_method"].startswith("analytic")
    half = 1.959964 * v.std(ddof=1) / np.sqrt(v.size)
    assert ci["mean_low"] == pytest.approx(v.mean() - half, rel=1e-6)
    srt = np.sort(v)  # binomial(5001, .5) 2.5% quantile: rank 2431 (1-based)
    assert srt[2429] <= ci["median_low"] <= srt[2431] and ci["median_low"] < np.median(v) < ci["median_high"]


def test_score_columns_read_back_what_was_stored(store, world):
    runs, planted, p, _ = world
    fields = ["r", "hyper", "p", "significant"]
    # score columns: one copy, the float64 values exactly
    rid = runs["ridge"]["_id"]
    # 10 voxels in chunks of 3 -> 4 chunks x (ids, r, r2_corr, r2, hyper + p, significant on validation)
    assert store.db.voxel_columns.count_documents({"run_id": rid}) == 4 * 5 + 4 * 7
    got = arrays.load_scores(store, [rid], "validation", fields)[rid]
    np.testing.assert_array_equal(got.values["r"], planted["ridge"])
    np.testing.assert_array_equal(got.values["p"], p)
    np.testing.assert_array_equal(got.values["hyper"], np.arange(10.0))
    np.testing.assert_array_equal(got.values["significant"], (p < 0.05).astype(float))
    assert got.voxel_ids.tolist() == list(range(1, 11))
    assert got.chunk.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    test = arrays.load_scores(store, [rid], "test", fields)[rid]
    assert set(test.values) == {"r", "hyper"}  # no permutation test on that split
    no_ids = arrays.load_scores(store, [rid], "validation", ["r"], ids=False)[rid]
    assert no_ids.voxel_ids.tolist() == [-1] * 10 and no_ids.values["r"].size == 10
    lid = runs["pls"]["_id"]
    stored = arrays.load_scores(store, [lid], "validation", ["r"])[lid]
    np.testing.assert_array_equal(stored.values["r"], planted["pls"][::-1])
    assert stored.voxel_ids.tolist() == list(range(10, 0, -1)) and stored.chunk.tolist()[:4] == [0, 0, 0, 1]
    sid = runs["s2"]["_id"]
    np.testing.assert_array_equal(arrays.load_scores(store, [sid], "validation")[sid].values["r"],
                                  planted["s2"])
    # one call over several runs
    assert set(arrays.load_scores(store, [rid, lid, sid], "validation")) == {rid, lid, sid}


def test_server_side_fit_and_group_summaries(store, world):
    runs, planted, _, _ = world
    rows = queries.fit_summaries(store, {"subject": "S1"}, "validation", "r")
    assert [r["run_id"] for r in rows] == sorted(
        [runs[k]["_id"] for k in ("ridge", "pls", "conv4")],
        key=lambda i: -np.median(planted[next(k for k in runs if runs[k]["_id"] == i)]))
    assert rows[0]["median"] == pytest.approx(np.median(planted["ridge"]))
    groups = queries.group_summaries(store, ["subject", "method"], {}, "validation", "r")
    s1_ridge = next(g for g in groups if (g["subject"], g["method"]) == ("S1", "ridge"))
    both = np.concatenate([planted["ridge"], planted["conv4"]])
    assert s1_ridge["n_runs"] == 2 and s1_ridge["n"] == 20
    assert s1_ridge["mean"] == pytest.approx(both.mean(), abs=1e-12)  # exact pooled mean
    assert s1_ridge["best_median"] == pytest.approx(np.median(planted["ridge"]), abs=1e-12)
    assert [g["mean"] for g in groups] == sorted((g["mean"] for g in groups), reverse=True)


def test_top_voxels_with_coordinates(store, world):
    runs, planted, p, _ = world
    s1 = voxels.select_runs(store, query={"subject": "S1"})
    rows = voxels.top_voxels(store, s1, "validation", "r", n=3)
    pool = [(v, k, i + 1) for k in ("ridge", "conv4") for i, v in enumerate(planted[k])]
    pool += [(v, "pls", 10 - i) for i, v in enumerate(planted["pls"][::-1])]
    best = sorted(pool, reverse=True)[:3]
    assert [(r["run_id"], r["voxel_id"]) for r in rows] == [(runs[k]["_id"], vid) for _, k, vid in best]
    assert [r["r"] for r in rows] == pytest.approx([b[0] for b in best], abs=F32)
    top = rows[0]
    assert (top["i"], top["j"], top["k"]) == (top["voxel_id"] - 1, 0, 0)
    ridge_top = voxels.top_voxels(store, [runs["ridge"]], n=1)[0]
    at = int(np.argmax(planted["ridge"]))
    assert ridge_top["voxel_id"] == at + 1 and ridge_top["p"] == p[at]
    assert ridge_top["significant"] is bool(p[at] < 0.05) and ridge_top["hyper"] == at
    worst = voxels.top_voxels(store, [runs["ridge"]], n=1, lowest=True)[0]
    assert worst["voxel_id"] == int(np.argmin(planted["ridge"])) + 1
    with pytest.raises(ConfigError, match="--metric"):
        voxels.top_voxels(store, s1, metric="auc")


def test_one_voxel_across_runs(store, world):
    runs, planted, p, _ = world
    rows = voxels.voxel_across_runs(store, 4, voxels.select_runs(store), "validation")
    got = {r["run_id"]: r for r in rows}
    assert set(got) == {runs[k]["_id"] for k in runs}  # voxel 4 is in every run; FAILED excluded
    assert [r["run_id"] for r in rows] == sorted(got)
    ridge = got[runs["ridge"]["_id"]]  # score columns: exact float64, found client-side
    assert ridge["r"] == planted["ridge"][3] and ridge["r2_corr"] == planted["ridge"][3] ** 2
    assert ridge["p"] == p[3] and ridge["significant"] is True and ridge["hyper"] == 3.0
    # stored in reverse order: found by voxel id
    assert got[runs["pls"]["_id"]]["r"] == planted["pls"][3]
    assert got[runs["s2"]["_id"]]["r"] == planted["s2"][3]
    assert got[runs["s2"]["_id"]]["p"] is None and got[runs["s2"]["_id"]]["significant"] is None
    assert got[runs["conv4"]["_id"]]["p"] is None and got[runs["conv4"]["_id"]]["significant"] is None
    both = voxels.voxel_across_runs(store, 9, [runs["s2"], runs["ridge"]])
    assert len(both) == 2 and {r["split"] for r in both} == {"test", "validation"}  # S2 has 7 voxels
    assert both[0]["r"] == pytest.approx(planted["ridge"][8] - 0.1)
    assert voxels.voxel_across_runs(store, 11, [runs["ridge"], runs["pls"]]) == []  # scored nowhere
    with pytest.raises(ConfigError, match="between 1 and"):
        voxels.voxel_across_runs(store, 0, [runs["ridge"]])


def test_paired_scores_pair_by_voxel_id(store, world):
    runs, planted, _, _ = world
    data = voxels.paired_scores(store, runs["ridge"], runs["pls"], "validation", "r")
    assert data["voxel_ids"] == list(range(1, 11))
    np.testing.assert_array_equal(data["a"], planted["ridge"])  # score columns: exact
    np.testing.assert_allclose(data["b"], planted["pls"], atol=F32)
    d = planted["ridge"] - planted["pls"]
    assert data["stats"]["n"] == 10
    assert data["stats"]["median_diff"] == pytest.approx(np.median(d), abs=1e-5)


def test_volume_places_voxels_column_major():
    i, j, k = arrays.voxel_coords([1, 64, 65, 4097, 73728])
    assert list(zip(i, j, k)) == [(0, 0, 0), (63, 0, 0), (0, 1, 0), (0, 0, 1), (63, 63, 17)]


def test_volume_of_a_run(store, world):
    runs, planted, _, _ = world
    vol = voxels.volume(store, runs["pls"], "validation", "r")
    assert vol.shape == (64, 64, 18) and np.isfinite(vol).sum() == 10
    np.testing.assert_allclose(vol[:10, 0, 0], planted["pls"], atol=F32)


def test_diff_runs_shows_what_differs(store, world):
    runs, *_ = world
    rows = diff_runs(runs["ridge"], runs["conv4"])
    fields = {r["field"]: r for r in rows}
    assert fields["features.layer"]["a"] == "conv3" and fields["features.layer"]["b"] == "conv4"
    assert "config.method" not in fields and "provenance.host" not in fields
    every = {r["field"] for r in diff_runs(runs["ridge"], runs["conv4"], show_all=True)}
    assert {"config.method", "provenance.host", "subject"} <= every


def test_run_filter_combines_where_and_exact(store, world):
    q = queries.run_filter(["method=ridge"], subject="S1")
    assert {r["_id"] for r in queries.completed_fits(store, extra=q)} == {
        world[0]["ridge"]["_id"], world[0]["conv4"]["_id"]}
    with pytest.raises(ConfigError):
        queries.run_filter(["colour=red"])
