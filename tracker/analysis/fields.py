"""The one vocabulary of fields the questions use.

- :data:`GROUP_FIELDS`: ``--by`` names -> fit-run document paths (grouping, run identity);
- :data:`WHERE_FIELDS`: friendly ``--where`` names -> (document path, value type), per run
  kind (:data:`FIT_FIELDS`, :data:`FEATURE_FIELDS`);
- :data:`SCORE_FIELDS`: the per-voxel fields a fit stores (score columns);
- :data:`RUN_KINDS`: run kind -> collection.

And the checks every question shares: :func:`parse_by`, :func:`check_choice`,
:func:`check_fields`, and :func:`get_path` to read a dotted path of a document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.vocab import METRICS, SPLIT_ALIASES

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
#: per-voxel fields a fit stores (p and significant only when the fit computed them; the
#: receptive field, in degrees from the stimulus centre, only for fwRF fits)
RF_FIELDS = ("rf_x_deg", "rf_y_deg", "rf_size_deg")
SCORE_FIELDS = (*METRICS, "hyper", "p", "significant", *RF_FIELDS)
_STATS = ("mean", "median", "q10", "q25", "q75", "q90", "max", "n")


def _metric_fields() -> dict[str, str]:
    out = {}
    for short, split in SPLIT_ALIASES.items():
        for stat in _STATS:
            for metric in METRICS:
                out[f"{short}_{stat}_{metric}"] = f"summary.{split}.{metric}.{stat}"
        out[f"{short}_n_above_p05"] = f"summary.{split}.n_above_p05"
    return out


#: friendly name -> (document path, value type) for ``fit_runs``
FIT_FIELDS: dict[str, tuple[str, type]] = {
    **{name: (path, str) for name, path in GROUP_FIELDS.items()},
    "id": ("_id", str), "status": ("status", str), "config_key": ("config_key", str),
    "seed": ("config.seed", float), "n_voxels": ("n_voxels", float),
    "n_features": ("n_features", float), "elapsed_s": ("elapsed_s", float),
    "r": ("summary.validation.r.median", float),
    **{name: (path, float) for name, path in _metric_fields().items()},
}
#: friendly name -> (document path, value type) for ``feature_runs``
FEATURE_FIELDS: dict[str, tuple[str, type]] = {
    "id": ("_id", str), "status": ("status", str), "config_key": ("config_key", str),
    **{name: (f"config.{name}", str) for name in ("model", "variant", "layer", "weights", "preprocess")},
    "batch_size": ("config.batch_size", float), "dataset": ("dataset_id", str),
    "images_per_s": ("timings.images_per_s", float),
}
#: run kind -> its ``--where`` fields
WHERE_FIELDS = {"fit": FIT_FIELDS, "features": FEATURE_FIELDS}


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


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else a ConfigError naming the option."""
    if value not in choices:
        raise ConfigError(f"--{name.replace('_', '-')} {value!r}: choose from {', '.join(choices)}")
    return value


def get_path(doc: Mapping[str, Any], dotted: str) -> Any:
    """``get_path(doc, "config.method")``; missing -> None."""
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def check_fields(fields: Iterable[str]) -> list[str]:
    """Validate per-voxel field names (``r``, ``r2_corr``, ``r2``, ``hyper``, ``p``, ``significant``,
    ``rf_x_deg``, ``rf_y_deg``, ``rf_size_deg``)."""
    names = list(fields)
    bad = [f for f in names if f not in SCORE_FIELDS]
    if bad:
        raise ConfigError(f"unknown per-voxel field(s) {', '.join(bad)}; "
                          f"choose from {', '.join(SCORE_FIELDS)}")
    return names
