"""Library functions behind the scripts and CLI: register data, extract features, fit.

Each function records what it does in the database and reuses finished work:
the same config on the same inputs returns the completed run instead of recomputing
(``force=True`` recomputes and retires the old run as SUPERSEDED).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError, DataFormatError, IntegrityError
from pipeline.core.keys import content_key
from pipeline.data.dataset import describe_dataset
from pipeline.data.layout import REPEATS_FILES, canonical_roi, canonical_subject
from pipeline.data.responses import find_repeats_file, load_repeats, load_responses
from pipeline.data.stimuli import iter_stimuli, stimulus_count
from tracker import documents, provenance
from tracker.runs import RunRecorder
from tracker.settings import Settings
from tracker.spool import Spool
from tracker.store import Store

ProgressFn = Callable[[str, int, int], None]
VIM1_FILE_PREFIXES = ("EstimatedResponses", "Stimuli")


@dataclass(frozen=True)
class Outcome:
    """A run this call produced or found: ``reused`` says which."""

    run: dict[str, Any]
    reused: bool

    @property
    def run_id(self) -> str:
        return str(self.run["_id"])


# ------------------------------------------------------------------ datasets
def dataset_fingerprint(data_dir: Path) -> str:
    """Cheap identity of a data directory: absolute path, file names, sizes, mtimes."""
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise DataFormatError(f"data directory {data_dir} does not exist")
    entries = []
    for p in sorted(data_dir.iterdir()):
        if p.is_file() and p.name.startswith(VIM1_FILE_PREFIXES):
            st = p.stat()
            entries.append((p.name, st.st_size, st.st_mtime_ns))
    if not entries:
        raise DataFormatError(
            f"{data_dir} holds no vim-1 files (expected EstimatedResponses.mat and Stimuli*.mat)"
        )
    return content_key(socket.gethostname(), str(data_dir), entries)


def register_dataset(store: Store, data_dir: Path) -> dict[str, Any]:
    """The dataset document for ``data_dir``, describing (and hashing) it the first time."""
    fingerprint = dataset_fingerprint(data_dir)
    found = store.find_dataset(fingerprint)
    if found is not None:
        return found
    desc = describe_dataset(Path(data_dir))
    files = desc.get("files", [])
    content = content_key(sorted((f["name"], f["sha256"]) for f in files))
    doc = {
        "_id": "ds-" + fingerprint[:16],
        "schema_version": documents.SCHEMA_VERSION,
        "fingerprint": fingerprint,
        "content_sha256": content,
        "host": socket.gethostname(),
        "data_dir": str(Path(data_dir).resolve()),
        **desc,
    }
    doc["files"] = files
    doc.setdefault("subjects", {})
    store.save_dataset(doc)
    return store.find_dataset(fingerprint) or doc


# ------------------------------------------------------------------ features
def resolve_feature_path(output: dict[str, Any], settings: Settings) -> Path:
    """Find a recorded feature file here: its path, a mapped path, or the features dir."""
    recorded = str(output["path"])
    candidates = [Path(recorded)]
    for old, new in settings.path_map:
        if recorded.startswith(old):
            candidates.append(Path(new + recorded[len(old):]))
    candidates.append(settings.feature_root / Path(recorded).name)
    for cand in candidates:
        if cand.is_file():
            return cand
    tried = ", ".join(str(c) for c in candidates)
    raise IntegrityError(
        f"feature file recorded at {output.get('host')}:{recorded} is missing here (tried {tried}); "
        "copy it into the features directory or set TRACKER_PATH_MAP=OLD_PREFIX=NEW_PREFIX"
    )


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


def feature_key(store: Store, data_dir: Path, config: Any) -> tuple[str, dict[str, Any], str]:
    """``(config_key, dataset document, weights sha256)`` of a feature extraction.

    The key covers the config, the weights' bytes (not only their path) and the data's
    content, so the same work anywhere has the same key.
    """
    from pipeline.features.alexnet.weights import weights_sha256

    dataset = register_dataset(store, data_dir)
    wsha = weights_sha256(config.weights, config.variant)
    return content_key("features", config.to_dict(), wsha, dataset["content_sha256"]), dataset, wsha


def fit_key(feature_config_key: str, config: Any, subject: str, roi: str) -> str:
    """``config_key`` of a fit (the feature key already covers the dataset's content)."""
    return content_key("fit", config.to_dict(), feature_config_key, subject, roi)


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
        info = write_feature_file(out_path, extractor, splits, config, progress=report)
        info_dict = info.to_dict()
        output = {"host": socket.gethostname(), **info_dict, "path": str(out_path)}
        fields = {
            "output": output,
            "device": info_dict.get("device"),
            "timings": {"seconds": info_dict.get("seconds"), "images_per_s": info_dict.get("images_per_s")},
            "weights_sha256": wsha,
        }
        rec.complete(fields, replace=force)
    return _outcome(rec)


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
    return Outcome(rec.final_run(), reused=rec.final_id != rec.run_id)


def load_features(run: dict[str, Any], settings: Settings):
    """Verified features of a completed feature run, flattened to (N, h*w*c) float32."""
    from pipeline.features.reader import read_feature_file

    if run.get("kind") != "features":
        raise ConfigError(f"run {run['_id']} is not a feature run")
    if run.get("status") != "COMPLETED":
        raise ConfigError(f"feature run {run['_id']} is {run.get('status')}, not COMPLETED")
    path = resolve_feature_path(run["output"], settings)
    return read_feature_file(path, expected_sha256=run["output"]["sha256"], flatten=True)


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
) -> Outcome:
    """Fit one encoding model (``config``: :class:`pipeline.fit.config.FitConfig`) and record it.

    ``features`` may pass an already loaded feature file, or a function returning one
    (called only if the fit is not reused), so several fits share one read.

    ``n_chunks`` > 1 splits a voxel-target fit of the recommended protocol into voxel
    chunks (:func:`tracker.sweep.chunked_fit`): kernels once, chunks as tasks on the Dask
    ``client`` (None: one after another here), merged into this one run. Chunking is an
    execution detail: same ``config_key``, same numbers; the run's ``execution`` field
    says how it ran. Other fits ignore it. ``voxel_block`` overrides the column block
    chunks are aligned to (tests; the default is the estimator's).
    """
    from pipeline.evaluation.scores import r_threshold
    from pipeline.fit.chunks import chunkable
    from pipeline.fit.protocols import run_fit
    from tracker.sweep import check_voxel_chunks, chunked_fit

    _, frun = store.get_run(feature_run_id)
    subject, roi = canonical_subject(subject), canonical_roi(roi)
    key = fit_key(frun["config_key"], config, subject, roi)
    existing = store.find_completed("fit_runs", key)
    if existing is not None and not force:
        return Outcome(existing, True)
    data_dir = Path(data_dir) if data_dir is not None else Path(frun["data_dir"])
    clean = load_responses(data_dir, subject).select(roi)
    if callable(features):
        features = features()
    ff = features if features is not None else load_features(frun, settings)

    doc = documents.fit_run_doc(config.to_dict(), key, frun, subject, roi, provenance.collect(
        seeds={"split_seed": getattr(config, "seed", None)}))
    n_chunks = check_voxel_chunks(n_chunks, "n_chunks")
    with RunRecorder(store, "fit_runs", doc, spool=_spool(store, settings)) as rec:
        report = _chain(rec.progress, progress)
        if n_chunks is not None and n_chunks > 1 and chunkable(config):
            result, execution = chunked_fit(client, ff.train, ff.val, clean.train, clean.val,
                                            config, n_chunks, block=voxel_block, progress=report)
        else:
            result = run_fit(ff.train, ff.val, clean.train, clean.val, config, progress=report)
            execution = {"mode": "single", "n_chunks": 1}
            if n_chunks is not None and n_chunks > 1:
                execution["requested_chunks"] = n_chunks
                execution["note"] = "not split: only voxel-target fits of the recommended protocol are"
        voxel_ids = clean.voxel_ids if config.target == "voxels" else [0]
        buckets = []
        summary = {}
        for split in result.splits:
            buckets += documents.score_buckets(rec.run_id, subject, roi, split, voxel_ids)
            thr = r_threshold(split.n_test, 0.05) if split.n_test > 2 else None
            summary[split.name] = documents.split_summary(split, thr)
        rec.insert_buckets(buckets)
        fields = {
            "n_voxels": int(clean.train.shape[1]),
            "n_voxels_total": int(clean.n_total),
            "n_dropped_nan": int(clean.n_dropped),
            "n_features": int(ff.train.shape[1]),
            "splits": [documents.split_record(s) for s in result.splits],
            "summary": summary,
            "predictions": {
                name: {"y_true": [float(x) for x in yt], "y_pred": [float(x) for x in yp]}
                for name, (yt, yp) in (result.predictions or {}).items()
            },
            "timings": dict(result.timings),
            "execution": execution,
            "n_alpha_at_edge": getattr(result, "n_alpha_at_edge", None),
            "cs431": documents.cs431_summary(result.splits) if config.protocol == "cs431" else None,
        }
        rec.complete(fields, replace=force)
    return _outcome(rec)


