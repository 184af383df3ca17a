"""Questions asked of the database: run selection, comparisons across groups of fits,
and the aggregation pipelines the server runs.

Only COMPLETED runs count: scores of a run that failed, was interrupted or was
superseded are never included (they are selected through the ids of completed runs).

What runs where:

- server side (aggregation pipelines): per-fit summaries (:func:`fit_summaries`),
  grouping and sorting of those summaries (:func:`group_summaries`);
- client side: pooled per-voxel statistics (:func:`compare`: exact medians and seeded
  bootstrap intervals), read from the score columns (``bson.Binary``; one metric's
  documents only).

SecantusDB bug avoided here: a path through an array of subdocuments evaluates to
missing inside aggregation expressions, so no pipeline uses one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.core.vocab import METRICS, SPLITS
from tracker.analysis import conditions, names, pooling
from tracker.analysis.ceilings import CeilingTable, fraction
from tracker.analysis.fields import GROUP_FIELDS, RUN_KINDS, check_choice, get_path
from tracker.analysis.filters import parse_where
from tracker.analysis.names import FIELD_KINDS
from tracker.analysis.pooling import Pooled, pool
from tracker.analysis.scores import RunScores, load_scores
from tracker.db.documents import preprocessing_label, summarize
from tracker.db.store import Store

#: above this many resampled values a bootstrap gives way to analytic intervals
BOOT_BUDGET = 10_000_000


def run_filter(where: Iterable[str] | None = None, **exact: str | Sequence[str] | None
               ) -> dict[str, Any]:
    """A fit-run filter from ``--where`` expressions and exact-match options.

    Parameters
    ----------
    where
        Expressions of the safe ``--where`` grammar (:func:`tracker.analysis.filters.parse_where`).
    **exact
        ``GROUP_FIELDS`` names -> value (None ignored), e.g. ``subject="s1"``: names are
        resolved by :mod:`tracker.analysis.names` (``s1`` -> ``S1``); ``roi`` also takes
        several comma-separated ROIs or ``all`` (no ROI condition).

    Raises
    ------
    ConfigError
        An unknown name, or a ``--where`` on a field that one of the options also sets
        (``--roi V4 --where 'roi=V1'``: which one was meant?).
    """
    query: dict[str, Any] = {}
    for name, value in exact.items():
        if value is None:
            continue
        kind = FIELD_KINDS.get(name)
        values = (names.resolve_many(kind, value, f"--{name}") if kind is not None
                  else [value] if isinstance(value, str) else list(value))
        if values is None:  # all
            continue
        query[GROUP_FIELDS[name]] = values[0] if len(values) == 1 else {"$in": values}
    where = [w for w in (where or []) if w.strip()]
    if where:
        parsed = parse_where(where, "fit")
        clash = sorted(set(query) & filter_paths(parsed))
        if clash:
            opts = [n for n in exact if exact[n] is not None and GROUP_FIELDS[n] in clash]
            raise ConfigError(f"--where names {', '.join(clash)}, which "
                              f"{', '.join('--' + o for o in opts)} also sets: use one of them")
        query = {"$and": [query, parsed]} if query else parsed
    return query


def filter_paths(query: Mapping[str, Any]) -> set[str]:
    """The document paths a filter names (at any depth of ``$and`` / ``$or``)."""
    out: set[str] = set()
    for key, value in query.items():
        if key in ("$and", "$or"):
            for part in value:
                out |= filter_paths(part)
        elif not key.startswith("$"):
            out.add(key)
    return out


def completed_fits(store: Store, roi: str | None = None, target: str | None = "voxels",
                   extra: Mapping[str, Any] | None = None,
                   fields: Iterable[str] | None = None) -> list[dict]:
    """Completed fit runs, optionally for one ROI and target, newest first.

    ``fields`` (dotted paths) limits what is read of each run (``_id`` always comes);
    default: everything but provenance, split indices and predictions.
    """
    query: dict[str, Any] = {"status": "COMPLETED", **(extra or {})}
    if roi is not None:
        query["roi"] = roi
    if target is not None:
        query["target"] = target
    projection: dict[str, int] = {"provenance": 0, "splits": 0, "predictions": 0}
    if fields is not None:
        projection = {f: 1 for f in ("_id", "created", *fields)}
    return store.find_runs("fit_runs", query, projection=projection)


def intervals(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
              ) -> dict[str, Any]:
    """Confidence intervals of the mean and median over voxels.

    A seeded percentile bootstrap (:func:`pipeline.evaluation.intervals.bootstrap_ci`); when
    ``n * n_boot`` exceeds :data:`BOOT_BUDGET` (10,000 voxels at 1000 resamples) the mean gets
    ``mean +- z * SEM`` and the median the distribution-free binomial order-statistic
    interval instead (``ci_method`` says which). ``n_boot=0`` gives no intervals.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    keys = ("mean_low", "mean_high", "median_low", "median_high")
    if n_boot <= 0 or v.size == 0:
        return {**dict.fromkeys(keys), "ci_method": None, "ci_level": None}
    if v.size * n_boot <= BOOT_BUDGET:
        from pipeline.evaluation.intervals import bootstrap_ci

        mean = bootstrap_ci(v, "mean", n_boot, level, seed)
        med = bootstrap_ci(v, "median", n_boot, level, seed)
        lows = (mean.low, mean.high, med.low, med.high)
        return {**dict(zip(keys, lows)), "ci_method": f"bootstrap({n_boot}, seed={seed})",
                "ci_level": level}
    from scipy import stats as sp_stats

    n = v.size
    half = sp_stats.norm.ppf(0.5 + level / 2) * v.std(ddof=1) / math.sqrt(n)
    lo_k, hi_k = sp_stats.binom.ppf([(1 - level) / 2, (1 + level) / 2], n, 0.5).astype(int)
    srt = np.partition(v, [max(lo_k - 1, 0), min(hi_k, n - 1)])
    mean = float(v.mean())
    return {"mean_low": mean - half, "mean_high": mean + half,
            "median_low": float(srt[max(lo_k - 1, 0)]), "median_high": float(srt[min(hi_k, n - 1)]),
            "ci_method": "analytic (normal mean, binomial median)", "ci_level": level}


