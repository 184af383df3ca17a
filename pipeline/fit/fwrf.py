"""The recommended protocol for the fwRF method: :func:`run_fwrf`.

The same splits, scores, permutation p-values and Benjamini-Hochberg flags as ridge and
PLS (:mod:`pipeline.fit.protocols`): a "test" model fitted on the held-out split's
training part and scored on its test images, an "all" model fitted on every training
image and scored on the validation images. Each model picks, per voxel and inside its
own training images only, a receptive field from the configured grid and a ridge
penalty (GCV, :mod:`pipeline.models.fwrf`). Both models come out of one
:func:`~pipeline.models.fwrf.fit_fwrf` call: the "test" model's rows are put first, so
its training images are a prefix of the "all" model's and the feature maps are pooled
once for both.

Every split also stores each voxel's field (:data:`RF_COLUMNS`): ``rf_x_deg``,
``rf_y_deg`` (degrees from the stimulus centre, x to the right, y up) and ``rf_size_deg``
(the Gaussian's sigma in degrees), from the model that produced the split's scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.evaluation.scores import pearson_r, r2_score
from pipeline.evaluation.significance import fdr_significant, permutation_pvalues
from pipeline.evaluation.splits import holdout_split, index_hash
from pipeline.fit.config import FitConfig
from pipeline.fit.results import FitResult, SplitScores, held_out
from pipeline.models.fwrf import fit_fwrf

__all__ = [
    "RF_COLUMNS",
    "as_maps",
    "run_fwrf",
]

#: per-voxel receptive-field columns an fwRF split stores beside its scores
RF_COLUMNS = ("rf_x_deg", "rf_y_deg", "rf_size_deg")


def as_maps(X, name: str) -> list[np.ndarray]:
    """Feature maps as a list of 4-D arrays (one per layer): a 4-D array or a list of them."""
    maps = [X] if isinstance(X, np.ndarray) else list(X)
    for i, m in enumerate(maps):
        if not isinstance(m, np.ndarray) or m.ndim != 4:
            shape = getattr(m, "shape", type(m).__name__)
            raise ConfigError(f"{name}: method 'fwrf' needs feature maps (n_images, h, w, channels) "
                              f"per layer, got {shape} for layer {i}; read the feature file "
                              "without flattening.")
        if not np.all(np.isfinite(m)):
            raise ConfigError(f"{name} contains NaN or infinite values (layer {i}); features must "
                              "be finite: check the feature file.")
    if len({m.shape[0] for m in maps}) != 1:
        raise ConfigError(f"{name}: the layers' maps differ in image count.")
    return maps


def _targets(Y, n: int, name: str) -> np.ndarray:
    Y = np.asarray(Y, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if Y.ndim != 2 or Y.shape[0] != n:
        raise ConfigError(f"{name} must have shape ({n}, n_voxels) to match the feature maps, "
                          f"got {Y.shape}.")
    if not np.all(np.isfinite(Y)):
        raise ConfigError(f"{name} contains NaN or infinite values; drop those voxels first.")
    return Y


def run_fwrf(
    X_train: np.ndarray | Sequence[np.ndarray],
    X_val: np.ndarray | Sequence[np.ndarray] | None,
    Y_train,
    Y_val,
    config: FitConfig,
    progress: Callable[[str, int, int], None] | None = None,
) -> FitResult:
    """Fit and score fwRF models under the recommended protocol.

    Parameters
    ----------
    X_train : ndarray (n_train, h, w, c), or a list of them (one per layer)
    X_val : the same for the validation images, or None (no validation split)
    Y_train : ndarray, shape (n_train, v)
    Y_val : ndarray, shape (n_val, v), or None
    config : FitConfig
        ``method="fwrf"``.
    progress : callable, optional
        ``progress(stage, done, total)``.

    Returns
    -------
    FitResult
        Splits "test" and "validation", each with ``extra`` holding :data:`RF_COLUMNS`;
        ``hyper`` is the chosen alpha; ``n_features`` the pooled channels per field.
    """
    if not isinstance(config, FitConfig) or config.method != "fwrf":
        raise ConfigError("run_fwrf needs a FitConfig with method 'fwrf'.")
    t_start = time.perf_counter()
    maps_tr = as_maps(X_train, "X_train")
    n = maps_tr[0].shape[0]
    Y_train = _targets(Y_train, n, "Y_train")
    maps_va = None
    if (X_val is None) != (Y_val is None):
        raise ConfigError("X_val and Y_val must be given together (or both None).")
    if X_val is not None:
        maps_va = as_maps(X_val, "X_val")
        if len(maps_va) != len(maps_tr) or any(a.shape[1:] != b.shape[1:] for a, b in zip(maps_tr, maps_va)):
            raise ConfigError("X_val must hold the same layers with the same map shapes as X_train.")
        Y_val = _targets(Y_val, maps_va[0].shape[0], "Y_val")
    if config.target == "roi_mean":
        Y_train = Y_train.mean(axis=1, keepdims=True)
        Y_val = None if Y_val is None else Y_val.mean(axis=1, keepdims=True)

    train, test = holdout_split(n, config.test_fraction, config.seed)
    order = np.concatenate([train, test])  # the "test" model's training rows first
    maps = [m[order] if maps_va is None else np.concatenate([m[order], mv])
            for m, mv in zip(maps_tr, maps_va or [None] * len(maps_tr))]
    n_fits = [train.size] + ([n] if maps_va is not None else [])
    eval_rows = [[np.arange(train.size, n)]]
    if maps_va is not None:
        eval_rows.append([np.arange(n, n + maps_va[0].shape[0])])
    grid = config.field_grid()
    fields = grid.fields()
    timings: dict[str, float] = {}
    models = fit_fwrf(maps, Y_train[order], fields, grid.extent_deg, config.alphas, n_fits=n_fits,
                      eval_rows=eval_rows, standardize=config.standardize, progress=progress,
                      timings=timings)
    del maps
    out_timings = {f"fwrf:{k}": v for k, v in timings.items()}
    jobs = [("test", "test", test, Y_train[test], models[0], train)]
    if maps_va is not None:
        jobs.append(("validation", "validation", None, Y_val, models[1], np.arange(n, dtype=np.int64)))
    splits, at_edge = [], {}
    alphas = np.asarray(config.alphas, dtype=np.float64)
    for (name, kind, idx, y_true, model, fit_idx), model_name in zip(jobs, ("test", "all")):
        t0 = time.perf_counter()
        splits.append(_score(config, name, kind, idx, y_true, model.predictions[0], model.alpha,
                             fields[model.field], fit_idx))
        out_timings[f"predict:{name}"] = time.perf_counter() - t0
        at_edge[model_name] = int(np.sum((model.alpha == alphas.min()) | (model.alpha == alphas.max()))) \
            if alphas.size > 1 else 0
    if progress is not None:
        progress("done", 1, 1)
    predictions = {s.name: (y_true[:, 0].copy(), m.predictions[0][:, 0].copy())
                   for s, (_, _, _, y_true, m, _) in zip(splits, jobs)} if Y_train.shape[1] == 1 else {}
    out_timings["total"] = time.perf_counter() - t_start
    return FitResult(config=config, splits=splits, predictions=predictions, timings=out_timings,
                     n_alpha_at_edge=at_edge, n_features=int(sum(m.shape[-1] for m in maps_tr)))


def _score(config: FitConfig, name: str, kind: str, idx, y_true: np.ndarray, y_pred: np.ndarray,
           alpha: np.ndarray, rf: np.ndarray, fit_idx: np.ndarray) -> SplitScores:
    """Scores of one held-out split, its permutation p-values and BH flags, and the fields."""
    r = np.atleast_1d(pearson_r(y_true, y_pred))
    p_values = significant = None
    if config.n_permutations > 0:
        p_values = np.atleast_1d(permutation_pvalues(y_true, y_pred, config.n_permutations,
                                                     config.permutation_seed))
        significant = fdr_significant(p_values, config.fdr_q)
    return SplitScores(
        name=name, kind=kind, test_indices=None if idx is None else np.asarray(idx).copy(), r=r,
        r2_corr=r * r, r2=np.atleast_1d(r2_score(y_true, y_pred)), hyper=np.asarray(alpha, float).copy(),
        hyper_name=config.hyper_name, n_train=int(fit_idx.size), n_test=int(y_true.shape[0]),
        train_indices_hash=index_hash(fit_idx), p=p_values, significant=significant,
        n_permutations=config.n_permutations if p_values is not None else 0,
        extra={col: rf[:, j].copy() for j, col in enumerate(RF_COLUMNS)},
        **held_out(kind, y_true, y_pred),
    )
