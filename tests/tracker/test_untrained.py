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
from tracker.record.workflows import resolve_weights

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
