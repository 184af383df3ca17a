"""Banded ridge: one penalty per feature space, chosen per target by CV, in kernel form.

For feature spaces ``A`` and ``B`` (centred, usually standardised features ``Xa``,
``Xb``), banded ridge minimises per target
``||y - b - Xa wa - Xb wb||^2 + alpha_a ||wa||^2 + alpha_b ||wb||^2``. Its dual is
kernel ridge with the kernel ``K = Ka / alpha_a + Kb / alpha_b`` and penalty 1, or,
with ``ratio = alpha_a / alpha_b``, kernel ridge on ``K_ratio = Ka + ratio Kb`` with the
penalty ``alpha = alpha_a``. So for every ratio of a grid ONE eigendecomposition of
``K_ratio`` gives the exact leave-one-out (or k-fold) error of every target for every
``alpha`` of the ridge grid (:class:`pipeline.models.ridge.KernelRidgeCV`); each target
keeps the (ratio, alpha) pair with the smallest CV error (ties: the first ratio, then
the smaller alpha). Cost: ``n_ratios`` eigendecompositions of ``n x n``, batched over
all targets.

The ratio grid always holds ``0`` (A only: ``alpha_b`` infinite) and ``inf`` (B only),
so the joint model can fall back to either space alone when the other adds nothing.
The default finite ratios are ``tr(Ka) / tr(Kb) x 10^[-2 ... 2]`` (9 values): the two
spaces weighted equally per unit of kernel trace, up to 100 times either way.

With one space this is plain kernel ridge (:class:`~pipeline.models.ridge.KernelRidgeCV`).
Pure numpy; kernels come from :mod:`pipeline.models.kernels` (or from feature blocks,
:mod:`pipeline.fit.streamed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.models.ridge import DEFAULT_ALPHAS, KernelRidgeCV

__all__ = [
    "BandedFit",
    "banded_predict",
    "banded_ridge_cv",
    "default_ratios",
]


@dataclass
class BandedFit:
    """Per-target outcome of :func:`banded_ridge_cv`.

    Attributes
    ----------
    alpha_a, alpha_b : ndarray, shape (v,)
        Penalty of each space (``inf``: the space is left out). One space: ``alpha_b``
        is all ``inf``.
    ratio : ndarray, shape (v,)
        ``alpha_a / alpha_b`` (0: A only, inf: B only).
    dual : ndarray, shape (n, v)
        Dual coefficients: predictions ``(Ka_new / alpha_a + Kb_new / alpha_b) @ dual``
        scaled as in :func:`banded_predict`, plus ``y_mean``.
    y_mean : ndarray, shape (v,)
    cv_error : ndarray, shape (v,)
        The smallest mean squared CV error per target.
    ratios : ndarray
        The ratio grid searched.
    """

    alpha_a: np.ndarray
    alpha_b: np.ndarray
    ratio: np.ndarray
    dual: np.ndarray
    y_mean: np.ndarray
    cv_error: np.ndarray
    ratios: np.ndarray = field(default_factory=lambda: np.zeros(0))


def default_ratios(Ka: np.ndarray, Kb: np.ndarray, n: int = 9, span: float = 2.0) -> np.ndarray:
    """``[0, tr(Ka)/tr(Kb) x 10^linspace(-span, span, n), inf]`` (see the module docstring)."""
    scale = float(np.trace(Ka)) / max(float(np.trace(Kb)), np.finfo(float).tiny)
    return np.concatenate([[0.0], scale * np.logspace(-span, span, n), [np.inf]])


def _check_kernels(kernels: Sequence[np.ndarray]) -> list[np.ndarray]:
    kernels = [np.asarray(K, dtype=np.float64) for K in kernels]
    if len(kernels) not in (1, 2):
        raise ConfigError(f"banded ridge takes one or two feature spaces, got {len(kernels)}.")
    n = kernels[0].shape[0]
    for i, K in enumerate(kernels):
        if K.shape != (n, n):
            raise ConfigError(f"kernel {i} must be ({n}, {n}), got {K.shape}.")
        if not np.all(np.isfinite(K)):
            raise ConfigError(f"kernel {i} holds NaN or infinite values.")
    return kernels


def banded_ridge_cv(
    kernels: Sequence[np.ndarray],
    Y,
    alphas=None,
    ratios=None,
    cv: str | int = "loo",
    random_state: int = 0,
    chunk_size: int = 1000,
) -> BandedFit:
    """Banded ridge (one or two spaces) with per-target penalties chosen by CV.

    Parameters
    ----------
    kernels : [Ka] or [Ka, Kb], each (n, n)
        Linear kernels of the (centred, scaled) training features of each space.
    Y : ndarray, shape (n, v)
    alphas : penalty grid of space A (default :data:`pipeline.models.ridge.DEFAULT_ALPHAS`)
    ratios : grid of ``alpha_a / alpha_b`` (two spaces; default :func:`default_ratios`);
        0 and inf (one space alone) are allowed.
    cv : "loo" or k (folds inside these n images)
    random_state : k-fold seed

    Returns
    -------
    BandedFit
    """
    kernels = _check_kernels(kernels)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[0] != kernels[0].shape[0]:
        raise ConfigError(f"Y must be ({kernels[0].shape[0]}, n_targets), got {Y.shape}.")
    est = KernelRidgeCV(alphas=DEFAULT_ALPHAS if alphas is None else alphas, cv=cv,
                        random_state=random_state, chunk_size=chunk_size)
    grid = est._check_params()
    if len(kernels) == 1:
        ratios = np.array([0.0])
    elif ratios is None:
        ratios = default_ratios(*kernels)
    ratios = np.asarray(ratios, dtype=np.float64).ravel()
    if ratios.size == 0 or np.any(np.isnan(ratios)) or np.any(ratios < 0):
        raise ConfigError(f"ratios must be non-negative numbers (inf allowed), got {ratios!r}.")
    n, v = Y.shape
    best = np.full(v, np.inf)
    out = BandedFit(alpha_a=np.full(v, np.inf), alpha_b=np.full(v, np.inf), ratio=np.zeros(v),
                    dual=np.zeros((n, v)), y_mean=Y.mean(axis=0), cv_error=best, ratios=ratios)
    for ratio in ratios:
        K = _ratio_kernel(kernels, ratio)
        fit = est.fit_targets(est.decompose_kernel(K, np.float64, grid), Y)
        err = fit.cv_errors.min(axis=0)
        better = err < best
        if not better.any():
            continue
        best[better] = err[better]
        out.dual[:, better] = fit.dual[:, better]
        out.ratio[better] = ratio
        a = fit.hyper[better]
        if np.isinf(ratio):  # B only: the penalty is alpha_b
            out.alpha_a[better], out.alpha_b[better] = np.inf, a
        else:
            out.alpha_a[better] = a
            out.alpha_b[better] = a / ratio if ratio > 0 else np.inf
    return out


def _ratio_kernel(kernels: list[np.ndarray], ratio: float) -> np.ndarray:
    """``Ka + ratio Kb`` (``Kb`` alone for ratio inf)."""
    if len(kernels) == 1 or ratio == 0:
        return kernels[0]
    if np.isinf(ratio):
        return kernels[1]
    return kernels[0] + ratio * kernels[1]


def banded_predict(fit: BandedFit, cross: Sequence[np.ndarray]) -> np.ndarray:
    """Predictions ``(m, v)`` from the cross kernels ``[Ka_new]`` or ``[Ka_new, Kb_new]``
    (each (m, n): new samples against the training samples, same feature transform)."""
    cross = [np.asarray(C, dtype=np.float64) for C in cross]
    m = cross[0].shape[0]
    pred = np.empty((m, fit.dual.shape[1]))
    for ratio in np.unique(fit.ratio):
        cols = fit.ratio == ratio
        pred[:, cols] = _ratio_kernel(cross, ratio) @ fit.dual[:, cols]
    return pred + fit.y_mean
