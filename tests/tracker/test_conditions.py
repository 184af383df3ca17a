"""Conditions: compare refuses mixed groups, pools each voxel once, averages seeds
exactly; contrasts find planted differences and hold their nominal rate without one;
best finds a planted best layer. Against the embedded server, scores planted."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.core.errors import ConfigError
from pipeline.core.keys import content_key
from tracker.analysis import contrasts, queries, winners
from tracker.cli import app
from tracker.db import documents

from .seed_db import FakeSplit, feature_run

N_IMG = 120


class HeldSplit(FakeSplit):
    """A validation split with planted held-out responses and predictions."""

    def __init__(self, y, pred):
        r = np.array([np.corrcoef(y[:, j], pred[:, j])[0, 1] for j in range(y.shape[1])])
        super().__init__("validation", "validation", r, n_test=y.shape[0])
        self.y_true, self.y_pred = y.astype(np.float32), pred.astype(np.float32)


def add(store, subject="S1", method="ridge", protocol="recommended", frun=None, seed=0,
        voxel_ids=None, r_val=None, held=None, roi="V4"):
    """A completed fit of one condition with planted validation (and test) scores."""
    frun = frun or feature_run()
    config = {"method": method, "protocol": protocol, "target": "voxels", "seed": seed}
    key = content_key(config, subject, roi, frun["config_key"], documents.new_run_id("k"))
    doc = documents.fit_run_doc(config, key, frun, subject, roi, {"host": "test"})
    if held is not None:
        val = HeldSplit(*held)
    else:
        val = FakeSplit("validation", "validation", np.asarray(r_val, float), n_test=N_IMG)
    ids = np.asarray(voxel_ids if voxel_ids is not None else np.arange(val.r.size) + 1000)
    test = FakeSplit("test", "test", val.r * 0.5, test_indices=np.arange(3))
    buckets = []
    for s in (test, val):
        buckets += documents.score_buckets(doc["_id"], subject, roi, s, ids)
        buckets += documents.prediction_docs(doc["_id"], subject, roi, s)
    doc.update(status="COMPLETED", n_voxels=int(ids.size),
               summary={s.name: documents.split_summary(s, 0.15) for s in (test, val)},
               splits=[documents.split_record(s) for s in (test, val)])
    store.insert_run("fit_runs", doc)
    store.insert_buckets(buckets)
    return doc


@pytest.fixture
def mixed(store):
    """Two protocols, two preprocessings, two layers, two seeds of one condition,
    and a V4 fit overlapping an 'all' fit of the same condition."""
    raw, warped, conv4 = feature_run(), feature_run(warp="default"), feature_run(layer="conv4")
    rng = np.random.default_rng(0)
    planted = {}
    for subject in ("S1", "S2"):
        planted[(subject, "raw")] = rng.normal(0.3, 0.1, 20)
        add(store, subject, frun=raw, r_val=planted[(subject, "raw")])
        add(store, subject, frun=warped, r_val=rng.normal(0.4, 0.1, 20))
        add(store, subject, protocol="cs431", frun=raw, r_val=rng.normal(0.1, 0.1, 20))
        add(store, subject, frun=conv4, r_val=rng.normal(0.35, 0.1, 20))
    return {"raw": raw, "warped": warped, "conv4": conv4, "planted": planted}


def test_compare_refuses_a_group_that_mixes_conditions_and_names_each_field(store, mixed):
    with pytest.raises(ConfigError) as exc:
        queries.compare(store, ["subject", "method"], roi="V4")
    msg = str(exc.value)
    assert "group S1/ridge mixes" in msg
    for part in ("preprocessing (caffe, caffe+retinawarp)", "protocol (cs431, recommended)",
                 "layer (conv3, conv4)", "--by subject,method,", "--where 'protocol="):
        assert part in msg


def test_compare_groups_exactly_when_every_varying_field_is_named(store, mixed):
    rows = queries.compare(store, ["subject", "preprocessing", "protocol", "layer"], roi="V4")
    assert len(rows) == 8  # 2 subjects x (raw, warped, cs431, conv4)
    assert all(r["n"] == 20 and r["n_runs"] == 1 for r in rows)
    raw = [r for r in rows if r["subject"] == "S1" and r["preprocessing"] == "caffe"
           and r["protocol"] == "recommended" and r["layer"] == "conv3"]
    assert raw[0]["mean"] == pytest.approx(mixed["planted"][("S1", "raw")].mean())
    assert raw[0]["condition"]["weights"] == "random:0"
    assert raw[0]["untrained"] == "untrained (random:0)"
    # filtering the other fields away leaves one condition per subject: pooling subjects is fine
    rows = queries.compare(store, [], roi="V4", extra=queries.run_filter(
        ["protocol=recommended", "preprocessing=caffe", "layer=conv3"]))
    assert len(rows) == 1 and rows[0]["n"] == 40 and rows[0]["n_runs"] == 2


def test_pooled_n_counts_each_distinct_voxel_once(store, mixed):
    # the same condition fitted for 'all' ROIs, whose voxels include the 20 V4 voxels
    r_all = np.r_[mixed["planted"][("S1", "raw")] + 0.2, np.full(10, 0.9)]
    add(store, "S1", frun=mixed["raw"], r_val=r_all, voxel_ids=np.arange(30) + 1000, roi="all")
    query = queries.run_filter(["protocol=recommended", "preprocessing=caffe", "layer=conv3",
                                "subject=S1"])
    (row,) = queries.compare(store, [], roi=None, extra=query)
    assert row["n"] == 30 and row["n_runs"] == 2  # 20 shared + 10 only in 'all', once each
    assert "20/30 voxels: mean of up to 2 fits" in row["pooling"]
    expected = np.r_[(mixed["planted"][("S1", "raw")] * 2 + 0.2) / 2, np.full(10, 0.9)]
    assert row["mean"] == pytest.approx(expected.mean())


def test_seed_averaging_is_exact_per_voxel(store, mixed):
    rng = np.random.default_rng(5)
    seeds = {s: rng.normal(0.2, 0.1, 20) for s in (1, 2)}
    layer5 = feature_run(layer="conv5")
    for s, r in seeds.items():
        add(store, "S1", frun=layer5, seed=s, r_val=r)
    query = queries.run_filter(["layer=conv5"])
    with pytest.raises(ConfigError, match=r"seed \(1, 2\).*--over seed"):
        queries.compare(store, ["subject"], roi="V4", extra=query)
    (row,) = queries.compare(store, ["subject"], roi="V4", extra=query, over=["seed"])
    per_voxel = (seeds[1] + seeds[2]) / 2
    assert row["n"] == 20 and row["n_runs"] == 2
    assert row["mean"] == pytest.approx(per_voxel.mean())
    assert row["median"] == pytest.approx(np.median(per_voxel))
    assert "(seed)" in row["pooling"]


def planted_pair(rng, v, signal_a, signal_b):
    """Responses and two models' predictions with the given signal weights."""
    y = rng.normal(size=(N_IMG, v))
    a = signal_a * y + rng.normal(size=(N_IMG, v))
    b = signal_b * y + rng.normal(size=(N_IMG, v))
    return y, a, b


