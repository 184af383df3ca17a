"""Library functions behind the scripts and CLI: register data, extract features, fit.

Each function records what it does in the database and reuses finished work:
the same config on the same inputs returns the completed run instead of recomputing
(``force=True`` recomputes and retires the old run as SUPERSEDED).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError, DataFormatError, IntegrityError
from pipeline.core.keys import content_key
from pipeline.data.layout import canonical_roi, canonical_subject
from pipeline.data.responses import load_responses
from pipeline.data.stimuli import iter_stimuli, stimulus_count
from tracker.db import documents
from tracker.db.settings import Settings
from tracker.db.store import Store
from tracker.record import provenance
from tracker.record.chunked import check_voxel_chunks, chunked_fit
from tracker.record.datasets import register_dataset, responses_sha256
from tracker.record.feature_files import fwrf_maps, resolve_feature_path
from tracker.record.layers import fit_layer, streamable, streamed_fit, verified_path
from tracker.record.runs import RunRecorder
from tracker.record.spool import Spool

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Outcome:
    """A run this call produced or found: ``reused`` says which."""

    run: dict[str, Any]
    reused: bool
    #: the database could not take the run: it waits in the spool for ``tracker sync``
    spooled: bool = False

    @property
    def run_id(self) -> str:
        return str(self.run["_id"])


# ------------------------------------------------------------------ features
def verify_feature_file(output: dict[str, Any], settings: Settings) -> Path:
    """Resolve the recorded file and check its sha256 (IntegrityError when it changed)."""
    from pipeline.core.files import sha256_file

    path = resolve_feature_path(output, settings)
    found = sha256_file(path)
    if found != output["sha256"]:
        raise IntegrityError(
            f"feature file {path} changed since it was recorded: sha256 {found[:16]}... "
            f"!= recorded {output['sha256'][:16]}...; re-extract with --force"
        )
    return path


def feature_runtime(config: Any) -> dict[str, Any]:
    """The runtime identity a feature config runs under here (activates its Keras backend):
    backend and version, device, precision switches, compilation
    (:func:`pipeline.features.backend.runtime_identity`)."""
    from pipeline.features.backend import runtime_identity

    return runtime_identity(config.backend, config.precision, config.device)


def runtime_key_fields(runtime: dict[str, Any]) -> dict[str, Any]:
    """The parts of a runtime identity that change the numbers (free memory and counts left out)."""
    device = runtime.get("device", {})
    return {
        "backend": runtime.get("backend"), "backend_version": runtime.get("backend_version"),
        "keras": runtime.get("keras"),
        "device": {k: device.get(k) for k in ("kind", "name", "driver", "cuda")},
        "precision": runtime.get("precision"), "tf32": runtime.get("tf32"),
        "matmul_precision": runtime.get("matmul_precision"), "compiled": runtime.get("compiled"),
        "xla": runtime.get("xla"),
    }


def feature_key(store: Store, data_dir: Path, config: Any) -> tuple[str, dict[str, Any], str]:
    """``(config_key, dataset document, weights sha256)`` of a feature extraction.

    The key covers the config, the weights' bytes (not only their path), the data's
    content and what changes the numbers where it runs (backend and version, device,
    float32 matmul precision, compilation: :func:`runtime_key_fields`), so the same work
    on the same kind of machine has the same key.
    """
    from pipeline.features.alexnet.weights import weights_sha256

    dataset = register_dataset(store, data_dir)
    wsha = weights_sha256(config.weights, config.variant)
    runtime = runtime_key_fields(feature_runtime(config))
    key = content_key("features", config.to_dict(), wsha, dataset["content_sha256"], runtime)
    return key, dataset, wsha


def fit_key(feature_config_key: str, config: Any, subject: str, roi: str, responses: str,
            layer: str | None = None) -> str:
    """``config_key`` of a fit: its config, the feature run's key, subject, ROI and the
    sha256 of the response file it reads (``responses``), so a fit of other responses
    (a copy with other rows, a file replaced in place) is never taken for this one.
    ``layer``: the layer of a several-layer feature run
    (:func:`tracker.record.layers.fit_layer`; None keeps single-layer keys unchanged)."""
    parts: list[Any] = ["fit", config.to_dict(), feature_config_key, subject, roi, responses]
    if layer is not None:
        parts.append({"layer": layer})
    return content_key(*parts)


def extract_and_log(
    store: Store,
    settings: Settings,
    data_dir: Path,
    config: Any,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> Outcome:
    """Extract features for every train and validation image and record the run.

    Parameters
    ----------
    config
        A :class:`pipeline.features.config.FeatureConfig`.
    """
    from pipeline.features.extractor import build_extractor
    from pipeline.features.writer import write_feature_file

    key, dataset, wsha = feature_key(store, data_dir, config)
    existing = store.find_completed("feature_runs", key)
    if existing is not None and not force:
        verify_feature_file(existing["output"], settings)
        return Outcome(existing, True)

    doc = documents.feature_run_doc(config.to_dict(), key, dataset, provenance.collect())
    doc["runtime"] = feature_runtime(config)
    out_dir = settings.feature_root
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = (out_dir / f"{key[:12]}_{doc['_id']}.h5").resolve()
    with RunRecorder(store, "feature_runs", doc, spool=_spool(store, settings)) as rec:
        report = _chain(rec.progress, progress)
        extractor = build_extractor(config)
        splits = {
            split: (stimulus_count(data_dir, split),
                    iter_stimuli(data_dir, split, extractor.batch_size))
            for split in ("train", "val")
        }
        try:
            info = write_feature_file(out_path, extractor, splits, config, progress=report)
        except OSError as exc:  # a full disk, no permission: one clear error, no file left
            raise file_write_error(out_path, exc) from None
        info_dict = info.to_dict()
        output = {"host": socket.gethostname(), **info_dict, "path": str(out_path)}
        fields = {
            "output": output,
            "device": info_dict.get("device"),
            "timings": {"seconds": info_dict.get("seconds"), "images_per_s": info_dict.get("images_per_s")},
            "weights_sha256": wsha,
            "runtime": extractor.runtime,
        }
        rec.complete(fields, replace=force)
    return _outcome(rec)


def file_write_error(path: Path, exc: OSError) -> DataFormatError:
    """The one-line error for a file that could not be written (with the free space)."""
    import re
    import shutil

    code = exc.errno or next((int(m) for m in re.findall(r"errno = (\d+)", str(exc))), None)
    reason = os.strerror(code) if code else (str(exc).splitlines() or ["unknown error"])[0]
    try:
        free = f"; {shutil.disk_usage(path.parent).free / 1e6:.0f} MB free there"
    except OSError:
        free = ""
    return DataFormatError(f"could not write {path}: {reason}{free} (nothing was left at that path)")


# ------------------------------------------------------------------------ fits
def _chain(*fns: ProgressFn | None) -> ProgressFn:
    live = [f for f in fns if f is not None]

    def report(stage: str, done: int, total: int) -> None:
        for f in live:
            f(stage, done, total)

    return report


def _spool(store: Store, settings: Settings) -> Spool:
    """Where a run's documents go while the database is unreachable."""
    return Spool(settings.spool_dir, store.db_name)


