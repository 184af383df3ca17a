"""Fit configurations, the estimator registry and the fit/score protocols.

Protocols
---------
``"recommended"`` (default)
    1. One seeded held-out *test* split of the training images
       (:func:`pipeline.splits.holdout_split`, ``test_fraction`` = 1/7: 250 of 1750).
       Hyper-parameters (ridge alpha / PLS components, per voxel) are chosen by CV
       (LOO or k-fold) inside the remaining training images only; that model is scored
       once on the test split -> split ``"test"``.
    2. A model is refitted on ALL training images, its hyper-parameters chosen again by
       CV inside all training images (never on validation images), and scored once on
       the validation images -> split ``"validation"``. So the test and validation
       scores come from two models (1500 vs 1750 training images) whose hyper-parameters
       may differ per voxel; both are recorded.

``"cs431"`` (the 2019 project, reproduced)
    Five random splits from ``RandomState(seed)`` (:func:`pipeline.splits.cs431_splits`,
    250 test images each); optionally the 2019 random feature subset drawn right after
    (``feature_subset=5000``). Ridge: one alpha shared by all voxels from
    (1e-4 ... 1) by LOO, features not standardised (``RidgeCV`` semantics). PLS: one
    multi-output ``PLSRegression(n_components=25, scale=False)`` (:class:`~pipeline.pls.PLS2`).
    For each split ``i`` the model fitted on its 1500 training images is scored on them
    (``"train{i}"``, in-sample, as 2019 reported), on its test images (``"test{i}"``) and
    on the validation images (``"validation{i}"``); finally a model fitted on all
    training images is scored on the validation images (``"validation"``, the 2019
    "V4 average" headline).

Significance (both protocols, ``n_permutations > 0``; default 1000 for "recommended",
0 for "cs431")
    Every test and validation split gets per-target permutation p-values of r (the held-out
    images shuffled, the same ``permutation_seed``-seeded permutations for every target;
    :func:`pipeline.stats.permutation_pvalues`) and a Benjamini-Hochberg flag at
    ``fdr_q`` over the targets of that split. In-sample ("train") splits get none. With
    ``N`` permutations no p is below ``1 / (N + 1)``, so BH over ``m`` targets can only
    flag anything once at least ``m / ((N + 1) q)`` targets reach that floor (about 2% of
    them for N = 1000, q = 0.05); raise ``n_permutations`` for sparse effects.

Voxel chunks (recommended protocol)
    A fit is two parts: :func:`prepare` does everything that depends on the features only
    (per model - "test" on the held-out split's training part, "all" on all training
    images - the kernel, its eigendecomposition(s) for ridge, and the cross kernels that
    predict the scored images); :func:`fit_voxels` does the per-voxel rest (CV over the
    grid, duals, predictions, scores, permutation p-values) for any set of voxel columns.
    :func:`run_fit` is ``fit_voxels(prepare(...), Y)``. Every column-coupled product runs
    in blocks of ``Prepared.block`` columns (the estimators' target batch: 1000 for
    ridge), so fitting a column chunk that starts at a multiple of ``block`` gives, bit
    for bit, the same per-voxel numbers as the fit on all columns (with the same BLAS
    threading; a worker process with another thread count differs at ~1e-14);
    :func:`voxel_chunks` cuts such chunks. The Benjamini-Hochberg flags are the one per-split quantity
    coupling voxels: :func:`merge_results` concatenates the chunks' results and
    recomputes ``significant`` over all voxels of each split. The cs431 protocol (one
    alpha, or one multi-output PLS, shared by all voxels) does not split by voxels.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.core.keys import content_key
from pipeline.core.vocab import METRICS
from pipeline.pls import DEFAULT_N_COMPONENTS, PLS2, BatchedPLS, PLSKernel
from pipeline.ridge import DEFAULT_ALPHAS, KernelRidgeCV, RidgeKernel, linear_kernel
from pipeline.scores import pearson_r, r2_score
from pipeline.splits import cs431_feature_subset, cs431_splits, holdout_split, index_hash
from pipeline.stats import DEFAULT_FDR_Q, DEFAULT_N_PERMUTATIONS, fdr_significant, permutation_pvalues

__all__ = [
    "CS431_ALPHAS",
    "FitConfig",
    "FitResult",
    "METHODS",
    "PROTOCOLS",
    "Prepared",
    "PreparedModel",
    "SplitScores",
    "TARGETS",
    "chunkable",
    "fit_voxel_chunks",
    "fit_voxels",
    "merge_results",
    "prepare",
    "run_fit",
    "voxel_chunks",
]

PROTOCOLS = ("recommended", "cs431")
TARGETS = ("voxels", "roi_mean")
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
    method : {"ridge", "pls"}
    protocol : {"recommended", "cs431"}
    alphas : tuple of float, optional
        Ridge penalties. Default :data:`pipeline.ridge.DEFAULT_ALPHAS` (recommended) or
        :data:`CS431_ALPHAS` (cs431). Ridge only.
    n_components : tuple of int, optional
        PLS component counts searched per voxel, default
        :data:`pipeline.pls.DEFAULT_N_COMPONENTS`; cs431: exactly one count (default 25).
        PLS only.
    cv : "loo" or int, optional
        Inner CV: ridge default "loo"; PLS default 5 folds (cs431 PLS: None, no search).
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
        (:func:`pipeline.stats.permutation_pvalues`) of every test and validation
        split; 0 skips them. Default 1000 (recommended) or 0 (cs431).
    permutation_seed : int, optional
        Seed of those permutations (the same for every voxel and split); default
        ``seed``.
    fdr_q : float
        Benjamini-Hochberg FDR level of the per-split ``significant`` flags (0.05).
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

    def __post_init__(self) -> None:
        def put(name, value):
            object.__setattr__(self, name, value)

        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {sorted(METHODS)}, got {self.method!r}.")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {list(PROTOCOLS)}, got {self.protocol!r}.")
        if self.target not in TARGETS:
            raise ConfigError(f"target must be one of {list(TARGETS)}, got {self.target!r}.")
        cs431 = self.protocol == "cs431"
        ridge = self.method == "ridge"

        # grids
        if ridge:
            if self.n_components is not None:
                raise ConfigError(
                    "n_components applies to method 'pls' only; leave it unset for ridge."
                )
            alphas = self.alphas
            if alphas is None:
                alphas = CS431_ALPHAS if cs431 else tuple(float(a) for a in DEFAULT_ALPHAS)
            try:
                alphas = tuple(float(a) for a in np.asarray(alphas, dtype=np.float64).ravel())
            except (TypeError, ValueError):
                raise ConfigError(
                    f"alphas must be a list of positive numbers, got {self.alphas!r}."
                ) from None
            if not alphas or not all(math.isfinite(a) and a > 0 for a in alphas):
                raise ConfigError(
                    "alphas must be a non-empty list of positive finite numbers, "
                    f"got {self.alphas!r}."
                )
            put("alphas", alphas)
        else:
            if self.alphas is not None:
                raise ConfigError("alphas applies to method 'ridge' only; leave it unset for pls.")
            comps = self.n_components
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
                    f"got {self.n_components!r}."
                )
            comps = tuple(sorted(set(int(k) for k in comps)))
            if cs431 and len(comps) != 1:
                raise ConfigError(
                    "n_components must be a single value for protocol 'cs431' (multi-output PLS)."
                )
            put("n_components", comps)

        # inner CV
        cv = self.cv
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
        put("cv", cv)

        standardize = self.standardize
        if standardize is None:
            standardize = ridge and not cs431
        if not isinstance(standardize, (bool, np.bool_)):
            raise ConfigError(f"standardize must be true or false, got {self.standardize!r}.")
        put("standardize", bool(standardize))

        if not isinstance(self.test_fraction, Real) or not 0.0 < float(self.test_fraction) < 1.0:
            raise ConfigError(
                f"test_fraction must be a number in (0, 1), got {self.test_fraction!r}."
            )
        put("test_fraction", float(self.test_fraction))
        if not (_is_int(self.seed) and self.seed >= 0):
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}.")
        put("seed", int(self.seed))
        if not (_is_int(self.n_splits) and self.n_splits >= 1):
            raise ConfigError(f"n_splits must be a positive integer, got {self.n_splits!r}.")
        put("n_splits", int(self.n_splits))
        if not cs431 and self.n_splits != 5:
            raise ConfigError("n_splits applies to protocol 'cs431' only.")
        if self.feature_subset is not None:
            if not cs431:
                raise ConfigError("feature_subset applies to protocol 'cs431' only.")
            if not (_is_int(self.feature_subset) and self.feature_subset >= 1):
                raise ConfigError(
                    f"feature_subset must be a positive integer, got {self.feature_subset!r}."
                )
            put("feature_subset", int(self.feature_subset))

        n_perm = self.n_permutations
        if n_perm is None:
            n_perm = 0 if cs431 else DEFAULT_N_PERMUTATIONS
        if not (_is_int(n_perm) and n_perm >= 0):
            raise ConfigError(
                f"n_permutations must be a non-negative integer, got {self.n_permutations!r}."
            )
        put("n_permutations", int(n_perm))
        perm_seed = self.seed if self.permutation_seed is None else self.permutation_seed
        if not (_is_int(perm_seed) and perm_seed >= 0):
            raise ConfigError(
                f"permutation_seed must be a non-negative integer, got {self.permutation_seed!r}."
            )
        put("permutation_seed", int(perm_seed))
        if not isinstance(self.fdr_q, Real) or not 0.0 < float(self.fdr_q) < 1.0:
            raise ConfigError(f"fdr_q must be a number in (0, 1), got {self.fdr_q!r}.")
        put("fdr_q", float(self.fdr_q))

    @property
    def hyper_name(self) -> str:
        """Name of the per-voxel hyper-parameter: "alpha" or "n_components"."""
        return "alpha" if self.method == "ridge" else "n_components"

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the resolved configuration (tuples become lists)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

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


#: method name -> factory(config) -> unfitted estimator (fit(X, Y) / predict(X)).
METHODS: dict[str, Callable[[FitConfig], object]] = {
    "ridge": _make_ridge,
    "pls": _make_pls,
}


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
@dataclass
class SplitScores:
    """Per-voxel scores of one model on one scored set.

    Attributes
    ----------
    name : str
        "test", "validation" (recommended); "train{i}", "test{i}", "validation{i}",
        "validation" (cs431).
    kind : str
        "train" (in-sample), "test" (held out of the training images) or "validation".
    test_indices : ndarray of int64 or None
        Training-image indices scored (sorted), None for the validation images.
    train_indices_hash : str
        :func:`pipeline.splits.index_hash` of the training-image indices the model was
        fitted on.
    r, r2_corr, r2 : ndarray, shape (n_targets,)
    hyper : ndarray, shape (n_targets,)
        Chosen alpha (ridge) or component count (PLS) per target.
    hyper_name : str
    n_train, n_test : int
    train_indices_hash : str
    p : ndarray, shape (n_targets,), or None
        One-sided permutation p-value of r per target
        (:func:`pipeline.stats.permutation_pvalues`, ``n_permutations`` permutations
        seeded with ``permutation_seed``); NaN where r is NaN. None when
        ``n_permutations`` is 0 or for in-sample ("train") splits.
    significant : ndarray of bool, shape (n_targets,), or None
        Benjamini-Hochberg decision at ``fdr_q`` over the targets of this split (False
        where p is NaN); None when ``p`` is None.
    n_permutations : int
        Permutations behind ``p`` (0 when there is none).
    """

    name: str
    kind: str
    test_indices: np.ndarray | None
    r: np.ndarray
    r2_corr: np.ndarray
    r2: np.ndarray
    hyper: np.ndarray
    hyper_name: str
    n_train: int
    n_test: int
    train_indices_hash: str = ""
    p: np.ndarray | None = None
    significant: np.ndarray | None = None
    n_permutations: int = 0

    @property
    def test_hash(self) -> str | None:
        """index_hash of ``test_indices`` (None for validation images)."""
        return None if self.test_indices is None else index_hash(self.test_indices)


@dataclass
class FitResult:
    """Outcome of :func:`run_fit`.

    Attributes
    ----------
    config : FitConfig
    splits : list of SplitScores
    predictions : dict
        split name -> (y_true, y_pred) 1-D arrays, only when there is one target.
    timings : dict
        seconds per stage ("fit:<model>", "predict:<split>", "permutation:<split>",
        "total").
    n_alpha_at_edge : dict of str -> int
        model name ("test", "all", "split0", ...) -> number of targets whose ridge alpha
        sits at a grid edge (empty for PLS). Keys are always strings.
    feature_subset : ndarray of int64 or None
        Feature columns used (cs431 with ``feature_subset``), in drawn order.
    n_features : int
        Features the models saw.
    """

    config: FitConfig
    splits: list[SplitScores]
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    n_alpha_at_edge: dict[str, int] = field(default_factory=dict)
    feature_subset: np.ndarray | None = None
    n_features: int = 0

    def split(self, name: str) -> SplitScores:
        """The scores of the split called ``name`` (ConfigError if absent)."""
        for s in self.splits:
            if s.name == name:
                return s
        raise ConfigError(f"no split named {name!r}; have {[s.name for s in self.splits]}.")

    def summary(self) -> list[dict]:
        """Plain per-split summary: n, mean/median of r, r2_corr and r2 (NaN-aware)."""
        rows = []
        for s in self.splits:
            row = {"name": s.name, "kind": s.kind, "n_train": s.n_train, "n_test": s.n_test,
                   "n_targets": int(s.r.size)}
            for metric in METRICS:
                values = getattr(s, metric)
                finite = values[np.isfinite(values)]
                row[f"mean_{metric}"] = float(finite.mean()) if finite.size else None
                row[f"median_{metric}"] = float(np.median(finite)) if finite.size else None
            row["n_significant"] = None if s.significant is None else int(s.significant.sum())
            rows.append(row)
        return rows


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


def _hyper(estimator) -> np.ndarray:
    for attr in ("alpha_", "n_components_"):
        if hasattr(estimator, attr):
            return np.atleast_1d(np.asarray(getattr(estimator, attr))).copy()
    raise ConfigError(
        f"estimator {type(estimator).__name__} exposes neither alpha_ nor n_components_."
    )


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
    t_start = time.perf_counter()
    X_train, X_val, Y_train, Y_val = _check_inputs(X_train, X_val, Y_train, Y_val)
    if chunkable(config, protocol_only=True):
        if progress is not None:
            progress("fit:test", 0, 2 if X_val is None else 4)
        prep = _prepare(X_train, X_val, config, None, None)
        result = fit_voxels(prep, Y_train, Y_val, progress=progress)
        result.timings.update(prep.timings)
        result.timings["total"] = time.perf_counter() - t_start
        return result
    if config.target == "roi_mean":
        Y_train = Y_train.mean(axis=1, keepdims=True)
        if Y_val is not None:
            Y_val = Y_val.mean(axis=1, keepdims=True)
    n = X_train.shape[0]
    all_idx = np.arange(n, dtype=np.int64)
    feature_subset = None

    # plan: list of (model name, fit indices, [(split name, kind, indices or None)])
    plan: list[tuple[str, np.ndarray, list[tuple[str, str, np.ndarray | None]]]] = []
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
        plan.append(("all", all_idx, [("validation", "validation", None)]))

    total = sum(1 + len(jobs) for _, _, jobs in plan)
    done = 0
    timings: dict[str, float] = {}
    scores: list[SplitScores] = []
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    at_edge: dict[str, int] = {}

    def report(stage: str) -> None:
        if progress is not None:
            progress(stage, done, total)

    for model_name, fit_idx, jobs in plan:
        report(f"fit:{model_name}")
        t0 = time.perf_counter()
        full = fit_idx.size == n
        X_fit = X_train if full else X_train[fit_idx]
        estimator = METHODS[config.method](config).fit(X_fit, Y_train[fit_idx])
        del X_fit
        timings[f"fit:{model_name}"] = time.perf_counter() - t0
        done += 1
        if hasattr(estimator, "n_alpha_at_edge_"):
            at_edge[str(model_name)] = int(estimator.n_alpha_at_edge_)
        hyper = _hyper(estimator)
        train_hash = index_hash(fit_idx)
        for split_name, kind, idx in jobs:
            report(f"predict:{split_name}")
            t0 = time.perf_counter()
            if idx is None:
                X_eval, y_true = X_val, Y_val
            else:
                X_eval, y_true = X_train[idx], Y_train[idx]
            y_pred = np.asarray(estimator.predict(X_eval), dtype=np.float64).reshape(y_true.shape)
            r = np.atleast_1d(pearson_r(y_true, y_pred))
            timings[f"predict:{split_name}"] = time.perf_counter() - t0
            p_values = significant = None
            n_perm = 0
            if config.n_permutations > 0 and kind != "train":
                t0 = time.perf_counter()
                n_perm = config.n_permutations
                p_values = np.atleast_1d(
                    permutation_pvalues(y_true, y_pred, n_perm, config.permutation_seed)
                )
                significant = fdr_significant(p_values, config.fdr_q)
                timings[f"permutation:{split_name}"] = time.perf_counter() - t0
            scores.append(
                SplitScores(
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
                )
            )
            if y_true.shape[1] == 1:
                predictions[split_name] = (y_true[:, 0].copy(), y_pred[:, 0].copy())
            done += 1
        del estimator
    report("done")
    timings["total"] = time.perf_counter() - t_start
    return FitResult(
        config=config,
        splits=scores,
        predictions=predictions,
        timings=timings,
        n_alpha_at_edge=at_edge,
        feature_subset=feature_subset,
        n_features=int(X_train.shape[1]),
    )


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
    hyper-parameters) on voxel targets (``protocol_only``: ignore the target)."""
    return config.protocol == "recommended" and (protocol_only or config.target == "voxels")


