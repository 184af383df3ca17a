"""The feature-only part of a fit from feature *column blocks*: :func:`prepare_streamed`.

:func:`pipeline.fit.chunks.prepare` needs the whole ``(n_images, n_features)`` matrix in
memory (conv1 of 1870 images: 2.2 GB). Every kernel of the recommended protocol is a sum
over feature columns, so it can be accumulated from blocks of columns instead: for each
block ``B`` (all images, a few thousand columns) and each model of the protocol ("test":
the training part of the held-out split, "all": every training image), the block's
means (and scales) are computed on the model's training rows, and ``K += Bs Bs^T`` and the
cross kernels ``+= Zs Bs^T`` are added. Memory: the kernels (``n x n``) plus one block,
whatever the layer's width.

With blocks of :data:`pipeline.models.kernels._FEATURE_BLOCK` columns (what
:func:`pipeline.features.reader.iter_column_blocks` yields by default) the additions happen
in the same order on the same numbers as in :func:`~pipeline.fit.chunks.prepare`, so the
:class:`~pipeline.fit.chunks.Prepared` (and every score of the fit) is the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.evaluation.splits import holdout_split
from pipeline.fit.chunks import RIDGE_BLOCK, Prepared, PreparedModel, chunkable
from pipeline.fit.config import FitConfig
from pipeline.fit.methods import _estimator
from pipeline.models.kernels import FeatureScaler
from pipeline.models.pls import PLSKernel

__all__ = ["accumulate_kernels", "prepare_streamed"]

#: ``(columns, {"train": (n_train, b), "val": (n_val, b)})`` per block ("val" may be absent)
Blocks = Iterable[tuple[slice, dict[str, np.ndarray]]]


class _Accumulator:
    """Kernel and cross kernels of one model, summed over feature blocks."""

    def __init__(self, name: str, fit_idx: np.ndarray, jobs, n_train: int, n_val: int | None,
                 standardize: bool, center: bool) -> None:
        self.name, self.fit_idx, self.jobs = name, fit_idx, jobs
        self.full = fit_idx.size == n_train
        self.standardize, self.center = standardize, center
        self.K = np.zeros((fit_idx.size, fit_idx.size))
        self.cross = {split: np.zeros((n_val if idx is None else idx.size, fit_idx.size))
                      for split, _, idx in jobs}
        self.seconds = 0.0

    def add(self, train: np.ndarray, val: np.ndarray | None) -> None:
        t0 = time.perf_counter()
        X_fit = train if self.full else train[self.fit_idx]
        scaler = FeatureScaler.unfitted(train.shape[1], self.standardize, self.center)
        B = scaler.fit_block(X_fit, slice(0, train.shape[1]))
        self.K += B @ B.T
        for split, _, idx in self.jobs:
            Z = val if idx is None else train[idx]
            self.cross[split] += scaler.block(Z, slice(0, train.shape[1])) @ B.T
        self.seconds += time.perf_counter() - t0

    def kernel(self) -> np.ndarray:
        for split, K in self.cross.items():
            if not np.all(np.isfinite(K)):
                raise ConfigError(f"the {split!r} features contain NaN or infinite values.")
        return 0.5 * (self.K + self.K.T)


def prepare_streamed(
    blocks: Blocks,
    n_train: int,
    n_val: int | None,
    config: FitConfig,
    block: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Prepared:
    """:func:`pipeline.fit.chunks.prepare` from column blocks (see the module docstring).

    Parameters
    ----------
    blocks : iterable of (columns slice, {"train": (n_train, b), "val": (n_val, b)})
        Consecutive column blocks of the features (float32 preferred), read once.
    n_train, n_val : int, int or None
        Training and validation images (``n_val`` None: no validation split).
    config : FitConfig
        Protocol "recommended" (ConfigError otherwise).
    block : int, optional
        Column block of the per-voxel work, as in :func:`~pipeline.fit.chunks.prepare`.
    progress : callable, optional
        ``progress("prepare:blocks", columns done, 0)`` after each block.

    Returns
    -------
    Prepared
        ``n_features`` is the number of columns read.
    """
    if not isinstance(config, FitConfig) or not chunkable(config, protocol_only=True):
        raise ConfigError("prepare_streamed needs a FitConfig of protocol 'recommended'.")
    if not (isinstance(n_train, int) and n_train >= 2):
        raise ConfigError(f"n_train must be an integer >= 2, got {n_train!r}.")
    train_idx, test_idx = holdout_split(n_train, config.test_fraction, config.seed)
    plan = [("test", train_idx, [("test", "test", test_idx)])]
    if n_val is not None:
        plan.append(("all", np.arange(n_train, dtype=np.int64), [("validation", "validation", None)]))
    ridge = config.method == "ridge"
    if block is None:
        block = RIDGE_BLOCK if ridge else _estimator(config, None).block_size(max(i.size for _, i, _ in plan))
    est = _estimator(config, block)
    standardize = bool(config.standardize)
    accs = [_Accumulator(name, idx, jobs, n_train, n_val, standardize, True) for name, idx, jobs in plan]
    n_features, dtype = 0, np.float64
    for cols, arrays in blocks:
        train, val = arrays["train"], arrays.get("val")
        if train.shape[0] != n_train or (n_val is not None and (val is None or val.shape[0] != n_val)):
            raise ConfigError(f"feature block {cols} has {train.shape[0]} training rows (expected "
                              f"{n_train}) or lacks the {n_val} validation rows.")
        dtype = np.float32 if train.dtype == np.float32 else np.float64
        for acc in accs:
            acc.add(train, val)
        n_features += train.shape[1]
        if progress is not None:
            progress("prepare:blocks", n_features, 0)
    if n_features == 0:
        raise ConfigError("the feature blocks held no columns.")
    models, timings = [], {}
    for acc in accs:
        t0 = time.perf_counter()
        K = acc.kernel()
        if ridge:
            kernel = est.decompose_kernel(K, dtype, None, {"kernel": acc.seconds})
        else:
            grid = est._check(acc.fit_idx.size)
            cv = int(est.cv) if est.cv is not None else None
            kernel = PLSKernel(K=K, grid=grid, cv=cv, random_state=int(est.random_state),
                               timings={"kernel": acc.seconds})
        models.append(PreparedModel(acc.name, acc.fit_idx, acc.jobs, kernel, acc.cross))
        timings[f"prepare:{acc.name}"] = acc.seconds + time.perf_counter() - t0
    return Prepared(config=config, n_train=n_train, n_val=n_val, n_features=n_features,
                    block=int(block), models=models, timings=timings)


def accumulate_kernels(blocks: Blocks, n_train: int, n_val: int, standardize: bool = True
                       ) -> tuple[np.ndarray, np.ndarray, int]:
    """Training kernel ``(n_train, n_train)``, validation cross kernel ``(n_val, n_train)``
    and the number of feature columns, from column blocks of one feature space (features
    centred, and with ``standardize`` scaled, on the training images), read once."""
    jobs = [("validation", "validation", None)]
    acc = _Accumulator("all", np.arange(n_train, dtype=np.int64), jobs, n_train, n_val, standardize, True)
    n_features = 0
    for cols, arrays in blocks:
        train, val = arrays["train"], arrays.get("val")
        if train.shape[0] != n_train or val is None or val.shape[0] != n_val:
            raise ConfigError(f"feature block {cols} must hold {n_train} training and {n_val} "
                              "validation rows.")
        acc.add(train, val)
        n_features += train.shape[1]
    if n_features == 0:
        raise ConfigError("the feature blocks held no columns.")
    return acc.kernel(), acc.cross["validation"], n_features
