"""The fit configuration: :class:`FitConfig`, its small validators and the protocol names.

See :mod:`pipeline.fit.protocols` for what each protocol does.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.core.keys import content_key
from pipeline.evaluation.significance import DEFAULT_FDR_Q, DEFAULT_N_PERMUTATIONS
from pipeline.models.pls import DEFAULT_N_COMPONENTS
from pipeline.models.ridge import DEFAULT_ALPHAS

__all__ = [
    "CS431_ALPHAS",
    "PROTOCOLS",
    "TARGETS",
    "FitConfig",
]

PROTOCOLS = ("recommended", "cs431")
TARGETS = ("voxels", "roi_mean")
#: the method names (the keys of :data:`pipeline.fit.methods.METHODS`, which builds them)
METHOD_NAMES = ("ridge", "pls", "fwrf")
#: fwRF-only fields: ``to_dict`` leaves them out when unset, so other methods' keys never change
FWRF_FIELDS = ("rf_centres", "rf_sizes", "rf_size_range", "stimulus_deg", "layers")


#: The 2019 RidgeCV grid (one alpha shared by all voxels, unstandardised features).
CS431_ALPHAS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
CS431_N_COMPONENTS: tuple[int, ...] = (25,)


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class FitConfig:
    """Everything that determines a fit's numbers (hashes to the run key).

    ``None`` fields are resolved to the method/protocol defaults at construction, so
    ``to_dict()`` always records the values actually used.

    Parameters
    ----------
    method : {"ridge", "pls", "fwrf"}
    protocol : {"recommended", "cs431"}
    alphas : tuple of float, optional
        Ridge penalties. Default :data:`pipeline.models.ridge.DEFAULT_ALPHAS` (recommended) or
        :data:`CS431_ALPHAS` (cs431). Ridge and fwRF.
    n_components : tuple of int, optional
        PLS component counts searched per voxel, default
        :data:`pipeline.models.pls.DEFAULT_N_COMPONENTS`; cs431: exactly one count (default 25).
        PLS only.
    cv : "loo", "gcv" or int, optional
        Inner CV: ridge default "loo"; PLS default 5 folds (cs431 PLS: None, no search);
        fwRF: "gcv" (generalised cross-validation, the only choice).
    standardize : bool, optional
        Standardise features: default True for recommended ridge, else False.
    test_fraction : float
        Share of training images held out as the test split (1/7: 250 of 1750).
    seed : int
        Seeds the held-out split, the inner k-fold and the cs431 RandomState.
    target : {"voxels", "roi_mean"}
        ``"roi_mean"`` averages the given voxels into one target before fitting.
    n_splits : int
        cs431 only: number of random splits (5).
    feature_subset : int, optional
        cs431 only: keep a random subset of this many features (5000 in 2019).
    n_permutations : int, optional
        Permutations of the held-out images for the per-voxel permutation p-values
        (:func:`pipeline.evaluation.significance.permutation_pvalues`) of every test and validation
        split; 0 skips them. Default 1000 (recommended) or 0 (cs431).
    permutation_seed : int, optional
        Seed of those permutations (the same for every voxel and split); default
        ``seed``.
    fdr_q : float
        Benjamini-Hochberg FDR level of the per-split ``significant`` flags (0.05).
    rf_centres, rf_sizes : int, optional
        fwRF only: candidate field centres per axis (default 10: a 10 x 10 grid of cell
        centres over the stimulus) and sizes (default 8).
    rf_size_range : tuple of float, optional
        fwRF only: smallest and largest Gaussian sigma in degrees, log-spaced (default
        (0.5, 8.0)).
    stimulus_deg : float, optional
        fwRF only: side of the square stimulus the feature maps cover, in degrees
        (default :data:`pipeline.data.layout.STIMULUS_DEG`, vim-1's 20).
    layers : tuple of str, optional
        fwRF only: layers of the feature file pooled together (each at its own
        resolution, channels concatenated); default the file's primary layer.
    """

    method: str = "ridge"
    protocol: str = "recommended"
    alphas: tuple[float, ...] | None = None
    n_components: tuple[int, ...] | None = None
    cv: str | int | None = None
    standardize: bool | None = None
    test_fraction: float = 1 / 7
    seed: int = 0
    target: str = "voxels"
    n_splits: int = 5
    feature_subset: int | None = None
    n_permutations: int | None = None
    permutation_seed: int | None = None
    fdr_q: float = DEFAULT_FDR_Q
    rf_centres: int | None = None
    rf_sizes: int | None = None
    rf_size_range: tuple[float, float] | None = None
    stimulus_deg: float | None = None
    layers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        def put(name, value):
            object.__setattr__(self, name, value)

        _check_choices(self)
        cs431 = self.protocol == "cs431"
        if self.method == "fwrf":
            for name, value in _resolve_fwrf(self).items():
                put(name, value)
        else:
            _no_fwrf_fields(self)
        ridge = self.method in ("ridge", "fwrf")
        if ridge:
            put("alphas", _resolve_alphas(self, cs431))
        else:
            put("n_components", _resolve_components(self, cs431))
        if self.method != "fwrf":
            put("cv", _resolve_cv(self, ridge, cs431))
        put("standardize", _resolve_standardize(self, ridge, cs431))
        for name, value in _resolve_sampling(self, cs431).items():
            put(name, value)
        for name, value in _resolve_significance(self, cs431).items():
            put(name, value)

    @property
    def hyper_name(self) -> str:
        """Name of the per-voxel hyper-parameter: "alpha" or "n_components"."""
        return "n_components" if self.method == "pls" else "alpha"

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the resolved configuration (tuples become lists); the
        fwRF-only fields (:data:`FWRF_FIELDS`) appear only when set."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in FWRF_FIELDS and value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def field_grid(self):
        """fwRF: the candidate fields as a :class:`pipeline.models.fwrf.FieldGrid`."""
        from pipeline.models.fwrf import FieldGrid

        if self.method != "fwrf":
            raise ConfigError(f"method {self.method!r} has no receptive-field grid (fwrf only).")
        return FieldGrid(self.rf_centres, self.rf_sizes, tuple(self.rf_size_range), self.stimulus_deg)

    @classmethod
    def from_dict(cls, data: dict) -> FitConfig:
        """Inverse of :meth:`to_dict` (unknown keys -> ConfigError)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown FitConfig field(s): {', '.join(unknown)}.")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    def key(self) -> str:
        """Stable sha256 (hex) of the canonical JSON of :meth:`to_dict`."""
        return content_key(self.to_dict())


# ------------------------------------------------------------------ validators of FitConfig
def _check_choices(cfg: FitConfig) -> None:
    """method, protocol and target are among the known names."""
    if cfg.method not in METHOD_NAMES:
        raise ConfigError(f"method must be one of {sorted(METHOD_NAMES)}, got {cfg.method!r}.")
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {list(PROTOCOLS)}, got {cfg.protocol!r}.")
    if cfg.target not in TARGETS:
        raise ConfigError(f"target must be one of {list(TARGETS)}, got {cfg.target!r}.")


def _no_fwrf_fields(cfg: FitConfig) -> None:
    """Ridge and PLS: the fwRF-only fields stay unset."""
    given = [name for name in FWRF_FIELDS if getattr(cfg, name) is not None]
    if given:
        raise ConfigError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to method "
                          f"'fwrf' only; leave {'it' if len(given) == 1 else 'them'} unset for {cfg.method}.")