def _outcome(rec: RunRecorder) -> Outcome:
    """The run holding the result; ``reused`` when a racing process completed it first."""
    return Outcome(rec.final_run(), reused=rec.final_id != rec.run_id, spooled=rec.spooled is not None)


def load_features(run: dict[str, Any], settings: Settings, layer: str | None = None):
    """Verified features of a completed feature run (``layer`` of a several-layer run:
    default its primary one), flattened to (N, h*w*c) float32."""
    from pipeline.features.reader import read_feature_file

    if run.get("kind") != "features":
        raise ConfigError(f"run {run['_id']} is not a feature run")
    if run.get("status") != "COMPLETED":
        raise ConfigError(f"feature run {run['_id']} is {run.get('status')}, not COMPLETED")
    path = resolve_feature_path(run["output"], settings)
    return read_feature_file(path, expected_sha256=run["output"]["sha256"], flatten=True, layer=layer)


def fit_and_log(
    store: Store,
    settings: Settings,
    feature_run_id: str,
    subject: str,
    roi: str,
    config: Any,
    data_dir: Path | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    features: Any = None,
    n_chunks: int | None = None,
    client: Any = None,
    voxel_block: int | None = None,
    layer: str | None = None,
) -> Outcome:
    """Fit one encoding model (``config``: :class:`pipeline.fit.config.FitConfig`) and record it.

    ``features`` may pass an already loaded feature file, or a function returning one
    (called only if the fit is not reused), so several fits share one read.

    ``n_chunks`` > 1 splits a voxel-target fit of the recommended protocol into voxel
    chunks (:func:`tracker.record.chunked.chunked_fit`): kernels once, chunks as tasks on the Dask
    ``client`` (None: one after another here), merged into this one run. Chunking is an
    execution detail: same ``config_key``, same numbers; the run's ``execution`` field
    says how it ran. Other fits ignore it. ``voxel_block`` overrides the column block
    chunks are aligned to (tests; the default is the estimator's). ``layer``: which layer
    of a several-layer feature run (:func:`tracker.record.layers.fit_layer`); fits of the
    recommended protocol read it as column blocks (:func:`tracker.record.layers.streamed_fit`).
    """
    collection, frun = store.get_run(feature_run_id)
    if collection != "feature_runs":
        raise ConfigError(f"--features {feature_run_id!r} is a fit run ({frun['_id']}): give a feature "
                          "run id (fe-...; `tracker runs list --kind features` lists them)")
    subject, roi = canonical_subject(subject), canonical_roi(roi)
    data_dir = Path(data_dir) if data_dir is not None else Path(frun["data_dir"])
    dataset = register_dataset(store, data_dir)
    responses = {"dataset_id": dataset["_id"], "data_dir": dataset["data_dir"],
                 "sha256": responses_sha256(dataset)}
    chosen = fit_layer(frun, layer)
    key = fit_key(frun["config_key"], config, subject, roi, responses["sha256"], layer=chosen)
    existing = store.find_completed("fit_runs", key)
    if existing is not None and not force:
        return Outcome(existing, True)
    clean = load_responses(data_dir, subject).select(roi)
    if callable(features):
        features = features()
    stream = config.method != "fwrf" and streamable(config, preloaded=features is not None)
    ff = features if features is not None or stream else load_features(frun, settings, chosen)

    doc = documents.fit_run_doc(config.to_dict(), key, frun, subject, roi, provenance.collect(
        seeds={"split_seed": getattr(config, "seed", None)}), responses=responses, layer=chosen)
    n_chunks = check_voxel_chunks(n_chunks, "n_chunks")
    from pipeline.fit.protocols import run_fit

    with RunRecorder(store, "fit_runs", doc, spool=_spool(store, settings)) as rec:
        report = _chain(rec.progress, progress)
        if config.method == "fwrf":  # feature maps, not flat features
            ff_maps = fwrf_maps(ff, frun, settings, config.layers)
            result = run_fit(*ff_maps, clean.train, clean.val, config, progress=report)
            execution: dict[str, Any] = {"mode": "single", "n_chunks": 1}
            if n_chunks is not None and n_chunks > 1:
                execution.update(requested_chunks=n_chunks, note="not split: fwRF fits run whole")
        elif stream:
            result, execution = streamed_fit(verified_path(frun["output"], settings), chosen, clean,
                                             config, n_chunks, client, voxel_block, report)
        else:
            result, execution = _run_model(ff, clean, config, n_chunks, client, voxel_block, report)
        buckets, fields = _fit_record(rec.run_id, subject, roi, config, clean, ff, result)
        rec.insert_buckets(buckets)
        rec.complete({**fields, "execution": execution}, replace=force)
    return _outcome(rec)


