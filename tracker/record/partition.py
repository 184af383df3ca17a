"""Variance partitioning runs: ``tracker partition A B`` (:func:`partition_and_log`).

``A`` and ``B`` name feature spaces: a feature run (``fe-1a2b``), one layer of a
several-layer feature run (``fe-1a2b:conv1``), or a fit run (``fi-3c4d``: its feature run
and layer, and by default its subject and ROI). Both must come from the same dataset
(the same images in the same order; their preprocessing may differ: raw vs
retina-warped). The kernels of each space are accumulated from feature blocks on disk
(:func:`pipeline.fit.streamed.accumulate_kernels`), the three models (A, B, banded A+B)
are fitted on all training images with their penalties chosen by CV inside them and
scored on the validation images (:func:`pipeline.fit.partition.variance_partition`).
The run is a ``partition_runs``
document; its per-voxel arrays are score columns of split ``validation``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.keys import content_key
from pipeline.data.layout import canonical_roi, canonical_subject
from pipeline.data.responses import load_responses
from tracker.db import documents
from tracker.db.settings import Settings
from tracker.db.store import Store
from tracker.record import provenance
from tracker.record.datasets import register_dataset, responses_sha256
from tracker.record.layers import fit_layer, run_layers, verified_path
from tracker.record.runs import RunRecorder
from tracker.record.workflows import Outcome

ProgressFn = Callable[[str, int, int], None]
#: the partition's settings (recorded as its config; part of its key)
DEFAULT_CONFIG = {"method": "banded", "cv": "loo", "standardize": True, "alphas": "default",
                  "ratios": "tr(Ka)/tr(Kb) x 10^[-2..2] (9) + {0, inf}", "metric": "r2",
                  "split": "validation"}


def resolve_space(store: Store, spec: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """``(space record, feature run, fit context)`` of ``A`` / ``B`` (see the module docstring).

    The fit context holds the subject and ROI of a fit run (empty for a feature run).
    """
    run_id, _, layer = str(spec).partition(":")
    coll, run = store.get_run(run_id)
    context: dict[str, str] = {}
    if coll == "fit_runs":
        context = {"subject": run["subject"], "roi": run["roi"]}
        fit_layer_name = (run.get("features") or {}).get("layer")
        _, frun = store.get_run(run["feature_run_id"])
        layer = layer or (fit_layer_name if len(run_layers(frun)) > 1 else "")
    elif coll == "feature_runs":
        frun = run
    else:
        raise ConfigError(f"{spec!r}: name a feature run (fe-...) or a fit run (fi-...), not a {coll} run")
    if frun.get("status") != "COMPLETED":
        raise ConfigError(f"feature run {frun['_id']} is {frun.get('status')}, not COMPLETED")
    chosen = fit_layer(frun, layer or None)
    name = chosen or run_layers(frun)[0]
    label = f"{name} ({documents.preprocessing_label(frun['config'])})"
    if frun["config"].get("model") != "alexnet":
        label = f"{frun['config'].get('model')} {label}"
    space = {"feature_run_id": frun["_id"], "config_key": frun["config_key"], "layer": name,
             "file_layer": chosen, "label": label}
    return space, frun, context


def _pick(name: str, given: str | None, contexts: list[dict[str, str]]) -> str:
    values = {c[name] for c in contexts if name in c}
    if given is not None:
        return given
    if len(values) == 1:
        return values.pop()
    raise ConfigError(f"--{name}: give the {name} (the spaces' fits name "
                      f"{', '.join(sorted(values)) or 'none'})")


def partition_and_log(store: Store, settings: Settings, a: str, b: str, subject: str | None = None,
                      roi: str | None = None, data_dir: Path | None = None, force: bool = False,
                      progress: ProgressFn | None = None) -> Outcome:
    """Partition the validation R2 of every voxel of ``subject``/``roi`` between feature
    spaces ``a`` and ``b`` and record it (a finished identical partition is reused)."""
    from pipeline.features.reader import file_layers, iter_column_blocks
    from pipeline.fit.partition import variance_partition
    from pipeline.fit.streamed import accumulate_kernels

    (space_a, frun_a, ctx_a), (space_b, frun_b, ctx_b) = resolve_space(store, a), resolve_space(store, b)
    if (space_a["config_key"], space_a["layer"]) == (space_b["config_key"], space_b["layer"]):
        raise ConfigError("A and B are the same feature space: name two layers, preprocessings or models")
    if frun_a.get("dataset_id") != frun_b.get("dataset_id"):
        raise ConfigError(f"feature runs {frun_a['_id']} and {frun_b['_id']} were extracted from different "
                          "datasets: both spaces must see the same images in the same order")
    subject = canonical_subject(_pick("subject", subject, [ctx_a, ctx_b]))
    roi = canonical_roi(_pick("roi", roi, [ctx_a, ctx_b]))
    data_dir = Path(data_dir) if data_dir is not None else Path(frun_a["data_dir"])
    dataset = register_dataset(store, data_dir)
    responses = {"dataset_id": dataset["_id"], "data_dir": dataset["data_dir"],
                 "sha256": responses_sha256(dataset)}
    ident = [{k: s[k] for k in ("config_key", "layer")} for s in (space_a, space_b)]
    key = content_key("partition", DEFAULT_CONFIG, ident, subject, roi, responses["sha256"])
    existing = store.find_completed("partition_runs", key)
    if existing is not None and not force:
        return Outcome(existing, True)
    clean = load_responses(data_dir, subject).select(roi)
    doc = documents.partition_run_doc(DEFAULT_CONFIG, key, {"A": space_a, "B": space_b}, subject, roi,
                                      responses, provenance.collect())
    with RunRecorder(store, "partition_runs", doc) as rec:
        kernels, n_features = [], {}
        for tag, space, frun in (("A", space_a, frun_a), ("B", space_b, frun_b)):
            rec.progress(f"kernels:{tag}", len(kernels), 2)
            path = verified_path(frun["output"], settings)
            counts = file_layers(path)[2]
            blocks = iter_column_blocks(path, space["file_layer"], ("train", "val"))
            K, K_val, n_features[tag] = accumulate_kernels(blocks, counts["train"], counts["val"])
            kernels.append((K, K_val))
        if progress is not None:
            progress("partition", 0, 1)
        res = variance_partition((kernels[0][0], kernels[1][0]), (kernels[0][1], kernels[1][1]),
                                 clean.train, clean.val)
        cols = {**res.columns(), "alpha_a": res.alpha_a, "alpha_b": res.alpha_b}
        rec.insert_buckets(documents.column_buckets(rec.run_id, subject, roi, "validation",
                                                    clean.voxel_ids, cols))
        rec.complete(_fields(res, clean, n_features), replace=force)
    return Outcome(rec.final_run(), reused=rec.final_id != rec.run_id)


def _fields(res: Any, clean: Any, n_features: Mapping[str, int]) -> dict[str, Any]:
    """The result fields of a partition run: counts and per-field summaries over voxels."""
    return {
        "n_voxels": int(clean.train.shape[1]),
        "n_train": int(clean.train.shape[0]),
        "n_val": int(clean.val.shape[0]),
        "n_features": dict(n_features),
        "summary": {"validation": {name: documents.summarize(v) for name, v in res.columns().items()}},
        "negatives": {name: int((v < 0).sum()) for name, v in res.columns().items()},
        "timings": dict(res.timings),
    }