def _resolve_fwrf(cfg: FitConfig) -> dict:
    """fwRF: recommended protocol, GCV, and the field grid (defaults resolved, checked)."""
    from pipeline.data.layout import STIMULUS_DEG
    from pipeline.models.fwrf import FieldGrid

    if cfg.protocol != "recommended":
        raise ConfigError("method 'fwrf' runs under protocol 'recommended' only "
                          f"(per-voxel fields and penalties), got {cfg.protocol!r}.")
    if cfg.cv not in (None, "gcv"):
        raise ConfigError(f"cv for method 'fwrf' is 'gcv' (generalised cross-validation), got {cfg.cv!r}.")
    default = FieldGrid()
    out = {"cv": "gcv",
           "rf_centres": default.n_centres if cfg.rf_centres is None else cfg.rf_centres,
           "rf_sizes": default.n_sizes if cfg.rf_sizes is None else cfg.rf_sizes,
           "stimulus_deg": STIMULUS_DEG if cfg.stimulus_deg is None else cfg.stimulus_deg}
    size_range = default.size_range if cfg.rf_size_range is None else cfg.rf_size_range
    try:
        out["rf_size_range"] = tuple(float(v) for v in size_range)
        out["stimulus_deg"] = float(out["stimulus_deg"])
    except (TypeError, ValueError):
        raise ConfigError(f"rf_size_range must be two numbers (degrees) and stimulus_deg a number, "
                          f"got {cfg.rf_size_range!r} and {cfg.stimulus_deg!r}.") from None
    if len(out["rf_size_range"]) != 2:
        raise ConfigError(f"rf_size_range must be two numbers (degrees), got {cfg.rf_size_range!r}.")
    for name in ("rf_centres", "rf_sizes"):
        if not _is_int(out[name]):
            raise ConfigError(f"{name} must be a positive integer, got {out[name]!r}.")
        out[name] = int(out[name])
    FieldGrid(out["rf_centres"], out["rf_sizes"], out["rf_size_range"], out["stimulus_deg"])  # checks
    layers = cfg.layers
    if layers is not None:
        layers = (layers,) if isinstance(layers, str) else tuple(layers)
        if not layers or not all(isinstance(x, str) and x for x in layers):
            raise ConfigError(f"layers must be a non-empty list of layer names, got {cfg.layers!r}.")
    out["layers"] = layers
    return out


