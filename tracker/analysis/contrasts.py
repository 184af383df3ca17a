"""Paired contrasts of two conditions over the same voxels (``tracker contrast``).

Each side is the completed fits that match the shared filters and the side's own
``--where`` expressions; inside each ``by`` group a side must be one condition
(:mod:`tracker.analysis.conditions`; ``over`` fields are averaged per voxel first).
The two sides are paired voxel by voxel (distinct (subject, voxel) present in both):

- ``mean_diff`` and ``median_diff`` of A - B with seeded paired bootstrap CIs (voxels
  resampled, the pair kept together; analytic beyond
  :data:`tracker.analysis.queries.BOOT_BUDGET`, ``ci_method`` says which), the
  Wilcoxon signed-rank p of the differences and the share of voxels where A scores higher;
- per voxel, on the validation images both fits predicted, the paired swap permutation
  test of r (:func:`pipeline.evaluation.paired.swap_test`): the share of voxels where A
  beats B significantly (p < alpha) and where B beats A, and the count that survives
  Benjamini-Hochberg over the voxels. Needs stored predictions and one fit per voxel
  and side (no ``over`` averaging), else those fields are None with the reason.

A family of contrasts (several ``by`` groups, or ``--each FIELD``) has its Wilcoxon p
corrected across the family (Holm by default, or BH) in ``p_adjusted``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.evaluation.intervals import paired_comparison
from pipeline.evaluation.paired import holm_adjust, swap_test
from pipeline.evaluation.significance import bh_adjust, fdr_significant
from tracker.analysis import conditions, predictions, queries
from tracker.analysis.pooling import align
from tracker.db.store import Store

CORRECTIONS = {"holm": holm_adjust, "bh": bh_adjust}
#: what the per-voxel test is, for outputs and docs
VOXEL_TEST = ("paired swap permutation test of Pearson r on the validation images "
              "(one-sided, the same seeded swap patterns for every voxel)")


def side_filter(exprs: Sequence[str], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """The shared filter AND one side's ``--where`` expressions (run ids allowed)."""
    where = [f"id={e}" if e.startswith("fi-") and "=" not in e else e for e in exprs]
    side = queries.run_filter(where)
    if not side:
        raise ConfigError("each side of a contrast needs a --where expression (e.g. 'layer=conv3') "
                          "or a fit id")
    return {"$and": [dict(extra), side]} if extra else side


def contrast(store: Store, a: Sequence[str], b: Sequence[str], *, by: Sequence[str] = (),
             roi: str | Sequence[str] | None = "V4", split: str = "validation", metric: str = "r",
             target: str = "voxels", extra: Mapping[str, Any] | None = None,
             over: Sequence[str] = (), n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
             n_permutations: int = 1000, permutation_seed: int = 0, correction: str = "holm",
             label_a: str | None = None, label_b: str | None = None) -> list[dict[str, Any]]:
    """A - B per ``by`` group (see the module docstring); rows carry ``p_adjusted``.

    Returns
    -------
    rows
        Per group: the ``by`` fields, ``a`` and ``b`` (labels), ``differs`` (identity
        fields that differ between the sides, with values), ``n`` (paired voxels),
        ``mean_a``, ``mean_b``, ``mean_diff`` (+ ``_low``/``_high``), ``median_diff``
        (+ CI), ``share_a_greater``, ``wilcoxon_p``, ``p_adjusted``, ``correction``,
        ``voxel_test`` results (``share_a_wins``, ``share_b_wins``, ``n_a_wins_bh``,
        ``n_b_wins_bh`` or ``voxel_test_note``), pooling notes of both sides.
    """
    queries.check_choice("correction", correction, tuple(CORRECTIONS))
    sides = [queries.select_conditions(store, by, roi, split, target, side_filter(s, extra), over)
             for s in (a, b)]
    pools = [s.pool(store, metric) for s in sides]
    keys = [k for k in sides[0].groups if k in sides[1].groups]
    if not keys:
        what = " and ".join(f"{lab}: {len(s.runs)} fit(s)" for lab, s in zip("AB", sides))
        raise ConfigError(f"no group has completed fits on both sides ({what}) for ROI "
                          f"{roi} / target {target} on {split}")
    rows = []
    for key in keys:
        members = [s.groups[key] for s in sides]
        row = {**dict(zip(by, key)), "a": label_a or " & ".join(a), "b": label_b or " & ".join(b),
               **_differs(sides, members, by)}
        row.update(_paired_stats(pools[0][key], pools[1][key], n_boot, seed))
        row.update(_voxel_test(store, sides, members, [pools[0][key], pools[1][key]], split,
                               alpha, n_permutations, permutation_seed))
        row.update(pooling_a=pools[0][key].policy(over), pooling_b=pools[1][key].policy(over),
                   untrained=_untrained(sides, members), metric=metric, split=split)
        rows.append(row)
    return adjust(rows, correction)


def adjust(rows: list[dict[str, Any]], correction: str) -> list[dict[str, Any]]:
    """Add ``p_adjusted`` (Wilcoxon p corrected over the rows) and ``correction``."""
    p = CORRECTIONS[correction]([r["wilcoxon_p"] for r in rows]) if rows else []
    text = f"{correction} over {len(rows)} contrast(s)"
    for row, q in zip(rows, p):
        row["p_adjusted"] = None if not np.isfinite(q) else float(q)
        row["correction"] = text
    return rows


