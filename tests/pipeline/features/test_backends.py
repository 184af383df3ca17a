"""Keras backends: the keras.ops LRN equals TensorFlow's, TensorFlow and JAX give the same
conv3 features, the runtime identity names what changes the numbers, and the install and
device checks refuse with one clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import ConfigError
from pipeline.features.backend import activate, check_tensorflow_install, resolve_backend
from pipeline.features.config import FeatureConfig

WORKER = Path(__file__).with_name("backend_worker.py")
#: TensorFlow vs JAX conv3 (random:0 weights, full float32 on CPU): measured max abs
#: difference 7.0e-4 of features up to 334, i.e. 2.1e-6 of the largest |feature| (float32
#: sums over 2304 inputs per unit in another order; element-wise relative differences are
#: large only for values near zero, and the zeros of the ReLU agree). The test allows
#: 1e-5 of the largest |feature|.
BACKEND_RTOL = 1e-5


def test_lrn_in_keras_ops_equals_tensorflow_to_float32_rounding():
    tf = pytest.importorskip("tensorflow")
    from pipeline.features.alexnet.model import _lrn_layer_class

    layer = _lrn_layer_class()(2, 1.0, 2e-5, 0.75)
    rng = np.random.default_rng(0)
    for scale in (1.0, 30.0, 300.0):
        x = (rng.standard_normal((2, 13, 13, 96)) * scale).astype(np.float32)
        want = tf.nn.local_response_normalization(x, depth_radius=2, bias=1.0, alpha=2e-5, beta=0.75)
        got = np.asarray(layer(x))
        # a few float32 ulps: the window sum is added in another order
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=0)


def test_conflict_check_fires_on_a_faked_listing():
    with pytest.raises(ConfigError, match="tensorflow and tensorflow-cpu are both installed") as err:
        check_tensorflow_install(["numpy", "tensorflow", "tensorflow_cpu", "keras"])
    assert "pip uninstall -y tensorflow tensorflow-cpu" in str(err.value)
    check_tensorflow_install(["numpy", "tensorflow", "keras"])  # one distribution: fine
    check_tensorflow_install(["Tensorflow-CPU"])
    check_tensorflow_install()  # this environment holds one


def test_backend_choice_and_config_fields(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert resolve_backend() == "tensorflow"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert resolve_backend() == "jax" and resolve_backend("torch") == "torch"
    with pytest.raises(ConfigError, match="backend 'mxnet' is unknown"):
        resolve_backend("mxnet")
    assert "backend" not in FeatureConfig().to_dict()  # default configs keep their keys
    assert FeatureConfig().key() == FeatureConfig(precision="strict", device="auto").key()
    cfg = FeatureConfig(backend="JAX", precision="fast", device="cpu")
    assert cfg.to_dict()["backend"] == "jax" and FeatureConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.key() != FeatureConfig().key()
    with pytest.raises(ConfigError, match="precision 'half' is unknown"):
        FeatureConfig(precision="half")
    with pytest.raises(ConfigError, match="device 'tpu' is unknown"):
        FeatureConfig(device="tpu")


def test_device_gpu_without_a_gpu_is_one_error_and_a_second_backend_is_refused():
    tf = pytest.importorskip("tensorflow")
    import keras

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible here")
    with pytest.raises(ConfigError, match="--device gpu: the tensorflow backend sees no GPU"):
        activate("tensorflow", "strict", "gpu")
    other = "jax" if keras.backend.backend() != "jax" else "torch"
    with pytest.raises(ConfigError, match=f"backend '{other}' needs a new process"):
        activate(other)


def test_precision_changes_the_runtime_identity():
    pytest.importorskip("tensorflow")
    fast = dict(activate("tensorflow", "fast"))
    strict = dict(activate("tensorflow", "strict"))
    assert fast["tf32"] is True and strict["tf32"] is False
    assert fast["precision"] == "fast" and strict["precision"] == "strict"
    assert strict["device"]["kind"] in ("CPU", "GPU") and strict["device"]["name"]
    assert strict["backend"] == "tensorflow" and strict["backend_version"] and strict["compiled"]


def _worker(backend: str, out: Path) -> tuple[np.ndarray, dict]:
    out.mkdir()
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "KERAS_TORCH_DEVICE": "cpu"}
    proc = subprocess.run([sys.executable, str(WORKER), backend, str(out)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out / "features.npy"), json.loads((out / "runtime.json").read_text())


@pytest.mark.backends
@pytest.mark.parametrize("other", ["jax", "torch"])
def test_tensorflow_and_another_backend_give_the_same_conv3_features(tmp_path, other):
    """JAX runs in CI (the test extra installs it); PyTorch where it is installed."""
    pytest.importorskip("tensorflow")
    pytest.importorskip(other)
    tf_feats, tf_rt = _worker("tensorflow", tmp_path / "tf")
    feats, rt = _worker(other, tmp_path / other)
    assert tf_feats.shape == feats.shape == (6, 13, 13, 384)
    assert (tf_rt["backend"], rt["backend"]) == ("tensorflow", other)
    assert rt["compiled"] == {"jax": "jax.jit", "torch": "eager (no_grad)"}[other]
    assert rt["matmul_precision"] == "highest" and rt["tf32"] is False
    scale = np.abs(tf_feats).max()
    assert scale > 1
    np.testing.assert_allclose(feats, tf_feats, rtol=0, atol=BACKEND_RTOL * scale)


def test_packaging_declares_one_tensorflow_distribution():
    import re

    import tomllib

    meta = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())["project"]

    def names(specs):
        return [re.split(r"[\s<>=!~;\[]", s, maxsplit=1)[0].lower().replace("_", "-") for s in specs]

    base = names(meta["dependencies"])
    assert [n for n in base if n.startswith("tensorflow")] == ["tensorflow"]
    extras = meta["optional-dependencies"]
    every = base + [n for specs in extras.values() for n in names(specs)]
    assert "tensorflow-cpu" not in every and "tensorflow-gpu" not in every
    assert extras["cuda"] == ["tensorflow[and-cuda]>=2.16"]  # the same distribution, its CUDA extra
    assert names(extras["jax"]) == ["jax"] and names(extras["torch"]) == ["torch"]
    assert "jax" in names(extras["test"])  # CI compares TensorFlow with JAX
