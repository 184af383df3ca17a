"""Prepared kernels and voxel chunks of the recommended protocol.

:func:`prepare` does everything that depends on the features only (kernels,
eigendecompositions, cross kernels); :func:`fit_voxels` fits any set of voxel columns
from it; :func:`voxel_chunks` cuts block-aligned chunks and :func:`merge_results` joins
their results (recomputing the Benjamini-Hochberg flags over all voxels).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.evaluation.scores import pearson_r, r2_score
from pipeline.evaluation.significance import fdr_significant, permutation_pvalues
from pipeline.evaluation.splits import holdout_split, index_hash
from pipeline.fit.checks import _check_features
from pipeline.fit.config import FitConfig, _is_int
from pipeline.fit.methods import _estimator
from pipeline.fit.results import FitResult, SplitScores, held_out
from pipeline.models.kernels import linear_kernel
from pipeline.models.pls import PLSKernel
from pipeline.models.ridge import RidgeKernel

__all__ = [
    "Prepared",
    "PreparedModel",
    "chunkable",
    "fit_voxel_chunks",
    "fit_voxels",
    "merge_results",
    "prepare",
    "voxel_chunks",
]



# --------------------------------------------------------------------------------------
# Prepared kernels and voxel chunks
# --------------------------------------------------------------------------------------
#: Default column block of ridge fits (KernelRidgeCV's target batch).
RIDGE_BLOCK = 1000


@dataclass
class PreparedModel:
    """The target-independent state of one model of the protocol.

    Attributes
    ----------
    name : str
        "test" (fitted on the training part of the held-out split) or "all".
    fit_idx : ndarray of int64
        Training images the model is fitted on.
    jobs : list of (split name, kind, indices or None)
        Scored sets: held-out training images (indices) or the validation images (None).
    kernel : RidgeKernel or PLSKernel
        Kernel (and for ridge its eigendecomposition(s)) of the model's training images.
    cross : dict of str -> ndarray, shape (n_scored, n_fit)
        Cross kernel of each scored set: predictions are ``cross @ dual + y_mean``.
    """

    name: str
    fit_idx: np.ndarray
    jobs: list[tuple[str, str, np.ndarray | None]]
    kernel: RidgeKernel | PLSKernel
    cross: dict[str, np.ndarray]

    @property
    def nbytes(self) -> int:
        return int(self.kernel.nbytes + self.fit_idx.nbytes
                   + sum(c.nbytes for c in self.cross.values()))


@dataclass
class Prepared:
    """Everything a fit computes from the features before it looks at a voxel.

    Built once by :func:`prepare`; :func:`fit_voxels` fits any column chunk of the
    targets with it. Holds no features: small enough to ship to every worker
    (ridge LOO with 1750 training images: about 50 MB, dominated by two n x n
    eigenvector matrices).

    Attributes
    ----------
    config : FitConfig
    n_train, n_val : int
        Training / validation images (``n_val`` None when there are no validation data).
    n_features : int
    block : int
        Column block of every column-coupled product in :func:`fit_voxels`; chunks must
        start at multiples of it to reproduce the unchunked fit exactly.
    models : list of PreparedModel
    timings : dict
        "prepare:<model>" seconds.
    """

    config: FitConfig
    n_train: int
    n_val: int | None
    n_features: int
    block: int
    models: list[PreparedModel]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held (what shipping it to a worker costs)."""
        return int(sum(m.nbytes for m in self.models))


def chunkable(config: FitConfig, protocol_only: bool = False) -> bool:
    """Whether a fit splits by voxel columns: the recommended protocol (per-voxel
    hyper-parameters) on voxel targets (``protocol_only``: ignore the target); fwRF fits
    run whole (:mod:`pipeline.fit.fwrf`)."""
    return (config.protocol == "recommended" and config.method != "fwrf"
            and (protocol_only or config.target == "voxels"))


