"""``tracker runs show``: one run as a readable summary (the whole document is ``--json``).

Sections: identity, config, inputs and files, splits (sizes and index hashes, never the
indices), per-split score summaries, timings, provenance (versions, host, git).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracker.analysis.fields import get_path

#: split-summary entries shown (per split): the metric medians, n, thresholds, tests
_SUMMARY_KEYS = ("n_train", "n_test", "r_threshold_p05", "n_above_p05", "n_significant",
                 "chance_r2_corr")


def _flat(prefix: str, value: Any, out: list[tuple[str, str, Any]], section: str) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out, section)
    elif isinstance(value, list) and len(value) > 8:
        out.append((section, prefix, f"[{len(value)} values]"))
    else:
        out.append((section, prefix, value))


def run_overview(collection: str, doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{section, field, value}`` summarising a run document.

    Parameters
    ----------
    collection
        ``fit_runs`` or ``feature_runs``.
    doc
        The run document (as :meth:`tracker.db.store.Store.get_run` returns it).
    """
    rows: list[tuple[str, str, Any]] = []
    ident = ["_id", "kind", "status", "created", "finished", "config_key", "dataset_id", "error"]
    if collection == "fit_runs":
        ident[3:3] = ["subject", "roi", "target", "n_voxels", "n_features", "feature_run_id"]
    for key in ident:
        if doc.get(key) is not None:
            rows.append(("run", "id" if key == "_id" else key, doc[key]))
    _flat("", doc.get("config") or {}, rows, "config")
    if collection == "fit_runs":
        _flat("", doc.get("features") or {}, rows, "features")
        _flat("", doc.get("responses") or {}, rows, "inputs")
    else:
        rows.append(("inputs", "data_dir", doc.get("data_dir")))
        _flat("", doc.get("output") or {}, rows, "files")
    for split in doc.get("splits") or []:
        sha = split.get("test_indices_sha256")
        rows.append(("splits", split.get("name", "?"),
                     f"{split.get('kind')}: {split.get('n_train')} train / {split.get('n_test')} "
                     f"test images" + (f", indices sha256 {sha[:16]}" if sha else "")))
    for name, summary in (doc.get("summary") or {}).items():
        if not isinstance(summary, Mapping):
            continue
        for metric in ("r", "r2_corr", "r2"):
            m = summary.get(metric)
            if isinstance(m, Mapping):
                rows.append(("summary", f"{name}.{metric}", f"median {_num(m.get('median'))}, mean "
                             f"{_num(m.get('mean'))}, max {_num(m.get('max'))} (n {m.get('n')})"))
        for key in _SUMMARY_KEYS:
            if summary.get(key) is not None:
                rows.append(("summary", f"{name}.{key}", summary[key]))
    _flat("", doc.get("timings") or {}, rows, "timings")
    if doc.get("elapsed_s") is not None:
        rows.append(("timings", "elapsed_s", doc["elapsed_s"]))
    prov = doc.get("provenance") or {}
    for key in ("host", "user", "python", "platform", "git", "packages", "backend", "device"):
        if key in prov:
            _flat(key, prov[key], rows, "provenance")
    return [{"section": s, "field": f, "value": v} for s, f, v in rows]


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def short_label(doc: Mapping[str, Any]) -> str:
    """``fi-... (fit S1 V4 ridge, COMPLETED)``: what a confirmation prompt shows."""
    if doc.get("kind") == "fit" or "subject" in doc:
        what = f"fit {doc.get('subject')} {doc.get('roi')} {get_path(doc, 'config.method')}"
    else:
        what = f"features {get_path(doc, 'config.model')} {get_path(doc, 'config.layer')}"
    return f"{doc['_id']} ({what}, {doc.get('status')})"
