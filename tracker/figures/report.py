"""``tracker report``: one self-contained HTML file (tables + figures) readable offline.

Inline CSS, figures as base64 PNG ``data:`` URIs, no script and no external URL. The
tables hold the same rows as ``tracker compare --json`` and ``tracker summaries
--json``, formatted as the CLI formats them (:func:`cell`).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.core.files import atomic_write_text
from tracker.analysis import queries
from tracker.db.documents import utc_now
from tracker.db.security import redact_uri
from tracker.db.store import Store
from tracker.figures.draw import METRIC_LABELS
from tracker.figures.standard import standard_figures

COMPARE_BY = ("subject", "method", "preprocessing")
COMPARE_COLUMNS = (*COMPARE_BY, "n_runs", "n", "mean", "mean_low", "mean_high", "median",
                   "median_low", "median_high", "n_significant", "frac_ceiling", "chance_r2_corr")
SUMMARY_COLUMNS = ("run_id", "subject", "roi", "method", "preprocessing", "layer", "n", "mean",
                   "median", "q75", "max", "n_significant")
CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:80em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#eee}td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:.5em}img{max-width:100%}caption{font-weight:bold;text-align:left}
.note{color:#666}"""


def cell(value: Any) -> str:
    """A table cell as text: floats to 4 significant digits, None as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_html(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], table_id: str,
               caption: str) -> str:
    """An HTML table of ``columns`` of ``rows`` (escaped)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return (f'<table id="{html.escape(table_id)}"><caption>{html.escape(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def figure_html(fig: Any, name: str) -> str:
    """A matplotlib figure as an inline base64 PNG (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>")


def report_tables(store: Store, roi: str = "V4", metric: str = "r", query: Mapping | None = None,
                  n_boot: int = 1000) -> dict[str, list[dict]]:
    """The report's tables: ``compare-<split>`` (as ``tracker compare --by subject,method,
    preprocessing``) for both splits and ``summaries-validation`` (per fit)."""
    out = {}
    for split in queries.SPLITS:
        out[f"compare-{split}"], _ = queries.compare_series(
            store, list(COMPARE_BY), roi=roi, split=split, metric=metric, extra=query, n_boot=n_boot)
    out["summaries-validation"] = queries.fit_summaries(store, {**(query or {}), "roi": roi},
                                                        "validation", metric)
    return out


def build_report(store: Store, roi: str = "V4", metric: str = "r", query: Mapping | None = None,
                 figures: bool = True, n_boot: int = 1000) -> str:
    """The whole HTML document for the fits of ``roi`` matching ``query``."""
    tables = report_tables(store, roi, metric, query, n_boot)
    parts = [f"<h1>Encoding models: {html.escape(roi)}, {html.escape(metric)}</h1>",
             f'<p class="note">Generated {utc_now():%Y-%m-%d %H:%M} UTC from '
             f"{html.escape(redact_uri(store.uri))} / {html.escape(store.db_name)}; filter "
             f"{html.escape(str(dict(query or {})))}. n/a: not stored (no significance test / no "
             "noise ceiling: vim-1 has none). CIs: seeded bootstrap 95%.</p>"]
    for split in queries.SPLITS:
        parts.append(f"<h2>Comparison, {split} images</h2>")
        parts.append(table_html(tables[f"compare-{split}"], COMPARE_COLUMNS, f"compare-{split}",
                                f"{METRIC_LABELS[metric]}, {roi}, {split}"))
    parts.append("<h2>Fits (validation)</h2>")
    parts.append(table_html(tables["summaries-validation"], SUMMARY_COLUMNS, "summaries-validation",
                            "stored per-fit summaries, best median first"))
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [figure_html(fig, name) for name, fig in standard_figures(store, roi, metric)]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>vimtrack report {html.escape(roi)}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def write_report(store: Store, path: Path, **kwargs: Any) -> Path:
    """Write :func:`build_report` to ``path`` (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, build_report(store, **kwargs))
    return path
