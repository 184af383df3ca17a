"""Per-voxel questions: best voxels, one voxel across runs, paired voxels of two runs,
score volumes, and per-voxel tables for export.

Voxel ids are vim-1's 1-based MATLAB column-major linear indices into the subject's
64 x 64 x 18 volume (:func:`tracker.analysis.scores.voxel_coords`); ids are per subject.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.core.errors import ConfigError
from tracker.analysis import fields, queries
from tracker.analysis.fields import SCORE_FIELDS
from tracker.analysis.scores import VOLUME_SHAPE, RunScores, load_scores, voxel_coords
from tracker.db.documents import METRICS, decode_column
from tracker.db.store import Store

#: run fields copied onto per-voxel rows
RUN_COLUMNS = ("subject", "roi", "method", "preprocessing", "layer")


def run_info(run: Mapping[str, Any]) -> dict[str, Any]:
    """The identity of a fit run as flat columns."""
    return {"run_id": run["_id"], **{c: fields.get_path(run, fields.GROUP_FIELDS[c])
                                     for c in RUN_COLUMNS}}


def select_runs(store: Store, run_ids: Sequence[str] = (), query: Mapping[str, Any] | None = None,
                roi: str | None = None, target: str | None = "voxels") -> list[dict]:
    """Completed fits named by id (or unique prefix), or else matching a filter."""
    if run_ids:
        return [voxel_fit(*store.get_run(rid), rid) for rid in run_ids]
    return queries.completed_fits(store, roi, target, query)


def voxel_fit(collection: str, doc: dict, asked: str) -> dict:
    """``doc`` if it is a per-voxel fit, else a ConfigError saying what the run is."""
    if collection != "fit_runs":
        raise ConfigError(f"run {asked!r} is a feature run: per-voxel scores belong to fits")
    if doc.get("target") == "roi_mean":
        raise ConfigError(f"run {doc['_id']} is an ROI-average fit (target roi_mean): it scores "
                          f"one {doc.get('roi')} average, not voxels; `tracker runs show "
                          f"{doc['_id']}` shows its scores")
    return doc


def top_voxels(store: Store, runs: Sequence[dict], split: str = "validation", metric: str = "r",
               n: int = 20, lowest: bool = False) -> list[dict[str, Any]]:
    """The ``n`` best (or worst) voxels across ``runs`` by ``metric`` on ``split``.

    Returns
    -------
    rows
        Best first: ``rank``, run identity, ``voxel_id``, 0-based ``i, j, k`` in the
        64 x 64 x 18 volume, ``r``, ``r2_corr``, ``r2``, ``hyper`` and, where the fit
        stored them, ``p`` and ``significant``.
    """
    fields.check_choice("metric", metric, METRICS)
    fields.check_choice("split", split, queries.SPLITS)
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    scores = load_scores(store, [r["_id"] for r in runs], split, SCORE_FIELDS)
    if not scores:
        return []
    order = [s for r in runs if (s := scores.get(r["_id"])) is not None]
    values = np.concatenate([s.values[metric] for s in order])
    owner = np.concatenate([np.full(s.voxel_ids.size, k) for k, s in enumerate(order)])
    offset = np.concatenate([np.arange(s.voxel_ids.size) for s in order])
    finite = np.flatnonzero(np.isfinite(values))
    key = values[finite] if lowest else -values[finite]
    pick = finite[np.lexsort((offset[finite], owner[finite], key))[:n]]
    by_id = {r["_id"]: r for r in runs}
    rows = []
    for rank, idx in enumerate(pick, start=1):
        s = order[owner[idx]]
        rows.append({"rank": rank, **run_info(by_id[s.run_id]), "split": split,
                     **_voxel_row(s, int(offset[idx]))})
    return rows


def _voxel_row(s: RunScores, at: int) -> dict[str, Any]:
    vid = int(s.voxel_ids[at])
    i, j, k = (int(c[0]) for c in voxel_coords([vid]))
    row: dict[str, Any] = {"voxel_id": vid, "i": i, "j": j, "k": k}
    for f in SCORE_FIELDS:
        v = s.values.get(f)
        row[f] = None if v is None or not np.isfinite(v[at]) else float(v[at])
    if row["significant"] is not None:
        row["significant"] = bool(row["significant"])
    return row


def voxel_across_runs(store: Store, voxel_id: int, runs: Sequence[dict],
                      split: str | None = None) -> list[dict[str, Any]]:
    """One voxel in every given run that scored it.

    The runs' voxel-id columns are read and searched here, then only the field columns of
    the chunks holding the voxel.

    Returns one row per (run, split): run identity, ``split``, ``r``, ``r2_corr``,
    ``r2``, ``hyper``, ``p``, ``significant`` (None where not stored or not finite),
    sorted by run id and split.
    """
    if split is not None:
        fields.check_choice("split", split, queries.SPLITS)
    voxel_coords([voxel_id])  # validates the id
    by_id = {r["_id"]: r for r in runs}
    found: list[tuple[str, str, dict[str, Any]]] = []
    splits = [split] if split is not None else _split_names(runs)
    id_docs = store.columns(list(by_id), splits, ["voxel_ids"])
    at: dict[tuple[str, str, int], int] = {}
    for doc in id_docs:
        hit = np.flatnonzero(decode_column(doc) == int(voxel_id))
        if hit.size:
            at[(doc["run_id"], doc["split"], doc["chunk"])] = int(hit[0])
    if at:
        values: dict[tuple[str, str], dict[str, Any]] = {}
        hit_runs = sorted({r for r, _, _ in at})
        for doc in store.columns(hit_runs, sorted({s for _, s, _ in at}), SCORE_FIELDS):
            pos = at.get((doc["run_id"], doc["split"], doc["chunk"]))
            if pos is not None:
                v = float(decode_column(doc)[pos])
                values.setdefault((doc["run_id"], doc["split"]), {})[doc["field"]] = (
                    v if np.isfinite(v) else None)
        found += [(run_id, sp, vals) for (run_id, sp), vals in values.items()]
    rows = []
    for run_id, sp, vals in sorted(found, key=lambda x: (x[0], x[1])):
        row = {**run_info(by_id[run_id]), "split": sp, "voxel_id": int(voxel_id)}
        row.update({f: vals.get(f) for f in SCORE_FIELDS})
        if row["significant"] is not None:
            row["significant"] = bool(row["significant"])
        rows.append(row)
    return rows


def _split_names(runs: Sequence[dict]) -> list[str]:
    """The split names a fit stored scores for (its summary and split records name them)."""
    names = dict.fromkeys(queries.SPLITS)
    for run in runs:
        names.update(dict.fromkeys(run.get("summary") or {}))
        names.update(dict.fromkeys(s.get("name") for s in run.get("splits") or [] if s.get("name")))
    return list(names)


def paired_scores(store: Store, run_a: dict, run_b: dict, split: str = "validation",
                  metric: str = "r") -> dict[str, Any]:
    """Scores of two runs over the voxels both scored, paired by voxel id.

    Returns
    -------
    dict
        ``voxel_ids`` (sorted), ``a``, ``b`` (lists of floats, NaN -> None), the two run
        identities, and ``stats``: :func:`pipeline.evaluation.intervals.paired_comparison` of ``a - b``.
    """
    from pipeline.evaluation.intervals import paired_comparison

    fields.check_choice("metric", metric, METRICS)
    fields.check_choice("split", split, queries.SPLITS)
    check_pairable(run_a, run_b)
    scores = load_scores(store, [run_a["_id"], run_b["_id"]], split, [metric])
    missing = [r["_id"] for r in (run_a, run_b) if r["_id"] not in scores]
    if missing:
        raise ConfigError(f"run(s) {', '.join(missing)} have no {split} scores")
    sa, sb = scores[run_a["_id"]], scores[run_b["_id"]]
    ids, ia, ib = np.intersect1d(sa.voxel_ids, sb.voxel_ids, assume_unique=True, return_indices=True)
    a, b = sa.values[metric][ia], sb.values[metric][ib]
    return {"voxel_ids": ids.tolist(), "a": _floats(a), "b": _floats(b), "metric": metric,
            "split": split, "run_a": run_info(run_a), "run_b": run_info(run_b),
            "stats": paired_comparison(a, b, n_boot=1000, seed=0).to_dict()}


def check_pairable(run_a: Mapping[str, Any], run_b: Mapping[str, Any]) -> None:
    """Refuse to pair voxels of two runs that do not score the same voxels: another
    subject (voxel ids are per subject), another ROI, or another target."""
    for field, why in (("target", "an ROI-average fit has no voxels to pair"),
                       ("subject", "voxel ids are per subject: the same id is another voxel"),
                       ("roi", "the two runs fit different voxels")):
        a, b = run_a.get(field), run_b.get(field)
        if a != b:
            raise ConfigError(f"runs {run_a['_id']} ({field} {a}) and {run_b['_id']} ({field} {b}) "
                              f"cannot be paired voxel by voxel: {why}; pick two runs of the same "
                              "subject, ROI and target")
    if run_a.get("target") == "roi_mean":
        raise ConfigError(f"runs {run_a['_id']} and {run_b['_id']} are ROI-average fits "
                          "(target roi_mean): there are no voxels to pair")


def volume(store: Store, run: dict, split: str = "validation", metric: str = "r") -> np.ndarray:
    """A run's scores placed in the 64 x 64 x 18 volume (NaN where no voxel was fit)."""
    fields.check_choice("metric", metric, METRICS)
    scores = load_scores(store, [run["_id"]], split, [metric]).get(run["_id"])
    vol = np.full(VOLUME_SHAPE, np.nan)
    if scores is not None:
        vol[voxel_coords(scores.voxel_ids)] = scores.values[metric]
    return vol


