"""A feature file is hashed once per process and file state, and again when it changes."""

from __future__ import annotations

import os

import pytest

from pipeline.core.errors import ConfigError, IntegrityError
from pipeline.core.files import sha256_file
from tracker.db.settings import Settings
from tracker.record import layers


def test_verified_path_hashes_once_and_sees_changes(tmp_path, monkeypatch):
    path = tmp_path / "f.h5"
    path.write_bytes(b"abc" * 1000)
    settings = Settings(home=tmp_path / "home", data_dir=tmp_path)
    output = {"path": str(path), "sha256": sha256_file(path), "host": "here"}
    calls = []
    real = sha256_file

    def counting(p):
        calls.append(p)
        return real(p)

    monkeypatch.setattr("pipeline.core.files.sha256_file", counting)
    assert layers.verified_path(output, settings) == path
    assert layers.verified_path(output, settings) == path
    assert len(calls) == 1  # the second call trusts the unchanged file
    path.write_bytes(b"abd" * 1000)  # same size, new bytes and mtime
    os.utime(path, ns=(1, 1))
    with pytest.raises(IntegrityError, match="changed since it was recorded"):
        layers.verified_path(output, settings)
    assert len(calls) == 2


def test_layer_choice_of_single_and_several_layer_runs():
    single = {"_id": "fe-1", "config": {"layer": "conv3"}}
    several = {"_id": "fe-2", "config": {"layer": "conv1,conv3,fc8"}}
    assert layers.fit_layer(single, None) is None
    assert layers.fit_layer(single, "conv3") is None  # naming its one layer keeps the old key
    with pytest.raises(ConfigError, match="holds layer conv3 only"):
        layers.fit_layer(single, "conv1")
    assert layers.fit_layer(several, None) == "conv1"
    assert layers.fit_layer(several, "fc8") == "fc8"
    with pytest.raises(ConfigError, match="holds layers conv1, conv3, fc8"):
        layers.fit_layer(several, "conv2")
    assert layers.split_layers("conv1, fc8,conv1") == ["conv1", "fc8"]
    assert layers.split_layers(None) == [None]
