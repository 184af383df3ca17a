"""Tests for pipeline.preprocess.retinawarp against the test vectors of specs/retinawarp.md."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.preprocess.images import CHAINS, IMAGENET_MEAN_BGR
from pipeline.preprocess.retinawarp import (
    RetinaWarpConfig,
    raw_radii,
    retina_warp,
    valid_input_range,
    warp_coefficients,
    warp_plan,
)

# ----------------------------------------------------------------- coefficients

# S_in, S_out, rho, A, B, g(N-1)  (spec table)
TABLE = [
    (500, 224, 0.176062, 9.751178e-3, 1.102403, 242.511),
    (224, 224, 0.877222, 4.368528e-3, 0.493877, 108.645),
    (256, 224, 0.671623, 4.992603e-3, 0.564430, 124.166),
    (440, 224, 0.227353, 8.581037e-3, 0.970115, 213.410),
    (299, 299, 0.880269, 3.286731e-3, 0.492850, 144.934),
    (500, 299, 0.313810, 5.482076e-3, 0.826599, 242.416),
    (350, 700, 3.577184, 6.894379e-4, 0.245273, 169.575),
]


@pytest.mark.parametrize("s_in,s_out,rho,a,b,g_last", TABLE)
def test_coefficients_match_spec(s_in, s_out, rho, a, b, g_last):
    c = warp_coefficients(s_in, s_out)
    n = s_out // 2
    assert c.rho == pytest.approx(rho, abs=6e-7)
    assert c.a == pytest.approx(a, rel=1e-6)
    assert c.b == pytest.approx(b, abs=6e-7)
    assert float(c.g(n - 1)) == pytest.approx(g_last, abs=6e-4)
    # the root-find put the last raw ring on the edge
    assert c.radii[-1] == pytest.approx(s_in / 2, abs=1e-9)
    assert len(c.radii) == n and c.radii[0] == 0


def test_radius_maps_match_spec():
    c = warp_coefficients(500, 224)
    for r, g in [(1, 1.112), (10, 11.999), (50, 79.498), (100, 207.752), (111, 242.511)]:
        assert float(c.g(r)) == pytest.approx(g, abs=6e-4)
    for n, big_r in [(1, 1.345), (10, 13.835), (50, 80.093), (100, 207.979), (111, 250.000)]:
        assert c.radii[n] == pytest.approx(big_r, abs=6e-4)
    np.testing.assert_array_equal(raw_radii(c.rho, 500, 112), c.radii)
    c224 = warp_coefficients(224, 224)
    for r, g in [(10, 5.376), (50, 35.615), (100, 93.073)]:
        assert float(c224.g(r)) == pytest.approx(g, abs=6e-4)


def test_valid_range_and_clear_error():
    assert valid_input_range(224) == (94, 2097)
    warp_coefficients(94, 224)
    warp_coefficients(2097, 224)
    for bad in (93, 2098):
        with pytest.raises(ConfigError) as err:
            warp_coefficients(bad, 224)
        msg = str(err.value)
        assert f"from {bad} to 224" in msg and "from 94 to 2097" in msg and "max_ratio=10" in msg
    with pytest.raises(ConfigError, match="output size must be an integer >= 4"):
        warp_coefficients(500, 3)
    with pytest.raises(ConfigError, match="from 94 to 2097"):
        retina_warp(np.zeros((1, 60, 60), np.float32), 224)


# ----------------------------------------------------------------- pixel vectors


def _ramp(size=500):
    r, c = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return np.stack([r / 1000.0, c / 1000.0], axis=-1)[None]  # (1, H, W, 2)


PIXELS = {
    (111, 111): ((247, 247), (248.945, 248.945)),
    (112, 112): ((249, 249), (250.055, 250.055)),
    (0, 111): ((4, 247), (5.352, 248.405)),
    (111, 223): ((247, 492), (248.405, 493.648)),
    (61, 111): ((167, 247), (168.959, 248.703)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_default_path_pixel_vectors(dtype):
    out = retina_warp(_ramp().astype(dtype), 224)[0] * 1000
    assert out.shape == (224, 224, 2) and out.dtype == dtype
    tol = 1e-3 if dtype == np.float64 else 2e-3
    for (i, j), (_, (row, col)) in PIXELS.items():
        np.testing.assert_allclose(out[i, j], [row, col], atol=tol)
    np.testing.assert_array_equal(out[0, 0], 0)
    np.testing.assert_array_equal(out[223, 223], 0)
    plan = warp_plan((500, 500), 224, "default")
    assert plan.zero_share == pytest.approx(0.0648, abs=5e-5)
    assert np.mean(np.all(out == 0, axis=-1)) == pytest.approx(0.0648, abs=5e-5)
    # the continuous coordinates themselves
    assert plan.rows[0, 111] == pytest.approx(5.352, abs=1e-3)
    assert plan.cols[111, 223] == pytest.approx(493.648, abs=1e-3)


def test_compat_path_pixel_vectors():
    out = retina_warp(_ramp(), 224, mode="compat")[0] * 1000
    for (i, j), ((row, col), _) in PIXELS.items():
        np.testing.assert_allclose(out[i, j], [row, col], atol=1e-9)
    np.testing.assert_array_equal(out[0, 0], 0)
    np.testing.assert_array_equal(out[223, 223], 0)
    assert warp_plan((500, 500), 224, "compat").zero_share == pytest.approx(0.0670, abs=5e-5)


def test_shapes_channels_and_batches():
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((3, 120, 130, 4)).astype(np.float32)
    out = retina_warp(batch, 99)
    assert out.shape == (3, 99, 99, 4) and out.dtype == np.float32
    for c in range(4):  # channels are warped independently, like grey images
        np.testing.assert_array_equal(retina_warp(batch[..., c], 99), out[..., c])
    np.testing.assert_array_equal(retina_warp(batch[1, ..., 2], 99), out[1, ..., 2])  # 2-D
    # a constant image stays constant where fully covered; coverage says where
    plan = warp_plan((120, 130), 99, "default")
    const = retina_warp(np.full((1, 120, 130), 2.0), 99)[0]
    np.testing.assert_allclose(const, 2.0 * plan.coverage, atol=1e-6)
    assert plan.coverage[49, 49] == 1.0 and plan.coverage.min() >= 0


def test_bad_input():
    with pytest.raises(ConfigError, match="shape"):
        retina_warp(np.zeros(5), 10)
    bad = np.zeros((1, 200, 200), np.float32)
    bad[0, 3, 3] = np.inf
    with pytest.raises(DataFormatError, match="NaN or infinite"):
        retina_warp(bad, 100)
    plan = warp_plan((200, 200), 100)
    with pytest.raises(ConfigError, match="200x200"):
        plan.apply(np.zeros((1, 100, 100)))


# ----------------------------------------------------------------- config strings


def test_config_parse_and_canonical_spec():
    assert RetinaWarpConfig.parse("default") == RetinaWarpConfig()
    assert RetinaWarpConfig.parse("default:max_ratio=10").spec() == "default"
    cfg = RetinaWarpConfig.parse(" compat : max_ratio=5, in_size=440 ")
    assert cfg == RetinaWarpConfig("compat", 5.0, 440)
    assert cfg.spec() == "compat:in_size=440,max_ratio=5"
    assert RetinaWarpConfig.parse(cfg.spec()) == cfg
    assert cfg.to_dict()["interpolation"].startswith("nearest")


@pytest.mark.parametrize(
    "spec,words",
    [
        ("fancy", "valid modes: default, compat"),
        ("default:ratio=3", "max_ratio=FLOAT"),
        ("default:max_ratio=abc", "not a number"),
        ("default:max_ratio=0.5", ">= 1"),
        ("compat:in_size=1", ">= 2"),
        (3, "string"),
    ],
)
def test_config_errors(spec, words):
    with pytest.raises(ConfigError, match=words):
        RetinaWarpConfig.parse(spec)


def test_max_ratio_and_in_size_change_the_map():
    base = warp_plan((500, 500), 224, "default")
    flatter = warp_plan((500, 500), 224, "default:max_ratio=2")
    inner = warp_plan((500, 500), 224, "default:in_size=300")
    assert flatter.coefficients.a < base.coefficients.a
    assert inner.coefficients.in_size == 300 and inner.zero_share == 0  # sees only a disk inside


# ----------------------------------------------------------------- in a preprocessing chain


def test_warped_chains_match_manual_recipe():
    rng = np.random.default_rng(3)
    raw = rng.uniform(-0.55, 0.45, (2, 200, 200)).astype(np.float32)
    tf_chain = CHAINS["tf2019"].with_warp("compat")
    expected = retina_warp(raw + np.float32(0.5), 224, mode="compat")  # warp the [0, 1] image
    out = tf_chain(raw)
    assert out.shape == (2, 224, 224, 3)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], expected, atol=1e-6)
    assert np.all(out[:, 0, 0] == 0)  # outside = black in [0, 1]

    caffe = CHAINS["caffe"].with_warp("default")
    expected = retina_warp((raw + np.float32(0.5)) * np.float32(255), 227)
    out = caffe(raw)
    assert out.shape == (2, 227, 227, 3)
    mean = np.asarray(IMAGENET_MEAN_BGR, np.float32)
    np.testing.assert_allclose(out, expected[..., None] - mean, atol=2e-4)
    np.testing.assert_allclose(out[0, 0, 0], -mean, atol=1e-4)  # black minus the mean


def test_chain_records_warp_only_when_set():
    plain = CHAINS["caffe"].to_dict()
    assert "retina_warp" not in plain
    warped = CHAINS["caffe"].with_warp("default:max_ratio=5").to_dict()
    assert warped["retina_warp_spec"] == "default:max_ratio=5"
    assert warped["retina_warp"]["max_ratio"] == 5.0
    assert {k: v for k, v in warped.items() if not k.startswith("retina")} == plain
    assert CHAINS["caffe"].with_warp("default").with_warp(None) == CHAINS["caffe"]


def test_warped_distinct_images_stay_distinct_and_repeats_hash_equal():
    from pipeline.preprocess.images import image_sha256

    rng = np.random.default_rng(4)
    raw = rng.uniform(-0.5, 0.5, (3, 150, 150)).astype(np.float32)
    chain = CHAINS["tf2019"].with_warp("default")
    hashes = image_sha256(chain(np.concatenate([raw, raw[:1]])))
    assert len(set(hashes[:3])) == 3 and hashes[3] == hashes[0]
