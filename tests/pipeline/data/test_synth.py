"""Tests of the synthetic vim-1 generator (pipeline.data.synth) and its ground truth."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
import scipy.io
from scipy.io.matlab import matfile_version

import pipeline.data.synth.writer as synth_writer
from pipeline.core.errors import ConfigError
from pipeline.data.layout import GROUND_TRUTH_FILE, RESPONSES_FILE, ROI_CODES, SUBJECTS
from pipeline.data.responses import load_responses
from pipeline.data.synth.cli import main
from pipeline.data.synth.config import BACKGROUND, PRESETS, SynthConfig, scaled_voxel_counts
from pipeline.data.synth.images import _ImageMaker, _sequence
from pipeline.data.synth.truth import load_ground_truth
from pipeline.data.synth.writer import generate

# A very small config for tests that generate their own data set (well under a second).
MINI = SynthConfig(n_train=130, n_val=12, voxel_scale=0.005, image_size=32, lowres_size=16,
                   feature_res=32, feature_grid=8, min_roi_voxels=4, seed=3)


def spectral_slope(img: np.ndarray) -> float:
    """Log-log slope of the radially averaged power spectrum (white noise: about 0)."""
    s = img.shape[0]
    p = np.abs(np.fft.fft2(img - img.mean())) ** 2
    f = np.fft.fftfreq(s) * s
    fr = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2).ravel()
    edges = np.arange(2, s // 2)
    idx = np.digitize(fr, edges)
    power = np.bincount(idx, p.ravel()) / np.maximum(np.bincount(idx), 1)
    centres = edges[:-1] + 0.5
    return float(np.polyfit(np.log(centres), np.log(power[1:len(edges)]), 1)[0])


@pytest.fixture(scope="module")
def truth(tiny_vim1_dir):
    return {s: load_ground_truth(tiny_vim1_dir, s) for s in SUBJECTS}


# --------------------------------------------------------------------------- presets
def test_full_preset_has_real_voxel_counts():
    full = PRESETS["full"]
    assert (full.n_train, full.n_val, full.image_size) == (1750, 120, 500)
    s1 = scaled_voxel_counts("S1", full.voxel_scale, full.min_roi_voxels)
    s2 = scaled_voxel_counts("S2", full.voxel_scale, full.min_roi_voxels)
    assert sum(s1.values()) == 25915 and sum(s2.values()) == 26329
    assert s1 == {0: 17127, 1: 1331, 2: 2208, 3: 1973, 4: 484, 5: 314, 6: 1550, 7: 928}
    assert (s2[0], s2[6]) == (18626, 1022)
    # S2's remaining ROIs keep S1's proportions to within one voxel
    for code in (1, 2, 3, 4, 5, 7):
        assert abs(s2[code] - s1[code] * 6681 / 7238) <= 1


def test_demo_and_tiny_presets():
    demo, tiny = PRESETS["demo"], PRESETS["tiny"]
    assert (demo.n_train, demo.n_val, demo.image_size, demo.voxel_scale) == (700, 60, 500, 0.1)
    assert tiny.image_size == 96 and 200 <= tiny.n_train <= 300
    tiny_counts = scaled_voxel_counts("S1", tiny.voxel_scale, tiny.min_roi_voxels)
    assert min(tiny_counts.values()) >= tiny.min_roi_voxels


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="voxel_scale"):
        SynthConfig(voxel_scale=1.5)
    with pytest.raises(ConfigError, match="n_val"):
        SynthConfig(n_val=1)
    with pytest.raises(ConfigError, match="feature_res"):
        SynthConfig(feature_res=50, feature_grid=16)


def test_config_json_round_trip(tiny_vim1_dir):
    with h5py.File(tiny_vim1_dir / GROUND_TRUTH_FILE, "r") as f:
        stored = json.loads(f.attrs["config_json"])
    assert SynthConfig.from_dict(stored) == PRESETS["tiny"]


# --------------------------------------------------------------------------- files
def test_files_and_user_block(tiny_vim1_dir):
    names = sorted(p.name for p in tiny_vim1_dir.iterdir())
    assert names == sorted([RESPONSES_FILE, "Stimuli.mat", "Stimuli_Trn_FullRes_01.mat",
                            "Stimuli_Trn_FullRes_02.mat", "Stimuli_Val_FullRes.mat",
                            GROUND_TRUTH_FILE])
    for name in (RESPONSES_FILE, "Stimuli_Trn_FullRes_01.mat", "Stimuli_Val_FullRes.mat"):
        path = tiny_vim1_dir / name
        head = path.read_bytes()[:128]
        assert head.startswith(b"MATLAB 7.3 MAT-file, Platform: ")
        assert b"HDF5 schema 1.00 ." in head[:116]
        assert head[116:124] == b"\x00" * 8 and head[124:128] == b"\x00\x02IM"
        assert matfile_version(str(path)) == (2, 0)
        with pytest.raises(NotImplementedError, match="HDF"):
            scipy.io.loadmat(str(path))
    assert matfile_version(str(tiny_vim1_dir / "Stimuli.mat"))[0] == 1


def test_responses_layout(tiny_vim1_dir):
    cfg = PRESETS["tiny"]
    with h5py.File(tiny_vim1_dir / RESPONSES_FILE, "r") as f:
        assert f.userblock_size == 512
        assert sorted(f) == sorted(f"{k}{s}" for s in SUBJECTS
                                   for k in ("dataTrn", "dataVal", "roi", "voxIdx"))
        for s in SUBJECTS:
            n_vox = f[f"roi{s}"].shape[1]
            assert f[f"dataTrn{s}"].shape == (cfg.n_train, n_vox)
            assert f[f"dataVal{s}"].shape == (cfg.n_val, n_vox)
            assert f[f"voxIdx{s}"].shape == (1, n_vox)
        for ds in f.values():
            assert ds.dtype == np.float64
            assert ds.attrs["MATLAB_class"] == b"double"
            assert ds.chunks is not None
            assert ds.compression == "gzip" and ds.compression_opts == 3


def test_fullres_split_into_files_of_120(tmp_path):
    generate(tmp_path, MINI)
    shapes = []
    for k in (1, 2):
        with h5py.File(tmp_path / f"Stimuli_Trn_FullRes_{k:02d}.mat", "r") as f:
            shapes.append(f["stimTrn"].shape)
            assert f["stimTrn"].dtype == np.float32
    assert shapes == [(32, 32, 120), (32, 32, 10)]
    assert not (tmp_path / "Stimuli_Trn_FullRes_03.mat").exists()
    with h5py.File(tmp_path / "Stimuli_Val_FullRes.mat", "r") as f:
        assert f["stimVal"].shape == (32, 32, 12)


def test_sequences_have_real_shapes_at_full_size():
    rng = np.random.default_rng(0)
    trn = _sequence(1750, 70, 2, 28 / 140, rng)
    val = _sequence(120, 12, 13, 18 / 156, rng)
    assert trn.shape == (672, 25) and val.shape == (696, 10)
    assert np.array_equal(np.bincount(trn.astype(int).ravel())[1:], np.full(1750, 2))
    assert np.array_equal(np.bincount(val.astype(int).ravel())[1:], np.full(120, 13))


def test_generation_is_reproducible_and_seeded(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, MINI)
    generate(b, MINI)
    generate(c, dataclasses.replace(MINI, seed=4))
    ra, rb, rc = (load_responses(d, "S1") for d in (a, b, c))
    assert np.array_equal(ra.train, rb.train, equal_nan=True)
    assert np.array_equal(ra.voxel_ids, rb.voxel_ids)
    with h5py.File(a / "Stimuli_Val_FullRes.mat") as fa, \
            h5py.File(c / "Stimuli_Val_FullRes.mat") as fc:
        assert not np.allclose(fa["stimVal"][()], fc["stimVal"][()])
    assert not np.allclose(np.nan_to_num(ra.val), np.nan_to_num(rc.val))


def test_refuses_to_overwrite_and_removes_stale_files(tmp_path):
    generate(tmp_path, dataclasses.replace(MINI, n_train=250))  # three training files
    assert (tmp_path / "Stimuli_Trn_FullRes_03.mat").exists()
    with pytest.raises(ConfigError, match="overwrite"):
        generate(tmp_path, MINI)
    generate(tmp_path, MINI, overwrite=True)
    assert not (tmp_path / "Stimuli_Trn_FullRes_03.mat").exists()
    assert load_responses(tmp_path, "S2").train.shape[0] == 130


def test_failure_leaves_no_file_behind(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(synth_writer, "_simulate_subject", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate(tmp_path / "out", MINI)
    assert list((tmp_path / "out").iterdir()) == []


def test_progress_reports_every_stage(tmp_path):
    seen = []
    generate(tmp_path, MINI, progress=lambda stage, done, total: seen.append((stage, done, total)))
    stages = {s for s, _, _ in seen}
    assert stages == {"images", "responses", "write"}
    assert ("images", 142, 142) in seen and ("write", 2, 2) in seen


def test_command_line(tmp_path, capsys):
    rc = main([str(tmp_path / "cli"), "--preset", "tiny", "--n-train", "20",
                     "--n-val", "6", "--image-size", "32", "--voxel-scale", "0.005", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert str((tmp_path / "cli").resolve()) in out and RESPONSES_FILE in out
    assert load_responses(tmp_path / "cli", "S1").val.shape[0] == 6
    rc = main([str(tmp_path / "bad"), "--voxel-scale", "3", "--quiet"])
    assert rc == 2 and "voxel_scale" in capsys.readouterr().err


# --------------------------------------------------------------------------- images
def test_images_have_natural_statistics(tiny_vim1_dir):
    with h5py.File(tiny_vim1_dir / "Stimuli_Trn_FullRes_01.mat", "r") as f:
        imgs = np.transpose(f["stimTrn"][:, :, :20], (2, 1, 0))
    assert imgs.min() >= -0.55 - 1e-6 and imgs.max() <= 0.45 + 1e-6
    assert imgs.max() - imgs.min() > 0.6  # real contrast, not a flat grey
    slopes = [spectral_slope(im) for im in imgs]
    white = spectral_slope(np.random.default_rng(0).standard_normal(imgs.shape[1:]))
    assert abs(white) < 0.3
    assert max(slopes) < -1.5, slopes  # natural images: power falls like 1/f^2
    # circular aperture on grey: the corners are the background level
    assert np.allclose(imgs[:, 0, 0], BACKGROUND) and np.allclose(imgs[:, -1, -1],
                                                                        BACKGROUND)
    # images differ from each other
    assert np.corrcoef(imgs.reshape(20, -1))[np.triu_indices(20, 1)].max() < 0.9


def test_large_image_is_natural_too():
    img = _ImageMaker(256, 0).make(0, 5)
    assert -2.8 < spectral_slope(img) < -1.5


# --------------------------------------------------------------------------- ground truth
def test_roi_codes_voxels_and_nan_shares(truth):
    for s, gt in truth.items():
        counts = scaled_voxel_counts(s, PRESETS["tiny"].voxel_scale,
                                           PRESETS["tiny"].min_roi_voxels)
        got = {c: int((gt.roi_codes == c).sum()) for c in ROI_CODES}
        assert got == counts
        assert np.all(np.diff(gt.voxel_ids) > 0)
        assert gt.voxel_ids.min() >= 1 and gt.voxel_ids.max() <= 64 * 64 * 18
        nan_rois = {ROI_CODES[int(c)] for c in np.unique(gt.roi_codes[gt.nan_voxels])}
        assert {"V1", "V2", "V3", "other"} <= nan_rois
        assert not nan_rois & {"V3A", "V3B", "LO"}
        assert ("V4" in nan_rois) == (s == "S1")


def test_visual_rois_are_compact(truth):
    gt = truth["S1"]
    xyz = np.stack(np.unravel_index(gt.voxel_ids - 1, (64, 64, 18), order="F"), axis=1)
    for code in range(1, 8):
        pts = xyz[gt.roi_codes == code]
        d = np.abs(pts[:, None, :] - pts[None, :, :]).sum(axis=2)
        np.fill_diagonal(d, 99)
        # most voxels of a visual ROI touch another voxel of the same ROI
        assert (d.min(axis=1) == 1).mean() > 0.6, ROI_CODES[code]


def test_signal_share_per_roi(truth):
    for gt in truth.values():
        other = gt.roi_codes == 0
        assert 0.15 < gt.has_signal[other].mean() < 0.45  # planted 0.3
        assert gt.has_signal[~other].all()
        # voxels without signal have a constant (noiseless) signal and zero ceiling
        assert np.ptp(gt.signal_val[:, ~gt.has_signal], axis=0).max() < 1e-6
        assert np.all(gt.ceiling_val[~gt.has_signal] == 0)
        # receptive fields grow from V1 to LO
        assert np.median(gt.rf_sd[gt.roi_codes == 1]) < np.median(gt.rf_sd[gt.roi_codes == 6])
        assert np.median(gt.rf_sd[gt.roi_codes == 6]) < np.median(gt.rf_sd[gt.roi_codes == 7])


def test_ceiling_tracks_empirical_correlation(truth, tiny_vim1_dir):
    """corr(averaged response, planted signal) across images estimates the stored ceiling.

    With n_val = 40 images, the sampling sd of r is about (1 - r^2) / sqrt(n - 1): 0.14 at
    r = 0.3 and 0.016 at r = 0.95; the mean absolute error over ceilings spread uniformly on
    0.3-0.95 is then about 0.06, so 0.1 leaves room, while a wrong formula (e.g. forgetting
    the division by n_reps) would be off by 0.2 or more. The mean signed error over about
    280 voxels has sd about 0.005: |mean| < 0.03 catches any bias.
    """
    for s, gt in truth.items():
        resp = load_responses(tiny_vim1_dir, s)
        ok = gt.has_signal & ~resp.nan_mask
        for data, sig, ceil in ((resp.val, gt.signal_val, gt.ceiling_val),
                                (resp.train, gt.signal_train, gt.ceiling_train)):
            emp = np.array([np.corrcoef(data[:, v], sig[:, v])[0, 1] for v in np.flatnonzero(ok)])
            diff = emp - ceil[ok]
            assert np.abs(diff).mean() < 0.1
            assert abs(diff.mean()) < 0.03
        lo, hi = PRESETS["tiny"].val_ceiling_range
        assert np.quantile(gt.ceiling_val[gt.has_signal], 0.05) < lo + 0.1
        assert np.quantile(gt.ceiling_val[gt.has_signal], 0.95) > hi - 0.1
        # two repeats: training averages are much noisier than 13-repeat validation averages
        assert np.all(gt.ceiling_train[gt.has_signal] < gt.ceiling_val[gt.has_signal])


def test_repeats_average_to_the_written_responses(truth, tiny_vim1_dir):
    for s, gt in truth.items():
        resp = load_responses(tiny_vim1_dir, s)
        assert gt.val_repeats.shape == (13, resp.val.shape[0], resp.n_voxels)
        assert gt.val_repeats.dtype == np.float32
        assert np.isfinite(gt.val_repeats).all()
        avg = gt.val_repeats.astype(np.float64).mean(axis=0)
        seen = np.isfinite(resp.val)
        assert np.abs(avg - resp.val)[seen].max() < 1e-5
        # z-scoring is over training and validation images together (before the NaNs)
        clean = ~resp.nan_mask
        both = np.vstack([resp.train[:, clean], resp.val[:, clean]])
        assert np.allclose(both.mean(axis=0), 0, atol=1e-9)
        assert np.allclose(both.std(axis=0), 1, atol=1e-9)
        # the stored transform maps the planted signal back to unit variance
        raw = gt.signal_val * gt.zscore_sd + gt.zscore_mean
        raw_tr = gt.signal_train * gt.zscore_sd + gt.zscore_mean
        allraw = np.vstack([raw_tr, raw])[:, gt.has_signal]
        assert np.allclose(allraw.std(axis=0), 1, atol=1e-4)


def test_noise_sd_recovered_from_repeats(truth):
    """Pooled across-repeat variance estimates the stored single-repeat noise sd.

    With 13 repeats x 40 images (480 df) the relative sd error is about 1 / sqrt(2 * 480)
    = 3 %, so a median relative error under 5 % and a max under 20 % are safe.
    The NSD-style ceiling estimate needs the signal variance over only 40 images, whose
    relative sd is sqrt(2 / 39) = 0.23 of the total variance: hopeless for low ceilings
    (at 0.4 the noise term is 5x the signal), so it is checked where the ceiling is
    >= 0.6 (measured mean absolute error there about 0.05).
    """
    for gt in truth.values():
        est = np.sqrt(gt.val_repeats.astype(np.float64).var(axis=0, ddof=1).mean(axis=0))
        rel = np.abs(est / gt.noise_sd - 1)
        assert np.median(rel) < 0.05 and rel.max() < 0.2
        # the NSD-style ceiling estimate from repeats tracks the true ceiling
        n = gt.val_repeats.shape[0]
        mean_resp = gt.val_repeats.astype(np.float64).mean(axis=0)
        var_s = np.maximum(mean_resp.var(axis=0, ddof=1) - est ** 2 / n, 0)
        nc = np.sqrt(var_s / (var_s + est ** 2 / n))
        ok = gt.has_signal & (gt.ceiling_val >= 0.6)
        assert ok.sum() > 50
        assert np.abs(nc[ok] - gt.ceiling_val[ok]).mean() < 0.08


def test_signal_is_the_planted_rf_model(truth):
    """Rebuilding each voxel's signal from the stored features, RFs and weights gives it back."""
    gt = truth["S1"]
    cfg = gt.config
    g = cfg.feature_grid
    feats = np.vstack([gt.features_train, gt.features_val]).astype(np.float64)
    gy, gx = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    for v in np.flatnonzero(gt.has_signal)[:40]:
        rf = np.exp(-((gx - gt.rf_x[v]) ** 2 + (gy - gt.rf_y[v]) ** 2) / (2 * gt.rf_sd[v] ** 2))
        pred = np.einsum("nyxo,yx,o->n", feats, rf, gt.orientation_weights[v])
        sig = np.concatenate([gt.signal_train[:, v], gt.signal_val[:, v]])
        assert np.corrcoef(pred, sig)[0, 1] > 0.999


