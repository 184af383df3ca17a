"""Pure functions that build the documents the tracker stores (no database access).

Documents (``schema_version`` on every one):

- ``datasets``: a registered data directory: files with size and sha256, subjects,
  voxel counts per ROI.
- ``feature_runs``: a feature extraction: config, dataset, output file (host, path,
  size, sha256, shapes, per-image hash digest), device, timings, provenance.
- ``fit_runs``: a fit: config, feature run, subject, ROI, target, split indices, and a
  summary per split (plain numbers the server can sort and group).
- ``voxel_columns``: per-voxel arrays, one document per (run, split, field) holding the
  field as a little-endian ``bson.Binary`` array (``dtype`` says which: int32 voxel ids,
  float64 metrics, p and hyper-parameters, uint8 significance flags); a field of more
  than ``BUCKET_SIZE`` voxels is cut into chunks. Built by :func:`score_buckets`.
- ``partition_runs``: a variance partition between two feature spaces (``spaces.A``,
  ``spaces.B``: feature run, layer, label) for one subject and ROI; its per-voxel R2 of
  A, B, A+B and the unique / shared parts are score columns of split ``validation``
  (:func:`column_buckets`).
- ``noise_ceilings``: a noise-ceiling estimate per dataset, subject and split kind.

:func:`utc_now` is the tracker's one clock: every timestamp it stores is UTC.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from pipeline.core.vocab import METRICS

SCHEMA_VERSION = 1
#: most voxels in one score document (vim-1 has at most 73,728 per subject: one chunk)
BUCKET_SIZE = 500_000
#: per-voxel fields of a score-column document and how each is stored (numpy dtype strings)
COLUMN_DTYPES = {"voxel_ids": "<i4", "r": "<f8", "r2_corr": "<f8", "r2": "<f8", "hyper": "<f8",
                 "p": "<f8", "significant": "|u1",
                 # fwRF: each voxel's receptive field (degrees; pipeline.fit.fwrf.RF_COLUMNS)
                 "rf_x_deg": "<f8", "rf_y_deg": "<f8", "rf_size_deg": "<f8",
                 # variance partitions (partition_runs): R2 of A, B, A+B, the parts, the penalties
                 **dict.fromkeys(("r2_a", "r2_b", "r2_ab", "unique_a", "unique_b", "shared", "alpha_a",
                                  "alpha_b"), "<f8")}


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (every timestamp the tracker stores)."""
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware datetime: a naive one (an old server's) is taken as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def new_run_id(prefix: str) -> str:
    """A short random id: ``fe-`` for feature runs, ``fi-`` for fits."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def preprocessing_label(feature_config: Mapping[str, Any]) -> str:
    """A short label for grouping: the chain name plus ``+retinawarp`` when warped."""
    label = str(feature_config.get("preprocess", "?"))
    warp = feature_config.get("retina_warp")
    if warp:
        label += "+retinawarp"
    return label


def feature_run_doc(
    config: Mapping[str, Any], config_key: str, dataset: Mapping[str, Any], provenance: Mapping
) -> dict[str, Any]:
    """A new feature-run document (status is set by the run recorder)."""
    return {
        "_id": new_run_id("fe"),
        "schema_version": SCHEMA_VERSION,
        "kind": "features",
        "status": "QUEUED",
        "config": dict(config),
        "config_key": config_key,
        "dataset_id": dataset["_id"],
        "data_dir": dataset["data_dir"],
        "created": utc_now(),
        "provenance": dict(provenance),
        **({"layers": str(config.get("layer")).split(",")} if "," in str(config.get("layer", "")) else {}),
    }


def fit_run_doc(
    config: Mapping[str, Any],
    config_key: str,
    feature_run: Mapping[str, Any],
    subject: str,
    roi: str,
    provenance: Mapping,
    responses: Mapping[str, Any] | None = None,
    layer: str | None = None,
) -> dict[str, Any]:
    """A new fit-run document; feature fields are copied in so queries need no join.

    ``layer``: the one layer fitted of a several-layer feature run (``features.layer``;
    the run's layers are kept in ``features.run_layers``); None: the run's own layer.

    ``responses`` (``dataset_id``, ``data_dir``, ``sha256``) names the data the response
    file was read from (it may differ from the feature run's); the fit is filed under
    that dataset.
    """
    fconf = feature_run["config"]
    return {
        "_id": new_run_id("fi"),
        "schema_version": SCHEMA_VERSION,
        "kind": "fit",
        "status": "QUEUED",
        "config": dict(config),
        "config_key": config_key,
        "feature_run_id": feature_run["_id"],
        "dataset_id": responses["dataset_id"] if responses else feature_run.get("dataset_id"),
        "responses": dict(responses) if responses else None,
        "features": {
            "model": fconf.get("model"),
            "variant": fconf.get("variant"),
            "layer": layer if layer is not None else fconf.get("layer"),
            "weights": fconf.get("weights"),
            "weights_sha256": feature_run.get("weights_sha256"),
            "preprocess": fconf.get("preprocess"),
            "preprocessing": preprocessing_label(fconf),
            "config_key": feature_run["config_key"],
            **({"run_layers": str(fconf.get("layer", "")).split(",")} if layer is not None else {}),
        },
        "subject": subject,
        "roi": roi,
        "target": config.get("target", "voxels"),
        "created": utc_now(),
        "provenance": dict(provenance),
    }


def summarize(values: np.ndarray) -> dict[str, float | int | None]:
    """n, mean, SEM, std, median and quantiles of one metric over voxels (NaNs ignored)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return {"n": 0, "mean": None, "sem": None, "std": None, "median": None,
                "q10": None, "q25": None, "q75": None, "q90": None, "max": None}
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    srt = np.sort(v)  # quantiles of sorted values: the same numbers, 2x faster than partitioning
    q10, q25, med, q75, q90 = (float(x) for x in np.quantile(srt, [0.1, 0.25, 0.5, 0.75, 0.9]))
    return {"n": n, "mean": float(v.mean()), "sem": std / math.sqrt(n), "std": std,
            "median": med, "q10": q10, "q25": q25, "q75": q75, "q90": q90, "max": float(srt[-1])}


def split_summary(split: Any, r_threshold: float | None) -> dict[str, Any]:
    """The per-split summary stored on the fit run (one entry per split name)."""
    out: dict[str, Any] = {
        "kind": split.kind,
        "n_train": int(split.n_train),
        "n_test": int(split.n_test),
        "chance_r2_corr": 1.0 / (split.n_test - 1) if split.n_test > 1 else None,
        "r_threshold_p05": r_threshold,
    }
    for metric in METRICS:
        out[metric] = summarize(getattr(split, metric))
    r = np.asarray(split.r, dtype=np.float64)
    out["n_above_p05"] = int(np.sum(r > r_threshold)) if r_threshold is not None else None
    hyper = np.asarray(split.hyper, dtype=np.float64)
    out["hyper"] = summarize(hyper) if hyper.size else None
    if getattr(split, "p", None) is not None:
        sig = np.asarray(split.significant, dtype=bool)
        out["n_permutations"] = int(getattr(split, "n_permutations", 0))
        out["n_significant"] = int(sig.sum())  # BH-FDR within this split
        out["frac_significant"] = float(sig.mean()) if sig.size else None
    return out


def cs431_summary(splits: Sequence[Any]) -> dict[str, Any]:
    """The 2019 project's numbers: median over voxels of squared r, then mean over splits.

    Keys ``train``, ``test``, ``validation`` (the per-split models) hold that mean and
    the per-split medians; ``validation_all`` is the model refit on all training images.
    Labelled as the cs431 protocol wherever shown.
    """
    out: dict[str, Any] = {"metric": "median over voxels of r^2 (squared Pearson r), mean over splits"}
    for kind in ("train", "test", "validation"):
        medians = [float(np.nanmedian(np.asarray(s.r2_corr, dtype=np.float64)))
                   for s in splits if s.name.rstrip("0123456789") == kind and s.name != kind]
        out[kind] = {"mean": float(np.mean(medians)) if medians else None, "per_split": medians}
    final = [s for s in splits if s.name == "validation"]
    out["validation_all"] = (float(np.nanmedian(np.asarray(final[0].r2_corr, dtype=np.float64)))
                             if final else None)
    return out


def split_record(split: Any) -> dict[str, Any]:
    """Audit record of a split: exact indices (small) and their hash."""
    indices = None if split.test_indices is None else np.asarray(split.test_indices, dtype=np.int64)
    return {
        "name": split.name,
        "kind": split.kind,
        "n_train": int(split.n_train),
        "n_test": int(split.n_test),
        "test_indices": None if indices is None else indices.tolist(),
        "test_indices_sha256": None if indices is None else hashlib.sha256(indices.tobytes()).hexdigest(),
    }


def score_buckets(
    run_id: str, subject: str, roi: str, split: Any, voxel_ids: Sequence[int],
    bucket_size: int = BUCKET_SIZE,
) -> list[dict[str, Any]]:
    """Per-voxel arrays of one split as score-column documents (collection ``voxel_columns``).

    One document per field (``voxel_ids``, ``r``, ``r2_corr``, ``r2``, ``hyper`` and, when the
    fit computed them, ``p`` and ``significant``, and the split's ``extra`` columns: fwRF's
    ``rf_x_deg``, ``rf_y_deg``, ``rf_size_deg``) and chunk of at most ``bucket_size`` voxels:
    ``{schema_version, run_id, subject, roi, split, field, chunk, n, dtype, data}`` with
    ``data`` the values as a little-endian ``bson.Binary`` array of numpy type ``dtype``
    (:data:`COLUMN_DTYPES`: the fit's float64 values exactly; ids beyond int32 are stored as
    int64). NaN is kept as NaN. Decode with :func:`decode_column`.
    """
    from bson import Binary

    ids = np.asarray(voxel_ids, dtype=np.int64)
    columns: dict[str, np.ndarray] = {"voxel_ids": ids}
    columns.update({m: np.asarray(getattr(split, m), dtype=np.float64) for m in METRICS})
    columns["hyper"] = np.asarray(split.hyper, dtype=np.float64)
    if getattr(split, "p", None) is not None:  # permutation p and the BH flag
        columns["p"] = np.asarray(split.p, dtype=np.float64)
        columns["significant"] = np.asarray(split.significant, dtype=bool)
    for name, values in (getattr(split, "extra", None) or {}).items():  # fwRF: receptive fields
        if name not in COLUMN_DTYPES or name in columns:
            raise ValueError(f"split {split.name}: unknown per-voxel column {name!r}")
        columns[name] = np.asarray(values, dtype=np.float64)
    if any(a.shape != ids.shape for a in columns.values()):
        raise ValueError(f"split {split.name}: score arrays and voxel ids differ in length")
    dtypes = dict(COLUMN_DTYPES)
    if ids.size and (ids.min() < np.iinfo(np.int32).min or ids.max() > np.iinfo(np.int32).max):
        dtypes["voxel_ids"] = "<i8"
    base = {"schema_version": SCHEMA_VERSION, "run_id": run_id, "subject": subject, "roi": roi,
            "split": split.name}
    docs = []
    for chunk, start in enumerate(range(0, ids.size, bucket_size)):
        sl = slice(start, start + bucket_size)
        n = len(ids[sl])
        for name, values in columns.items():
            data = np.ascontiguousarray(values[sl], dtype=dtypes[name]).tobytes()
            docs.append({**base, "field": name, "chunk": chunk, "n": n, "dtype": dtypes[name],
                         "data": Binary(data)})
    return docs


#: bytes per held-out prediction document (at most; BSON allows 16 MiB)
PREDICTION_DOC_BYTES = 4 * 1024 * 1024
#: the per-image fields of a split (``prediction_docs``)
PREDICTION_FIELDS = ("y_true", "y_pred")


def prediction_docs(run_id: str, subject: str, roi: str, split: Any,
                    chunk_bytes: int = PREDICTION_DOC_BYTES) -> list[dict[str, Any]]:
    """Measured and predicted held-out responses of one split as ``voxel_columns`` documents.

    Only splits that carry them (``split.y_true``: the validation images). One document
    per field (``y_true``, ``y_pred``) and block of voxels: ``data`` is float32,
    voxel-major (``n`` voxels x ``n_images``, C order), blocks in voxel order (the order of
    the split's ``voxel_ids``), each at most ``chunk_bytes``.
    """
    from bson import Binary

    if getattr(split, "y_true", None) is None or getattr(split, "y_pred", None) is None:
        return []
    base = {"schema_version": SCHEMA_VERSION, "run_id": run_id, "subject": subject, "roi": roi,
            "split": split.name}
    n_images, v = split.y_true.shape
    step = max(1, chunk_bytes // (4 * max(n_images, 1)))
    docs = []
    for name in PREDICTION_FIELDS:
        values = np.asarray(getattr(split, name), dtype="<f4")
        for chunk, start in enumerate(range(0, v, step)):
            block = np.ascontiguousarray(values[:, start:start + step].T)
            docs.append({**base, "field": name, "chunk": chunk, "n": int(block.shape[0]),
                         "n_images": int(n_images), "dtype": "<f4", "data": Binary(block.tobytes())})
    return docs


def partition_run_doc(config: Mapping[str, Any], config_key: str, spaces: Mapping[str, Any], subject: str,
                      roi: str, responses: Mapping[str, Any], provenance: Mapping) -> dict[str, Any]:
    """A new variance-partition run document (``pa-`` id; status set by the run recorder)."""
    return {
        "_id": new_run_id("pa"),
        "schema_version": SCHEMA_VERSION,
        "kind": "partition",
        "status": "QUEUED",
        "config": dict(config),
        "config_key": config_key,
        "spaces": {k: dict(v) for k, v in spaces.items()},
        "dataset_id": responses["dataset_id"],
        "responses": dict(responses),
        "subject": subject,
        "roi": roi,
        "created": utc_now(),
        "provenance": dict(provenance),
    }


def column_buckets(run_id: str, subject: str, roi: str, split: str, voxel_ids: Sequence[int],
                   columns: Mapping[str, np.ndarray], bucket_size: int = BUCKET_SIZE) -> list[dict[str, Any]]:
    """Score-column documents of any per-voxel float64 ``columns`` (names of
    :data:`COLUMN_DTYPES`) and the voxel ids: the layout of :func:`score_buckets`."""
    from bson import Binary

    ids = np.asarray(voxel_ids, dtype=np.int64)
    cols = {"voxel_ids": ids, **{k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}}
    if any(a.shape != ids.shape for a in cols.values()):
        raise ValueError(f"split {split}: per-voxel arrays and voxel ids differ in length")
    base = {"schema_version": SCHEMA_VERSION, "run_id": run_id, "subject": subject, "roi": roi,
            "split": split}
    docs = []
    for chunk, start in enumerate(range(0, ids.size, bucket_size)):
        sl = slice(start, start + bucket_size)
        for name, values in cols.items():
            dtype = COLUMN_DTYPES[name]
            data = np.ascontiguousarray(values[sl], dtype=dtype).tobytes()
            docs.append({**base, "field": name, "chunk": chunk, "n": len(ids[sl]), "dtype": dtype,
                         "data": Binary(data)})
    return docs


def decode_column(doc: Mapping[str, Any]) -> np.ndarray:
    """The values of one score-column document: int64 voxel ids, else float64 (a read-only
    view of the document's bytes when they are stored that way already)."""
    values = np.frombuffer(doc["data"], dtype=np.dtype(doc["dtype"]))
    return values.astype(np.int64 if doc["field"] == "voxel_ids" else np.float64, copy=False)


def nan_to_none(a: np.ndarray) -> list[float | None]:
    """Floats for BSON lists, NaN and infinities -> None (server-side averages skip them)."""
    return [None if not math.isfinite(x) else x for x in np.asarray(a, dtype=np.float64).tolist()]
