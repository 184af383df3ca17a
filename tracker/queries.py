"""Questions asked of the database: run listings and comparisons across groups of fits.

Only COMPLETED runs count: score buckets of a run that failed, was interrupted or was
superseded are never included (buckets are selected through the ids of completed runs).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.errors import ConfigError
from tracker.documents import METRICS, summarize
from tracker.store import Store

#: ``--by`` names -> fields of a fit-run document (the single source for CLI choices).
GROUP_FIELDS: dict[str, str] = {
    "subject": "subject",
    "roi": "roi",
    "method": "config.method",
    "protocol": "config.protocol",
    "target": "target",
    "preprocessing": "features.preprocessing",
    "layer": "features.layer",
    "model": "features.model",
    "variant": "features.variant",
    "weights": "features.weights",
    "feature_run": "feature_run_id",
}
RUN_KINDS = {"fit": "fit_runs", "features": "feature_runs"}


def parse_by(text: str) -> list[str]:
    """``"subject,method"`` -> ``["subject", "method"]``, validated against GROUP_FIELDS."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in GROUP_FIELDS]
    if bad or not names:
        raise ConfigError(
            f"--by {text!r}: unknown field(s) {', '.join(bad) or '(none given)'}; "
            f"choose from {', '.join(GROUP_FIELDS)}"
        )
    return names


def get_path(doc: Mapping[str, Any], dotted: str) -> Any:
    """``get_path(doc, "config.method")``; missing -> None."""
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def completed_fits(store: Store, roi: str | None = None, target: str | None = "voxels",
                   extra: Mapping[str, Any] | None = None) -> list[dict]:
    """Completed fit runs, optionally for one ROI and target."""
    query: dict[str, Any] = {"status": "COMPLETED", **(extra or {})}
    if roi is not None:
        query["roi"] = roi
    if target is not None:
        query["target"] = target
    return store.find_runs("fit_runs", query, projection={"provenance": 0, "splits": 0})


def compare(
    store: Store,
    by: Sequence[str],
    roi: str | None = "V4",
    split: str = "validation",
    metric: str = "r",
    target: str = "voxels",
    extra: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Pool per-voxel scores of completed fits by ``by`` and summarise each group.

    Returns
    -------
    rows
        One dict per group: the group fields, ``n_runs``, ``n`` (voxels pooled),
        ``mean``, ``sem``, ``std``, ``median``, quantiles, and the chance level of r^2
        (1/(n_test-1)) of that split.
    """
    if metric not in METRICS:
        raise ConfigError(f"--metric {metric!r}: choose from {', '.join(METRICS)}")
    runs = completed_fits(store, roi, target, extra)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        groups[tuple(get_path(run, GROUP_FIELDS[b]) for b in by)].append(run)
    if not groups:
        return []
    by_run: dict[str, list[np.ndarray]] = defaultdict(list)
    for bucket in store.buckets([r["_id"] for r in runs], split=split, fields=[metric]):
        by_run[bucket["run_id"]].append(np.array(bucket[metric], dtype=np.float64))
    rows = []
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
        members = groups[key]
        values = [v for r in members for v in by_run.get(r["_id"], [])]
        pooled = np.concatenate(values) if values else np.empty(0)
        chance = [get_path(r, f"summary.{split}.chance_r2_corr") for r in members]
        chance = [c for c in chance if c is not None]
        rows.append({
            **dict(zip(by, key)),
            "n_runs": len(members),
            **summarize(pooled),
            "metric": metric,
            "split": split,
            "chance_r2_corr": float(np.mean(chance)) if chance else None,
            "run_ids": [r["_id"] for r in members],
        })
    return rows


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
                n_voxels=d.get("n_voxels"),
                val_median_r=get_path(d, "summary.validation.r.median"),
                test_median_r=get_path(d, "summary.test.r.median"),
            )
        else:
            cfg = d.get("config", {})
            row.update(
                model=cfg.get("model"), variant=cfg.get("variant"), layer=cfg.get("layer"),
                preprocess=cfg.get("preprocess"), weights=cfg.get("weights"),
                images_per_s=get_path(d, "timings.images_per_s"),
                path=get_path(d, "output.path"),
            )
        rows.append(row)
    return rows