def _resolve_alphas(cfg: FitConfig, cs431: bool) -> tuple[float, ...]:
    """Ridge and fwRF: the penalty grid (default per protocol), positive and finite."""
    if cfg.n_components is not None:
        raise ConfigError(
            f"n_components applies to method 'pls' only; leave it unset for {cfg.method}."
        )
    alphas = cfg.alphas
    if alphas is None:
        alphas = CS431_ALPHAS if cs431 else tuple(float(a) for a in DEFAULT_ALPHAS)
    try:
        alphas = tuple(float(a) for a in np.asarray(alphas, dtype=np.float64).ravel())
    except (TypeError, ValueError):
        raise ConfigError(
            f"alphas must be a list of positive numbers, got {cfg.alphas!r}."
        ) from None
    if not alphas or not all(math.isfinite(a) and a > 0 for a in alphas):
        raise ConfigError(
            "alphas must be a non-empty list of positive finite numbers, "
            f"got {cfg.alphas!r}."
        )
    return alphas


def _resolve_components(cfg: FitConfig, cs431: bool) -> tuple[int, ...]:
    """PLS: the sorted component counts (default per protocol; one count for cs431)."""
    if cfg.alphas is not None:
        raise ConfigError("alphas applies to methods 'ridge' and 'fwrf' only; leave it unset for pls.")
    comps = cfg.n_components
    if comps is None:
        comps = CS431_N_COMPONENTS if cs431 else DEFAULT_N_COMPONENTS
    if _is_int(comps):
        comps = (comps,)
    try:
        comps = tuple(comps)
    except TypeError:
        raise ConfigError(
            f"n_components must be a list of positive integers, got {comps!r}."
        ) from None
    if not comps or not all(_is_int(k) and k >= 1 for k in comps):
        raise ConfigError(
            "n_components must be a non-empty list of positive integers, "
            f"got {cfg.n_components!r}."
        )
    comps = tuple(sorted(set(int(k) for k in comps)))
    if cs431 and len(comps) != 1:
        raise ConfigError(
            "n_components must be a single value for protocol 'cs431' (multi-output PLS)."
        )
    return comps


