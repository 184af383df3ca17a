"""Noise ceilings applied at query time (never baked into stored scores).

vim-1 releases only repeat-averaged responses, so it has no ceiling; where one was
estimated (synthetic data with repeats, a user's own re-estimated responses) it is a
``noise_ceilings`` record per dataset and subject::

    {"dataset_id": ..., "subject": "S1", "split": "validation", "method": "nsd",
     "n_reps": 13, "n_average": 13, "voxel_ids": [...], "r_ceiling": [...], "created": <date>}

A ceiling depends on how many repeats were averaged into the scored responses, so there
is one record per split kind: ``validation`` (vim-1: about 13 repeats) and ``test``
(held-out training images: 2 repeats); ``test3`` or ``validation0`` use their kind's.

``r_ceiling`` is the correlation ceiling (``sqrt(NC / 100)``, :mod:`pipeline.evaluation`).
In the units of a metric the ceiling is ``r_ceiling`` for ``r`` and ``r_ceiling**2``
for ``r2_corr`` and ``r2``. The newest record of a (dataset, subject) is used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tracker.db.store import Store

NOT_AVAILABLE = "n/a"


def split_kind(split: str) -> str:
    """``"test3"`` -> ``"test"``, ``"validation"`` -> ``"validation"``."""
    return re.sub(r"\d+$", "", split)


class CeilingTable:
    """Noise ceilings looked up (and cached) per (dataset, subject).

    Parameters
    ----------
    store
        The database (collection ``noise_ceilings``).
    """

    def __init__(self, store: Store, split: str = "validation") -> None:
        self.store = store
        self.split_kind = split_kind(split)
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray] | None] = {}

    def _record(self, dataset_id: Any, subject: str) -> tuple[np.ndarray, np.ndarray] | None:
        key = (dataset_id, subject)
        if key not in self._cache:
            docs = self.store.noise_ceilings(
                {"dataset_id": dataset_id, "subject": subject, "split": self.split_kind})
            if docs:
                ids = np.asarray(docs[0]["voxel_ids"], dtype=np.int64)
                r_c = np.array(docs[0]["r_ceiling"], dtype=np.float64)
                order = np.argsort(ids)
                self._cache[key] = (ids[order], r_c[order])
            else:
                self._cache[key] = None
        return self._cache[key]

    def known(self, run: Mapping[str, Any]) -> bool:
        """Whether a ceiling is recorded for the run's dataset and subject."""
        return self._record(run.get("dataset_id"), run.get("subject")) is not None

    def for_run(self, run: Mapping[str, Any], voxel_ids: np.ndarray, metric: str) -> np.ndarray | None:
        """The ceiling of each voxel of ``run`` in ``metric`` units (NaN where unknown).

        Returns None when no ceiling is recorded for the run's dataset and subject.
        """
        rec = self._record(run.get("dataset_id"), run.get("subject"))
        if rec is None:
            return None
        ids, r_c = rec
        ids_q = np.asarray(voxel_ids, dtype=np.int64)
        pos = np.clip(np.searchsorted(ids, ids_q), 0, max(ids.size - 1, 0))
        found = ids.size > 0
        out = np.full(ids_q.shape, np.nan)
        if found:
            hit = ids[pos] == ids_q
            out[hit] = r_c[pos[hit]]
        return out if metric == "r" else out ** 2


def fraction(scores: np.ndarray, ceiling: np.ndarray) -> tuple[float | None, float | None]:
    """(mean ceiling, mean score / mean ceiling) over voxels where both are finite."""
    ok = np.isfinite(scores) & np.isfinite(ceiling)
    if not ok.any() or np.mean(ceiling[ok]) <= 0:
        return None, None
    mean_c = float(np.mean(ceiling[ok]))
    return mean_c, float(np.mean(scores[ok]) / mean_c)


def ceiling_summary(store: Store, runs: Sequence[Mapping[str, Any]], scores: Iterable[Any],
                    metric: str, table: CeilingTable | None = None) -> dict[str, float | None]:
    """``{"ceiling", "frac_ceiling"}`` of a group of runs (None where no ceiling exists).

    Parameters
    ----------
    runs
        The group's run documents (``dataset_id``, ``subject``).
    scores
        Their :class:`tracker.analysis.scores.RunScores` (holding ``metric``).
    """
    table = table or CeilingTable(store)
    by_id = {r["_id"]: r for r in runs}
    vals, ceils = [], []
    for s in scores:
        c = table.for_run(by_id[s.run_id], s.voxel_ids, metric)
        if c is not None and metric in s.values:
            vals.append(s.values[metric])
            ceils.append(c)
    if not vals:
        return {"ceiling": None, "frac_ceiling": None}
    mean_c, frac = fraction(np.concatenate(vals), np.concatenate(ceils))
    return {"ceiling": mean_c, "frac_ceiling": frac}
