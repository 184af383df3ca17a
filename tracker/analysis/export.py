"""Tables out of the database: CSV, Parquet (optional ``pyarrow``) and JSON.

A table is a dict of equal-length columns (or a list of row dicts). What can be
exported (:func:`table_of`):

- ``summaries``: one row per completed fit (stored per-fit summaries, server-side);
- ``voxels``: one row per (fit, split, voxel) with every per-voxel field (float64);
- ``compare``: the rows of :func:`tracker.analysis.queries.compare`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.files import atomic_path
from tracker.analysis import fields, queries, voxels
from tracker.db.store import Store

FORMATS = ("csv", "parquet", "json")
WHAT = ("summaries", "voxels", "compare")
Table = dict[str, list]


def rows_to_columns(rows: Sequence[Mapping[str, Any]]) -> Table:
    """Row dicts -> columns (union of keys in first-seen order; missing -> None)."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return {n: [_cell(row.get(n)) for row in rows] for n in names}


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def table_of(store: Store, what: str, query: Mapping[str, Any] | None = None, roi: str | None = None,
             split: str = "validation", metric: str | None = None,
             by: Sequence[str] = ("subject", "method"), n_boot: int = 1000) -> Table:
    """The table ``what`` (see module doc) for the fits matching ``query`` and ``roi``.

    ``split`` and ``metric`` hold for every table: ``voxels`` has the rows of ``split``
    only (``"all"``: every split), and of the score columns only ``metric`` when one is
    given (``summaries`` and ``compare`` summarise ``metric``, default ``r``).
    """
    fields.check_choice("what", what, WHAT)
    fields.check_choice("split", split, (*queries.SPLITS, "all") if what == "voxels" else queries.SPLITS)
    query = dict(query or {})
    if roi is not None:
        query["roi"] = roi
    if what == "summaries":
        return rows_to_columns(queries.fit_summaries(store, query, split, metric or "r"))
    if what == "compare":
        return rows_to_columns(queries.compare(store, by, roi=None, split=split, metric=metric or "r",
                                               extra=query, n_boot=n_boot))
    runs = voxels.select_runs(store, query=query)
    table = voxels.voxel_table(store, runs, queries.SPLITS if split == "all" else [split])
    if metric is not None:
        fields.check_choice("metric", metric, queries.METRICS)
        drop = [m for m in queries.METRICS if m != metric]
        table = {k: v for k, v in table.items() if k not in drop}
    return table


def write_table(table: Table, path: Path, fmt: str | None = None) -> int:
    """Write ``table`` to ``path`` as ``fmt`` (default: from the suffix); returns the row count."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    fields.check_choice("format", fmt, FORMATS)
    n = len(next(iter(table.values()), []))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if fmt == "csv":
            with tmp.open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(table)
                writer.writerows(zip(*table.values()))
        elif fmt == "json":
            rows = [dict(zip(table, values)) for values in zip(*table.values())]
            tmp.write_text(json.dumps(rows, default=str))
        else:
            _write_parquet(table, tmp)
    return n


def _write_parquet(table: Table, path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Parquet export needs pyarrow: pip install pyarrow "
                          "(or export --format csv / json)") from None
    pq.write_table(pa.table(table), path)
