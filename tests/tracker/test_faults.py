"""Faults around files: a writer killed mid-HDF5, truncated and corrupt feature files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import DataFormatError, IntegrityError
from pipeline.features.config import FeatureConfig
from pipeline.features.reader import read_feature_file
from pipeline.features.writer import write_feature_file
from tests.pipeline.features.test_features import FakeExtractor, images
from tracker.record.maintenance import collect_garbage
from tracker.record.workflows import load_features

ROOT = Path(__file__).resolve().parents[2]


def test_kill_9_during_hdf5_write_leaves_nothing_at_the_final_path(store, settings):
    out = settings.feature_root / "feat.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.tracker.workers", "h5", str(out)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()[-2000:]
        temps = list(settings.feature_root.glob(".feat.h5.tmp-*"))
        assert len(temps) == 1  # half a file exists, under its temporary name only
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists()
    report = collect_garbage(store, settings)
    assert report["temp_files"] == [str(temps[0])] and report["orphan_files"] == []
    collect_garbage(store, settings, delete=True)
    assert not temps[0].exists()


@pytest.fixture
def feature_file(tmp_path):
    out = tmp_path / "features" / "good.h5"
    info = write_feature_file(out, FakeExtractor(), {"train": (6, [images(6, 1)]),
                                                     "val": (2, [images(2, 2)])}, FeatureConfig())
    return out, info


def test_truncated_feature_file_is_one_clear_error(feature_file):
    out, info = feature_file
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=f"feature file {out} is not a readable feature file"):
        read_feature_file(out)
    with pytest.raises(IntegrityError, match="has sha256 .* but .* was expected"):
        read_feature_file(out, expected_sha256=info.sha256)


def test_bit_flip_in_a_recorded_feature_file_is_caught_before_use(feature_file, settings):
    out, info = feature_file
    data = bytearray(out.read_bytes())
    data[-100] ^= 0xFF
    out.write_bytes(bytes(data))
    run = {"_id": "fe-x", "kind": "features", "status": "COMPLETED",
           "output": {"host": "h", "path": str(out), "sha256": info.sha256}}
    with pytest.raises(IntegrityError, match=f"feature file {out} has sha256"):
        load_features(run, settings)


def test_intact_feature_file_round_trips(feature_file):
    out, info = feature_file
    ff = read_feature_file(out, expected_sha256=info.sha256, flatten=True)
    assert ff.train.shape == (6, 12) and ff.val.shape == (2, 12)
    assert np.allclose(ff.train[0], (images(6, 1)[0] + 0.5).reshape(-1)[:12])
