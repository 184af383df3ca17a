"""One validation layer for the names people type: subjects, ROIs, methods, targets,
protocols, splits, metrics, layers and run kinds.

Every CLI option, every ``--where`` value of these fields and the scripts
(``scripts/run_fit.py``, ``scripts/run_features.py``) resolve names here, so ``v4``,
``s1`` or ``RIDGE`` mean the same everywhere, and a name that means nothing gets the
same ``--roi 'V9': unknown ROI; choose from ...`` error everywhere.

Matching is exact first, then case-insensitive where that is unambiguous, then the
aliases of :data:`ALIASES` (``LatOcc`` -> ``LO``, ``val`` -> ``validation``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.core.errors import ConfigError
from pipeline.core.vocab import LAYER_ORDER, METRICS, SPLITS
from pipeline.data.layout import ROI_CODES, SUBJECTS
from pipeline.fit.config import METHOD_NAMES, PROTOCOLS, TARGETS

#: the ROI names of vim-1 (code order, ``other`` last)
ROIS: tuple[str, ...] = (*(ROI_CODES[c] for c in sorted(ROI_CODES) if c), ROI_CODES[0])
RUN_KIND_NAMES: tuple[str, ...] = ("fit", "features")

#: kind of name -> the names it may take (the single source of the choices shown)
VOCABULARY: dict[str, tuple[str, ...]] = {
    "subject": tuple(SUBJECTS),
    "roi": ROIS,
    "method": tuple(METHOD_NAMES),
    "target": tuple(TARGETS),
    "protocol": tuple(PROTOCOLS),
    "split": tuple(SPLITS),
    "metric": tuple(METRICS),
    "layer": tuple(LAYER_ORDER),
    "kind": RUN_KIND_NAMES,
}
#: kind of name -> other spellings accepted (lower case) -> the name
ALIASES: dict[str, dict[str, str]] = {
    "roi": {"latocc": "LO"},
    "split": {"val": "validation"},
    "subject": {"1": "S1", "2": "S2"},
    "kind": {"fits": "fit", "feature": "features"},
}
#: kinds whose vocabulary is open: a name outside it is kept as typed (Keras model layers)
OPEN_KINDS = frozenset({"layer"})


def resolve(kind: str, value: str, option: str | None = None) -> str:
    """The canonical spelling of ``value`` as a ``kind`` name.

    Parameters
    ----------
    kind
        A key of :data:`VOCABULARY`.
    value
        What was typed.
    option
        The flag named in the error (default ``--<kind>``).

    Raises
    ------
    ConfigError
        ``value`` is none of the names (nor, case-insensitively, one of them).
    """
    choices = VOCABULARY[kind]
    text = str(value).strip()
    if text in choices:
        return text
    folded = [c for c in choices if c.lower() == text.lower()]
    if len(folded) == 1:
        return folded[0]
    alias = ALIASES.get(kind, {}).get(text.lower())
    if alias is not None:
        return alias
    if kind in OPEN_KINDS and text:
        return text
    flag = option or f"--{kind}"
    raise ConfigError(f"{flag} {value!r}: unknown {kind}; choose from {', '.join(choices)}")


def resolve_many(kind: str, text: str | Sequence[str], option: str | None = None,
                 allow_all: bool = True) -> list[str] | None:
    """Several comma-separated names (or a list of them), each resolved; ``all`` -> None.

    ``"v1, V2"`` -> ``["V1", "V2"]``; duplicates are dropped, order kept.
    """
    parts = [p.strip() for item in ([text] if isinstance(text, str) else text)
             for p in str(item).split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"{option or '--' + kind} {text!r}: give a name; choose from "
                          f"{', '.join(VOCABULARY[kind])}{', all' if allow_all else ''}")
    if allow_all and any(p.lower() == "all" for p in parts):
        if len(parts) > 1:
            raise ConfigError(f"{option or '--' + kind} {text!r}: 'all' cannot be combined "
                              "with other names")
        return None
    return list(dict.fromkeys(resolve(kind, p, option) for p in parts))


def resolve_subject(value: str) -> str:
    """``s1`` -> ``S1``."""
    return resolve("subject", value)


def resolve_roi(value: str) -> str:
    """``v4`` -> ``V4``, ``latocc`` -> ``LO``."""
    return resolve("roi", value)


def resolve_rois(text: str | Sequence[str]) -> list[str] | None:
    """``"V1,v2"`` -> ``["V1", "V2"]``; ``"all"`` -> None (every ROI)."""
    return resolve_many("roi", text)


def resolve_method(value: str) -> str:
    return resolve("method", value)


def resolve_target(value: str) -> str:
    return resolve("target", value)


def resolve_split(value: str) -> str:
    return resolve("split", value)


def resolve_metric(value: str) -> str:
    return resolve("metric", value)


def resolve_layer(value: str) -> str:
    return resolve("layer", value)


def resolve_kind(value: str) -> str:
    return resolve("kind", value, "--kind")


#: ``GROUP_FIELDS`` / ``--where`` field names whose values are names of a kind above
FIELD_KINDS: dict[str, str] = {"subject": "subject", "roi": "roi", "method": "method",
                               "target": "target", "protocol": "protocol", "layer": "layer"}
