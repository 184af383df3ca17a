"""The estimator registry: ``METHODS`` maps a method name to ``factory(config) -> estimator``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.fit.config import FitConfig
from pipeline.models.fwrf_estimator import FwRF
from pipeline.models.pls import PLS2, BatchedPLS
from pipeline.models.ridge import KernelRidgeCV

__all__ = [
    "METHODS",
]



# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------
def _make_ridge(config: FitConfig) -> KernelRidgeCV:
    return KernelRidgeCV(
        alphas=config.alphas,
        cv=config.cv,
        standardize=config.standardize,
        alpha_per_target=config.protocol != "cs431",
        random_state=config.seed,
    )


def _make_pls(config: FitConfig):
    if config.protocol == "cs431":
        return PLS2(n_components=config.n_components[0], scale=config.standardize)
    comps = config.n_components
    return BatchedPLS(
        n_components=comps if len(comps) > 1 else comps[0],
        cv=config.cv if len(comps) > 1 else None,
        scale=config.standardize,
        random_state=config.seed,
    )


def _make_fwrf(config: FitConfig) -> FwRF:
    return FwRF(grid=config.field_grid(), alphas=config.alphas, standardize=config.standardize)


#: method name -> factory(config) -> unfitted estimator (fit(X, Y) / predict(X)); its keys
#: are :data:`pipeline.fit.config.METHOD_NAMES` (what FitConfig accepts).
METHODS: dict[str, Callable[[FitConfig], object]] = {
    "ridge": _make_ridge,
    "pls": _make_pls,
    "fwrf": _make_fwrf,  # fit(maps, Y) on feature maps; run_fit uses pipeline.fit.fwrf
}


def _hyper(estimator) -> np.ndarray:
    for attr in ("alpha_", "n_components_"):
        if hasattr(estimator, attr):
            return np.atleast_1d(np.asarray(getattr(estimator, attr))).copy()
    raise ConfigError(
        f"estimator {type(estimator).__name__} exposes neither alpha_ nor n_components_."
    )


def _estimator(config: FitConfig, block: int | None):
    est = METHODS[config.method](config)
    if block is not None:
        est.chunk_size = int(block)
    return est
