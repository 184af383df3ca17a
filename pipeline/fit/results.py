"""What a fit returns: per-split scores (:class:`SplitScores`) and :class:`FitResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.core.vocab import METRICS
from pipeline.evaluation.splits import index_hash
from pipeline.fit.config import FitConfig

__all__ = [
    "FitResult",
    "SplitScores",
    "held_out",
]


def held_out(kind: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray | None]:
    """``y_true`` / ``y_pred`` fields of a :class:`SplitScores`: float32 copies for the
    validation images, None for any other kind of split."""
    if kind != "validation":
        return {"y_true": None, "y_pred": None}
    return {"y_true": np.asarray(y_true, dtype=np.float32).copy(),
            "y_pred": np.asarray(y_pred, dtype=np.float32).copy()}



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
        :func:`pipeline.evaluation.splits.index_hash` of the training-image indices the model was
        fitted on.
    r, r2_corr, r2 : ndarray, shape (n_targets,)
    hyper : ndarray, shape (n_targets,)
        Chosen alpha (ridge) or component count (PLS) per target.
    hyper_name : str
    n_train, n_test : int
    train_indices_hash : str
    p : ndarray, shape (n_targets,), or None
        One-sided permutation p-value of r per target
        (:func:`pipeline.evaluation.significance.permutation_pvalues`, ``n_permutations`` permutations
        seeded with ``permutation_seed``); NaN where r is NaN. None when
        ``n_permutations`` is 0 or for in-sample ("train") splits.
    significant : ndarray of bool, shape (n_targets,), or None
        Benjamini-Hochberg decision at ``fdr_q`` over the targets of this split (False
        where p is NaN); None when ``p`` is None.
    n_permutations : int
        Permutations behind ``p`` (0 when there is none).
    y_true, y_pred : ndarray of float32, shape (n_test, n_targets), or None
        Measured and predicted responses of the validation images (kind "validation"
        only: every fit shares those images, so two fits can be tested voxel by voxel on
        them later, :func:`pipeline.evaluation.paired.swap_test`); None otherwise.
    extra : dict of str -> ndarray, shape (n_targets,)
        Method-specific per-target columns stored beside the scores (fwRF: the chosen
        field, :data:`pipeline.fit.fwrf.RF_COLUMNS`); empty for ridge and PLS.
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
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    y_true: np.ndarray | None = None
    y_pred: np.ndarray | None = None

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

    @classmethod
    def from_run(cls, config: FitConfig, run, feature_subset: np.ndarray | None,
                 n_features: int) -> FitResult:
        """The result of a finished protocol run (its ``scores``, ``predictions``,
        ``timings`` and ``at_edge``)."""
        return cls(config=config, splits=run.scores, predictions=run.predictions,
                   timings=run.timings, n_alpha_at_edge=run.at_edge,
                   feature_subset=feature_subset, n_features=int(n_features))

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