def test_contrast_finds_a_planted_difference(store):
    rng = np.random.default_rng(1)
    y, a, b = planted_pair(rng, 60, 1.0, 0.4)
    add(store, "S1", frun=feature_run(layer="conv4"), held=(y, a))
    add(store, "S1", frun=feature_run(layer="conv2"), held=(y, b))
    (row,) = contrasts.contrast(store, ["layer=conv4"], ["layer=conv2"], n_permutations=500)
    assert row["n"] == 60 and row["differs"] == {"layer": ["conv4", "conv2"]}
    assert row["mean_diff"] > 0 and row["mean_diff_low"] > 0 and row["wilcoxon_p"] < 1e-6
    # r = 0.71 against 0.37 on 120 images: almost every voxel is a significant win for A
    assert row["share_a_wins"] > 0.8 and row["share_b_wins"] == 0.0
    assert row["n_a_wins_bh"] > 40 and row["voxel_test_note"] is None
    assert row["correction"] == "holm over 1 contrast(s)"


def test_contrast_without_a_difference_holds_the_nominal_rate(store):
    # equal signal, independent noise: per image the two predictions are exchangeable,
    # so the one-sided swap test rejects at most 5% in expectation; with 800 voxels the
    # binomial SD of the share is 0.008: the 3-SD band around 0.05 is 0.026..0.074.
    rng = np.random.default_rng(2)
    y, a, b = planted_pair(rng, 800, 0.6, 0.6)
    add(store, "S1", frun=feature_run(layer="conv4"), held=(y, a))
    add(store, "S1", frun=feature_run(layer="conv2"), held=(y, b))
    (row,) = contrasts.contrast(store, ["layer=conv4"], ["layer=conv2"], n_permutations=400)
    assert 0.026 <= row["share_a_wins"] <= 0.074
    assert 0.026 <= row["share_b_wins"] <= 0.074
    assert row["wilcoxon_p"] > 0.01


