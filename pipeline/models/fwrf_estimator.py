"""fwRF as an estimator (:class:`FwRF`: ``fit(maps, Y)`` / ``predict(maps)``), over the
batched core :func:`pipeline.models.fwrf.fit_fwrf`; the method registry builds it.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.models.fwrf import FieldGrid, _check_maps, field_weights, fit_fwrf, pool

__all__ = [
    "FwRF",
]


class FwRF:
    """fwRF as an estimator: ``fit(maps, Y)`` then ``predict(maps)`` (one model, all rows).

    Parameters
    ----------
    grid : FieldGrid, optional
        Candidate fields (default :class:`FieldGrid` ()).
    alphas : sequence of float, optional
        Penalty grid (default :data:`pipeline.models.ridge.DEFAULT_ALPHAS`).
    standardize : bool, default True
    voxel_block, field_block : int
        See :func:`fit_fwrf`.

    Attributes
    ----------
    fields_ : ndarray, shape (G, 3)
    field_ : ndarray of int64, shape (v,)
    alpha_ : ndarray, shape (v,)
    rf_ : ndarray, shape (v, 3)
        ``(x_deg, y_deg, sigma_deg)`` of each voxel's field.
    model_ : FwRFModel
    """

    def __init__(self, grid: FieldGrid | None = None, alphas=None, standardize: bool = True,
                 voxel_block: int = 512, field_block: int = 40):
        self.grid = grid
        self.alphas = alphas
        self.standardize = standardize
        self.voxel_block = voxel_block
        self.field_block = field_block

    def fit(self, maps, Y) -> FwRF:
        from pipeline.models.ridge import DEFAULT_ALPHAS

        grid = self.grid or FieldGrid()
        Y = np.asarray(Y, dtype=np.float64)
        self._one_d = Y.ndim == 1
        Y = Y[:, None] if self._one_d else Y
        self.fields_ = grid.fields()
        self.extent_deg_ = float(grid.extent_deg)
        alphas = DEFAULT_ALPHAS if self.alphas is None else self.alphas
        self.model_ = fit_fwrf(maps, Y, self.fields_, self.extent_deg_, alphas,
                               standardize=self.standardize, keep_coef=True,
                               voxel_block=self.voxel_block, field_block=self.field_block)[0]
        self.field_, self.alpha_ = self.model_.field, self.model_.alpha
        self.rf_ = self.fields_[self.field_]
        return self

    def predict(self, maps) -> np.ndarray:
        """Predictions (m, v) (or (m,) when fitted on 1-D targets) for new maps."""
        if not hasattr(self, "model_"):
            raise ConfigError("This FwRF instance is not fitted yet; call fit first.")
        maps = _check_maps(maps)
        m = self.model_
        out = np.empty((maps[0].shape[0], m.field.size))
        for g in np.unique(m.field):
            vox = np.flatnonzero(m.field == g)
            wts = [field_weights(self.fields_[[g]], a.shape[1], a.shape[2], self.extent_deg_).astype(a.dtype)
                   for a in maps]
            P = pool(maps, wts)[0].astype(np.float64)  # (m, C)
            out[:, vox] = P @ m.coef[:, vox] - np.einsum("cv,cv->v", m.feature_mean[:, vox],
                                                        m.coef[:, vox]) + m.y_mean[vox]
        return out[:, 0] if self._one_d else out
