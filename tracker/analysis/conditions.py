"""Conditions: the full identity of a fit except its voxels.

A comparison is between *conditions*. Two fits belong to one condition when they agree
on every identity field below; they may differ only in which voxels they scored
(subject, ROI, target voxels). :func:`identities` reads those fields from fit documents
(joined with their feature runs for what a fit document does not copy), and
:func:`check_groups` refuses a grouping in which some field varies inside a group
without being named (``--by``), filtered (``--where``) or aggregated by a policy
(``--over``).

Identity fields
---------------
- data: ``dataset``;
- features: ``model``, ``variant``, ``weights`` (the label: ``random:SEED`` or a file
  name), ``weights_sha256`` (the bytes), ``layer``, ``preprocessing`` (chain plus
  ``+retinawarp``, and the warp's parameters when they are not the defaults), and any
  other feature setting that changes the numbers (``features.weights_map`` ...);
- fit: ``method``, ``protocol``, ``target``, ``grid`` (ridge alphas / PLS component
  counts), ``cv``, ``standardize``, ``seed``, ``test_fraction``, ``significance``
  (permutations, their seed and the FDR level) and every other fit-config field
  (cs431's ``n_splits`` and ``feature_subset``, a method's own grid ...).

Not identity (they select voxels or say how the work ran): ``subject``, ``roi`` and
the execution settings :data:`EXECUTION_FIELDS` of the feature run (batch size, device,
backend, float precision), which ``tracker runs diff`` still shows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipeline.core.errors import ConfigError
from tracker.analysis.fields import FIT_FIELDS
from tracker.db.store import Store

#: feature-config fields that say how the work ran, not what was computed
EXECUTION_FIELDS = frozenset({"batch_size", "device", "backend", "precision"})
#: fields that select voxels (a condition is everything else)
VOXEL_FIELDS = ("subject", "roi")
#: fit-config keys folded into one named field
_GRID_KEYS = ("alphas", "n_components")
_SIGNIFICANCE_KEYS = ("n_permutations", "permutation_seed", "fdr_q")
#: feature-config keys read elsewhere (their own field) or not identity
_FEATURE_NAMED = frozenset({"model", "variant", "layer", "layers", "weights", "preprocess",
                            "retina_warp"})
_FIT_NAMED = frozenset({"method", "protocol", "target", *_GRID_KEYS, *_SIGNIFICANCE_KEYS})

#: identity fields every fit has, in display order (others come from config keys)
CONDITION_FIELDS: tuple[str, ...] = (
    "model", "variant", "weights", "weights_sha256", "layer", "preprocessing",
    "method", "protocol", "target", "grid", "cv", "standardize", "seed", "test_fraction",
    "significance", "dataset",
)
#: what ``--by`` accepts besides condition fields
EXTRA_BY_FIELDS: tuple[str, ...] = (*VOXEL_FIELDS, "feature_run")
#: the fit-run fields :func:`identities` reads
READ_FIELDS: tuple[str, ...] = ("subject", "roi", "target", "dataset_id", "config",
                                "features", "feature_run_id", "responses.sha256", "n_voxels")


def _text(value: Any) -> str:
    """A canonical, readable form of one value (JSON for lists and dicts; '-' for None)."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _grid(config: Mapping[str, Any]) -> str:
    """``alphas: 25 in 0.01..1e+10 [ab12cd]``: count, range and a short hash of the values."""
    parts = []
    for k in _GRID_KEYS:
        values = config.get(k)
        if values is None:
            continue
        vals = list(values) if isinstance(values, (list, tuple)) else [values]
        digest = hashlib.sha256(_text(vals).encode()).hexdigest()[:6]
        nums = [v for v in vals if isinstance(v, (int, float))]
        span = f"{min(nums):g}..{max(nums):g}" if len(nums) > 1 else _text(vals)
        parts.append(f"{k}: {len(vals)} in {span} [{digest}]")
    return "; ".join(parts) or "-"