def test_contrast_family_is_corrected_and_each_side_is_one_condition(store, mixed):
    rows = contrasts.contrast(store, ["preprocessing=caffe+retinawarp"], ["preprocessing=caffe"],
                              by=["subject"], extra=queries.run_filter(["layer=conv3",
                                                                        "protocol=recommended"]))
    assert [r["subject"] for r in rows] == ["S1", "S2"]
    p = sorted(r["wilcoxon_p"] for r in rows)
    adj = sorted(r["p_adjusted"] for r in rows)
    assert adj[0] == pytest.approx(min(1, 2 * p[0]))  # Holm: smallest p times 2
    assert rows[0]["correction"] == "holm over 2 contrast(s)"
    assert rows[0]["voxel_test_note"].startswith("fits logged without held-out predictions")
    with pytest.raises(ConfigError, match="protocol"):
        contrasts.contrast(store, ["preprocessing=caffe"], ["preprocessing=caffe+retinawarp"])


def test_best_finds_the_planted_best_layer_with_its_ci(store):
    rng = np.random.default_rng(4)
    y = rng.normal(size=(N_IMG, 80))
    signal = {"conv2": 0.3, "conv3": 0.5, "conv4": 0.9, "conv5": 0.6}
    for layer, w in signal.items():
        add(store, "S1", frun=feature_run(layer=layer),
            held=(y, w * y + rng.normal(size=y.shape)))
    (row,) = winners.best(store, "layer", roi="V4", n_boot=300, n_permutations=300)
    assert row["best"] == "conv4" and row["n"] == 80
    table = {c["value"]: c for c in row["conditions"]}
    best = table["conv4"]
    assert best["mean_low"] < best["mean"] < best["mean_high"]
    assert best["mean_low"] > table["conv5"]["mean"]
    assert best["p_best"] > 0.95
    assert best["voxel_share"] > 0.5 and best["voxel_share_sig"] > 0.1
    assert sum(c["voxel_share"] for c in row["conditions"]) == pytest.approx(1.0)
    assert row["fixed"]["method"] == "ridge" and "layer" not in row["fixed"]


def test_cli_compare_contrast_and_best(env, store, mixed):
    runner = CliRunner()
    res = runner.invoke(app, ["compare", "--by", "subject,method", "--roi", "V4"])
    assert res.exit_code == 2 and "mixes" in res.output and "preprocessing" in res.output
    res = runner.invoke(app, ["contrast", "preprocessing=caffe+retinawarp", "preprocessing=caffe",
                              "--where", "layer=conv3", "--where", "protocol=recommended", "--json"])
    assert res.exit_code == 0, res.output
    import json

    (row,) = json.loads(res.output)
    assert row["n"] == 40 and row["differs"]["preprocessing"] == ["caffe+retinawarp", "caffe"]
    res = runner.invoke(app, ["best", "--over", "layer", "--roi", "V4", "--where",
                              "preprocessing=caffe", "--where", "protocol=recommended", "--json"])
    assert res.exit_code == 0, res.output
    (best,) = json.loads(res.output)
    assert best["best"] in ("conv3", "conv4") and best["n"] == 40


def test_best_normal_limit_agrees_with_the_bootstrap(monkeypatch):
    rng = np.random.default_rng(7)
    M = rng.normal([[0.30], [0.31], [0.20]], 0.1, size=(3, 4000))
    boot = winners._stability(M, 2000, 0)
    monkeypatch.setattr(queries, "BOOT_BUDGET", 10)
    normal = winners._stability(M, 2000, 0)
    np.testing.assert_allclose(normal[0], boot[0], atol=0.05)  # P(best) per candidate
    np.testing.assert_allclose(normal[1], boot[1], atol=5e-4)  # CI bounds of the means
    np.testing.assert_allclose(normal[2], boot[2], atol=5e-4)
    assert boot[0][2] == 0.0 and boot[0][1] > boot[0][0]
