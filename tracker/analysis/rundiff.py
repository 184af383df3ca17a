"""What differs between two runs: config, inputs, splits and provenance, field by field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: the parts of a run document compared by :func:`diff_runs` (results are not "config")
SECTIONS = ("kind", "subject", "roi", "target", "config", "config_key", "feature_run_id",
            "dataset_id", "data_dir", "features", "splits", "output", "device", "provenance")
#: volatile provenance that differs between any two runs and says nothing about them
IGNORED = ("provenance.pid", "provenance.started", "provenance.time")


def flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "l": [{"x": 2}]}`` -> ``{"a.b": 1, "l.0.x": 2}`` (leaves only)."""
    out: dict[str, Any] = {}
    if isinstance(doc, Mapping):
        for key in doc:
            out.update(flatten(doc[key], f"{prefix}{key}."))
    elif isinstance(doc, (list, tuple)) and doc and any(isinstance(x, (Mapping, list)) for x in doc):
        for i, item in enumerate(doc):
            out.update(flatten(item, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = list(doc) if isinstance(doc, tuple) else doc
    return out


def diff_runs(a: Mapping[str, Any], b: Mapping[str, Any], sections: Sequence[str] = SECTIONS,
              show_all: bool = False) -> list[dict[str, Any]]:
    """Field-by-field differences between two run documents.

    Parameters
    ----------
    a, b
        Run documents (fit or feature runs).
    sections
        Top-level parts compared (default :data:`SECTIONS`).
    show_all
        Also list equal fields.

    Returns
    -------
    rows
        ``{"field", "a", "b", "same"}`` sorted by field; a field missing on one side is
        None there. Long lists (split indices) are compared whole and shown by length.
    """
    fa = flatten({k: a[k] for k in sections if k in a})
    fb = flatten({k: b[k] for k in sections if k in b})
    rows = []
    for key in sorted(set(fa) | set(fb)):
        if key in IGNORED:
            continue
        va, vb = fa.get(key), fb.get(key)
        same = va == vb
        if same and not show_all:
            continue
        rows.append({"field": key, "a": _show(va), "b": _show(vb), "same": same})
    return rows


def _show(value: Any) -> Any:
    if isinstance(value, list) and len(value) > 8:
        return f"[{len(value)} values]"
    return value