def prepare(
    X_train,
    X_val,
    config: FitConfig,
    block: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Prepared:
    """The feature-only part of a recommended-protocol fit (see the module docstring).

    Parameters
    ----------
    X_train : ndarray, shape (n_train, p), float32 preferred
    X_val : ndarray, shape (n_val, p) or None
    config : FitConfig
        Protocol "recommended" (ConfigError otherwise).
    block : int, optional
        Column block of the per-voxel work; default the estimator's target batch
        (ridge: 1000; PLS: its memory-budget batch for ``n_train`` images). It is part
        of the numerics only at float32 rounding level (ridge LOO on float32 features
        picks its product form per block), so chunked and unchunked fits agree exactly
        only with the same ``block``.
    progress : callable, optional
        ``progress("prepare:<model>", i, n_models)`` before each model.

    Returns
    -------
    Prepared
    """
    if not isinstance(config, FitConfig):
        raise ConfigError(f"config must be a FitConfig, got {type(config).__name__}.")
    if not chunkable(config, protocol_only=True):
        raise ConfigError(
            "prepare / voxel chunks need per-voxel hyper-parameters (protocol 'recommended'); "
            f"protocol {config.protocol!r} shares them across voxels."
        )
    if block is not None and not (_is_int(block) and block >= 1):
        raise ConfigError(f"block must be a positive integer, got {block!r}.")
    X_train, X_val = _check_features(X_train, X_val)
    return _prepare(X_train, X_val, config, block, progress)


def _prepare(X_train, X_val, config, block, progress) -> Prepared:
    """:func:`prepare` on inputs already checked (by it or by :func:`run_fit`)."""
    n = X_train.shape[0]
    train, test = holdout_split(n, config.test_fraction, config.seed)
    plan = [("test", train, [("test", "test", test)])]
    if X_val is not None:
        plan.append(("all", np.arange(n, dtype=np.int64), [("validation", "validation", None)]))
    if block is None:
        if config.method == "ridge":
            block = RIDGE_BLOCK
        else:
            block = _estimator(config, None).block_size(max(idx.size for _, idx, _ in plan))
    est = _estimator(config, block)
    models, timings = [], {}
    for i, (name, fit_idx, jobs) in enumerate(plan):
        if progress is not None:
            progress(f"prepare:{name}", i, len(plan))
        t0 = time.perf_counter()
        X_fit = X_train if fit_idx.size == n else X_train[fit_idx]
        kernel, scaler = est.prepare(X_fit)
        cross = {}
        for split_name, _, idx in jobs:
            X_eval = X_val if idx is None else X_train[idx]
            if X_eval.dtype not in (np.float32, np.float64):
                X_eval = X_eval.astype(np.float64)
            cross[split_name] = linear_kernel(X_fit, scaler, Z=X_eval)
        del X_fit
        models.append(PreparedModel(name, fit_idx, jobs, kernel, cross))
        timings[f"prepare:{name}"] = time.perf_counter() - t0
    return Prepared(config=config, n_train=n, n_val=None if X_val is None else int(X_val.shape[0]),
                    n_features=int(X_train.shape[1]), block=int(block), models=models,
                    timings=timings)


def _check_targets(prepared: Prepared, Y_train, Y_val):
    Y_train = np.asarray(Y_train, dtype=np.float64)
    if Y_train.ndim == 1:
        Y_train = Y_train[:, None]
    if Y_train.ndim != 2 or Y_train.shape[0] != prepared.n_train:
        raise ConfigError(
            f"Y_train must have shape ({prepared.n_train}, n_voxels) to match the prepared "
            f"features, got {Y_train.shape}."
        )
    if not np.all(np.isfinite(Y_train)):
        raise ConfigError("Y_train contains NaN or infinite values; drop those voxels first.")
    if (Y_val is None) != (prepared.n_val is None):
        raise ConfigError("Y_val must be given exactly when the prepared fit has validation images.")
    if Y_val is not None:
        Y_val = np.asarray(Y_val, dtype=np.float64)
        if Y_val.ndim == 1:
            Y_val = Y_val[:, None]
        if Y_val.shape != (prepared.n_val, Y_train.shape[1]):
            raise ConfigError(
                f"Y_val must have shape ({prepared.n_val}, {Y_train.shape[1]}), got {Y_val.shape}."
            )
        if not np.all(np.isfinite(Y_val)):
            raise ConfigError("Y_val contains NaN or infinite values; drop those voxels first.")
    return Y_train, Y_val


def _blocks(v: int, block: int):
    for start in range(0, v, block):
        yield slice(start, min(start + block, v))


def fit_voxels(
    prepared: Prepared,
    Y_train,
    Y_val=None,
    progress: Callable[[str, int, int], None] | None = None,
) -> FitResult:
    """Fit and score voxel columns with the kernels of :func:`prepare`.

    Parameters
    ----------
    prepared : Prepared
    Y_train : ndarray, shape (n_train, v)
        All voxels, or a column chunk of them (see :func:`voxel_chunks`).
    Y_val : ndarray, shape (n_val, v), or None (exactly when prepared without X_val)
    progress : callable, optional
        As for :func:`run_fit`.

    Returns
    -------
    FitResult
        ``significant`` is the BH decision over the columns given: merge chunks with
        :func:`merge_results`, which recomputes it over all voxels.
    """
    if not isinstance(prepared, Prepared):
        raise ConfigError(f"prepared must be a Prepared, got {type(prepared).__name__}.")
    t_start = time.perf_counter()
    config = prepared.config
    Y_train, Y_val = _check_targets(prepared, Y_train, Y_val)
    if config.target == "roi_mean":
        Y_train = Y_train.mean(axis=1, keepdims=True)
        if Y_val is not None:
            Y_val = Y_val.mean(axis=1, keepdims=True)
    run = _BlockRun(prepared, Y_train, Y_val, progress)
    for model in prepared.models:
        run.fit_model(model)
    run.report("done")
    run.timings["total"] = time.perf_counter() - t_start
    return FitResult.from_run(config, run, None, prepared.n_features)


class _BlockRun:
    """Fits the prepared models block by block of voxel columns and scores their splits."""

    def __init__(self, prepared: Prepared, Y_train, Y_val, progress) -> None:
        self.config = prepared.config
        self.Y_train, self.Y_val = Y_train, Y_val
        self.v = Y_train.shape[1]
        self.blocks = list(_blocks(self.v, prepared.block))
        self.est = _estimator(self.config, prepared.block)
        self.progress = progress
        self.total = sum(1 + len(m.jobs) for m in prepared.models)
        self.done = 0
        self.timings: dict[str, float] = {}
        self.scores: list[SplitScores] = []
        self.predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.at_edge: dict[str, int] = {}

    def report(self, stage: str) -> None:
        if self.progress is not None:
            self.progress(stage, self.done, self.total)

    def fit_model(self, model: PreparedModel) -> None:
        """Fit one prepared model on every column block, then score each of its splits."""
        self.report(f"fit:{model.name}")
        t0 = time.perf_counter()
        # Every step runs per column block on a contiguous copy of the block, so a block
        # gives the same bits whichever chunk it arrives in (even numpy's reductions
        # differ in the last bit between a strided column and a contiguous one).
        Y_fit = self.Y_train[model.fit_idx]
        extra = {"cache": {}} if isinstance(model.kernel, PLSKernel) else {}  # fold kernels once
        fits = [self.est.fit_targets(model.kernel, np.ascontiguousarray(Y_fit[:, sl]), **extra)
                for sl in self.blocks]
        del Y_fit, extra
        self.timings[f"fit:{model.name}"] = time.perf_counter() - t0
        self.done += 1
        if self.config.method == "ridge":
            self.at_edge[str(model.name)] = int(sum(f.n_at_edge for f in fits))
        hyper = np.concatenate([np.atleast_1d(np.asarray(f.hyper)) for f in fits])
        train_hash = index_hash(model.fit_idx)
        for split_name, kind, idx in model.jobs:
            self.report(f"predict:{split_name}")
            self.scores.append(self._score_split(model, fits, split_name, kind, idx, hyper, train_hash))
            self.done += 1

    def _score_split(self, model: PreparedModel, fits, split_name: str, kind: str, idx, hyper,
                     train_hash: str) -> SplitScores:
        """Predict one split block by block; r, R2 and (held out) permutation p and BH flags."""
        config, v = self.config, self.v
        t0 = time.perf_counter()
        y_true = self.Y_val if idx is None else self.Y_train[idx]
        K_eval = model.cross[split_name]
        y_pred = np.empty_like(y_true)
        r, r2 = np.empty(v), np.empty(v)
        perm = config.n_permutations > 0 and kind != "train"
        p_values = np.empty(v) if perm else None
        t_perm = 0.0
        for sl, f in zip(self.blocks, fits):
            yt = np.ascontiguousarray(y_true[:, sl])
            yp = K_eval @ f.dual + f.y_mean
            y_pred[:, sl] = yp
            r[sl] = pearson_r(yt, yp)
            r2[sl] = r2_score(yt, yp)
            if perm:
                t1 = time.perf_counter()
                p_values[sl] = permutation_pvalues(yt, yp, config.n_permutations, config.permutation_seed)
                t_perm += time.perf_counter() - t1
        self.timings[f"predict:{split_name}"] = time.perf_counter() - t0 - t_perm
        significant = None
        n_perm = 0
        if perm:
            n_perm = config.n_permutations
            significant = fdr_significant(p_values, config.fdr_q)
            self.timings[f"permutation:{split_name}"] = t_perm
        if v == 1:
            self.predictions[split_name] = (y_true[:, 0].copy(), y_pred[:, 0].copy())
        return SplitScores(
            name=split_name, kind=kind, test_indices=None if idx is None else idx.copy(), r=r,
            r2_corr=r * r, r2=r2, hyper=hyper, hyper_name=config.hyper_name,
            n_train=int(model.fit_idx.size), n_test=int(y_true.shape[0]),
            train_indices_hash=train_hash, p=p_values, significant=significant, n_permutations=n_perm,
            **held_out(kind, y_true, y_pred),
        )


def voxel_chunks(n_voxels: int, n_chunks: int, block: int) -> list[slice]:
    """At most ``n_chunks`` contiguous column chunks, each starting at a multiple of ``block``.

    The ``ceil(n_voxels / block)`` blocks are dealt out as evenly as possible, so there
    are ``min(n_chunks, number of blocks)`` chunks (26k voxels in blocks of 1000: up to
    27 chunks).
    """
    if not (_is_int(n_voxels) and n_voxels >= 1):
        raise ConfigError(f"n_voxels must be a positive integer, got {n_voxels!r}.")
    if not (_is_int(n_chunks) and n_chunks >= 1):
        raise ConfigError(f"n_chunks must be a positive integer, got {n_chunks!r}.")
    if not (_is_int(block) and block >= 1):
        raise ConfigError(f"block must be a positive integer, got {block!r}.")
    n_blocks = -(-int(n_voxels) // int(block))
    k = min(int(n_chunks), n_blocks)
    bounds = [(i * n_blocks // k) * block for i in range(k + 1)]
    return [slice(lo, min(hi, n_voxels)) for lo, hi in zip(bounds, bounds[1:])]


def merge_results(parts: list[FitResult]) -> FitResult:
    """One FitResult from the results of consecutive voxel chunks (in column order).

    Per-voxel arrays are concatenated; each split's ``significant`` is recomputed by
    Benjamini-Hochberg over ALL its voxels (a per-chunk BH would be a different,
    wrong, test); ``n_alpha_at_edge`` counts are summed; timings are summed over the
    chunks (task seconds, not wall time).
    """
    if not parts:
        raise ConfigError("merge_results needs at least one FitResult.")
    first = parts[0]
    config = first.config
    names = [s.name for s in first.splits]
    for part in parts[1:]:
        if part.config != config or [s.name for s in part.splits] != names:
            raise ConfigError("merge_results: the parts come from different fits.")
    splits = []
    for i, s0 in enumerate(first.splits):
        col = [part.splits[i] for part in parts]

        def cat(attr, col=col):
            return np.concatenate([np.atleast_1d(getattr(c, attr)) for c in col])

        p = None if s0.p is None else cat("p")
        held = {k: None if getattr(s0, k) is None else
                np.concatenate([getattr(c, k) for c in col], axis=1) for k in ("y_true", "y_pred")}
        extra = {k: np.concatenate([np.atleast_1d(c.extra[k]) for c in col]) for k in s0.extra}
        splits.append(dataclasses.replace(
            s0, r=cat("r"), r2_corr=cat("r2_corr"), r2=cat("r2"), hyper=cat("hyper"), p=p,
            significant=None if p is None else fdr_significant(p, config.fdr_q), extra=extra,
            **held,
        ))
    timings: dict[str, float] = {}
    for part in parts:
        for key, value in part.timings.items():
            timings[key] = timings.get(key, 0.0) + float(value)
    at_edge = {k: int(sum(part.n_alpha_at_edge.get(k, 0) for part in parts))
               for k in first.n_alpha_at_edge}
    n_targets = int(splits[0].r.size) if splits else 0
    return FitResult(
        config=config,
        splits=splits,
        predictions=dict(first.predictions) if n_targets == 1 else {},
        timings=timings,
        n_alpha_at_edge=at_edge,
        feature_subset=first.feature_subset,
        n_features=first.n_features,
    )


def fit_voxel_chunks(
    prepared: Prepared,
    Y_train,
    Y_val=None,
    n_chunks: int = 1,
    progress: Callable[[str, int, int], None] | None = None,
) -> FitResult:
    """:func:`fit_voxels` chunk by chunk in this process, merged (same numbers as one call).

    Bounds the memory of the per-voxel work to one chunk; a Dask cluster runs the same
    chunks in parallel (:func:`tracker.record.chunked.chunked_fit`). ``roi_mean`` targets are one
    column: never chunked. ``progress(f"chunk {i}/{k}", i, k)`` before each chunk.
    """
    Y_train, Y_val = _check_targets(prepared, Y_train, Y_val)
    if not chunkable(prepared.config):
        n_chunks = 1
    chunks = voxel_chunks(Y_train.shape[1], n_chunks, prepared.block)
    parts = []
    for i, sl in enumerate(chunks):
        if progress is not None:
            progress(f"chunk {i + 1}/{len(chunks)}", i, len(chunks))
        parts.append(fit_voxels(prepared, Y_train[:, sl], None if Y_val is None else Y_val[:, sl]))
    return merge_results(parts)
