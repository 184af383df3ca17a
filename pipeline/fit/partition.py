"""Variance partitioning between two feature spaces: :func:`variance_partition`.

Three models are fitted on the training images, each with its penalties chosen per voxel
by CV inside the training images (:func:`pipeline.models.banded.banded_ridge_cv`): A
alone, B alone, and the joint banded model A+B (one penalty per space). On the
validation images, per voxel (``R2``: coefficient of determination, 1 - SS_res / SS_tot)::

    unique_a = R2(A+B) - R2(B)
    unique_b = R2(A+B) - R2(A)
    shared   = R2(A) + R2(B) - R2(A+B)

so that ``unique_a + shared = R2(A)``, ``unique_b + shared = R2(B)`` and
``unique_a + unique_b + shared = R2(A+B)`` hold exactly.

Negative estimates: these are differences of noisy held-out R2 values, so any of them
can come out below zero (a voxel with no signal has R2 around ``-1/n_val`` or less; a
joint model that over-fits a little has ``R2(A+B) < R2(A)``, hence ``unique_b < 0``;
``shared < 0`` happens when the spaces suppress each other). They are stored exactly as
computed, never clipped: clipping voxel by voxel would bias every ROI average upwards.
ROI summaries average the raw values; the stacked-bar figure draws a negative ROI mean
as 0 and labels it with its value (see :func:`tracker.figures.partition.draw_partition_bars`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.evaluation.scores import r2_score
from pipeline.models.banded import banded_predict, banded_ridge_cv

__all__ = ["PARTITION_FIELDS", "PartitionResult", "variance_partition"]

#: the per-voxel arrays of a partition, in storage order
PARTITION_FIELDS = ("r2_a", "r2_b", "r2_ab", "unique_a", "unique_b", "shared")


@dataclass
class PartitionResult:
    """Per-voxel validation R2 of A, B and A+B and the partition (:data:`PARTITION_FIELDS`),
    plus the penalties chosen (``alpha_a``, ``alpha_b``: the joint model's; ``alpha_a_only``,
    ``alpha_b_only``: the single-space models'), each an ndarray of shape (v,)."""

    r2_a: np.ndarray
    r2_b: np.ndarray
    r2_ab: np.ndarray
    alpha_a: np.ndarray
    alpha_b: np.ndarray
    alpha_a_only: np.ndarray
    alpha_b_only: np.ndarray
    ratios: np.ndarray
    timings: dict = field(default_factory=dict)

    @property
    def unique_a(self) -> np.ndarray:
        return self.r2_ab - self.r2_b

    @property
    def unique_b(self) -> np.ndarray:
        return self.r2_ab - self.r2_a

    @property
    def shared(self) -> np.ndarray:
        return self.r2_a + self.r2_b - self.r2_ab

    def columns(self) -> dict[str, np.ndarray]:
        """{field: (v,) float64} for every name of :data:`PARTITION_FIELDS`."""
        return {name: np.asarray(getattr(self, name), dtype=np.float64) for name in PARTITION_FIELDS}


def variance_partition(
    train_kernels: tuple[np.ndarray, np.ndarray],
    val_kernels: tuple[np.ndarray, np.ndarray],
    Y_train,
    Y_val,
    alphas=None,
    ratios=None,
    cv: str | int = "loo",
    random_state: int = 0,
) -> PartitionResult:
    """Fit A, B and A+B on the training images and partition their validation R2.

    Parameters
    ----------
    train_kernels : (Ka, Kb), each (n_train, n_train)
        Kernels of each space's centred (scaled) training features.
    val_kernels : (Ka_val, Kb_val), each (n_val, n_train)
        Validation-against-training kernels with the same transform.
    Y_train : ndarray, shape (n_train, v)
    Y_val : ndarray, shape (n_val, v)
    alphas, ratios, cv, random_state : as :func:`pipeline.models.banded.banded_ridge_cv`

    Returns
    -------
    PartitionResult
    """
    Y_train = np.asarray(Y_train, dtype=np.float64)
    Y_val = np.asarray(Y_val, dtype=np.float64)
    if Y_val.ndim != 2 or Y_train.ndim != 2 or Y_val.shape[1] != Y_train.shape[1]:
        raise ConfigError(f"Y_train and Y_val must be (n, v) with the same v, got {Y_train.shape} "
                          f"and {Y_val.shape}.")
    if len(train_kernels) != 2 or len(val_kernels) != 2:
        raise ConfigError("variance_partition takes two feature spaces (A, B).")
    timings: dict[str, float] = {}
    kw = {"alphas": alphas, "cv": cv, "random_state": random_state}
    fits = {}
    for name, idx in (("a", [0]), ("b", [1]), ("ab", [0, 1])):
        t0 = time.perf_counter()
        fit = banded_ridge_cv([train_kernels[i] for i in idx], Y_train,
                              ratios=ratios if name == "ab" else None, **kw)
        pred = banded_predict(fit, [val_kernels[i] for i in idx])
        fits[name] = (fit, np.asarray(r2_score(Y_val, pred), dtype=np.float64).reshape(-1))
        timings[f"fit:{name}"] = time.perf_counter() - t0
    joint = fits["ab"][0]
    return PartitionResult(
        r2_a=fits["a"][1], r2_b=fits["b"][1], r2_ab=fits["ab"][1],
        alpha_a=joint.alpha_a, alpha_b=joint.alpha_b,
        alpha_a_only=fits["a"][0].alpha_a, alpha_b_only=fits["b"][0].alpha_a,
        ratios=joint.ratios, timings=timings,
    )
