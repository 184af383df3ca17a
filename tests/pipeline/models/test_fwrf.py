"""fwRF against the planted receptive fields of the synthetic vim-1 ("tiny") and against
a direct numpy + scikit-learn computation.

The tiny preset plants, per voxel, a Gaussian receptive field (``rf_x``, ``rf_y``,
``rf_sd`` in cells of the 16 x 16 feature grid over the 20-degree image) and orientation
weights on a 16 x 16 x 4 contrast-energy map (``features_train`` / ``features_val``): a
spatially factorised model, which is what fwRF fits.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from pipeline.core.errors import ConfigError
from pipeline.data.layout import ROI_CODES, STIMULUS_DEG
from pipeline.data.responses import load_responses
from pipeline.data.synth.truth import load_ground_truth
from pipeline.fit.config import FitConfig
from pipeline.fit.protocols import run_fit
from pipeline.models.fwrf import FieldGrid, fit_fwrf
from pipeline.models.fwrf_estimator import FwRF

SUBJECT = "S1"
CODE = {name: code for code, name in ROI_CODES.items()}


@pytest.fixture(scope="module")
def data(tiny_vim1_dir):
    truth = load_ground_truth(tiny_vim1_dir, SUBJECT)
    responses = load_responses(tiny_vim1_dir, SUBJECT)
    keep = ~responses.nan_mask
    return truth, responses.train[:, keep], responses.val[:, keep], keep


@pytest.fixture(scope="module")
def fits(data):
    truth, y_train, y_val, _ = data
    maps_tr, maps_va = truth.features_train, truth.features_val  # (n, 16, 16, 4) float32
    flat = (maps_tr.reshape(len(maps_tr), -1), maps_va.reshape(len(maps_va), -1))
    fwrf = run_fit(maps_tr, maps_va, y_train, y_val, FitConfig(method="fwrf"))
    ridge = run_fit(*flat, y_train, y_val, FitConfig(method="ridge", n_permutations=0))
    return fwrf, ridge


def _planted_deg(truth, keep):
    """Planted centres and sizes in degrees (x right, y up, from the image centre)."""
    cell = STIMULUS_DEG / truth.config.feature_grid
    x = (truth.rf_x[keep] + 0.5) * cell - STIMULUS_DEG / 2
    y = STIMULUS_DEG / 2 - (truth.rf_y[keep] + 0.5) * cell
    return x, y, truth.rf_sd[keep] * cell


def _pooled(maps, x0, y0, sd, extent=STIMULUS_DEG):
    """Direct numpy: a sum-normalised Gaussian over the map's cells, pooled per channel."""
    _, h, w, _ = maps.shape
    xs = (np.arange(w) + 0.5) * extent / w - extent / 2
    ys = extent / 2 - (np.arange(h) + 0.5) * extent / h
    g = np.exp(-((xs[None, :] - x0) ** 2 + (ys[:, None] - y0) ** 2) / (2 * sd**2))
    return np.einsum("nhwc,hw->nc", maps.astype(np.float64), g / g.sum())


def test_the_synthetic_signal_is_a_planted_gaussian_field(data):
    truth, _, _, keep = data
    x, y, sd = _planted_deg(truth, keep)
    sig = truth.signal_train[:, keep]
    w = truth.orientation_weights[keep]
    voxels = np.flatnonzero(truth.has_signal[keep])[:20]
    for j in voxels:  # the signal is (a linear transform of) the planted field's pooled features
        pred = _pooled(truth.features_train, x[j], y[j], sd[j]) @ w[j]
        assert np.corrcoef(pred, sig[:, j])[0, 1] > 0.9999


def test_recovered_fields_match_the_planted_ones(data, fits):
    truth, _, _, keep = data
    val = fits[0].split("validation")
    good = truth.has_signal[keep] & (truth.ceiling_val[keep] > 0.5)
    assert good.sum() > 150
    x, y, sd = _planted_deg(truth, keep)
    rx, ry, rs = (val.extra[c] for c in ("rf_x_deg", "rf_y_deg", "rf_size_deg"))
    assert np.corrcoef(rx[good], x[good])[0, 1] > 0.8
    assert np.corrcoef(ry[good], y[good])[0, 1] > 0.8
    err = np.hypot(rx - x, ry - y)[good]
    print(f"median centre error {np.median(err):.2f} deg over {good.sum()} voxels "
          f"(grid spacing {STIMULUS_DEG / 10:.1f} deg)")
    assert np.median(err) < 1.5
    codes = truth.roi_codes[keep]
    size = {roi: np.median(rs[good & (codes == CODE[roi])]) for roi in ("V1", "V4", "LO")}
    planted = {roi: np.median(sd[good & (codes == CODE[roi])]) for roi in ("V1", "V4", "LO")}
    print("median sigma (deg) recovered", size, "planted", planted)
    assert size["V1"] < size["V4"] < size["LO"]


def test_fwrf_beats_ridge_on_the_factorised_voxels(data, fits):
    truth, _, _, keep = data
    fw, ridge = (f.split("validation").r for f in fits)
    good = truth.has_signal[keep] & (truth.ceiling_val[keep] > 0.5)
    share = float(np.mean(fw[good] >= ridge[good]))
    print(f"fwRF r >= ridge r for {share:.0%} of {good.sum()} voxels")
    assert share > 0.5
    test = fits[0].split("test")  # 34 images: BH flags fewer voxels, and almost only planted ones
    flagged = test.significant
    assert flagged.sum() > 30 and truth.has_signal[keep][flagged].mean() > 0.95
    assert set(test.extra) == {"rf_x_deg", "rf_y_deg", "rf_size_deg"}
    assert np.all(np.isin(fits[0].split("validation").hyper, FitConfig(method="fwrf").alphas))


