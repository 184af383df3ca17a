"""Tests for pipeline.features.alexnet: registry shapes, an independent numpy forward pass, weights."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.features.alexnet.checkpoints import checkpoint_prefix, normalize_name_map, read_keras_h5
from pipeline.features.alexnet.layers import LAYERS, VARIANTS, weight_shapes
from pipeline.features.alexnet.model import build_alexnet
from pipeline.features.alexnet.weights import load_weights, random_weights, weights_kind, weights_sha256

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module", autouse=True)
def _full_float32():
    """TF32 on recent GPUs would change results by ~1e-3; compare in true float32."""
    tf.config.experimental.enable_tensor_float_32_execution(False)


# ----------------------------------------------------------------- numpy reference


def _same_pad(size: int, k: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def np_conv(x, kernel, bias, stride, padding, groups):
    """Reference convolution (TF VALID/SAME padding, grouped by splitting), ReLU."""
    k = kernel.shape[0]
    if padding == "same":
        ph, pw = _same_pad(x.shape[1], k, stride), _same_pad(x.shape[2], k, stride)
        x = np.pad(x, ((0, 0), ph, pw, (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    cin, cout = kernel.shape[2], kernel.shape[3] // groups
    outs = []
    for g in range(groups):
        cols = win[:, :, :, g * cin : (g + 1) * cin].transpose(0, 1, 2, 4, 5, 3)
        cols = cols.reshape(*cols.shape[:3], -1)
        w = kernel[..., g * cout : (g + 1) * cout].reshape(-1, cout)
        outs.append(cols @ w)
    return np.maximum(np.concatenate(outs, axis=-1) + bias, 0)


def np_lrn(x, radius, bias, alpha, beta):
    sq = np.pad(x**2, ((0, 0), (0, 0), (0, 0), (radius, radius)))
    c = x.shape[-1]
    total = sum(sq[..., i : i + c] for i in range(2 * radius + 1))
    return x / (bias + alpha * total) ** beta


def np_pool(x, padding):
    if padding == "same":
        ph, pw = _same_pad(x.shape[1], 3, 2), _same_pad(x.shape[2], 3, 2)
        x = np.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::2, ::2]
    return win.max(axis=(-2, -1))


def np_alexnet(variant, arrays, x):
    """All layer outputs of ``variant`` for input x (B, S, S, 3), in float64."""
    out = {}
    x = x.astype(np.float64)
    for spec in VARIANTS[variant].layers:
        if spec.kind == "conv":
            kernel, bias = arrays[spec.name]
            x = np_conv(x, kernel.astype(np.float64), bias, spec.stride, spec.padding, spec.groups)
        elif spec.kind == "lrn":
            x = np_lrn(x, spec.depth_radius, spec.bias, spec.alpha, spec.beta)
        elif spec.kind == "pool":
            x = np_pool(x, spec.padding)
        else:
            kernel, bias = arrays[spec.name]
            x = x.reshape(len(x), -1) @ kernel.astype(np.float64) + bias
            if spec.relu:
                x = np.maximum(x, 0)
        out[spec.name] = x
    return out


# ----------------------------------------------------------------- fixtures

_FULL = {}


@pytest.fixture(scope="module")
def full_model():
    """One model per variant with every layer as an output, random:3 weights (cached)."""

    def get(variant):
        if variant not in _FULL:
            model = build_alexnet(variant, tuple(LAYERS[variant]), "random:3")
            size = VARIANTS[variant].input_size
            x = np.random.default_rng(7).uniform(-100, 100, (2, size, size, 3))
            x = x.astype(np.float32)
            outs = {k: v.numpy() for k, v in model(x, training=False).items()}
            _FULL[variant] = (model, x, outs)
        return _FULL[variant]

    yield get
    _FULL.clear()


# ----------------------------------------------------------------- registry and shapes


def test_registry_lists_the_same_layers_for_both_variants():
    names = [
        "conv1",
        "norm1",
        "pool1",
        "conv2",
        "norm2",
        "pool2",
        "conv3",
        "conv4",
        "conv5",
        "pool5",
        "fc6",
        "fc7",
        "fc8",
    ]
    assert set(VARIANTS) == {"caffe", "tfutils"}
    for variant in VARIANTS:
        assert list(LAYERS[variant]) == names
    assert LAYERS["caffe"]["conv3"] == (13, 13, 384)
    assert LAYERS["tfutils"]["conv3"] == (14, 14, 384)


def test_weight_shapes_match_the_bvlc_file():
    shapes = weight_shapes("caffe")
    assert shapes["conv1"][0] == (11, 11, 3, 96)
    assert shapes["conv2"][0] == (5, 5, 48, 256)
    assert shapes["conv3"][0] == (3, 3, 256, 384)
    assert shapes["conv4"][0] == (3, 3, 192, 384)
    assert shapes["conv5"][0] == (3, 3, 192, 256)
    assert shapes["fc6"][0] == (9216, 4096)
    assert shapes["fc7"][0] == (4096, 4096)
    assert shapes["fc8"] == ((4096, 1000), (1000,))
    assert weight_shapes("tfutils")["conv2"][0] == (5, 5, 96, 256)
    assert weight_shapes("tfutils")["fc6"][0] == (7 * 7 * 256, 4096)


@pytest.mark.parametrize("variant,layer", [(v, name) for v in sorted(LAYERS) for name in LAYERS[v]])
def test_output_shape_per_layer(full_model, variant, layer):
    _, _, outs = full_model(variant)
    assert outs[layer].shape == (2, *LAYERS[variant][layer])
    assert outs[layer].dtype == np.float32


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_forward_matches_numpy_reference(full_model, variant):
    """Every layer against an independent numpy implementation (grouped conv by splitting,
    TF SAME padding, TF LRN semantics)."""
    _, x, outs = full_model(variant)
    ref = np_alexnet(variant, random_weights(3, variant), x)
    for name, expected in ref.items():
        scale = np.abs(expected).max()
        assert scale > 0, name
        np.testing.assert_allclose(
            outs[name], expected, rtol=0, atol=2e-5 * scale, err_msg=f"{variant} {name}"
        )
    conv3 = outs["conv3"]
    assert 0.2 < (conv3 > 0).mean() < 0.8  # random weights: live, not saturated


def test_lrn_and_conv_by_hand():
    """conv1 filter 0 sums its 11x11x3 patch; on a constant image of 1 that is 363, and
    norm1 = 363 / (1 + 2e-5 * 363**2) ** 0.75 (other channels are 0)."""
    arrays = {"conv1": (np.zeros((11, 11, 3, 96), np.float32), np.zeros(96, np.float32))}
    arrays["conv1"][0][..., 0] = 1.0
    model = build_alexnet("caffe", ("conv1", "norm1", "pool1"), arrays)
    outs = model(np.ones((1, 227, 227, 3), np.float32), training=False)
    assert list(outs) == ["conv1", "norm1", "pool1"]
    conv1, norm1 = outs["conv1"].numpy(), outs["norm1"].numpy()
    np.testing.assert_allclose(conv1[0, 0, 0, 0], 363.0, rtol=1e-6)
    assert np.all(conv1[..., 1:] == 0)
    np.testing.assert_allclose(norm1[0, 10, 20, 0], 363.0 / (1 + 2e-5 * 363.0**2) ** 0.75, rtol=1e-5)
    assert outs["pool1"].shape == (1, 27, 27, 96)


def test_model_only_builds_to_the_deepest_layer():
    model = build_alexnet("caffe", ("pool1", "conv1"), "random:0")
    names = [layer.name for layer in model.layers]
    assert "conv2" not in names and "pool1" in names
    assert list(model(np.zeros((1, 227, 227, 3), np.float32))) == ["pool1", "conv1"]


def test_random_weights_are_deterministic_and_independent_of_depth(full_model):
    _, x, outs = full_model("caffe")
    model = build_alexnet("caffe", ("conv3",), "random:3")
    again = model(x, training=False)["conv3"].numpy()
    np.testing.assert_array_equal(again, outs["conv3"])
    a, b = random_weights(3, "caffe", ["conv1"]), random_weights(3, "caffe", ["conv1"])
    np.testing.assert_array_equal(a["conv1"][0], b["conv1"][0])
    assert not np.array_equal(a["conv1"][0], random_weights(4, "caffe", ["conv1"])["conv1"][0])
    # He-normal scale: std ~ sqrt(2 / fan_in)
    np.testing.assert_allclose(a["conv1"][0].std(), np.sqrt(2 / 363), rtol=0.05)


# ----------------------------------------------------------------- weight files


def _save_bvlc(path, arrays):
    np.save(path, {k: [w, b] for k, (w, b) in arrays.items()}, allow_pickle=True)


def test_bvlc_npy_file_gives_the_same_features_as_the_arrays(tmp_path):
    arrays = random_weights(5, "caffe", ["conv1", "conv2", "conv3"])
    path = tmp_path / "bvlc_alexnet.npy"
    _save_bvlc(path, arrays)
    x = np.random.default_rng(0).uniform(-100, 100, (1, 227, 227, 3)).astype(np.float32)
    from_file = build_alexnet("caffe", "conv3", str(path))(x)["conv3"].numpy()
    from_arrays = build_alexnet("caffe", "conv3", arrays)(x)["conv3"].numpy()
    np.testing.assert_array_equal(from_file, from_arrays)
    assert weights_sha256(str(path)) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_weight_file_with_wrong_shape_lists_both(tmp_path):
    arrays = random_weights(0, "caffe", ["conv1", "conv2", "conv3"])
    arrays["conv3"] = (np.zeros((3, 3, 128, 384), np.float32), arrays["conv3"][1])
    path = tmp_path / "w.npy"
    _save_bvlc(path, arrays)
    with pytest.raises(ConfigError) as err:
        load_weights(str(path), "caffe", ["conv1", "conv2", "conv3"])
    msg = str(err.value)
    assert "conv3 has (3, 3, 128, 384)" in msg and "conv3 (3, 3, 256, 384)" in msg
    assert str(path) in msg


def test_weight_file_missing_layer(tmp_path):
    path = tmp_path / "w.npy"
    _save_bvlc(path, random_weights(0, "caffe", ["conv1", "conv2", "conv3"]))
    with pytest.raises(ConfigError, match="fc6 missing"):
        load_weights(str(path), "caffe", ["conv1", "conv2", "conv3", "fc6"])


def test_weight_file_bad_or_missing(tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        load_weights(str(tmp_path / "nope.npy"))
    path = tmp_path / "list.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(DataFormatError, match="not a layer"):
        load_weights(str(path))
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not numpy at all")
    with pytest.raises(DataFormatError, match="could not be read"):
        load_weights(str(junk))


def test_bad_arguments():
    with pytest.raises(ConfigError, match="valid variants: caffe, tfutils"):
        build_alexnet("vgg")
    with pytest.raises(ConfigError, match="valid layers: conv1, norm1"):
        build_alexnet("caffe", ("conv9",))
    with pytest.raises(ConfigError, match="at least one"):
        build_alexnet("caffe", ())
    with pytest.raises(ConfigError, match="random:SEED"):
        load_weights("random:-1")


def test_weights_sha256_for_random_specs():
    a = weights_sha256("random:0")
    assert a == weights_sha256("random:0") and len(a) == 64
    assert a != weights_sha256("random:1")
    assert a != weights_sha256("random:0", "tfutils")


# ----------------------------------------------------------------- checkpoints and Keras files

CONV = ["conv1", "conv2", "conv3"]


def _save_tf1_checkpoint(prefix, arrays, kernel="weights", bias="biases", extra=()):
    """A TF1 ``tf.train.Saver`` checkpoint (graph mode), as the 2019 code wrote them."""
    graph = tf.Graph()
    with graph.as_default():
        for layer, (w, b) in arrays.items():
            with tf.compat.v1.variable_scope(layer):
                tf.compat.v1.get_variable(kernel, initializer=w)
                tf.compat.v1.get_variable(bias, initializer=b)
        for name in extra:
            tf.compat.v1.get_variable(name, initializer=np.zeros(2, np.float32))
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, str(prefix), global_step=115000)


@pytest.fixture(scope="module")
def tf1_checkpoint(tmp_path_factory):
    arrays = random_weights(6, "caffe", CONV)
    prefix = _save_tf1_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "model.ckpt", arrays, extra=["global_step_x"]
    )
    return prefix, arrays


def test_tf1_checkpoint_loads_with_default_names(tf1_checkpoint):
    prefix, arrays = tf1_checkpoint
    assert prefix.endswith("model.ckpt-115000")
    assert weights_kind(prefix) == "checkpoint"
    got = load_weights(prefix, "caffe", CONV)
    for layer in CONV:
        np.testing.assert_array_equal(got[layer][0], arrays[layer][0])
        np.testing.assert_array_equal(got[layer][1], arrays[layer][1])
    # the .index file and the directory name the same checkpoint
    assert checkpoint_prefix(prefix + ".index") == prefix
    assert checkpoint_prefix(str(tmp_dir(prefix))) == prefix
    sha = weights_sha256(prefix)
    assert len(sha) == 64 and sha == weights_sha256(prefix + ".index")
    assert sha == weights_sha256(str(tmp_dir(prefix)))
    x = np.random.default_rng(1).uniform(-50, 50, (1, 227, 227, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        build_alexnet("caffe", "conv3", prefix)(x)["conv3"].numpy(),
        build_alexnet("caffe", "conv3", arrays)(x)["conv3"].numpy(),
    )


def tmp_dir(prefix):
    from pathlib import Path

    return Path(prefix).parent


def test_checkpoint_missing_name_lists_its_variables(tf1_checkpoint):
    prefix, _ = tf1_checkpoint
    with pytest.raises(ConfigError) as err:
        load_weights(prefix, "caffe", CONV + ["conv4"])
    msg = str(err.value)
    assert "conv4: no variable conv4/weights" in msg
    for name in ("conv1/weights (11, 11, 3, 96)", "conv3/biases (384,)", "global_step_x (2,)"):
        assert name in msg
    assert "expected conv1 (11, 11, 3, 96)/(96,)" in msg and "conv4 (3, 3, 192, 384)/(384,)" in msg
    assert "weights_map" in msg
    with pytest.raises(ConfigError, match=r"conv2: no variable 'net/conv2_k'"):
        load_weights(prefix, "caffe", CONV, {"conv2": ["net/conv2_k", "conv2/biases"]})


def test_checkpoint_wrong_shape_is_one_error(tmp_path):
    arrays = random_weights(0, "caffe", CONV)
    arrays["conv2"] = (np.zeros((5, 5, 96, 256), np.float32), arrays["conv2"][1])  # no groups
    prefix = _save_tf1_checkpoint(tmp_path / "m.ckpt", arrays)
    with pytest.raises(ConfigError) as err:
        load_weights(prefix, "caffe", CONV)
    msg = str(err.value)
    assert "conv2: conv2/weights (5, 5, 96, 256) / conv2/biases (256,)" in msg
    assert "expected conv1" in msg and "conv2 (5, 5, 48, 256)/(256,)" in msg


def test_tf2_checkpoint_with_a_name_map(tmp_path):
    arrays = random_weights(2, "tfutils", ["conv1"])
    w, b = arrays["conv1"]
    ckpt = tf.train.Checkpoint(c1k=tf.Variable(w), c1b=tf.Variable(b))
    prefix = ckpt.write(str(tmp_path / "tf2"))
    names = {"conv1": ["c1k/.ATTRIBUTES/VARIABLE_VALUE", "c1b/.ATTRIBUTES/VARIABLE_VALUE"]}
    got = load_weights(prefix, "tfutils", ["conv1"], names)
    np.testing.assert_array_equal(got["conv1"][0], w)
    assert normalize_name_map({"conv1": {"kernel": "a", "bias": "b"}}) == (("conv1", ("a", "b")),)
    with pytest.raises(ConfigError, match="two names"):
        normalize_name_map({"conv1": "a"})
    with pytest.raises(ConfigError, match="checkpoints only"):
        load_weights("random:0", "caffe", ["conv1"], names)


def test_keras3_weights_h5_by_layer_name(tmp_path):
    model = build_alexnet("caffe", "conv3", "random:4")
    path = tmp_path / "alexnet.weights.h5"
    model.save_weights(path)
    assert weights_kind(str(path)) == "keras_h5"
    assert set(read_keras_h5(path)) >= set(CONV)
    got = load_weights(str(path), "caffe", CONV)
    want = random_weights(4, "caffe", CONV)
    for layer in CONV:
        np.testing.assert_array_equal(got[layer][0], want[layer][0])
    assert weights_sha256(str(path)) == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ConfigError) as err:  # the file stops at conv3
        load_weights(str(path), "caffe", CONV + ["conv4"])
    assert "conv4 missing" in str(err.value) and "conv3 (3, 3, 256, 384)/(384,)" in str(err.value)


def test_keras2_h5_layout(tmp_path):
    import h5py

    w, b = random_weights(1, "caffe", ["conv1"])["conv1"]
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as fh:
        fh.attrs["layer_names"] = [b"conv1", b"pool1"]
        group = fh.create_group("conv1")
        group.attrs["weight_names"] = [b"conv1/kernel:0", b"conv1/bias:0"]
        group["conv1/kernel:0"] = w
        group["conv1/bias:0"] = b[:10]  # wrong shape
        fh.create_group("pool1").attrs["weight_names"] = []
    with pytest.raises(ConfigError) as err:
        load_weights(str(path), "caffe", ["conv1"])
    assert "conv1 has (11, 11, 3, 96)/(10,)" in str(err.value)
    assert "expected conv1 (11, 11, 3, 96)/(96,)" in str(err.value)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"nope")
    with pytest.raises(DataFormatError, match="not a readable Keras weights file"):
        load_weights(str(junk), "caffe", ["conv1"])
