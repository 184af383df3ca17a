"""Untrained (seeded random) weights are never silent: required on purpose on real data,
and labelled in listings and comparisons."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.core.errors import ConfigError
from pipeline.data.layout import GROUND_TRUTH_FILE
from tracker.analysis import queries
from tracker.cli import app
from tracker.record.options import resolve_weights

from .seed_db import add_fit


def test_weights_are_required_on_data_that_is_not_the_synthetic_demo(tmp_path):
    real = tmp_path / "vim1"
    real.mkdir()
    with pytest.raises(ConfigError, match=r"--weights is required for .*vim1.*random:SEED"):
        resolve_weights(None, real)
    assert resolve_weights("random:3", real) == "random:3"  # on purpose
    assert resolve_weights("/w/bvlc_alexnet.npy", real) == "/w/bvlc_alexnet.npy"
    (real / GROUND_TRUTH_FILE).write_bytes(b"")  # the synthetic data's side file
    assert resolve_weights(None, real) == "random:0"


def test_cli_features_refuses_silent_random_weights(env, tmp_path):
    real = tmp_path / "vim1"
    real.mkdir()
    res = CliRunner().invoke(app, ["features", "--data-dir", str(real), "--quiet"])
    assert res.exit_code == 2 and "--weights is required" in res.output


def test_random_weights_are_labelled_untrained(store):
    add_fit(store, "S1", "ridge", np.full(4, 0.1), np.full(4, 0.2))
    (row,) = queries.compare(store, ["subject"], roi="V4")
    assert row["untrained"] == "untrained (random:0)"


def test_feature_listing_says_retina_warp_and_untrained_like_the_fits(store):
    from tracker.db import documents

    for warp in (None, "default"):
        config = {"model": "alexnet", "variant": "caffe", "layer": "conv3", "weights": "random:0",
                  "preprocess": "caffe", **({"retina_warp": warp} if warp else {})}
        doc = documents.feature_run_doc(config, "0" * 63 + ("1" if warp else "0"),
                                        {"_id": "ds-x", "data_dir": "/d"}, {})
        doc["status"] = "COMPLETED"
        store.insert_run("feature_runs", doc)
        frun = {**doc, "weights_sha256": "ab" * 32}
        add_fit(store, "S1", "ridge", np.full(3, 0.1), np.full(3, 0.2), frun=frun)
    feats = queries.list_runs(store, "features")
    fits = queries.list_runs(store, "fit")
    assert sorted(r["preprocess"] for r in feats) == ["caffe", "caffe+retinawarp"]
    assert sorted(r["preprocessing"] for r in fits) == ["caffe", "caffe+retinawarp"]
    assert {r["weights"] for r in feats + fits} == {"untrained (random:0)"}
    # the fit copies the weights' sha256, part of its condition
    from tracker.analysis import conditions

    idents = conditions.identities(store, queries.completed_fits(store, "V4", fields=conditions.READ_FIELDS))
    assert {i["weights_sha256"] for i in idents.values()} == {"ab" * 32}