def contrast_each(store: Store, field: str, reference: str, **kw: Any) -> list[dict[str, Any]]:
    """Every other value of ``field`` against ``reference`` (one family, corrected)."""
    extra, roi, target = kw.get("extra"), kw.get("roi", "V4"), kw.get("target", "voxels")
    sel = queries.select_conditions(store, (field,), roi, kw.get("split", "validation"), target,
                                    extra, (*kw.get("by", ()), *kw.get("over", ())))
    values = [k[0] for k in sel.groups]
    if reference not in values:
        raise ConfigError(f"--reference {reference!r}: no completed fit has {field}={reference}; "
                          f"values here: {', '.join(values) or '(none)'}")
    correction = kw.pop("correction", "holm")
    rows = []
    for value in values:
        if value != reference:
            rows += contrast(store, [f"{field}={value}"], [f"{field}={reference}"],
                             correction=correction, **kw)
    return adjust(rows, correction)


def _differs(sides, members, by: Sequence[str]) -> dict[str, Any]:
    ia = [sides[0].idents[r["_id"]] for r in members[0]]
    ib = [sides[1].idents[r["_id"]] for r in members[1]]
    fa, fb = conditions.held_fixed(ia), conditions.held_fixed(ib)
    differs = {n: [fa[n], fb[n]] for n in fa if n in fb and fa[n] != fb[n] and n not in by}
    return {"differs": differs}


def _untrained(sides, members) -> str | None:
    for side, runs in zip(sides, members):
        for r in runs:
            if (u := conditions.untrained(side.idents[r["_id"]])) is not None:
                return u
    return None


def _paired_stats(pa, pb, n_boot: int, seed: int) -> dict[str, Any]:
    _, (va, vb), _ = align([pa, pb])
    out: dict[str, Any] = {"n": int(va.size)}
    if va.size == 0:
        return {**out, **dict.fromkeys(("mean_a", "mean_b", "mean_diff", "mean_diff_low",
                                        "mean_diff_high", "median_diff", "median_diff_low",
                                        "median_diff_high", "share_a_greater", "wilcoxon_p"))}
    d = va - vb
    ci = queries.intervals(d, n_boot, seed)  # bootstrap of the pairs (analytic when large)
    wilcoxon = paired_comparison(va, vb, n_boot=1, seed=seed).wilcoxon_p
    return {**out, "mean_a": float(va.mean()), "mean_b": float(vb.mean()),
            "mean_diff": float(d.mean()), "mean_diff_low": ci["mean_low"],
            "mean_diff_high": ci["mean_high"], "median_diff": float(np.median(d)),
            "median_diff_low": ci["median_low"], "median_diff_high": ci["median_high"],
            "ci_method": ci["ci_method"], "share_a_greater": float(np.mean(d > 0)),
            "wilcoxon_p": wilcoxon}


def voxel_inputs(store: Store, sel, runs, pool, split: str):
    """(ids, held-out predictions) of one side's fits, or a reason they cannot be tested
    (``sel`` has been pooled: its voxel ids are known)."""
    if split != predictions.PREDICTION_SPLIT:
        return None, f"per-voxel test runs on the {predictions.PREDICTION_SPLIT} images only"
    if pool.n_combined:
        return None, "per-voxel test needs one fit per voxel and side (no --over averaging)"
    held = predictions.load_predictions(store, [r["_id"] for r in runs], split)
    if len(held) < len(runs):
        return None, "fits logged without held-out predictions (before they were stored)"
    return (sel.ids, held), None


def _voxel_test(store, sides, members, pools, split, alpha, n_perm, perm_seed) -> dict[str, Any]:
    keys, _, subjects = align(pools)
    out: dict[str, Any] = dict.fromkeys(("share_a_wins", "share_b_wins", "n_a_wins_bh",
                                         "n_b_wins_bh"))
    inputs = []
    for sel, runs, p in zip(sides, members, pools):
        got, why = voxel_inputs(store, sel, runs, p, split)
        if got is None:
            return {**out, "voxel_test_note": why}
        inputs.append((runs, got))
    mats = [predictions.voxel_matrix(runs, held, ids, keys, subjects, f)
            for runs, (ids, held) in inputs for f in ("y_true", "y_pred")]
    if any(m is None for m in mats) or keys.size == 0:
        return {**out, "voxel_test_note": "held-out predictions missing for some voxels"}
    y_a, pred_a, y_b, pred_b = mats
    if not np.allclose(y_a, y_b, rtol=1e-5, atol=1e-5, equal_nan=True):
        return {**out, "voxel_test_note": "the two sides' fits saw different responses"}
    _, p_ab, p_ba = swap_test(y_a, pred_a, pred_b, n_perm, perm_seed)
    ok = np.isfinite(p_ab)
    n = max(int(ok.sum()), 1)
    return {"share_a_wins": float(np.sum(p_ab[ok] < alpha) / n),
            "share_b_wins": float(np.sum(p_ba[ok] < alpha) / n),
            "n_a_wins_bh": int(fdr_significant(p_ab, alpha).sum()),
            "n_b_wins_bh": int(fdr_significant(p_ba, alpha).sum()),
            "voxel_alpha": alpha, "voxel_permutations": n_perm, "voxel_test": VOXEL_TEST,
            "voxel_test_note": None}
