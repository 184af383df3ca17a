"""Every AlexNet layer in one pass: ``layer="all"``, chunked datasets, column blocks, memory.

The all-layer file is compared with single-layer extractions of the same images (equal
to float32 rounding of the same forward pass: the same graph runs, only its outputs
differ, so we expect exact equality and allow 1e-6 of the largest value); its peak
Python-side memory is measured with tracemalloc (numpy registers its buffers there) and
must stay under a bound computed from the batch size, well below what holding every
layer of every image would take.
"""

from __future__ import annotations

import tracemalloc

import h5py
import numpy as np
import pytest

from pipeline.core.errors import ConfigError
from pipeline.core.vocab import ALL_LAYERS
from pipeline.features.alexnet.layers import LAYERS
from pipeline.features.config import FeatureConfig
from pipeline.features.extractor import build_extractor
from pipeline.features.reader import file_layers, iter_column_blocks, read_feature_file
from pipeline.features.writer import chunk_shape, write_feature_file

#: keys of single-layer configs recorded before layer="all" existed: they must not move
KNOWN_KEYS = {
    "conv3": "8c64b20b6b5b5b0456105282c4ff9f02bdf45de9dcc32de5124da889ebf7fe72",
    "conv3,conv5": "4867a60f57014af6ab1588ec761fa1e3f7eb454696ef3f368a9f459f11de0e22",
}


def raw_images(n: int, seed: int = 0, size: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (n, size, size)).astype(np.float32)


def splits_of(train: np.ndarray, val: np.ndarray, step: int) -> dict:
    def batches(a):
        for i in range(0, len(a), step):
            yield a[i : i + step]

    return {"train": (len(train), batches(train)), "val": (len(val), batches(val))}


def test_all_means_conv1_to_fc8_and_old_keys_stay():
    cfg = FeatureConfig(layer="all")
    assert cfg.layers == ALL_LAYERS == ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
    assert cfg.key() == FeatureConfig(layer=",".join(ALL_LAYERS)).key()
    assert FeatureConfig().key() == KNOWN_KEYS["conv3"]
    assert FeatureConfig(layer="conv3,conv5").key() == KNOWN_KEYS["conv3,conv5"]
    with pytest.raises(ConfigError, match="Keras model"):
        FeatureConfig.for_keras("/m/x.keras", "all")


@pytest.mark.parametrize("shape,rows,expected", [
    ((55, 55, 96), 64, (64, 1, 55, 96)),     # conv1: one row of the image per chunk
    ((13, 13, 256), 64, (64, 1, 13, 256)),
    ((4096,), 64, (64, 4096)),               # fc: 1 MiB of columns
    ((1000,), 8, (8, 1000)),
    ((6, 6, 256), 500, (100, 1, 6, 256)),    # never more rows than images
])
def test_chunk_shape(shape, rows, expected):
    got = chunk_shape(100, shape, rows)
    assert got == expected
    assert 4 * np.prod(got) <= max(1 << 20, 4 * got[0] * np.prod(shape[1:]))


@pytest.fixture(scope="module")
def all_layer_file(tmp_path_factory):
    """All 8 layers of 10 + 4 images in one file (batches of 4)."""
    out = tmp_path_factory.mktemp("all_layers") / "all.h5"
    train, val = raw_images(10, 1), raw_images(4, 2)
    cfg = FeatureConfig(layer="all", batch_size=4)
    info = write_feature_file(out, build_extractor(cfg), splits_of(train, val, 5), cfg)
    return out, info, train, val


def test_all_layer_file_equals_single_layer_extractions(all_layer_file, tmp_path):
    path, info, train, val = all_layer_file
    assert info.layers == list(ALL_LAYERS)
    with h5py.File(path, "r") as fh:
        for name in ALL_LAYERS:
            dset = fh[f"train__{name}"]
            assert dset.chunks == chunk_shape(10, LAYERS["caffe"][name], 4)
            assert dset.shape == (10, *LAYERS["caffe"][name])
    for name in ALL_LAYERS:
        cfg = FeatureConfig(layer=name, batch_size=4)
        single = tmp_path / f"{name}.h5"
        write_feature_file(single, build_extractor(cfg), splits_of(train, val, 5), cfg)
        one = read_feature_file(single)
        many = read_feature_file(path, layer=name)
        assert one.image_sha256 == many.image_sha256
        for split in ("train", "val"):
            a, b = one.features[split], many.features[split]
            assert a.shape == b.shape == (len(a), *LAYERS["caffe"][name])
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-6 * float(np.abs(a).max()))


@pytest.mark.parametrize("layer,block", [("conv1", 4096), ("conv2", 1000), ("fc6", 4096),
                                         ("fc8", 300), ("conv5", 7)])
def test_column_blocks_equal_the_flattened_layer(all_layer_file, layer, block):
    path = all_layer_file[0]
    full = read_feature_file(path, layer=layer, flatten=True)
    start = 0
    for cols, arrays in iter_column_blocks(path, layer, ("train", "val"), block=block):
        assert cols.start == start and cols.stop - cols.start <= block
        for split in ("train", "val"):
            np.testing.assert_array_equal(arrays[split], full.features[split][:, cols])
        start = cols.stop
    assert start == full.train.shape[1]
    layers, shapes, counts = file_layers(path)
    assert layers == list(ALL_LAYERS) and counts == {"train": 10, "val": 4}
    assert shapes[layer] == LAYERS["caffe"][layer]


def test_column_blocks_name_a_missing_layer(all_layer_file):
    with pytest.raises(ConfigError, match="no layer 'pool9'"):
        next(iter_column_blocks(all_layer_file[0], "pool9"))


def test_peak_memory_of_an_all_layer_extraction_is_bounded_by_the_batch(tmp_path):
    """Python-side peak (tracemalloc) of writing 64 images x 8 layers in batches of 2.

    Per image every layer together is ``per_image`` bytes (about 3.3 MB); holding all of
    them would take 64 x that. Bound: 4 batches' worth of layer outputs plus 4 batches of
    inputs (the batch being written, its float32 copy, the prefetched batches), plus 8 MB
    for the duplicate guard, HDF5 buffers and the interpreter. The graph is traced once
    before measuring (a one-time cost, about 28 MB of Python objects, whatever the
    number of images). Measured: 16 MiB (batches of 2) against 161 MiB for every layer.
    """
    batch, n_train, n_val = 2, 48, 16
    cfg = FeatureConfig(layer="all", batch_size=batch)
    ex = build_extractor(cfg)
    per_image = 4 * sum(int(np.prod(LAYERS["caffe"][n])) for n in ALL_LAYERS)
    per_input = 4 * 227 * 227 * 3
    bound = 4 * batch * (per_image + per_input) + 8 * 2**20
    everything = (n_train + n_val) * per_image
    assert bound < everything / 2  # the bound can tell streaming from holding every layer
    train, val = raw_images(n_train, 3), raw_images(n_val, 4)
    ex.forward_all(ex.preprocess(raw_images(batch, 9)))  # trace the graph before measuring
    tracemalloc.start()
    try:
        write_feature_file(tmp_path / "mem.h5", ex, splits_of(train, val, batch), cfg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < bound, f"peak {peak / 2**20:.1f} MiB >= bound {bound / 2**20:.1f} MiB"