def compare(
    store: Store,
    by: Sequence[str],
    roi: str | Sequence[str] | None = "V4",
    split: str = "validation",
    metric: str = "r",
    target: str = "voxels",
    extra: Mapping[str, Any] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    over: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Per-voxel statistics of groups of completed fits, one group per condition.

    Every identity field (:mod:`tracker.analysis.conditions`) that varies among the
    selected fits must be in ``by`` (one group per value) or ``over`` (averaged per
    voxel); otherwise a ConfigError names each varying field and its values. Inside a
    group each (subject, voxel) counts once (:func:`tracker.analysis.pooling.pool`).

    Parameters
    ----------
    store
        The database.
    by
        Fields to group by: condition fields, ``subject``, ``roi``, ``feature_run``.
    roi, target, extra
        Which fits: ROI (a name, several names, or None: all), target, and any further
        filter (``run_filter``).
    split, metric
        ``test`` / ``validation``; ``r``, ``r2_corr`` or ``r2``.
    n_boot, seed, level
        Bootstrap intervals of the mean and median (see :func:`intervals`); 0 skips.
    over
        Condition fields allowed to vary inside a group: their fits are averaged per
        voxel first (e.g. ``("seed",)``).

    Returns
    -------
    rows
        One dict per group: the group fields, ``n_runs``, ``n`` (distinct voxels),
        ``mean``, ``sem``, ``std``, ``median``, quantiles, ``max``, interval bounds
        ``mean_low`` ... ``median_high``, ``n_significant`` / ``frac_significant``
        (None unless every fit stored BH flags), ``ceiling`` and ``frac_ceiling``
        (None where no ceiling is recorded), ``chance_r2_corr``, ``pooling`` (what was
        done to keep one value per voxel), ``untrained`` (``untrained (random:SEED)``
        or None), ``condition`` (the fields held fixed) and the run ids.
    """
    check_choice("metric", metric, METRICS)
    sel = select_conditions(store, by, roi, split, target, extra, over)
    if not sel.groups:
        return []
    pools = sel.pool(store, metric)
    rows = []
    for key, members in sel.groups.items():
        p = pools[key]
        rows.append({**dict(zip(by, key)), **pooled_row(p, members, sel, split, metric,
                                                          n_boot, seed, level, over)})
    return rows


def pooled_row(p: Pooled, members: list[dict], sel: Selection, split: str, metric: str,
               n_boot: int, seed: int, level: float, over: Sequence[str]) -> dict[str, Any]:
    """The :func:`compare` row of one pooled group (without its group fields)."""
    values = p.finite
    chance = [c for r in members if (c := get_path(r, f"summary.{split}.chance_r2_corr")) is not None]
    sig = None if p.significant is None else int(p.significant.sum())
    ceil, frac = (None, None) if p.ceiling is None else fraction(p.values, p.ceiling)
    idents = [sel.idents[r["_id"]] for r in members]
    return {
        "n_runs": p.n_runs,
        **summarize(values),
        **intervals(values, n_boot, seed, level),
        "n_significant": sig,
        "frac_significant": sig / values.size if sig is not None and values.size else None,
        "ceiling": ceil, "frac_ceiling": frac,
        "metric": metric,
        "split": split,
        "chance_r2_corr": float(np.mean(chance)) if chance else None,
        "pooling": p.policy(over),
        "untrained": next((u for i in idents if (u := conditions.untrained(i))), None),
        "condition": conditions.held_fixed(idents),
        "run_ids": [r["_id"] for r in members],
    }


@dataclass
class Selection:
    """Completed fits grouped into conditions (:func:`select_conditions`)."""

    runs: list[dict]
    idents: dict[str, dict[str, str]]
    groups: dict[tuple, list[dict]]
    split: str
    #: run id -> voxel ids, filled by :meth:`pool`
    ids: dict[str, np.ndarray] = field(default_factory=dict)

    def pool(self, store: Store, metric: str) -> dict[tuple, Pooled]:
        """Each group pooled to one ``metric`` value per distinct (subject, voxel)."""
        scores, ids = read_scores(store, self.runs, self.split, metric)
        self.ids = ids
        table = CeilingTable(store, self.split)
        known = any(table.known(r) for r in self.runs)

        def ceiling(run, vid):
            return table.for_run(run, vid, metric) if known else None

        return {key: pool(members, scores, ids, metric, ceiling if known else None)
                for key, members in self.groups.items()}


def select_conditions(store: Store, by: Sequence[str], roi: str | Sequence[str] | None,
                      split: str, target: str | None, extra: Mapping[str, Any] | None,
                      over: Sequence[str] = (), by_hint: bool = True) -> Selection:
    """Completed fits grouped by ``by``, refused if a group mixes conditions."""
    check_choice("split", split, SPLITS)
    if isinstance(roi, (list, tuple)):
        roi_q: Any = {"$in": list(roi)} if len(roi) != 1 else roi[0]
    else:
        roi_q = roi
    fields = (*conditions.READ_FIELDS, f"summary.{split}.chance_r2_corr")
    runs = completed_fits(store, roi_q, target, extra, fields=fields)
    idents = conditions.identities(store, runs)
    choices = conditions.by_choices(idents.values())
    conditions.check_names("--by", by, choices)
    conditions.check_names("--over", over, choices)
    both = sorted(set(by) & set(over))
    if both:
        raise ConfigError(f"--by and --over both name {', '.join(both)}: a field is either "
                          "a group (--by) or averaged over (--over)")
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        groups[tuple(conditions.by_value(run, idents[run["_id"]], b) for b in by)].append(run)
    groups = {k: groups[k] for k in sorted(groups)}
    conditions.check_groups({k: [idents[r["_id"]] for r in g] for k, g in groups.items()}, by, over,
                            by_hint)
    return Selection(runs, idents, groups, split)


def series_by(store: Store, by: Sequence[str], roi: str | Sequence[str] | None,
              target: str | None, extra: Mapping[str, Any] | None, split: str = "validation"
              ) -> tuple[list[str], dict[str, str]]:
    """``by`` plus every identity field that varies among the selected fits, and the
    fields held fixed: the grouping of a figure that shows one condition per series.

    Fields that follow from another varying one (a method's grid) are left out of the
    grouping (they change with it). Returns ``(by fields, held-fixed fields)``.
    """
    query: dict[str, Any] = {"status": "COMPLETED", **(extra or {})}
    if roi is not None:
        query["roi"] = {"$in": list(roi)} if isinstance(roi, (list, tuple)) else roi
    if target is not None:
        query["target"] = target
    runs = store.find_runs("fit_runs", query, projection={f: 1 for f in conditions.READ_FIELDS})
    idents = list(conditions.identities(store, runs).values())
    vary = conditions.varying(idents, by)
    primary, _ = conditions.primary_fields(idents, vary)
    return [*by, *primary], conditions.held_fixed(idents, exclude=(*by, *vary))


def compare_series(store: Store, by: Sequence[str], roi: str | Sequence[str] | None = "V4",
                   split: str = "validation", metric: str = "r", target: str = "voxels",
                   extra: Mapping[str, Any] | None = None, **kw: Any) -> tuple[list[dict], list[str]]:
    """:func:`compare` grouped by ``by`` plus whatever else varies (:func:`series_by`), for
    summaries that must never refuse: returns ``(rows, by fields used)``."""
    fields, _ = series_by(store, by, roi, target, extra, split)
    return compare(store, fields, roi=roi, split=split, metric=metric, target=target,
                   extra=extra, **kw), fields


def read_scores(store: Store, runs: Sequence[dict], split: str, metric: str
                ) -> tuple[dict[str, RunScores], dict[str, np.ndarray]]:
    """``metric`` (and BH flags) of ``runs`` on ``split``, and each run's voxel ids.

    Voxel ids are read once per voxel set (:func:`tracker.analysis.pooling.voxel_sets`:
    fits of one response file, ROI and target scored the same voxels in the same order).
    """
    sets = pooling.voxel_sets(runs)
    first = [v[0] for v in sets.values()]
    rest = [rid for v in sets.values() for rid in v[1:]]
    scores = load_scores(store, first, split, [metric, "significant"], ids=True)
    if rest:
        scores.update(load_scores(store, rest, split, [metric, "significant"], ids=False))
    ids = {}
    for members in sets.values():
        head = scores.get(members[0])
        for rid in members:
            s = scores.get(rid)
            if s is None:
                continue
            if head is None or head.voxel_ids.size != s.values[metric].size:
                # the first fit of the set has no scores here: read this one's ids
                head = load_scores(store, [rid], split, [metric], ids=True)[rid]
                scores[rid] = RunScores(rid, split, head.voxel_ids, s.chunk, s.values)
            ids[rid] = head.voxel_ids
    return scores, ids


# ----------------------------------------------------------------- server-side pipelines
def fit_summary_pipeline(query: Mapping[str, Any], split: str, metric: str,
                         sort: str = "median") -> list[dict]:
    """Pipeline: one row per completed fit with its stored summary of ``metric`` on ``split``."""
    base = f"$summary.{split}.{metric}"
    return [
        {"$match": {"status": "COMPLETED", **query}},
        {"$project": {
            "_id": 0, "run_id": "$_id", "subject": 1, "roi": 1, "target": 1,
            "method": "$config.method", "protocol": "$config.protocol",
            "preprocessing": "$features.preprocessing", "layer": "$features.layer",
            "model": "$features.model", "n": f"{base}.n", "mean": f"{base}.mean",
            "sem": f"{base}.sem", "median": f"{base}.median", "q25": f"{base}.q25",
            "q75": f"{base}.q75", "max": f"{base}.max",
            "n_above_p05": f"$summary.{split}.n_above_p05",
            "n_significant": f"$summary.{split}.n_significant",
            "chance_r2_corr": f"$summary.{split}.chance_r2_corr",
            "r_threshold_p05": f"$summary.{split}.r_threshold_p05", "created": 1,
        }},
        {"$sort": {sort: -1, "run_id": 1}},
    ]


def fit_summaries(store: Store, query: Mapping[str, Any] | None = None, split: str = "validation",
                  metric: str = "r", sort: str = "median") -> list[dict[str, Any]]:
    """Per-fit summaries (stored at log time), computed and sorted by the server.

    Returns one row per completed fit matching ``query``: identity fields, ``n``,
    ``mean``, ``sem``, ``median``, ``q25``, ``q75``, ``max`` of ``metric`` on ``split``,
    ``n_above_p05`` and (when stored) ``n_significant``; best ``sort`` first.
    """
    check_choice("metric", metric, METRICS)
    check_choice("split", split, SPLITS)
    check_choice("sort", sort, ("median", "mean", "max", "n", "created"))
    rows = store.aggregate("fit_runs", fit_summary_pipeline(query or {}, split, metric, sort))
    return [{k: row.get(k) for k in _SUMMARY_COLUMNS} | {"split": split, "metric": metric}
            for row in rows]


_SUMMARY_COLUMNS = ("run_id", "subject", "roi", "target", "method", "protocol", "preprocessing",
                    "layer", "model", "n", "mean", "sem", "median", "q25", "q75", "max",
                    "n_above_p05", "n_significant", "chance_r2_corr", "r_threshold_p05", "created")


def group_summary_pipeline(by: Sequence[str], query: Mapping[str, Any], split: str,
                           metric: str) -> list[dict]:
    """Pipeline: group per-fit summaries by ``by`` (pooled mean exact, medians of fits)."""
    base = f"$summary.{split}.{metric}"
    return [
        {"$match": {"status": "COMPLETED", f"summary.{split}.{metric}.n": {"$gt": 0}, **query}},
        {"$project": {"key": {b: f"${GROUP_FIELDS[b]}" for b in by}, "n": f"{base}.n",
                      "mean": f"{base}.mean", "median": f"{base}.median", "max": f"{base}.max",
                      "weighted": {"$multiply": [f"{base}.n", f"{base}.mean"]}}},
        {"$group": {"_id": "$key", "n_runs": {"$sum": 1}, "n": {"$sum": "$n"},
                    "weighted": {"$sum": "$weighted"}, "best_median": {"$max": "$median"},
                    "median_of_medians": {"$median": {"input": "$median", "method": "approximate"}},
                    "max": {"$max": "$max"}}},
        {"$project": {"_id": 0, "key": "$_id", "n_runs": 1, "n": 1, "best_median": 1,
                      "median_of_medians": 1, "max": 1,
                      "mean": {"$divide": ["$weighted", "$n"]}}},
        {"$sort": {"mean": -1}},
    ]


def group_summaries(store: Store, by: Sequence[str], query: Mapping[str, Any] | None = None,
                    split: str = "validation", metric: str = "r") -> list[dict[str, Any]]:
    """Server-side comparison from stored per-fit summaries (fast; no per-voxel reads).

    Returns per group: the ``by`` fields, ``n_runs``, ``n`` (voxels), ``mean`` (exact
    pooled mean: sum of n * mean / sum of n), ``median_of_medians`` and ``best_median``
    (over fits: a pooled median needs the voxels, see :func:`compare`), ``max``;
    highest mean first.
    """
    check_choice("metric", metric, METRICS)
    check_choice("split", split, SPLITS)
    rows = store.aggregate("fit_runs", group_summary_pipeline(by, query or {}, split, metric))
    return [{**{b: row["key"].get(b) for b in by}, **{k: v for k, v in row.items() if k != "key"},
             "split": split, "metric": metric} for row in rows]


def list_runs(store: Store, kind: str = "fit", status: str | None = None,
              subject: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Flat rows for ``tracker runs list`` (newest first)."""
    if kind not in RUN_KINDS:
        raise ConfigError(f"--kind {kind!r}: choose from {', '.join(RUN_KINDS)}")
    query: dict[str, Any] = {}
    if status:
        query["status"] = status.upper()
    if subject and kind == "fit":
        query["subject"] = subject
    docs = store.find_runs(RUN_KINDS[kind], query, projection={"provenance": 0}, limit=limit)
    rows = []
    for d in docs:
        row = {"id": d["_id"], "status": d.get("status"), "created": d.get("created")}
        if kind == "fit":
            row.update(
                subject=d.get("subject"), roi=d.get("roi"), target=d.get("target"),
                method=get_path(d, "config.method"), protocol=get_path(d, "config.protocol"),
                layer=get_path(d, "features.layer"),
                preprocessing=get_path(d, "features.preprocessing"),
                weights=_weights_label(get_path(d, "features.weights")),
                n_voxels=d.get("n_voxels"),
                val_median_r=get_path(d, "summary.validation.r.median"),
                test_median_r=get_path(d, "summary.test.r.median"),
            )
        else:
            cfg = d.get("config", {})
            row.update(
                model=cfg.get("model"), variant=cfg.get("variant"), layer=cfg.get("layer"),
                preprocess=preprocessing_label(cfg),
                weights=_weights_label(cfg.get("weights")),
                images_per_s=get_path(d, "timings.images_per_s"),
                path=get_path(d, "output.path"),
            )
        rows.append(row)
    return rows


def _weights_label(weights: Any) -> Any:
    """``untrained (random:SEED)`` for seeded random weights, else the weights as stored."""
    return f"untrained ({weights})" if str(weights).startswith("random:") else weights