def voxel_table(store: Store, runs: Sequence[dict], splits: Sequence[str] = queries.SPLITS
                ) -> dict[str, list]:
    """Every voxel of ``runs`` as columns: run identity, split, voxel id, i, j, k, fields.

    Values are float64 as the fit computed them. Fields a run did not store (``p``,
    ``significant``) are None in its rows.
    """
    cols: dict[str, list] = {c: [] for c in ("run_id", *RUN_COLUMNS, "split", "voxel_id",
                                              "i", "j", "k", *SCORE_FIELDS)}
    by_id = {r["_id"]: r for r in runs}
    for split in splits:
        scores = load_scores(store, list(by_id), split, SCORE_FIELDS)
        for run_id in sorted(scores):
            s, info = scores[run_id], run_info(by_id[run_id])
            n = s.voxel_ids.size
            for c in ("run_id", *RUN_COLUMNS):
                cols[c].extend([info[c]] * n)
            cols["split"].extend([split] * n)
            cols["voxel_id"].extend(s.voxel_ids.tolist())
            for c, arr in zip("ijk", voxel_coords(s.voxel_ids)):
                cols[c].extend(arr.tolist())
            for f in SCORE_FIELDS:
                v = s.values.get(f)
                cols[f].extend([None] * n if v is None else
                               _bools(v) if f == "significant" else _floats(v))
    return cols


def _floats(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(x) else float(x) for x in a]


def _bools(a: np.ndarray) -> list[bool | None]:
    return [None if not np.isfinite(x) else bool(x) for x in a]
