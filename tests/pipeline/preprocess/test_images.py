"""Tests for pipeline.preprocess.images: bilinear resize (vs hand values and TensorFlow), chains, hashes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.preprocess.images import CHAINS, IMAGENET_MEAN_BGR, image_sha256, resize_bilinear

REPO = Path(__file__).resolve().parents[3]


# ----------------------------------------------------------------- resize, by hand


def test_resize_upscale_tf1_hand_values():
    img = np.array([[[0.0, 1.0], [2.0, 3.0]]], dtype=np.float32)  # (1, 2, 2)
    out = resize_bilinear(img, 4, half_pixel_centers=False)
    # src = dst * 0.5 -> 0, 0.5, 1, 1.5 (the last clamps to the edge pixel)
    expected = np.array(
        [[0.0, 0.5, 1.0, 1.0], [1.0, 1.5, 2.0, 2.0], [2.0, 2.5, 3.0, 3.0], [2.0, 2.5, 3.0, 3.0]],
        dtype=np.float32,
    )
    assert out.shape == (1, 4, 4)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], expected)


def test_resize_upscale_half_pixel_hand_values():
    img = np.array([[[0.0, 1.0]]], dtype=np.float32)  # (1, 1, 2)
    out = resize_bilinear(img, (1, 4), half_pixel_centers=True)
    # src = (dst + 0.5) * 0.5 - 0.5 -> -0.25 (edge), 0.25, 0.75, 1.25 (edge)
    np.testing.assert_allclose(out[0, 0], [0.0, 0.25, 0.75, 1.0], atol=0)


def test_resize_downscale_samples_without_antialias():
    img = np.arange(4, dtype=np.float32).reshape(1, 1, 4)
    np.testing.assert_array_equal(resize_bilinear(img, (1, 2), False)[0, 0], [0.0, 2.0])
    np.testing.assert_array_equal(resize_bilinear(img, (1, 2), True)[0, 0], [0.5, 2.5])


def test_resize_channels_are_independent():
    rng = np.random.default_rng(1)
    img = rng.standard_normal((2, 9, 7, 3)).astype(np.float32)
    out = resize_bilinear(img, (5, 11), half_pixel_centers=False)
    assert out.shape == (2, 5, 11, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], resize_bilinear(img[..., c], (5, 11), False))


@pytest.mark.parametrize("bad", [np.zeros((4, 4)), np.zeros((1, 0, 4))])
def test_resize_rejects_bad_shapes(bad):
    with pytest.raises(ConfigError, match="images"):
        resize_bilinear(bad, 3, False)


def test_resize_rejects_bad_size():
    with pytest.raises(ConfigError, match="size"):
        resize_bilinear(np.zeros((1, 4, 4)), (0, 3), False)


# ----------------------------------------------------------------- resize, vs TensorFlow


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.mark.parametrize(
    "shape,size",
    [
        ((2, 37, 53), (19, 80)),
        ((1, 500, 500), (224, 224)),
        ((1, 500, 500), (227, 227)),
        ((2, 7, 5, 3), (13, 4)),
    ],
)
def test_resize_matches_tensorflow(tf, shape, size):
    rng = np.random.default_rng(0)
    img = rng.standard_normal(shape).astype(np.float32)
    img4 = img if img.ndim == 4 else img[..., None]
    tf1 = tf.compat.v1.image.resize_bilinear(
        img4, size, align_corners=False, half_pixel_centers=False
    ).numpy()
    tf2 = tf.image.resize(img4, size, method="bilinear", antialias=False).numpy()
    ours1 = resize_bilinear(img, size, half_pixel_centers=False)
    ours2 = resize_bilinear(img, size, half_pixel_centers=True)
    if img.ndim == 3:
        ours1, ours2 = ours1[..., None], ours2[..., None]
    np.testing.assert_allclose(ours1, tf1, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours2, tf2, rtol=0, atol=1e-6)


def test_tf2019_chain_equals_seed_protocol(tf):
    """+0.5, grey tiled to 3 channels, then TF1 resize to 224: what the 2019 notebooks did."""
    rng = np.random.default_rng(2)
    raw = rng.uniform(-0.55, 0.45, (2, 50, 50)).astype(np.float32)
    tiled = np.repeat((raw + 0.5)[..., None], 3, axis=3)
    expected = tf.compat.v1.image.resize_bilinear(tiled, (224, 224), align_corners=False).numpy()
    np.testing.assert_allclose(CHAINS["tf2019"](raw), expected, rtol=0, atol=1e-6)


# ----------------------------------------------------------------- chains


def test_chain_registry():
    assert set(CHAINS) == {"caffe", "tf2019"}
    assert CHAINS["caffe"].input_size == 227
    assert CHAINS["tf2019"].input_size == 224
    for name, chain in CHAINS.items():
        assert chain.name == name
        assert chain.to_dict()["antialias"] is False


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_chain_output_shape_and_dtype(name):
    raw = np.zeros((3, 20, 30), dtype=np.float64)
    out = CHAINS[name](raw)
    size = CHAINS[name].input_size
    assert out.shape == (3, size, size, 3)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous


def test_caffe_chain_values_on_constant_image():
    raw = np.full((1, 10, 10), 0.1, dtype=np.float32)
    out = CHAINS["caffe"](raw)
    expected = 0.6 * 255 - np.array(IMAGENET_MEAN_BGR)
    np.testing.assert_allclose(out[0, 100, 50], expected, atol=1e-3)
    assert np.ptp(out.reshape(-1, 3), axis=0).max() < 1e-4  # constant up to float32 rounding


def test_caffe_chain_reorders_colour_to_bgr():
    raw = np.zeros((1, 4, 4, 3), dtype=np.float32)
    raw[..., 0], raw[..., 1], raw[..., 2] = -0.5, 0.0, 0.5  # R, G, B
    out = CHAINS["caffe"](raw)[0, 0, 0] + np.array(IMAGENET_MEAN_BGR, dtype=np.float32)
    np.testing.assert_allclose(out, [255.0, 127.5, 0.0], atol=1e-3)  # B, G, R


def test_tf2019_chain_values_on_constant_image():
    out = CHAINS["tf2019"](np.full((1, 5, 5), -0.25, dtype=np.float32))
    np.testing.assert_allclose(out, 0.25, atol=1e-7)


def test_chain_rejects_bad_input():
    with pytest.raises(ConfigError, match="images"):
        CHAINS["caffe"](np.zeros((4, 4), np.float32))
    with pytest.raises(ConfigError, match="images"):
        CHAINS["caffe"](np.zeros((0, 4, 4), np.float32))
    bad = np.zeros((1, 4, 4), np.float32)
    bad[0, 1, 1] = np.nan
    with pytest.raises(DataFormatError, match="NaN"):
        CHAINS["caffe"](bad)


# ----------------------------------------------------------------- hashes


def test_image_sha256_definition_and_properties():
    batch = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    hashes = image_sha256(batch)
    expected0 = hashlib.sha256(b"float32(3, 4)" + batch[0].tobytes()).hexdigest()
    assert hashes[0] == expected0
    assert len(hashes) == 2 and hashes[0] != hashes[1]
    assert image_sha256(batch[[1, 0]]) == hashes[::-1]
    # float64 input is hashed as float32; the same bytes under another shape differ
    assert image_sha256(batch.astype(np.float64)) == hashes
    assert image_sha256(batch.reshape(2, 4, 3))[0] != hashes[0]


def test_pipeline_modules_do_not_import_tensorflow():
    code = (
        "import sys, pipeline.preprocess.images, pipeline.features.alexnet, pipeline.features; "
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-500:]