def _estimator(config: FitConfig, block: int | None):
    est = METHODS[config.method](config)
    if block is not None:
        est.chunk_size = int(block)
    return est


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
    v = Y_train.shape[1]
    blocks = list(_blocks(v, prepared.block))
    est = _estimator(config, prepared.block)
    total = sum(1 + len(m.jobs) for m in prepared.models)
    done = 0
    timings: dict[str, float] = {}
    scores: list[SplitScores] = []
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    at_edge: dict[str, int] = {}

    def report(stage: str) -> None:
        if progress is not None:
            progress(stage, done, total)

    for model in prepared.models:
        report(f"fit:{model.name}")
        t0 = time.perf_counter()
        # Every step runs per column block on a contiguous copy of the block, so a block
        # gives the same bits whichever chunk it arrives in (even numpy's reductions
        # differ in the last bit between a strided column and a contiguous one).
        Y_fit = Y_train[model.fit_idx]
        extra = {"cache": {}} if isinstance(model.kernel, PLSKernel) else {}  # fold kernels once
        fits = [est.fit_targets(model.kernel, np.ascontiguousarray(Y_fit[:, sl]), **extra)
                for sl in blocks]
        del Y_fit, extra
        timings[f"fit:{model.name}"] = time.perf_counter() - t0
        done += 1
        if config.method == "ridge":
            at_edge[str(model.name)] = int(sum(f.n_at_edge for f in fits))
        hyper = np.concatenate([np.atleast_1d(np.asarray(f.hyper)) for f in fits])
        train_hash = index_hash(model.fit_idx)
        for split_name, kind, idx in model.jobs:
            report(f"predict:{split_name}")
            t0 = time.perf_counter()
            y_true = Y_val if idx is None else Y_train[idx]
            K_eval = model.cross[split_name]
            y_pred = np.empty_like(y_true)
            r, r2 = np.empty(v), np.empty(v)
            perm = config.n_permutations > 0 and kind != "train"
            p_values = np.empty(v) if perm else None
            t_perm = 0.0
            for sl, f in zip(blocks, fits):
                yt = np.ascontiguousarray(y_true[:, sl])
                yp = K_eval @ f.dual + f.y_mean
                y_pred[:, sl] = yp
                r[sl] = pearson_r(yt, yp)
                r2[sl] = r2_score(yt, yp)
                if perm:
                    t1 = time.perf_counter()
                    p_values[sl] = permutation_pvalues(yt, yp, config.n_permutations,
                                                       config.permutation_seed)
                    t_perm += time.perf_counter() - t1
            timings[f"predict:{split_name}"] = time.perf_counter() - t0 - t_perm
            significant = None
            n_perm = 0
            if perm:
                n_perm = config.n_permutations
                significant = fdr_significant(p_values, config.fdr_q)
                timings[f"permutation:{split_name}"] = t_perm
            scores.append(
                SplitScores(
                    name=split_name,
                    kind=kind,
                    test_indices=None if idx is None else idx.copy(),
                    r=r,
                    r2_corr=r * r,
                    r2=r2,
                    hyper=hyper,
                    hyper_name=config.hyper_name,
                    n_train=int(model.fit_idx.size),
                    n_test=int(y_true.shape[0]),
                    train_indices_hash=train_hash,
                    p=p_values,
                    significant=significant,
                    n_permutations=n_perm,
                )
            )
            if v == 1:
                predictions[split_name] = (y_true[:, 0].copy(), y_pred[:, 0].copy())
            done += 1
        del fits
    report("done")
    timings["total"] = time.perf_counter() - t_start
    return FitResult(
        config=config,
        splits=scores,
        predictions=predictions,
        timings=timings,
        n_alpha_at_edge=at_edge,
        feature_subset=None,
        n_features=prepared.n_features,
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
        splits.append(dataclasses.replace(
            s0, r=cat("r"), r2_corr=cat("r2_corr"), r2=cat("r2"), hyper=cat("hyper"), p=p,
            significant=None if p is None else fdr_significant(p, config.fdr_q),
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
    chunks in parallel (:func:`tracker.sweep.chunked_fit`). ``roi_mean`` targets are one
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
