"""Validation of a fit's inputs: feature and target matrices, shapes and finiteness.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.errors import ConfigError


# --------------------------------------------------------------------------------------
# Running a fit
# --------------------------------------------------------------------------------------
def _check_finite_features(X: np.ndarray, name: str, block: int = 4096) -> None:
    """One clear error naming the first image row and feature column that is NaN or inf."""
    for start in range(0, X.shape[1], block):
        ok = np.isfinite(X[:, start:start + block])
        if not ok.all():
            row, col = np.argwhere(~ok)[0]
            raise ConfigError(
                f"{name} contains NaN or infinite values (first at image row {row}, feature "
                f"column {start + col}); features must be finite: check the feature file."
            )


def _check_features(X_train, X_val):
    """X_train (and X_val, may be None) as 2-D finite arrays with matching feature counts."""
    X_train = np.asarray(X_train)
    if X_train.ndim != 2:
        raise ConfigError(f"X_train must be 2-D (n_images, n_features), got shape {X_train.shape}.")
    _check_finite_features(X_train, "X_train")
    if X_val is not None:
        X_val = np.asarray(X_val)
        if X_val.ndim != 2 or X_val.shape[1] != X_train.shape[1]:
            raise ConfigError(
                f"X_val must have shape (n_val, {X_train.shape[1]}) to match X_train, "
                f"got {X_val.shape}."
            )
        _check_finite_features(X_val, "X_val")
    return X_train, X_val


def _check_inputs(X_train, X_val, Y_train, Y_val):
    X_train, X_val = _check_features(X_train, X_val)
    Y_train = np.asarray(Y_train, dtype=np.float64)
    if Y_train.ndim == 1:
        Y_train = Y_train[:, None]
    if Y_train.ndim != 2 or Y_train.shape[0] != X_train.shape[0]:
        raise ConfigError(
            f"Y_train must have shape ({X_train.shape[0]}, n_voxels) to match X_train, "
            f"got {Y_train.shape}."
        )
    if not np.all(np.isfinite(Y_train)):
        raise ConfigError("Y_train contains NaN or infinite values; drop those voxels first.")
    if (X_val is None) != (Y_val is None):
        raise ConfigError("X_val and Y_val must be given together (or both None).")
    if X_val is not None:
        Y_val = np.asarray(Y_val, dtype=np.float64)
        if Y_val.ndim == 1:
            Y_val = Y_val[:, None]
        if Y_val.shape != (X_val.shape[0], Y_train.shape[1]):
            raise ConfigError(
                f"Y_val must have shape ({X_val.shape[0]}, {Y_train.shape[1]}), got {Y_val.shape}."
            )
        if not np.all(np.isfinite(Y_val)):
            raise ConfigError("Y_val contains NaN or infinite values; drop those voxels first.")
    return X_train, X_val, Y_train, Y_val
