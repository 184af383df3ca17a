"""Tests for pipeline.features: config, extractor, atomic feature file with integrity checks."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import h5py
import numpy as np
import pytest

from pipeline.core.errors import ConfigError, DataFormatError, IntegrityError
from pipeline.core.files import sha256_file
from pipeline.features.alexnet.layers import LAYERS, VARIANTS
from pipeline.features.config import MODELS, FeatureConfig
from pipeline.features.device import auto_batch_size
from pipeline.features.extractor import build_extractor
from pipeline.features.reader import read_feature_file
from pipeline.features.writer import hashes_digest, write_feature_file
from pipeline.preprocess.images import CHAINS, image_sha256

# ----------------------------------------------------------------- helpers


class FakeExtractor:
    """numpy-only stand-in: 'preprocess' adds 0.5, features = first 12 pixels as (2, 2, 3)."""

    output_shape = (2, 2, 3)
    weights_sha256 = "0" * 64
    config = None
    chain = None

    def __init__(self, dead: bool = False, nan: bool = False):
        self.dead, self.nan = dead, nan

    def preprocess(self, raw):
        return np.asarray(raw, np.float32) + np.float32(0.5)

    def forward(self, x):
        out = x.reshape(len(x), -1)[:, :12].reshape(len(x), 2, 2, 3).copy()
        if self.dead:
            out[:] = 0
        if self.nan:
            out[-1, 0, 0, 0] = np.nan
        return out

    def __call__(self, raw):
        return self.forward(self.preprocess(raw))

    def device_info(self):
        return {"device": "CPU", "name": "fake"}


def images(n, seed=0, size=8):
    return np.random.default_rng(seed).uniform(-0.55, 0.45, (n, size, size)).astype(np.float32)


def batches(arr, size):
    for i in range(0, len(arr), size):
        yield arr[i : i + size]


def leftovers(directory):
    return [p.name for p in directory.iterdir() if ".tmp-" in p.name]


CFG = FeatureConfig()


# ----------------------------------------------------------------- config


def test_config_defaults_dict_and_key():
    d = CFG.to_dict()
    assert d == {
        "model": "alexnet",
        "variant": "caffe",
        "layer": "conv3",
        "weights": "random:0",
        "preprocess": "caffe",
        "batch_size": 64,
    }
    assert json.loads(json.dumps(d)) == d
    text = json.dumps(d, sort_keys=True, separators=(",", ":"))
    assert CFG.key() == hashlib.sha256(text.encode()).hexdigest()
    assert FeatureConfig().key() == CFG.key()
    assert FeatureConfig(batch_size=32).key() != CFG.key()
    assert FeatureConfig.from_dict(d) == CFG
    with pytest.raises(dataclasses.FrozenInstanceError):
        CFG.layer = "conv4"  # type: ignore[misc]


def test_config_for_variant_picks_its_chain():
    cfg = FeatureConfig.for_variant("tfutils")
    assert cfg.preprocess == "tf2019" and cfg.variant == "tfutils"


@pytest.mark.parametrize(
    "kwargs,field,listed",
    [
        ({"model": "vgg16"}, "model", "alexnet"),
        ({"variant": "vgg"}, "variant", "caffe, tfutils"),
        ({"layer": "conv9"}, "layer", "conv1, norm1, pool1"),
        ({"preprocess": "imagenet"}, "preprocess", "caffe, tf2019"),
        ({"preprocess": "tf2019"}, "preprocess", "227x227"),
        ({"batch_size": -1}, "batch_size", "positive"),
        ({"batch_size": "big"}, "batch_size", "auto"),
        ({"batch_size": True}, "batch_size", "positive"),
        ({"weights": ""}, "weights", "random:SEED"),
        ({"weights": "random:x"}, "weights", "random:SEED"),
    ],
)
def test_config_validation_names_the_field(kwargs, field, listed):
    with pytest.raises(ConfigError) as err:
        FeatureConfig(**kwargs)
    assert field in str(err.value) and listed in str(err.value)


def test_registries_are_consistent():
    assert MODELS == {"alexnet": tuple(VARIANTS), "keras": ()}
    for name, variant in VARIANTS.items():
        assert variant.default_preprocess in CHAINS
        assert CHAINS[variant.default_preprocess].input_size == variant.input_size
        assert "conv3" in LAYERS[name]


# ----------------------------------------------------------------- writer (fake extractor)


def test_round_trip(tmp_path):
    train, val = images(10, 1), images(3, 2)
    calls = []
    out = tmp_path / "sub" / "feat.h5"
    info = write_feature_file(
        out,
        FakeExtractor(),
        {"train": (10, batches(train, 4)), "val": (3, [val])},
        CFG,
        progress=lambda *a: calls.append(a),
    )
    assert calls == [("train", 4, 10), ("train", 8, 10), ("train", 10, 10), ("val", 3, 3)]
    assert info.shapes == {"train": [10, 2, 2, 3], "val": [3, 2, 2, 3]}
    assert info.sha256 == sha256_file(out) == hashlib.sha256(out.read_bytes()).hexdigest()
    assert info.size_bytes == out.stat().st_size
    assert info.n_duplicate_rows == 0 and info.images_per_s > 0
    assert info.config_sha256 == CFG.key() and info.device["name"] == "fake"
    json.dumps(info.to_dict())
    assert leftovers(out.parent) == []

    ff = read_feature_file(out, expected_sha256=info.sha256)
    fake = FakeExtractor()
    np.testing.assert_array_equal(ff.train, fake(train))
    np.testing.assert_array_equal(ff.val, fake(val))
    assert ff.train_image_sha256 == image_sha256(fake.preprocess(train))
    assert ff.val_image_sha256 == image_sha256(fake.preprocess(val))
    assert ff.config == CFG.to_dict()
    assert (
        ff.metadata["image_hashes_digest"]
        == info.image_hashes_digest
        == hashes_digest({"train": ff.train_image_sha256, "val": ff.val_image_sha256})
    )
    assert ff.sha256 == info.sha256
    flat = read_feature_file(out, flatten=True)
    np.testing.assert_array_equal(flat.train, ff.train.reshape(10, 12))

    with h5py.File(out, "r") as fh:
        ds = fh["train"]
        assert ds.dtype == np.float32 and ds.compression is None and ds.chunks is None
        assert fh["val_image_sha256"].dtype == np.dtype("S64")


def test_tampered_file_is_detected(tmp_path):
    out = tmp_path / "feat.h5"
    info = write_feature_file(
        out, FakeExtractor(), {"train": (4, [images(4)]), "val": (2, [images(2, 9)])}, CFG
    )
    with h5py.File(out, "r") as fh:
        offset = fh["train"].id.get_offset()
    data = bytearray(out.read_bytes())
    data[offset + 5] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as err:
        read_feature_file(out, expected_sha256=info.sha256)
    msg = str(err.value)
    assert str(out) in msg and info.sha256 in msg and sha256_file(out) in msg


def test_missing_or_corrupt_file(tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        read_feature_file(tmp_path / "nope.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(DataFormatError, match="not a readable feature file"):
        read_feature_file(junk)


def test_same_images_fed_twice_is_refused(tmp_path):
    first = images(4, 1)
    out = tmp_path / "feat.h5"
    with pytest.raises(IntegrityError, match=r"split 'train' image 4 .* split 'train' image 0"):
        write_feature_file(
            out, FakeExtractor(), {"train": (8, [first, first]), "val": (2, [images(2, 2)])}, CFG
        )
    assert not out.exists() and leftovers(tmp_path) == []


def test_2019_bug_validation_reuses_training_images(tmp_path):
    train = images(6, 1)
    splits = {"train": (6, [train]), "val": (3, [train[:3]])}
    out = tmp_path / "feat.h5"
    with pytest.raises(IntegrityError, match=r"split 'val' image 0 .* split 'train' image 0"):
        write_feature_file(out, FakeExtractor(), splits, CFG)
    assert not out.exists()
    splits = {"train": (6, [train]), "val": (3, [train[:3]])}
    info = write_feature_file(out, FakeExtractor(), splits, CFG, allow_duplicates=True)
    assert info.n_duplicate_rows == 3
    assert read_feature_file(out).metadata["n_duplicate_rows"] == 3


def test_identical_features_for_distinct_images_are_refused(tmp_path):
    with pytest.raises(IntegrityError, match="image 1 gave the same feature row .* image 0"):
        write_feature_file(
            tmp_path / "f.h5",
            FakeExtractor(dead=True),
            {"train": (3, [images(3)]), "val": (1, [images(1, 5)])},
            CFG,
        )
    with pytest.raises(IntegrityError, match="non-finite"):
        write_feature_file(
            tmp_path / "f.h5",
            FakeExtractor(nan=True),
            {"train": (3, [images(3)]), "val": (1, [images(1, 5)])},
            CFG,
        )
    assert leftovers(tmp_path) == [] and not (tmp_path / "f.h5").exists()


def test_crash_midway_leaves_nothing_and_keeps_old_file(tmp_path):
    out = tmp_path / "feat.h5"
    old = write_feature_file(
        out, FakeExtractor(), {"train": (2, [images(2, 3)]), "val": (1, [images(1, 4)])}, CFG
    )

    def exploding():
        yield images(4, 1)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_feature_file(out, FakeExtractor(), {"train": (8, exploding()), "val": (1, [images(1)])}, CFG)
    assert leftovers(tmp_path) == []
    assert sha256_file(out) == old.sha256

    with pytest.raises(RuntimeError):
        write_feature_file(
            tmp_path / "new.h5",
            FakeExtractor(),
            {"train": (8, exploding()), "val": (1, [images(1)])},
            CFG,
        )
    assert not (tmp_path / "new.h5").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("n_given,word", [(5, "more than"), (3, "fewer than")])
def test_count_mismatch(tmp_path, n_given, word):
    with pytest.raises(IntegrityError, match=f"split 'train'.*{word}"):
        write_feature_file(
            tmp_path / "f.h5",
            FakeExtractor(),
            {"train": (4, batches(images(n_given), 2)), "val": (1, [images(1, 7)])},
            CFG,
        )
    assert list(tmp_path.iterdir()) == []


def test_writer_argument_checks(tmp_path):
    with pytest.raises(ConfigError, match="splits"):
        write_feature_file(tmp_path / "f.h5", FakeExtractor(), {}, CFG)
    with pytest.raises(ConfigError, match="count"):
        write_feature_file(tmp_path / "f.h5", FakeExtractor(), {"train": (0, [])}, CFG)
    with pytest.raises(ConfigError, match="config"):
        write_feature_file(tmp_path / "f.h5", FakeExtractor(), {"train": (1, [])}, {"a": 1})


# ----------------------------------------------------------------- real extractor (TF)


@pytest.fixture(scope="module")
def caffe_extractor():
    pytest.importorskip("tensorflow")
    return build_extractor(FeatureConfig(batch_size=4))


def test_extractor_output_and_determinism(caffe_extractor):
    from pipeline.features.alexnet.weights import weights_sha256

    ex = caffe_extractor
    assert ex.output_shape == LAYERS["caffe"]["conv3"] == (13, 13, 384)
    assert ex.weights_sha256 == weights_sha256("random:0", "caffe")
    raw = images(6, 3, size=40)
    out = ex(raw)
    assert out.shape == (6, 13, 13, 384) and out.dtype == np.float32
    assert 0.2 < (out > 0).mean() < 0.8
    np.testing.assert_array_equal(ex(raw), out)
    # chunking (batch_size 4 -> 4 + 2) agrees with one image at a time
    single = np.concatenate([ex(raw[i : i + 1]) for i in range(6)])
    np.testing.assert_allclose(single, out, rtol=1e-5, atol=1e-4)
    # a second build from the same config gives the same features
    again = build_extractor(FeatureConfig(batch_size=4))
    np.testing.assert_array_equal(again(raw), out)


def test_extractor_device_info(caffe_extractor):
    info = caffe_extractor.device_info()
    assert info["device"] in ("CPU", "GPU")
    assert info["tensorflow"] and info["name"]
    json.dumps(info)


def test_tfutils_extractor_shape():
    pytest.importorskip("tensorflow")
    ex = build_extractor(FeatureConfig.for_variant("tfutils", batch_size=2))
    assert ex.output_shape == (14, 14, 384)
    assert ex(images(1, size=16)).shape == (1, 14, 14, 384)


def test_real_extractor_file(tmp_path, caffe_extractor):
    cfg = caffe_extractor.config
    train, val = images(5, 11, size=24), images(2, 12, size=24)
    info = write_feature_file(
        tmp_path / "f.h5",
        caffe_extractor,
        {"train": (5, batches(train, 4)), "val": (2, [val])},
        cfg,
    )
    ff = read_feature_file(info.path, expected_sha256=info.sha256)
    np.testing.assert_allclose(ff.train, caffe_extractor(train), rtol=1e-5, atol=1e-4)
    assert ff.val.shape == (2, 13, 13, 384)
    assert ff.config == cfg.to_dict()
    assert json.loads(ff.metadata["preprocess_json"])["name"] == "caffe"
    with pytest.raises(ConfigError, match="not the config"):
        write_feature_file(tmp_path / "g.h5", caffe_extractor, {"train": (1, [train[:1]])}, FeatureConfig())


# ----------------------------------------------------------------- new config fields


def test_new_fields_stay_out_of_the_dict_unless_set():
    assert "retina_warp" not in CFG.to_dict() and "weights_map" not in CFG.to_dict()
    warped = FeatureConfig(retina_warp="default:max_ratio=10")
    assert warped.retina_warp == "default"  # canonical form
    assert warped.to_dict()["retina_warp"] == "default"
    assert warped.key() != CFG.key()
    assert FeatureConfig(retina_warp="compat:max_ratio=5.0").retina_warp == "compat:max_ratio=5"
    assert FeatureConfig.from_dict(warped.to_dict()) == warped
    with pytest.raises(ConfigError, match="valid modes"):
        FeatureConfig(retina_warp="fisheye")


def test_several_layers_and_weights_map():
    cfg = FeatureConfig(layer=["conv5", "conv3"])
    assert cfg.layer == "conv5,conv3" and cfg.layers == ("conv5", "conv3")
    assert FeatureConfig(layer="conv5, conv3") == cfg
    with pytest.raises(ConfigError, match="repeat"):
        FeatureConfig(layer="conv3,conv3")
    with pytest.raises(ConfigError, match="layer 'conv9' is not in variant"):
        FeatureConfig(layer="conv3,conv9")
    mapped = FeatureConfig(weights="/w/model.ckpt-115000", weights_map={"conv1": ["a/w", "a/b"]})
    assert mapped.to_dict()["weights_map"] == {"conv1": ["a/w", "a/b"]}
    assert FeatureConfig.from_dict(json.loads(json.dumps(mapped.to_dict()))) == mapped
    with pytest.raises(ConfigError, match="checkpoint"):
        FeatureConfig(weights_map={"conv1": ["a", "b"]})  # random weights


def test_keras_model_config():
    cfg = FeatureConfig(model="keras:/m/net.keras", layer="block3", preprocess="tf2019")
    assert (cfg.model, cfg.variant, cfg.weights) == ("keras", "/m/net.keras", "file")
    assert cfg.is_keras and cfg == FeatureConfig.for_keras("/m/net.keras", "block3", preprocess="tf2019")
    assert (
        FeatureConfig.for_keras("/m/net.keras", "b", weights="/m/w.weights.h5").weights == "/m/w.weights.h5"
    )
    with pytest.raises(ConfigError, match="path of a Keras model file"):
        FeatureConfig(model="keras", layer="x")
    with pytest.raises(ConfigError, match="AlexNet only"):
        FeatureConfig(model="keras:/m/net.keras", layer="x", weights="random:2")
    with pytest.raises(ConfigError, match="give the path once"):
        FeatureConfig(model="keras:/m/net.keras", variant="/m/other.keras", layer="x")


def test_auto_batch_size_rule():
    assert FeatureConfig(batch_size=0).batch_size == "auto" == FeatureConfig(batch_size="auto").batch_size
    mb = 1024 * 1024
    # 0.25 * 8 GiB / 10 MiB = 204.8 -> 128 (power of two), CPU cap 64, GPU cap 256
    assert auto_batch_size(10 * mb, 8192 * mb, "GPU") == 128
    assert auto_batch_size(10 * mb, 8192 * mb, "CPU") == 64
    assert auto_batch_size(10 * mb, 100 * mb, "CPU") == 2
    assert auto_batch_size(10 * mb, 10 * mb, "CPU") == 1  # too little memory: one at a time
    assert auto_batch_size(1, 10**12, "GPU") == 256
    assert auto_batch_size(10 * mb, None, "GPU") == 16
    assert auto_batch_size(10 * mb, 8192 * mb, "CPU", fraction=0.5, cap=1000) == 256


# ----------------------------------------------------------------- several layers in one file


class FakeMulti(FakeExtractor):
    """Two 'layers': a = first 12 pixels as (2, 2, 3), b = the next 5 pixels."""

    layers = ("a", "b")
    layer = "a"
    output_shapes = {"a": (2, 2, 3), "b": (5,)}

    def forward_all(self, x):
        flat = x.reshape(len(x), -1)
        return {"a": flat[:, :12].reshape(len(x), 2, 2, 3).copy(), "b": flat[:, 12:17].copy()}


def test_multi_layer_file_layout_and_reading(tmp_path):
    train, val = images(5, 1), images(2, 2)
    out = tmp_path / "m.h5"
    info = write_feature_file(out, FakeMulti(), {"train": (5, batches(train, 2)), "val": (2, [val])}, CFG)
    assert info.layers == ["a", "b"] and info.layer_shapes == {"a": [2, 2, 3], "b": [5]}
    with h5py.File(out, "r") as fh:
        assert sorted(fh) == [
            "train__a",
            "train__b",
            "train_image_sha256",
            "val__a",
            "val__b",
            "val_image_sha256",
        ]
        assert json.loads(fh.attrs["layers"]) == ["a", "b"]
    first = read_feature_file(out, expected_sha256=info.sha256)
    assert first.layer == "a" and first.layers == ["a", "b"]
    np.testing.assert_array_equal(first.train, FakeMulti().forward_all(train + np.float32(0.5))["a"])
    second = read_feature_file(out, layer="b", flatten=True)
    assert second.val.shape == (2, 5) and second.train_image_sha256 == first.train_image_sha256
    with pytest.raises(ConfigError, match="no layer 'c'; its layers: a, b"):
        read_feature_file(out, layer="c")


def test_prefetch_and_inline_write_the_same_features(tmp_path):
    train, val = images(7, 3), images(3, 4)
    files = []
    for prefetch in (True, False):
        info = write_feature_file(
            tmp_path / f"p{prefetch}.h5",
            FakeExtractor(),
            {"train": (7, batches(train, 3)), "val": (3, [val])},
            CFG,
            prefetch=prefetch,
        )
        files.append(read_feature_file(info.path))
    np.testing.assert_array_equal(files[0].train, files[1].train)
    assert files[0].image_sha256 == files[1].image_sha256


def test_preprocessing_error_in_the_prefetch_thread_reaches_the_caller(tmp_path):
    class Broken(FakeExtractor):
        def preprocess(self, raw):
            raise DataFormatError("bad pixels")

    with pytest.raises(DataFormatError, match="bad pixels"):
        write_feature_file(tmp_path / "f.h5", Broken(), {"train": (2, [images(2)])}, CFG)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- real extractors: warp, layers, Keras


def test_warped_extraction_and_the_2019_bug(tmp_path):
    pytest.importorskip("tensorflow")
    cfg = FeatureConfig.for_variant("tfutils", layer="conv1,conv2", retina_warp="compat", batch_size=4)
    ex = build_extractor(cfg)
    assert ex.layers == ("conv1", "conv2") and ex.output_shapes["conv2"] == (27, 27, 256)
    assert ex.chain.warp is not None and ex.chain.warp.mode == "compat"
    train = images(5, 21, size=120)
    info = write_feature_file(
        tmp_path / "w.h5", ex, {"train": (5, [train]), "val": (1, [images(1, 22, 120)])}, cfg
    )
    ff = read_feature_file(info.path, layer="conv2")
    np.testing.assert_allclose(ff.train, ex.forward_all(ex.preprocess(train))["conv2"], rtol=1e-5, atol=1e-5)
    pre = json.loads(ff.metadata["preprocess_json"])
    assert pre["retina_warp_spec"] == "compat" and ff.config["retina_warp"] == "compat"
    # 2019: the validation batch reused the first training images -> refused, file untouched
    with pytest.raises(IntegrityError, match=r"split 'val' image 0 .* split 'train' image 0"):
        write_feature_file(tmp_path / "w.h5", ex, {"train": (5, [train]), "val": (2, [train[:2]])}, cfg)
    assert sha256_file(tmp_path / "w.h5") == info.sha256
    # a raw size the warp cannot take is a clear error
    with pytest.raises(ConfigError, match="from 94 to 2097"):
        write_feature_file(tmp_path / "x.h5", ex, {"train": (1, [images(1, size=40)])}, cfg)


def _tiny_keras_model(seed):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="p1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", name="c2")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(x), name="tiny")


def test_user_keras_model_file(tmp_path):
    pytest.importorskip("tensorflow")
    model_path = tmp_path / "tiny.keras"
    _tiny_keras_model(1).save(model_path)
    cfg = FeatureConfig.for_keras(model_path, "c2,c1", preprocess="tf2019", batch_size="auto")
    ex = build_extractor(cfg)
    assert ex.chain.input_size == 32 and ex.output_shapes == {"c2": (7, 7, 6), "c1": (15, 15, 4)}
    assert ex.weights_sha256 == sha256_file(model_path)
    assert 1 <= ex.batch_size <= 64 and ex.batch_size & (ex.batch_size - 1) == 0
    assert ex.device_info()["batch_size_rule"].startswith("auto")
    raw = images(3, 5, size=50)
    x = ex.preprocess(raw)
    assert x.shape == (3, 32, 32, 3)
    import keras

    loaded = keras.saving.load_model(model_path)
    for name in ("c2", "c1"):
        sub = keras.Model(loaded.inputs[0], loaded.get_layer(name).output)
        np.testing.assert_allclose(ex.forward_all(x)[name], sub(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ex(raw), ex.forward_all(x)["c2"])

    # separate weights file: another model's weights, same architecture
    weights_path = tmp_path / "other.weights.h5"
    _tiny_keras_model(2).save_weights(weights_path)
    cfg2 = FeatureConfig.for_keras(model_path, "c1", preprocess="tf2019", weights=str(weights_path))
    ex2 = build_extractor(cfg2)
    assert ex2.weights_sha256 not in (sha256_file(model_path), sha256_file(weights_path))
    assert not np.allclose(ex2.forward(x), ex.forward_all(x)["c1"])

    with pytest.raises(ConfigError, match="not in model 'tiny'; its layers: .*c1, p1, c2"):
        build_extractor(FeatureConfig.for_keras(model_path, "block9", preprocess="tf2019"))
    with pytest.raises(DataFormatError, match="does not exist"):
        build_extractor(FeatureConfig.for_keras(tmp_path / "none.keras", "c1"))


def test_row_fingerprint_collisions_are_checked_exactly(tmp_path, monkeypatch):
    import pipeline.features.duplicates as duplicates

    monkeypatch.setattr(duplicates.zlib, "crc32", lambda data: 0)  # every row collides
    train, val = images(6, 1), images(3, 2)
    info = write_feature_file(
        tmp_path / "ok.h5", FakeExtractor(), {"train": (6, batches(train, 2)), "val": (3, [val])}, CFG
    )
    assert info.n_duplicate_rows == 0
    # a real repeat across batches and splits is still found (the earlier row read back)
    dead = FakeExtractor(dead=True)
    with pytest.raises(
        IntegrityError, match="split 'val' image 0 gave the same feature row as split 'train'"
    ):
        write_feature_file(tmp_path / "bad.h5", dead, {"train": (1, [train[:1]]), "val": (1, [val[:1]])}, CFG)
