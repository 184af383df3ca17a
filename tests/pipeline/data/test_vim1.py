"""Tests of the vim-1 loader (pipeline.data) on the tiny synthetic data set."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from scipy.io.matlab import matfile_version

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.data.dataset import describe_dataset
from pipeline.data.layout import GROUND_TRUTH_FILE, RESPONSES_FILE, ROI_CODES, SUBJECTS
from pipeline.data.matfiles import mat_version
from pipeline.data.responses import load_responses
from pipeline.data.stimuli import iter_stimuli, load_lowres_stimuli, stimulus_count, stimulus_shape
from pipeline.data.synth.config import PRESETS
from pipeline.data.synth.truth import load_ground_truth
from pipeline.data.synth.writer import write_mat73_userblock

TINY = PRESETS["tiny"]
RESPONSE_KEYS = ("dataTrn", "dataVal", "roi", "voxIdx")


@pytest.fixture(scope="module")
def raw_responses(tiny_vim1_dir) -> dict[str, np.ndarray]:
    """All eight datasets of the tiny EstimatedResponses.mat, h5py orientation."""
    with h5py.File(tiny_vim1_dir / RESPONSES_FILE, "r") as f:
        return {k: f[k][()] for k in f}


def write_v73(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A MATLAB-7.3-style file (HDF5 + user block) holding ``arrays`` as datasets."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for k, a in arrays.items():
            f.create_dataset(k, data=a)
    write_mat73_userblock(path)
    return path


def copy_stimuli(src: Path, dst: Path) -> Path:
    dst.mkdir(exist_ok=True)
    for p in src.iterdir():
        if p.name.startswith("Stimuli"):
            shutil.copy(p, dst / p.name)
    return dst


def direct_images(data_dir: Path, split: str) -> np.ndarray:
    """All full-res images of a split read straight with h5py, in file order."""
    if split == "val":
        paths, var = [data_dir / "Stimuli_Val_FullRes.mat"], "stimVal"
    else:
        paths, var = sorted(data_dir.glob("Stimuli_Trn_FullRes_*.mat")), "stimTrn"
    parts = []
    for p in paths:
        with h5py.File(p, "r") as f:
            parts.append(np.transpose(f[var][()], (2, 1, 0)))
    return np.concatenate(parts)


# --------------------------------------------------------------------------- responses
@pytest.mark.parametrize("subject", SUBJECTS)
def test_round_trip_matches_ground_truth(tiny_vim1_dir, subject):
    resp = load_responses(tiny_vim1_dir, subject)
    gt = load_ground_truth(tiny_vim1_dir, subject)
    n_vox = gt.voxel_ids.size
    assert resp.subject == subject
    assert resp.train.shape == (TINY.n_train, n_vox) and resp.train.dtype == np.float64
    assert resp.val.shape == (TINY.n_val, n_vox)
    assert resp.roi_codes.dtype == np.int16 and resp.voxel_ids.dtype == np.int64
    assert np.array_equal(resp.roi_codes, gt.roi_codes)
    assert np.array_equal(resp.voxel_ids, gt.voxel_ids)
    assert np.array_equal(resp.nan_mask, gt.nan_voxels)
    assert 0 < resp.nan_mask.sum() < n_vox // 5
    assert resp.source == tiny_vim1_dir / RESPONSES_FILE
    assert resp.warnings == ()
    # ids unique, sorted, in the 64x64x18 volume, and their coordinates invert
    assert np.all(np.diff(resp.voxel_ids) > 0)
    assert resp.voxel_ids.min() >= 1 and resp.voxel_ids.max() <= 73728
    xyz = resp.voxel_coordinates()
    assert xyz.min(axis=0).tolist() >= [0, 0, 0] and np.all(xyz.max(axis=0) < [64, 64, 18])
    assert np.array_equal(np.ravel_multi_index(xyz.T, (64, 64, 18), order="F") + 1,
                          resp.voxel_ids)


def test_roi_masks_and_select(tiny_vim1_dir):
    resp = load_responses(tiny_vim1_dir, "S1")
    gt = load_ground_truth(tiny_vim1_dir, "S1")
    total = 0
    for code, name in ROI_CODES.items():
        mask = resp.roi_mask(name)
        assert np.array_equal(mask, gt.roi_codes == code)
        assert np.array_equal(resp.roi_mask(name.lower()), mask)
        clean = resp.select(name)
        planted_nan = int((gt.nan_voxels & (gt.roi_codes == code)).sum())
        assert clean.n_total == int(mask.sum())
        assert clean.n_dropped == planted_nan
        assert clean.train.shape == (TINY.n_train, clean.n_total - planted_nan)
        assert np.isfinite(clean.train).all() and np.isfinite(clean.val).all()
        assert np.array_equal(clean.voxel_ids, resp.voxel_ids[clean.columns])
        assert np.array_equal(clean.val, resp.val[:, clean.columns])
        total += clean.n_voxels
    assert resp.select("all").n_voxels == total == int((~resp.nan_mask).sum())
    assert np.array_equal(resp.roi_mask("LatOcc"), resp.roi_mask("LO"))
    assert resp.select(6).roi == "V4"
    with pytest.raises(ConfigError, match="V3A") as err:
        resp.roi_mask("V5")
    assert "'V5'" in str(err.value) and "all" in str(err.value)


def test_bad_arguments_raise_config_error(tiny_vim1_dir):
    with pytest.raises(ConfigError, match="subject"):
        load_responses(tiny_vim1_dir, "S3")
    assert load_responses(tiny_vim1_dir, 2).subject == "S2"
    with pytest.raises(ConfigError, match="split"):
        stimulus_count(tiny_vim1_dir, "test")
    with pytest.raises(ConfigError, match="batch_size"):
        iter_stimuli(tiny_vim1_dir, "train", 0)


def test_file_path_is_accepted(tiny_vim1_dir):
    a = load_responses(tiny_vim1_dir / RESPONSES_FILE, "S1")
    b = load_responses(tiny_vim1_dir, "S1")
    assert np.array_equal(a.val, b.val, equal_nan=True)


def test_versions_are_detected(tiny_vim1_dir):
    assert mat_version(tiny_vim1_dir / RESPONSES_FILE) == "v7.3"
    assert matfile_version(str(tiny_vim1_dir / RESPONSES_FILE)) == (2, 0)
    with pytest.raises(NotImplementedError, match="HDF reader"):
        scipy.io.loadmat(str(tiny_vim1_dir / RESPONSES_FILE))
    assert mat_version(tiny_vim1_dir / "Stimuli.mat") == "v5"
    assert mat_version(tiny_vim1_dir / "Stimuli_Trn_FullRes_02.mat") == "v7.3"
    # plain HDF5 without the MATLAB user block counts as v7.3
    assert mat_version(tiny_vim1_dir / GROUND_TRUTH_FILE) == "v7.3"


def test_v5_responses_read_like_v73(tiny_vim1_dir, raw_responses, tmp_path):
    # MATLAB orientation (voxels x images) as a v5 file would hold it
    scipy.io.savemat(tmp_path / RESPONSES_FILE, {k: v.T for k, v in raw_responses.items()},
                     format="5")
    assert mat_version(tmp_path / RESPONSES_FILE) == "v5"
    for s in SUBJECTS:
        a, b = load_responses(tmp_path, s), load_responses(tiny_vim1_dir, s)
        assert np.array_equal(a.train, b.train, equal_nan=True)
        assert np.array_equal(a.val, b.val, equal_nan=True)
        assert np.array_equal(a.roi_codes, b.roi_codes)
        assert np.array_equal(a.voxel_ids, b.voxel_ids)


# --------------------------------------------------------------------------- stimuli
@pytest.mark.parametrize("batch", [50, 7, 1000])
def test_iter_stimuli_keeps_order_across_files(tiny_vim1_dir, batch):
    direct = direct_images(tiny_vim1_dir, "train")
    assert direct.shape == (TINY.n_train, TINY.image_size, TINY.image_size)
    batches = list(iter_stimuli(tiny_vim1_dir, "train", batch))
    sizes = [b.shape[0] for b in batches]
    assert sizes[:-1] == [batch] * (len(sizes) - 1) and sum(sizes) == TINY.n_train
    assert all(b.dtype == np.float32 and b.flags.c_contiguous for b in batches)
    got = np.concatenate(batches)
    assert np.array_equal(got, direct)
    if batch == 50:  # the third batch (images 100-149) straddles files 01 and 02
        assert np.array_equal(batches[2][:20], direct[100:120])
        assert np.array_equal(batches[2][20:], direct[120:150])
        with h5py.File(tiny_vim1_dir / "Stimuli_Trn_FullRes_02.mat", "r") as f:
            first_of_02 = f["stimTrn"][:, :, 0].T
        assert np.array_equal(batches[2][20], first_of_02)


def test_iter_stimuli_val_and_counts(tiny_vim1_dir):
    assert stimulus_count(tiny_vim1_dir, "train") == TINY.n_train
    assert stimulus_count(tiny_vim1_dir, "val") == TINY.n_val
    assert stimulus_shape(tiny_vim1_dir, "val") == (TINY.image_size, TINY.image_size)
    got = np.concatenate(list(iter_stimuli(tiny_vim1_dir, "val", 16)))
    assert np.array_equal(got, direct_images(tiny_vim1_dir, "val"))
    assert -0.56 < got.min() < -0.4 and 0.3 < got.max() < 0.46
    # not white noise: neighbouring pixels are strongly correlated
    inner = got[:, 30:66, 30:66]
    r = np.corrcoef(inner[:, :, :-1].ravel(), inner[:, :, 1:].ravel())[0, 1]
    assert r > 0.8


@pytest.mark.parametrize("chunks", [None, (32, 48, 25)])
def test_iter_stimuli_reads_other_storage_layouts(tiny_vim1_dir, tmp_path, chunks):
    """Contiguous files and chunks spanning several images give the same images in order."""
    d = copy_stimuli(tiny_vim1_dir, tmp_path / "d")
    for p in d.glob("Stimuli_*FullRes*.mat"):
        var = "stimVal" if "Val" in p.name else "stimTrn"
        with h5py.File(p, "r") as f:
            data = f[var][()].astype(np.float64)
        with h5py.File(p, "w", userblock_size=512) as f:
            f.create_dataset(var, data=data, chunks=chunks,
                             compression="gzip" if chunks else None)
        write_mat73_userblock(p)
        with h5py.File(p, "r") as f:
            assert f[var].chunks == chunks
    batches = list(iter_stimuli(d, "train", 90))
    assert all(b.dtype == np.float32 and b.flags.c_contiguous for b in batches)
    assert np.array_equal(np.concatenate(batches), direct_images(tiny_vim1_dir, "train"))


def test_lowres_stimuli(tiny_vim1_dir):
    low = load_lowres_stimuli(tiny_vim1_dir)
    assert set(low) == {"stimTrn", "stimVal", "seqTrn", "seqVal"}
    s = TINY.lowres_size
    assert low["stimTrn"].shape == (TINY.n_train, s, s) and low["stimTrn"].dtype == np.float32
    assert low["stimVal"].shape == (TINY.n_val, s, s)
    assert low["seqTrn"].dtype == np.int64 and low["seqTrn"].shape[0] == 672
    assert low["seqVal"].shape[0] == 696
    # each image shown n_rep times, 0 = blank
    counts_trn = np.bincount(low["seqTrn"].ravel(), minlength=TINY.n_train + 1)
    counts_val = np.bincount(low["seqVal"].ravel(), minlength=TINY.n_val + 1)
    assert np.all(counts_trn[1:] == TINY.n_rep_train)
    assert np.all(counts_val[1:] == TINY.n_rep_val)
    # the low-res image is the full-res one down-sampled (same order)
    full = direct_images(tiny_vim1_dir, "val")
    k = TINY.image_size // s
    pooled = full.reshape(TINY.n_val, s, k, s, k).mean(axis=(2, 4))
    assert np.allclose(low["stimVal"], pooled, atol=1e-5)


def test_lowres_v73_reads_like_v5(tiny_vim1_dir, tmp_path):
    v5 = load_lowres_stimuli(tiny_vim1_dir)
    # MATLAB writes arrays to HDF5 with their axes reversed
    write_v73(tmp_path / "Stimuli.mat",
              {k: np.transpose(v).astype(np.float64) for k, v in v5.items()})
    v73 = load_lowres_stimuli(tmp_path)
    for k in v5:
        assert np.array_equal(v5[k], v73[k]) and v5[k].dtype == v73[k].dtype


# --------------------------------------------------------------------------- describe
def test_describe_dataset(tiny_vim1_dir):
    desc = describe_dataset(tiny_vim1_dir, image_ranges=True)
    again = json.loads(json.dumps(desc))
    assert again == desc
    names = [f["name"] for f in desc["files"]]
    assert names == [RESPONSES_FILE, "Stimuli.mat", "Stimuli_Trn_FullRes_01.mat",
                     "Stimuli_Trn_FullRes_02.mat", "Stimuli_Val_FullRes.mat"]
    resp_entry = desc["files"][0]
    raw = (tiny_vim1_dir / RESPONSES_FILE).read_bytes()
    assert resp_entry["sha256"] == hashlib.sha256(raw).hexdigest()
    assert resp_entry["size"] == len(raw)
    assert desc["synthetic"]["name"] == GROUND_TRUTH_FILE
    assert desc["images"]["train"] == {"count": 240, "height": 96, "width": 96, "n_files": 2,
                                       "per_file": [120, 120],
                                       "min": desc["images"]["train"]["min"],
                                       "max": desc["images"]["train"]["max"]}
    assert -0.56 < desc["images"]["train"]["min"] < desc["images"]["train"]["max"] < 0.46
    assert desc["lowres"]["stimVal"] == [TINY.n_val, TINY.lowres_size, TINY.lowres_size]
    for s in SUBJECTS:
        gt = load_ground_truth(tiny_vim1_dir, s)
        sub = desc["subjects"][s]
        assert sub["n_voxels"] == gt.voxel_ids.size
        assert sub["n_nan_voxels"] == int(gt.nan_voxels.sum())
        for code, name in ROI_CODES.items():
            in_roi = gt.roi_codes == code
            assert sub["rois"][name]["all"] == int(in_roi.sum())
            assert sub["rois"][name]["dropped"] == int((in_roi & gt.nan_voxels).sum())
        lo, hi = sub["value_range"]["val"]
        assert lo < -1.5 and hi > 1.5  # z-scored values
    assert desc["warnings"] == []


# --------------------------------------------------------------------------- malformed files
def test_missing_file_lists_directory(tiny_vim1_dir, tmp_path):
    d = copy_stimuli(tiny_vim1_dir, tmp_path / "d")
    with pytest.raises(DataFormatError) as err:
        load_responses(d, "S1")
    msg = str(err.value)
    assert "EstimatedResponses.mat was not found" in msg and str(d) in msg
    assert "Stimuli.mat" in msg and "Stimuli_Val_FullRes.mat" in msg
    (d / "Stimuli_Val_FullRes.mat").unlink()
    with pytest.raises(DataFormatError, match="Stimuli_Val_FullRes.mat was not found"):
        stimulus_count(d, "val")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="is empty"):
        load_responses(tmp_path / "empty", "S1")
    with pytest.raises(DataFormatError, match="does not exist"):
        load_responses(tmp_path / "nowhere", "S1")


def test_wrong_dataset_name(raw_responses, tmp_path):
    arrays = dict(raw_responses)
    arrays["dataTrainS1"] = arrays.pop("dataTrnS1")
    write_v73(tmp_path / RESPONSES_FILE, arrays)
    with pytest.raises(DataFormatError) as err:
        load_responses(tmp_path, "S1")
    msg = str(err.value)
    assert RESPONSES_FILE in msg and "no dataset dataTrnS1" in msg
    assert "found: dataTrainS1, dataTrnS2" in msg  # what is there
    assert "expected dataTrnS1, dataValS1, roiS1, voxIdxS1" in msg
    assert load_responses(tmp_path, "S2").subject == "S2"  # the other subject is fine


def test_wrong_shape(raw_responses, tmp_path):
    n_vox = raw_responses["roiS1"].shape[1]
    arrays = dict(raw_responses)
    arrays["roiS1"] = arrays["roiS1"][:, :-1]
    write_v73(tmp_path / RESPONSES_FILE, arrays)
    with pytest.raises(DataFormatError) as err:
        load_responses(tmp_path, "S1")
    msg = str(err.value)
    assert "roiS1" in msg and RESPONSES_FILE in msg
    assert f"(1, {n_vox - 1})" in msg and f"expected (1, {n_vox}) or ({n_vox},)" in msg

    arrays = dict(raw_responses)
    arrays["dataValS1"] = arrays["dataValS1"][:, :-2]
    write_v73(tmp_path / RESPONSES_FILE, arrays)
    with pytest.raises(DataFormatError, match="voxel counts .* disagree") as err:
        load_responses(tmp_path, "S1")
    assert f"has {n_vox} voxels" in str(err.value) and f"has {n_vox - 2}" in str(err.value)

    arrays = dict(raw_responses)
    arrays["dataTrnS1"] = arrays["dataTrnS1"][0]
    write_v73(tmp_path / RESPONSES_FILE, arrays)
    with pytest.raises(DataFormatError, match=rf"dataTrnS1 .* has shape \({n_vox},\)"):
        load_responses(tmp_path, "S1")

    # a (n_vox,) roi vector is accepted
    arrays = dict(raw_responses)
    arrays["roiS1"] = arrays["roiS1"][0]
    write_v73(tmp_path / RESPONSES_FILE, arrays)
    assert load_responses(tmp_path, "S1").roi_codes.shape == (n_vox,)


def test_roi_codes_out_of_range(raw_responses, tmp_path):
    arrays = dict(raw_responses)
    roi = arrays["roiS1"].copy()
    roi[0, :3] = 9
    arrays["roiS1"] = roi
    write_v73(tmp_path / RESPONSES_FILE, arrays)
    with pytest.raises(DataFormatError, match="roiS1 .* 3 codes outside the integers 0-7"):
        load_responses(tmp_path, "S1")


def test_voxel_id_problems_are_reported_not_raised(raw_responses, tmp_path):
    arrays = dict(raw_responses)
    vox = arrays["voxIdxS1"].copy()
    vox[0, 1] = vox[0, 0]  # duplicate (still sorted)
    vox[0, -1] = 80000  # outside 64x64x18
    arrays["voxIdxS1"] = vox
    write_v73(tmp_path / RESPONSES_FILE, arrays)
    with pytest.warns(UserWarning) as record:
        resp = load_responses(tmp_path, "S1")
    text = " ".join(str(w.message) for w in record)
    assert "repeats 1 ids" in text and "outside 1..73728" in text
    assert len(resp.warnings) == 2 and resp.voxel_ids[-1] == 80000
    with pytest.raises(DataFormatError, match="outside 1..73728"):
        resp.voxel_coordinates()


def test_truncated_hdf5(tiny_vim1_dir, tmp_path):
    data = (tiny_vim1_dir / RESPONSES_FILE).read_bytes()
    (tmp_path / RESPONSES_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError) as err:
        load_responses(tmp_path, "S1")
    msg = str(err.value)
    assert RESPONSES_FILE in msg and "truncated or corrupt" in msg and str(tmp_path) in msg

    d = copy_stimuli(tiny_vim1_dir, tmp_path / "d")
    p = d / "Stimuli_Trn_FullRes_02.mat"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(DataFormatError, match="Stimuli_Trn_FullRes_02.mat .* truncated"):
        list(iter_stimuli(d, "train", 64))


def test_not_a_mat_file(tmp_path):
    (tmp_path / RESPONSES_FILE).write_text("this is not a MATLAB file at all " * 10)
    with pytest.raises(DataFormatError, match="EstimatedResponses.mat .* is not a MATLAB"):
        load_responses(tmp_path, "S1")


def test_v5_stimuli_missing_variable(tiny_vim1_dir, tmp_path):
    low = load_lowres_stimuli(tiny_vim1_dir)
    scipy.io.savemat(tmp_path / "Stimuli.mat",
                     {k: v for k, v in low.items() if k != "seqVal"}, format="5")
    with pytest.raises(DataFormatError) as err:
        load_lowres_stimuli(tmp_path)
    msg = str(err.value)
    assert "Stimuli.mat" in msg and "no variable seqVal" in msg
    assert "found: seqTrn, stimTrn, stimVal" in msg


def test_fullres_count_mismatch_and_gaps(tiny_vim1_dir, tmp_path):
    d = copy_stimuli(tiny_vim1_dir, tmp_path / "d")
    shutil.copy(tiny_vim1_dir / RESPONSES_FILE, d / RESPONSES_FILE)
    (d / "Stimuli_Trn_FullRes_02.mat").unlink()
    with pytest.raises(DataFormatError) as err:
        stimulus_count(d, "train")
    msg = str(err.value)
    assert "Stimuli_Trn_FullRes_*.mat hold 120 images" in msg
    assert "dataTrnS1 in EstimatedResponses.mat has 240 image rows" in msg
    with pytest.raises(DataFormatError, match="120 images"):
        describe_dataset(d, hash_files=False)

    shutil.copy(tiny_vim1_dir / "Stimuli_Trn_FullRes_02.mat", d / "Stimuli_Trn_FullRes_03.mat")
    with pytest.raises(DataFormatError, match="Stimuli_Trn_FullRes_02.mat is missing") as err:
        iter_stimuli(d, "train", 10)
    assert "found 01, 03" in str(err.value)


def test_fullres_wrong_dataset_and_shape(tiny_vim1_dir, tmp_path):
    d = copy_stimuli(tiny_vim1_dir, tmp_path / "d")
    p = d / "Stimuli_Val_FullRes.mat"
    with h5py.File(p, "r") as f:
        data = f["stimVal"][()]
    write_v73(p, {"images": data})
    with pytest.raises(DataFormatError) as err:
        stimulus_count(d, "val")
    assert "Stimuli_Val_FullRes.mat" in str(err.value)
    assert "no dataset stimVal" in str(err.value) and "found: images" in str(err.value)

    write_v73(p, {"stimVal": data[:, :, 0]})
    with pytest.raises(DataFormatError, match=r"stimVal .* has shape \(96, 96\), expected"):
        stimulus_count(d, "val")

    # training files must all hold images of one size
    p = d / "Stimuli_Trn_FullRes_02.mat"
    with h5py.File(tiny_vim1_dir / "Stimuli_Trn_FullRes_02.mat", "r") as f:
        write_v73(p, {"stimTrn": f["stimTrn"][:48, :48]})
    with pytest.raises(DataFormatError, match="48x48 images but Stimuli_Trn_FullRes_01.mat"):
        stimulus_count(d, "train")


def test_lowres_out_of_range_sequence_warns(tiny_vim1_dir, tmp_path):
    low = load_lowres_stimuli(tiny_vim1_dir)
    low["seqVal"] = low["seqVal"].copy()
    low["seqVal"][0, 0] = TINY.n_val + 5
    scipy.io.savemat(tmp_path / "Stimuli.mat", low, format="5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = load_lowres_stimuli(tmp_path)
    assert out["seqVal"][0, 0] == TINY.n_val + 5
    assert any("seqVal" in str(w.message) and "outside" in str(w.message) for w in caught)
