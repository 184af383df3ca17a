"""The fit/score protocols: :func:`run_fit`.

Protocols
---------
``"recommended"`` (default)
    1. One seeded held-out *test* split of the training images
       (:func:`pipeline.evaluation.splits.holdout_split`, ``test_fraction`` = 1/7: 250 of 1750).
       Hyper-parameters (ridge alpha / PLS components, per voxel) are chosen by CV
       (LOO or k-fold) inside the remaining training images only; that model is scored
       once on the test split -> split ``"test"``.
    2. A model is refitted on ALL training images, its hyper-parameters chosen again by
       CV inside all training images (never on validation images), and scored once on
       the validation images -> split ``"validation"``. So the test and validation
       scores come from two models (1500 vs 1750 training images) whose hyper-parameters
       may differ per voxel; both are recorded.

``"cs431"`` (the 2019 project, reproduced)
    Five random splits from ``RandomState(seed)`` (:func:`pipeline.evaluation.splits.cs431_splits`,
    250 test images each); optionally the 2019 random feature subset drawn right after
    (``feature_subset=5000``). Ridge: one alpha shared by all voxels from
    (1e-4 ... 1) by LOO, features not standardised (``RidgeCV`` semantics). PLS: one
    multi-output ``PLSRegression(n_components=25, scale=False)`` (:class:`~pipeline.models.pls.PLS2`).
    For each split ``i`` the model fitted on its 1500 training images is scored on them
    (``"train{i}"``, in-sample, as 2019 reported), on its test images (``"test{i}"``) and
    on the validation images (``"validation{i}"``); finally a model fitted on all
    training images is scored on the validation images (``"validation"``, the 2019
    "V4 average" headline).

Significance (both protocols, ``n_permutations > 0``; default 1000 for "recommended",
0 for "cs431")
    Every test and validation split gets per-target permutation p-values of r (the held-out
    images shuffled, the same ``permutation_seed``-seeded permutations for every target;
    :func:`pipeline.evaluation.significance.permutation_pvalues`) and a Benjamini-Hochberg flag at
    ``fdr_q`` over the targets of that split. In-sample ("train") splits get none. With
    ``N`` permutations no p is below ``1 / (N + 1)``, so BH over ``m`` targets can only
    flag anything once at least ``m / ((N + 1) q)`` targets reach that floor (about 2% of
    them for N = 1000, q = 0.05); raise ``n_permutations`` for sparse effects.

Voxel chunks (recommended protocol)
    A fit is two parts: :func:`~pipeline.fit.chunks.prepare` does everything that depends on the features only
    (per model - "test" on the held-out split's training part, "all" on all training
    images - the kernel, its eigendecomposition(s) for ridge, and the cross kernels that
    predict the scored images); :func:`~pipeline.fit.chunks.fit_voxels` does the per-voxel rest (CV over the
    grid, duals, predictions, scores, permutation p-values) for any set of voxel columns.
    :func:`run_fit` is ``fit_voxels(prepare(...), Y)``. Every column-coupled product runs
    in blocks of ``Prepared.block`` columns (the estimators' target batch: 1000 for
    ridge), so fitting a column chunk that starts at a multiple of ``block`` gives, bit
    for bit, the same per-voxel numbers as the fit on all columns (with the same BLAS
    threading; a worker process with another thread count differs at ~1e-14);
    :func:`~pipeline.fit.chunks.voxel_chunks` cuts such chunks. The Benjamini-Hochberg
    flags are the one per-split quantity coupling voxels:
    :func:`~pipeline.fit.chunks.merge_results` concatenates the chunks' results and
    recomputes ``significant`` over all voxels of each split. The cs431 protocol (one
    alpha, or one multi-output PLS, shared by all voxels) does not split by voxels.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.evaluation.scores import pearson_r, r2_score
from pipeline.evaluation.significance import fdr_significant, permutation_pvalues
from pipeline.evaluation.splits import cs431_feature_subset, cs431_splits, holdout_split, index_hash
from pipeline.fit.checks import _check_inputs
from pipeline.fit.chunks import Prepared, _prepare, chunkable, fit_voxels
from pipeline.fit.config import FitConfig
from pipeline.fit.methods import METHODS, _hyper
from pipeline.fit.results import FitResult, SplitScores, held_out

__all__ = [
    "run_fit",
]



def run_fit(
    X_train,
    X_val,
    Y_train,
    Y_val,
    config: FitConfig,
    progress: Callable[[str, int, int], None] | None = None,
    prepared: Prepared | None = None,
) -> FitResult:
    """Fit and score per the configured protocol (see the module docstring).

    Parameters
    ----------
    X_train : ndarray, shape (n_train, p), float32 preferred
        Method "fwrf": feature maps (n_train, h, w, c), or a list of them (one per layer).
    X_val : ndarray, shape (n_val, p) or None
        None skips the validation scores.
    Y_train : ndarray, shape (n_train, v) (or (n_train,)), NaN-free
    Y_val : ndarray, shape (n_val, v) or None
    config : FitConfig
    progress : callable, optional
        ``progress(stage, done, total)`` before every stage and once at the end
        (``stage == "done"``).
    prepared : Prepared, optional
        The output of :func:`prepare` for these features and ``config``: then the
        features are not read (``X_train`` / ``X_val`` may be None) and this is
        :func:`fit_voxels`.

    Returns
    -------
    FitResult
        Timings hold "prepare:<model>" (kernel and decomposition) and "fit:<model>"
        (the per-voxel part) for the recommended protocol.
    """
    if not isinstance(config, FitConfig):
        raise ConfigError(f"config must be a FitConfig, got {type(config).__name__}.")
    if prepared is not None:
        if not isinstance(prepared, Prepared) or prepared.config != config:
            raise ConfigError("prepared must be the Prepared of this config (see prepare()).")
        return fit_voxels(prepared, Y_train, Y_val, progress=progress)
    if config.method == "fwrf":  # feature maps, not flat features: its own batched protocol
        from pipeline.fit.fwrf import run_fwrf

        return run_fwrf(X_train, X_val, Y_train, Y_val, config, progress=progress)
    t_start = time.perf_counter()
    X_train, X_val, Y_train, Y_val = _check_inputs(X_train, X_val, Y_train, Y_val)
    if chunkable(config, protocol_only=True):
        return _fit_prepared(X_train, X_val, Y_train, Y_val, config, progress, t_start)
    if config.target == "roi_mean":
        Y_train = Y_train.mean(axis=1, keepdims=True)
        Y_val = None if Y_val is None else Y_val.mean(axis=1, keepdims=True)
    plan, X_train, X_val, feature_subset = _plan_fits(X_train, X_val, config)
    run = _PlanRun(config, X_train, X_val, Y_train, Y_val, progress,
                   total=sum(1 + len(jobs) for _, _, jobs in plan))
    for model_name, fit_idx, jobs in plan:
        run.fit_model(model_name, fit_idx, jobs)
    run.report("done")
    run.timings["total"] = time.perf_counter() - t_start
    return FitResult.from_run(config, run, feature_subset, X_train.shape[1])


def _fit_prepared(X_train, X_val, Y_train, Y_val, config: FitConfig, progress, t_start: float
                  ) -> FitResult:
    """The recommended protocol as ``fit_voxels(prepare(...))`` (kernels computed once)."""
    if progress is not None:
        progress("fit:test", 0, 2 if X_val is None else 4)
    prep = _prepare(X_train, X_val, config, None, None)
    result = fit_voxels(prep, Y_train, Y_val, progress=progress)
    result.timings.update(prep.timings)
    result.timings["total"] = time.perf_counter() - t_start
    return result


#: (model name, fit indices, [(split name, kind, indices or None: the validation images)])
_Plan = list[tuple[str, np.ndarray, list[tuple[str, str, np.ndarray | None]]]]


def _plan_fits(X_train, X_val, config: FitConfig):
    """The models a protocol fits and the splits each is scored on.

    Returns (plan, X_train, X_val, feature_subset): cs431 with ``feature_subset`` keeps
    only the 2019 random subset of the features (drawn right after the splits).
    """
    n = X_train.shape[0]
    feature_subset = None
    plan: _Plan = []
    if config.protocol == "recommended":
        train, test = holdout_split(n, config.test_fraction, config.seed)
        plan.append(("test", train, [("test", "test", test)]))
    else:
        n_test = min(max(int(round(n * config.test_fraction)), 1), n - 2)
        splits, rng = cs431_splits(n, n_test, config.n_splits, config.seed)
        if config.feature_subset is not None:
            p = X_train.shape[1]
            if config.feature_subset > p:
                raise ConfigError(
                    f"feature_subset ({config.feature_subset}) exceeds the {p} features."
                )
            feature_subset = cs431_feature_subset(rng, p, config.feature_subset)
            X_train = X_train[:, feature_subset]
            if X_val is not None:
                X_val = X_val[:, feature_subset]
        for i, (train, test) in enumerate(splits):
            jobs = [(f"train{i}", "train", train), (f"test{i}", "test", test)]
            if X_val is not None:
                jobs.append((f"validation{i}", "validation", None))
            plan.append((f"split{i}", train, jobs))
    if X_val is not None:
        plan.append(("all", np.arange(n, dtype=np.int64), [("validation", "validation", None)]))
    return plan, X_train, X_val, feature_subset


class _PlanRun:
    """Fits the models of a plan in turn and scores each on its splits."""

    def __init__(self, config: FitConfig, X_train, X_val, Y_train, Y_val, progress, total: int) -> None:
        self.config = config
        self.X_train, self.X_val, self.Y_train, self.Y_val = X_train, X_val, Y_train, Y_val
        self.progress = progress
        self.total = total
        self.done = 0
        self.timings: dict[str, float] = {}
        self.scores: list[SplitScores] = []
        self.predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.at_edge: dict[str, int] = {}

    def report(self, stage: str) -> None:
        if self.progress is not None:
            self.progress(stage, self.done, self.total)

    def fit_model(self, model_name: str, fit_idx: np.ndarray, jobs) -> None:
        """Fit one model on ``fit_idx`` and score it on each ``(split, kind, idx)`` job."""
        config = self.config
        self.report(f"fit:{model_name}")
        t0 = time.perf_counter()
        full = fit_idx.size == self.X_train.shape[0]
        X_fit = self.X_train if full else self.X_train[fit_idx]
        estimator = METHODS[config.method](config).fit(X_fit, self.Y_train[fit_idx])
        del X_fit
        self.timings[f"fit:{model_name}"] = time.perf_counter() - t0
        self.done += 1
        if hasattr(estimator, "n_alpha_at_edge_"):
            self.at_edge[str(model_name)] = int(estimator.n_alpha_at_edge_)
        hyper = _hyper(estimator)
        train_hash = index_hash(fit_idx)
        for split_name, kind, idx in jobs:
            self.report(f"predict:{split_name}")
            t0 = time.perf_counter()
            if idx is None:
                X_eval, y_true = self.X_val, self.Y_val
            else:
                X_eval, y_true = self.X_train[idx], self.Y_train[idx]
            y_pred = np.asarray(estimator.predict(X_eval), dtype=np.float64).reshape(y_true.shape)
            r = np.atleast_1d(pearson_r(y_true, y_pred))
            self.timings[f"predict:{split_name}"] = time.perf_counter() - t0
            self.scores.append(self._score(split_name, kind, idx, y_true, y_pred, r, hyper, fit_idx,
                                           train_hash))
            if y_true.shape[1] == 1:
                self.predictions[split_name] = (y_true[:, 0].copy(), y_pred[:, 0].copy())
            self.done += 1

    def _score(self, split_name: str, kind: str, idx, y_true, y_pred, r, hyper, fit_idx, train_hash
               ) -> SplitScores:
        """Scores of one split; permutation p-values and BH flags for held-out splits."""
        config = self.config
        p_values = significant = None
        n_perm = 0
        if config.n_permutations > 0 and kind != "train":
            t0 = time.perf_counter()
            n_perm = config.n_permutations
            p_values = np.atleast_1d(permutation_pvalues(y_true, y_pred, n_perm, config.permutation_seed))
            significant = fdr_significant(p_values, config.fdr_q)
            self.timings[f"permutation:{split_name}"] = time.perf_counter() - t0
        return SplitScores(
            name=split_name,
            kind=kind,
            test_indices=None if idx is None else idx.copy(),
            r=r,
            r2_corr=r * r,
            r2=np.atleast_1d(r2_score(y_true, y_pred)),
            hyper=hyper,
            hyper_name=config.hyper_name,
            n_train=int(fit_idx.size),
            n_test=int(y_true.shape[0]),
            train_indices_hash=train_hash,
            p=p_values,
            significant=significant,
            n_permutations=n_perm,
            **held_out(kind, y_true, y_pred),
        )