def _run_model(ff: Any, clean: Any, config: Any, n_chunks: int | None, client: Any,
               voxel_block: int | None, report: ProgressFn) -> tuple[Any, dict[str, Any]]:
    """Fit features ``ff`` to responses ``clean``: (result, how it was executed)."""
    from pipeline.fit.chunks import chunkable
    from pipeline.fit.protocols import run_fit

    if n_chunks is not None and n_chunks > 1 and chunkable(config):
        return chunked_fit(client, ff.train, ff.val, clean.train, clean.val, config, n_chunks,
                           block=voxel_block, progress=report)
    result = run_fit(ff.train, ff.val, clean.train, clean.val, config, progress=report)
    execution: dict[str, Any] = {"mode": "single", "n_chunks": 1}
    if n_chunks is not None and n_chunks > 1:
        execution["requested_chunks"] = n_chunks
        execution["note"] = "not split: only voxel-target fits of the recommended protocol are"
    return result, execution


def _fit_record(run_id: str, subject: str, roi: str, config: Any, clean: Any, ff: Any,
                result: Any) -> tuple[list[dict], dict[str, Any]]:
    """The score columns of a fit and the result fields of its run document."""
    from pipeline.evaluation.scores import r_threshold

    voxel_ids = clean.voxel_ids if config.target == "voxels" else [0]
    buckets = []
    summary = {}
    for split in result.splits:
        buckets += documents.score_buckets(run_id, subject, roi, split, voxel_ids)
        buckets += documents.prediction_docs(run_id, subject, roi, split)
        thr = r_threshold(split.n_test, 0.05) if split.n_test > 2 else None
        summary[split.name] = documents.split_summary(split, thr)
    fields = {
        "n_voxels": int(clean.train.shape[1]),
        "n_voxels_total": int(clean.n_total),
        "n_dropped_nan": int(clean.n_dropped),
        "n_features": int(result.n_features if config.method == "fwrf" or ff is None
                          else ff.train.shape[1]),
        "splits": [documents.split_record(s) for s in result.splits],
        "summary": summary,
        "predictions": {
            name: {"y_true": [float(x) for x in yt], "y_pred": [float(x) for x in yp]}
            for name, (yt, yp) in (result.predictions or {}).items()
        },
        "timings": dict(result.timings),
        "n_alpha_at_edge": getattr(result, "n_alpha_at_edge", None),
        "cs431": documents.cs431_summary(result.splits) if config.protocol == "cs431" else None,
    }
    return buckets, fields