def test_roi_average_truth(truth, tiny_vim1_dir):
    for s, gt in truth.items():
        resp = load_responses(tiny_vim1_dir, s)
        v4 = gt.roi_average["V4"]
        clean = resp.select("V4")
        assert np.array_equal(v4.voxel_ids, clean.voxel_ids)
        assert np.allclose(v4.response_val, clean.val.mean(axis=1))
        assert np.allclose(v4.response_train, clean.train.mean(axis=1))
        assert np.allclose(v4.val_repeats.mean(axis=0), v4.response_val, atol=1e-5)
        assert 0 < v4.ceiling_train < v4.ceiling_val < 1
        assert set(gt.roi_average) == set(ROI_CODES.values())
        # shared noise keeps ROI averages noisy: the repeats give back the stored noise sd
        # of the average (480 df: relative sd 3 %), and its training ceiling stays < 0.9
        for avg in gt.roi_average.values():
            est = np.sqrt(avg.val_repeats.var(axis=0, ddof=1).mean())
            assert abs(est / avg.noise_sd - 1) < 0.12
        assert v4.ceiling_train < 0.9
        # empirical correlation of each average with its signal tracks its ceiling
        # (sd of r over 40 images about 0.03-0.1 here; mean over the 8 ROIs)
        diffs = [np.corrcoef(a.response_val, a.signal_val)[0, 1] - a.ceiling_val
                 for a in gt.roi_average.values()]
        assert abs(np.mean(diffs)) < 0.06 and np.max(np.abs(diffs)) < 0.2
