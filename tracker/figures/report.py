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
SUMMARY_COLUMNS = ("run_id", "subject", "roi", "target", "method", "preprocessing", "layer", "n",
                   "mean", "median", "q75", "max", "n_above_p05", "r_threshold_p05", "n_significant")
#: figure name prefix -> what the figure shows (its caption; the figure's own title names
#: the subject, ROI, split and n voxels)
FIGURE_CAPTIONS = {
    "bars_": "Mean per-voxel score per method and preprocessing (raw or retina-warped images), "
             "test and validation images, with seeded bootstrap 95% CIs and the chance "
             "reference of the metric (dashed).",
    "roi_average_": "Predicted vs measured ROI-average response, one panel per ROI-average fit.",
    "scatter_": "Per-voxel scores of two fits of the same subject, ROI and features, paired by "
                "voxel id (dotted: identity); median difference and Wilcoxon signed-rank p.",
    "distributions_": "Distributions of per-voxel scores per ROI (boxes: quartiles, whiskers: "
                      "1.5 IQR), one box per method.",
    "layers_": "Median per-voxel score (bootstrap 95% CI) per network layer.",
    "volume_": "The best fit's per-voxel scores on the 64 x 64 x 18 volume, one panel per axial "
               "slice holding fitted voxels.",
}
METHODS_HTML = """<h2>Methods and definitions</h2><dl>
<dt>r</dt><dd>Pearson correlation between a voxel's predicted and measured responses over the
held-out images.</dd>
<dt>r2_corr</dt><dd>r squared (the 2019 project's "r-squared"); never negative. Chance level
without signal: 1/(n-1) for n images.</dd>
<dt>r2 (R&sup2;)</dt><dd>Coefficient of determination, 1 - SS_res / SS_tot; 0 for predicting the
mean, negative for worse.</dd>
<dt>Splits</dt><dd><i>test</i>: images held out inside the 1750 training images (the model never
saw them); <i>validation</i>: the 120 vim-1 validation images.</dd>
<dt>Targets</dt><dd><i>voxels</i>: one model per voxel; <i>roi_mean</i>: one model of the ROI's
average response.</dd>
<dt>Protocols</dt><dd><i>recommended</i>: hyperparameters chosen by cross-validation inside the
training images, features standardised; <i>cs431</i>: the 2019 protocol (one ridge alpha shared
by all voxels, unstandardised features).</dd>
<dt>r_threshold_p05, n_above_p05</dt><dd>The one-tailed critical r at p &lt; .05 for the number of
held-out images (t test, n - 2 df), and how many voxels exceed it (uncorrected).</dd>
<dt>n_significant</dt><dd>Voxels significant in a permutation test after Benjamini-Hochberg FDR
correction within the split (n/a when the fit ran no test).</dd>
<dt>Noise ceiling, frac_ceiling</dt><dd>The ceiling is the highest correlation the voxel's
measurement noise allows (estimated from repeated presentations; in r units, squared for r2_corr
and r2). frac_ceiling = mean score / mean ceiling over the voxels that have one (n/a: no ceiling
recorded).</dd>
<dt>CIs</dt><dd>Seeded percentile bootstrap 95% intervals of the mean and median over pooled
voxels.</dd></dl>"""
CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:80em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#eee}td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:.5em}img{max-width:100%}caption{font-weight:bold;text-align:left}
.note{color:#666}"""


def compare_columns(metric: str, by: Sequence[str] = COMPARE_BY) -> list[str]:
    """The comparison table's columns: the condition fields ``by``, the statistics (no
    ``chance_r2_corr`` in a table of r: its chance reference is the r threshold of the
    per-fit table), how voxels were pooled and whether weights were untrained."""
    stats = [c for c in COMPARE_COLUMNS if c not in COMPARE_BY
             and (metric != "r" or c != "chance_r2_corr")]
    return [*by, *stats, "pooling", "untrained"]


def conditions_caption(rows: Sequence[Mapping[str, Any]], by: Sequence[str]) -> str:
    """``Held fixed: ...`` over the rows' conditions (fields not in ``by``), and whether
    untrained weights are among them."""
    from tracker.analysis.conditions import held_fixed
    from tracker.figures.draw import caption_text

    fixed = held_fixed([r.get("condition") or {} for r in rows], exclude=by)
    untrained = next((r["untrained"] for r in rows if r.get("untrained")), None)
    return caption_text(fixed, untrained)


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
    caption = next((c for prefix, c in FIGURE_CAPTIONS.items() if name.startswith(prefix)), "")
    if name.endswith("_ceiling"):
        caption += " Scores as a fraction of the noise ceiling."
    return (f'<figure><img alt="{html.escape(caption or name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)} <span class=\"note\">({html.escape(name)})</span>"
            "</figcaption></figure>")


def report_tables(store: Store, roi: str = "V4", metric: str = "r", query: Mapping | None = None,
                  n_boot: int = 1000) -> dict[str, list[dict]]:
    """The report's tables: ``compare-<split>`` (as ``tracker compare --by subject,method,
    preprocessing``) for both splits and ``summaries-validation`` (per fit)."""
    out = {}
    for split in queries.SPLITS:
        out[f"compare-{split}"], by = queries.compare_series(
            store, list(COMPARE_BY), roi=roi, split=split, metric=metric, extra=query, n_boot=n_boot)
        out[f"by-{split}"] = by
    out["summaries-validation"] = queries.fit_summaries(store, {**(query or {}), "roi": roi},
                                                        "validation", metric)
    return out


def build_report(store: Store, roi: str = "V4", metric: str = "r", query: Mapping | None = None,
                 figures: bool = True, n_boot: int = 1000) -> str:
    """The whole HTML document for the fits of ``roi`` matching ``query``."""
    tables = report_tables(store, roi, metric, query, n_boot)
    has_ceiling = any(r.get("frac_ceiling") is not None for k, rows in tables.items()
                      if k.startswith("compare-") for r in rows)
    ceiling_note = ("" if has_ceiling else " No noise ceiling is recorded for these data (vim-1 "
                    "releases repeat-averaged responses only), so frac_ceiling is n/a.")
    parts = [f"<h1>Encoding models: {html.escape(roi)}, {html.escape(metric)}</h1>",
             f'<p class="note">Generated {utc_now():%Y-%m-%d %H:%M} UTC from '
             f"{html.escape(redact_uri(store.uri))} / {html.escape(store.db_name)}; filter "
             f"{html.escape(str(dict(query or {})))}. n/a: not stored (no significance test run, "
             f"or no noise ceiling).{html.escape(ceiling_note)} CIs: seeded bootstrap 95%; "
             "definitions at the end.</p>"]
    for split in queries.SPLITS:
        rows = tables[f"compare-{split}"]
        by = tables[f"by-{split}"]
        columns = compare_columns(metric, by)
        fixed = conditions_caption(rows, by)
        parts.append(f"<h2>Comparison, {split} images</h2>")
        parts.append(table_html(rows, columns, f"compare-{split}",
                                f"{METRIC_LABELS[metric]}, {roi} voxels (target voxels), {split} "
                                f"images: one row per condition ({', '.join(by)}), each distinct "
                                f"voxel once. {fixed}"))
    parts.append("<h2>Fits (validation)</h2>")
    parts.append(table_html(tables["summaries-validation"], SUMMARY_COLUMNS, "summaries-validation",
                            "stored per-fit summaries, best median first"))
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [figure_html(fig, name) for name, fig in standard_figures(store, roi, metric)]
    parts.append(METHODS_HTML)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>vimtrack report {html.escape(roi)}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def write_report(store: Store, path: Path, **kwargs: Any) -> Path:
    """Write :func:`build_report` to ``path`` (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, build_report(store, **kwargs))
    return path