def iter_fit_grid(subjects: Iterable[str], methods: Iterable[str], targets: Iterable[str]):
    """The (subject, method, target) combinations of a comparison, in a stable order."""
    for subject in subjects:
        for method in methods:
            for target in targets:
                yield subject, method, target


def default_data_dir(settings: Settings) -> Path:
    """The configured data directory (``TRACKER_DATA_DIR``), absolute."""
    return Path(os.path.abspath(settings.data_dir))


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


def compute_ceilings(
    store: Store,
    data_dir: Path,
    subjects: Iterable[str] = ("S1", "S2"),
    repeats_file: Path | None = None,
    n_average: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Estimate NSD noise ceilings from repeat-level responses and store them.

    One record per subject and split kind (``validation``: the average of all the
    validation repeats; ``test``: held-out training images averaged over
    ``n_average["test"]`` repeats, vim-1: 2). Queries apply them at read time, so a new
    estimate never needs a refit. vim-1 itself ships no repeats: DataFormatError then.
    """
    from pipeline.evaluation.ceiling import ceiling_from_ncsnr, ncsnr

    dataset = register_dataset(store, data_dir)
    path = Path(repeats_file) if repeats_file else find_repeats_file(data_dir)
    if path is None:
        raise DataFormatError(
            f"no repeat-level responses beside {data_dir} (looked for "
            f"{', '.join(REPEATS_FILES)}): vim-1 releases only repeat-averaged responses, "
            "so no noise ceiling can be estimated from it; give --repeats FILE if you have them"
        )
    n_average = {"test": 2, **(n_average or {})}
    records = []
    for subject in subjects:
        repeats, ids = load_repeats(path, subject)
        snr = ncsnr(repeats)
        for split, n_avg in (("validation", repeats.shape[0]), ("test", n_average["test"])):
            _, r_ceiling = ceiling_from_ncsnr(snr, n_avg)
            doc = {
                "_id": documents.new_run_id("nc"), "schema_version": documents.SCHEMA_VERSION,
                "dataset_id": dataset["_id"], "subject": canonical_subject(subject),
                "split": split, "method": "nsd", "n_reps": int(repeats.shape[0]),
                "n_average": int(n_avg), "source": str(path.resolve()),
                "voxel_ids": ids.tolist(), "r_ceiling": documents._clean(r_ceiling),
                "created": documents._now(),
            }
            store.save_noise_ceiling(doc)
            records.append(doc)
    return records