def _preprocessing(feats: Mapping[str, Any], fconf: Mapping[str, Any]) -> str:
    """The chain label (``caffe``, ``caffe+retinawarp``), plus the warp's parameters
    when they are not the defaults."""
    label = _text(feats.get("preprocessing"))
    warp = fconf.get("retina_warp")
    if warp and not isinstance(warp, (str, bool)):
        label += _text(warp)
    return label


def _significance(config: Mapping[str, Any]) -> str:
    n = config.get("n_permutations")
    if not n:
        return "none"
    return f"{n} permutations, seed {config.get('permutation_seed')}, q={config.get('fdr_q')}"


def identity(fit: Mapping[str, Any], feature_run: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The identity fields of one fit (see the module docstring), as canonical text.

    Parameters
    ----------
    fit
        A fit-run document (at least :data:`READ_FIELDS`).
    feature_run
        Its feature run (``config``, ``weights_sha256``), or None when it is gone: then
        the feature fields copied onto the fit are all there is.
    """
    feats = fit.get("features") or {}
    fconf = dict((feature_run or {}).get("config") or {})
    config = fit.get("config") or {}
    out = {
        "model": _text(feats.get("model")),
        "variant": _text(feats.get("variant")),
        "weights": _text(feats.get("weights")),
        "weights_sha256": _text(feats.get("weights_sha256")
                                or (feature_run or {}).get("weights_sha256")),
        "layer": _text(feats.get("layer")),
        "preprocessing": _preprocessing(feats, fconf),
        "method": _text(config.get("method")),
        "protocol": _text(config.get("protocol")),
        "target": _text(fit.get("target", config.get("target"))),
        "grid": _grid(config),
        "significance": _significance(config),
        "dataset": _text(fit.get("dataset_id")),
    }
    for key in sorted(config):
        if key not in _FIT_NAMED:
            out[key] = _text(config[key])
    for key in sorted(fconf):
        if key not in _FEATURE_NAMED and key not in EXECUTION_FIELDS:
            out[f"features.{key}"] = _text(fconf[key])
    for name in CONDITION_FIELDS:
        out.setdefault(name, "-")
    return out


def identities(store: Store, fits: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """``fit id -> identity`` for ``fits``, their feature runs read in one query."""
    ids = sorted({f.get("feature_run_id") for f in fits if f.get("feature_run_id")})
    fruns = {d["_id"]: d for d in store.find_runs(
        "feature_runs", {"_id": {"$in": ids}}, projection={"config": 1, "weights_sha256": 1})}
    return {f["_id"]: identity(f, fruns.get(f.get("feature_run_id"))) for f in fits}


def by_value(fit: Mapping[str, Any], ident: Mapping[str, str], name: str) -> str:
    """The value of a ``--by`` field of one fit (condition fields and voxel selectors)."""
    if name in ident:
        return ident[name]
    if name == "feature_run":
        return _text(fit.get("feature_run_id"))
    if name in VOXEL_FIELDS:
        return _text(fit.get(name))
    raise KeyError(name)


def by_choices(idents: Iterable[Mapping[str, str]] = ()) -> list[str]:
    """Every name ``--by`` / ``--over`` accept (plus the config keys seen in ``idents``)."""
    names = dict.fromkeys((*EXTRA_BY_FIELDS, *CONDITION_FIELDS))
    for ident in idents:
        names.update(dict.fromkeys(ident))
    return list(names)


def check_names(flag: str, names: Sequence[str], choices: Sequence[str]) -> list[str]:
    """``names`` if every one is in ``choices``; else one error naming the flag."""
    bad = [n for n in names if n not in choices]
    if bad:
        raise ConfigError(f"{flag} {','.join(names)!r}: unknown field(s) {', '.join(bad)}; "
                          f"choose from {', '.join(choices)}")
    return list(names)


def varying(idents: Iterable[Mapping[str, str]], fixed: Iterable[str]) -> dict[str, list[str]]:
    """Identity fields (not in ``fixed``) with more than one value among ``idents``."""
    seen: dict[str, set[str]] = {}
    skip = set(fixed)
    for ident in idents:
        for name, value in ident.items():
            if name not in skip:
                seen.setdefault(name, set()).add(value)
    return {n: sorted(v) for n, v in seen.items() if len(v) > 1}


def held_fixed(idents: Sequence[Mapping[str, str]], exclude: Iterable[str] = ()) -> dict[str, str]:
    """Identity fields with one value across ``idents`` (for captions), minus ``exclude``."""
    if not idents:
        return {}
    skip = set(exclude)
    first = idents[0]
    return {n: v for n, v in first.items()
            if n not in skip and all(i.get(n) == v for i in idents[1:])}


def _where_hint(field: str, values: Sequence[str]) -> str | None:
    """A ``--where`` that would pick one value of ``field`` (None if it is not filterable)."""
    if field not in FIT_FIELDS or FIT_FIELDS[field][1] is not str:
        return None
    return f"--where '{field}={values[-1]}'"


def primary_fields(idents: Sequence[Mapping[str, str]], fields: Mapping[str, list[str]]
             ) -> tuple[dict[str, list[str]], list[str]]:
    """Split varying fields into primary ones and those that follow from an earlier one
    (``grid`` follows from ``method`` when each method has one grid)."""
    order = [n for n in CONDITION_FIELDS if n in fields] + [n for n in fields
                                                            if n not in CONDITION_FIELDS]
    primary: dict[str, list[str]] = {}
    follows: list[str] = []
    for name in order:
        for g in primary:
            image: dict[str, set[str]] = {}
            for ident in idents:
                image.setdefault(ident.get(g, "-"), set()).add(ident.get(name, "-"))
            if all(len(v) == 1 for v in image.values()):
                follows.append(name)
                break
        else:
            primary[name] = fields[name]
    return primary, follows


def mixing_error(problems: Mapping[str, tuple[Mapping[str, list[str]], Sequence[Mapping[str, str]]]],
                 by: Sequence[str], over: Sequence[str], by_hint: bool = True) -> ConfigError:
    """One error for groups that mix conditions: the first group named in full."""
    label, (all_fields, idents) = next(iter(problems.items()))
    fields, follows = primary_fields(idents, all_fields)
    names = list(fields)
    parts = " and ".join(f"{n} ({', '.join(v)})" for n, v in fields.items())
    if follows:
        parts += f" ({', '.join(follows)} vary with it)"
    hints = [f"add --by {','.join([*by, *names])}"] if by_hint else []
    where = [h for n in names if (h := _where_hint(n, fields[n]))]
    if where:
        hints.append(f"filter with {' '.join(where)}")
    if "seed" in names and "seed" not in over:
        hints.append(f"average seeds per voxel with {'--over' if by_hint else '--average'} seed")
    more = f" (and {len(problems) - 1} more group(s))" if len(problems) > 1 else ""
    return ConfigError(f"group {label} mixes {parts}{more}: {' or '.join(hints)}; "
                       "a comparison never pools fits of different conditions")


def group_label(key: Sequence[str]) -> str:
    """``('S1', 'ridge')`` -> ``S1/ridge`` (``all`` for the one group of an empty --by)."""
    return "/".join(key) if key else "all"


def check_groups(groups: Mapping[tuple, Sequence[Mapping[str, str]]], by: Sequence[str],
                 over: Sequence[str] = (), by_hint: bool = True) -> None:
    """Raise :func:`mixing_error` if, inside any group, an identity field not in ``by``
    or ``over`` takes more than one value."""
    problems = {}
    for key, idents in groups.items():
        bad = varying(idents, (*by, *over))
        if bad:
            problems[group_label(key)] = (bad, idents)
    if problems:
        raise mixing_error(problems, by, over, by_hint)


def untrained(ident: Mapping[str, str]) -> str | None:
    """``"untrained (random:SEED)"`` for seeded random weights, else None."""
    w = ident.get("weights", "")
    return f"untrained ({w})" if w.startswith("random:") else None