def _gcv(P, y, alpha):
    """Direct GCV of ridge (intercept unpenalised) on standardised features."""
    Z = StandardScaler().fit_transform(P)
    Z -= Z.mean(axis=0)
    H = Z @ np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T)
    resid = (y - y.mean()) - H @ (y - y.mean())
    n = len(y)
    return (resid @ resid / n) / (1 - (np.trace(H) + 1) / n) ** 2


def test_one_voxel_equals_numpy_pooling_then_sklearn_ridge(data):
    truth, y_train, _, keep = data
    maps = truth.features_train.astype(np.float64)
    good = np.flatnonzero(truth.has_signal[keep] & (truth.ceiling_val[keep] > 0.5))[:40]
    grid = FieldGrid(n_centres=6, n_sizes=3, size_range=(1.0, 4.0))
    alphas = np.logspace(-1, 5, 7)
    est = FwRF(grid, alphas, field_block=7).fit(maps[:200], y_train[:200, good])  # blocks split runs
    pred = est.predict(maps[200:])
    fields = grid.fields()
    for j in (0, 1, 2):
        x0, y0, sd = est.rf_[j]
        P = _pooled(maps, x0, y0, sd)
        scaler = StandardScaler().fit(P[:200])
        ref = Ridge(alpha=est.alpha_[j]).fit(scaler.transform(P[:200]), y_train[:200, good[j]])
        np.testing.assert_allclose(pred[:, j], ref.predict(scaler.transform(P[200:])), rtol=1e-9, atol=1e-9)
        # the chosen (field, alpha) minimises the directly computed GCV over the whole grid
        errs = np.array([[_gcv(_pooled(maps[:200], *f), y_train[:200, good[j]], a) for a in alphas]
                         for f in fields])
        g, a = np.unravel_index(np.argmin(errs), errs.shape)
        assert (est.field_[j], est.alpha_[j]) == (g, alphas[a])
        np.testing.assert_allclose(est.model_.gcv[j], errs[g, a], rtol=1e-9)


def test_float32_maps_choose_the_same_fields_and_several_layers_concatenate(data):
    truth, y_train, _, keep = data
    good = np.flatnonzero(truth.has_signal[keep] & (truth.ceiling_val[keep] > 0.5))[:60]
    maps, Y = truth.features_train, y_train[:, good]
    fields, alphas = FieldGrid(n_centres=5, n_sizes=3).fields(), np.logspace(-1, 5, 7)
    m64 = fit_fwrf(maps.astype(np.float64), Y, fields, STIMULUS_DEG, alphas)[0]
    m32 = fit_fwrf(maps, Y, fields, STIMULUS_DEG, alphas)[0]
    assert np.mean(m32.field == m64.field) > 0.95 and np.mean(m32.alpha == m64.alpha) > 0.9
    # two layers: the second at half resolution (2 x 2 means); channels concatenated
    coarse = maps.reshape(len(maps), 8, 2, 8, 2, 4).mean(axis=(2, 4))
    both = fit_fwrf([maps.astype(np.float64), coarse.astype(np.float64)], Y, fields, STIMULUS_DEG,
                    alphas, eval_rows=[[np.arange(len(maps))]])[0]
    j = 0
    P = np.concatenate([_pooled(maps, *fields[both.field[j]]), _pooled(coarse, *fields[both.field[j]])], 1)
    scaler = StandardScaler().fit(P)
    ref = Ridge(alpha=both.alpha[j]).fit(scaler.transform(P), Y[:, j])
    np.testing.assert_allclose(both.predictions[0][:, j], ref.predict(scaler.transform(P)), rtol=1e-9,
                               atol=1e-9)


def test_fwrf_config_records_its_grid_and_leaves_other_keys_alone():
    cfg = FitConfig(method="fwrf")
    d = cfg.to_dict()
    assert (d["rf_centres"], d["rf_sizes"], d["rf_size_range"], d["stimulus_deg"], d["cv"]) == \
        (10, 8, [0.5, 8.0], 20.0, "gcv")
    assert FitConfig.from_dict(d) == cfg and FitConfig(method="fwrf", rf_sizes=4).key() != cfg.key()
    assert not {"rf_centres", "layers"} & set(FitConfig(method="ridge").to_dict())
    assert cfg.field_grid().fields().shape == (800, 3)
    for bad, field in ((dict(protocol="cs431"), "protocol"), (dict(cv=5), "cv"),
                       (dict(rf_centres=0), "rf_centres"), (dict(rf_size_range=(3.0, 1.0)), "rf_size_range"),
                       (dict(layers=[]), "layers")):
        with pytest.raises(ConfigError, match=field):
            FitConfig(method="fwrf", **bad)
    with pytest.raises(ConfigError, match="rf_sizes.*fwrf"):
        FitConfig(method="ridge", rf_sizes=4)
    with pytest.raises(ConfigError, match="feature maps"):
        run_fit(np.zeros((10, 5)), None, np.zeros((10, 2)), None, cfg)