def _resolve_cv(cfg: FitConfig, ridge: bool, cs431: bool) -> str | int | None:
    """The inner CV: "loo" (ridge default), a number of folds, or None (cs431 PLS)."""
    cv = cfg.cv
    if cv is None:
        cv = "loo" if ridge else (None if cs431 else 5)
    elif cv == "loo":
        if not ridge:
            raise ConfigError(
                "cv='loo' is available for method 'ridge' only; give a number of folds for pls."
            )
    elif not (_is_int(cv) and cv >= 2):
        raise ConfigError(f"cv must be 'loo' or an integer >= 2, got {cv!r}.")
    else:
        cv = int(cv)
    if not ridge and cs431 and cv is not None:
        raise ConfigError(
            "cv must be unset for pls under protocol 'cs431' (fixed component count)."
        )
    if not ridge and not cs431 and cv is None:
        raise ConfigError("cv must be a number of folds for pls under protocol 'recommended'.")
    return cv


def _resolve_standardize(cfg: FitConfig, ridge: bool, cs431: bool) -> bool:
    """Feature standardisation: default True for recommended ridge only."""
    standardize = cfg.standardize
    if standardize is None:
        standardize = ridge and not cs431
    if not isinstance(standardize, (bool, np.bool_)):
        raise ConfigError(f"standardize must be true or false, got {cfg.standardize!r}.")
    return bool(standardize)


def _resolve_sampling(cfg: FitConfig, cs431: bool) -> dict:
    """test_fraction, seed, n_splits and feature_subset (the last two: cs431 only)."""
    out: dict = {}
    if not isinstance(cfg.test_fraction, Real) or not 0.0 < float(cfg.test_fraction) < 1.0:
        raise ConfigError(
            f"test_fraction must be a number in (0, 1), got {cfg.test_fraction!r}."
        )
    out["test_fraction"] = float(cfg.test_fraction)
    if not (_is_int(cfg.seed) and cfg.seed >= 0):
        raise ConfigError(f"seed must be a non-negative integer, got {cfg.seed!r}.")
    out["seed"] = int(cfg.seed)
    if not (_is_int(cfg.n_splits) and cfg.n_splits >= 1):
        raise ConfigError(f"n_splits must be a positive integer, got {cfg.n_splits!r}.")
    out["n_splits"] = int(cfg.n_splits)
    if not cs431 and cfg.n_splits != 5:
        raise ConfigError("n_splits applies to protocol 'cs431' only.")
    if cfg.feature_subset is not None:
        if not cs431:
            raise ConfigError("feature_subset applies to protocol 'cs431' only.")
        if not (_is_int(cfg.feature_subset) and cfg.feature_subset >= 1):
            raise ConfigError(
                f"feature_subset must be a positive integer, got {cfg.feature_subset!r}."
            )
        out["feature_subset"] = int(cfg.feature_subset)
    return out


def _resolve_significance(cfg: FitConfig, cs431: bool) -> dict:
    """n_permutations (default per protocol), permutation_seed (default seed) and fdr_q."""
    out: dict = {}
    n_perm = cfg.n_permutations
    if n_perm is None:
        n_perm = 0 if cs431 else DEFAULT_N_PERMUTATIONS
    if not (_is_int(n_perm) and n_perm >= 0):
        raise ConfigError(
            f"n_permutations must be a non-negative integer, got {cfg.n_permutations!r}."
        )
    out["n_permutations"] = int(n_perm)
    perm_seed = cfg.seed if cfg.permutation_seed is None else cfg.permutation_seed
    if not (_is_int(perm_seed) and perm_seed >= 0):
        raise ConfigError(
            f"permutation_seed must be a non-negative integer, got {cfg.permutation_seed!r}."
        )
    out["permutation_seed"] = int(perm_seed)
    if not isinstance(cfg.fdr_q, Real) or not 0.0 < float(cfg.fdr_q) < 1.0:
        raise ConfigError(f"fdr_q must be a number in (0, 1), got {cfg.fdr_q!r}.")
    out["fdr_q"] = float(cfg.fdr_q)
    return out