def default_data_dir(settings: Settings) -> Path:
    """The configured data directory (``TRACKER_DATA_DIR``), absolute."""
    return Path(os.path.abspath(settings.data_dir))


def check_data_dir(data_dir: Path) -> Path:
    """``data_dir`` if it holds a readable vim-1 response file, else one clear
    DataFormatError (missing directory, no ``EstimatedResponses.mat``, not a MATLAB file)."""
    from pipeline.data.matfiles import mat_version

    path = Path(data_dir)
    if not path.is_dir():
        raise DataFormatError(f"--data-dir {path}: no such directory")
    responses = path / "EstimatedResponses.mat"
    if not responses.is_file():
        raise DataFormatError(f"--data-dir {path} holds no EstimatedResponses.mat: point it at a "
                              "vim-1 download (or `tracker data synth` output)")
    mat_version(responses)  # DataFormatError for an empty or corrupt file
    return path


def ensure_data(settings: Settings, preset: str = "demo", progress: ProgressFn | None = None) -> Path:
    """The configured data directory; generate the synthetic demo set there if none is
    configured (``TRACKER_DATA_DIR`` unset) and it does not exist yet."""
    data_dir = default_data_dir(settings)
    if (data_dir / "EstimatedResponses.mat").exists():
        return data_dir
    if os.environ.get("TRACKER_DATA_DIR"):
        raise DataFormatError(
            f"TRACKER_DATA_DIR={data_dir} holds no EstimatedResponses.mat: point it at a vim-1 download"
        )
    from pipeline.data.synth.config import PRESETS
    from pipeline.data.synth.writer import generate

    generate(data_dir, PRESETS[preset], progress=progress)
    return data_dir


def standard_comparison(
    store: Store,
    settings: Settings,
    data_dir: Path,
    feature_config: Any,
    fit_configs: Iterable[Any],
    subjects: Iterable[str] = ("S1", "S2"),
    roi: str = "V4",
    force: bool = False,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> list[Outcome]:
    """Features (reused when finished) then every fit config for every subject."""
    feat = extract_and_log(store, settings, data_dir, feature_config, force=force, progress=progress)
    log(("reusing finished" if feat.reused else "extracted") + f" feature run {feat.run_id}")
    cache: list[Any] = []

    def features() -> Any:  # read (and sha256-verified) once, only if some fit needs it
        if not cache:
            cache.append(load_features(feat.run, settings))
        return cache[0]

    outcomes = [feat]
    for subject in subjects:
        for config in fit_configs:
            out = fit_and_log(store, settings, feat.run_id, subject, roi, config, data_dir=data_dir,
                              force=force, progress=progress, features=features)
            log(("reused" if out.reused else "fitted") +
                f" {subject} {roi} {config.method} ({config.target}): run {out.run_id}")
            outcomes.append(out)
    return outcomes


# ------------------------------------------------- command-line options -> fits
def fit_from_options(
    store: Store,
    settings: Settings,
    feature_run: str | None,
    subjects: Iterable[str],
    roi: str,
    configs: Iterable[Any],
    data_dir: Path | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] = lambda msg: None,
    standard_features: Any = None,
    layers: Iterable[str | None] = (None,),
) -> list[Outcome]:
    """What ``scripts/run_fit.py`` and ``tracker fit`` run: the fits of ``configs`` for
    ``subjects`` on feature run ``feature_run``, or with no feature run the standard
    comparison (on the configured data, generating the demo set if none is configured;
    features of ``standard_features``, default :class:`~pipeline.features.config.FeatureConfig`
    defaults, extracted unless a finished run matches). ``layers``: one fit per layer of a
    several-layer feature run (None: its primary layer). Returns the fits' outcomes."""
    configs, layers = list(configs), list(layers)
    if data_dir is not None:
        check_data_dir(data_dir)
    if feature_run is not None:
        return [fit_and_log(store, settings, feature_run, s, roi, c, data_dir=data_dir, force=force,
                            progress=progress, layer=lay)
                for lay in layers for s in subjects for c in configs]
    if layers != [None]:
        raise ConfigError("--layer needs --features (a feature run holding those layers)")
    if standard_features is None:
        from pipeline.features.config import FeatureConfig

        standard_features = FeatureConfig()
    data_dir = ensure_data(settings, progress=progress)
    return standard_comparison(store, settings, data_dir, standard_features, configs, list(subjects),
                               roi, force, progress, log=log)[1:]
