"""Sweeps: the model x layer x preprocessing x subject x method grid, run on Dask.

A sweep spec (TOML) lists values per field; the grid is their product::

    [sweep]
    name = "demo"
    data_dir = "demo_data"          # optional: default $TRACKER_DATA_DIR

    [features]                      # FeatureConfig fields, each a value or a list
    layer = ["conv3"]
    retina_warp = ["none", "default"]

    [fits]                          # subject / roi / layer and FitConfig fields
    subject = ["S1", "S2"]
    roi = ["V4"]
    method = ["ridge", "pls"]
    target = ["voxels"]

A *layer sweep* extracts every layer in one pass and fits each from that one feature
run: ``layer = "all"`` under ``[features]`` (conv1 ... fc8) and ``layer = "all"`` (or a
list) under ``[fits]`` (see ``sweeps/layers.toml``); ``[fits] layer`` must name layers the
feature run holds, and each fit's key and document record its layer.

Every task has the ``config_key`` it will record, computed before anything runs, so a
task whose key already COMPLETED is skipped and a finished sweep re-runs as a no-op.
Feature tasks run first; each fit waits for its features (a Dask dependency). Every
task opens its own connection to the one MongoDB the URI names.

Large single fits (``voxel_chunks = N`` under ``[sweep]``, or ``--voxel-chunks N``):
a voxel-target fit of the recommended protocol computes its kernels once
(:func:`pipeline.fit.chunks.prepare`: kernel, eigendecomposition and cross kernels of the
"test" and "all" models), broadcasts them to every worker, fits up to N voxel chunks
as separate tasks (:func:`pipeline.fit.chunks.fit_voxels`), and merges them
(:func:`pipeline.fit.chunks.merge_results`: BH-FDR over all voxels) into ONE fit run whose
numbers and ``config_key`` are those of the unchunked fit; the run records how it was
executed under ``execution``. See :func:`tracker.record.chunked.chunked_fit`.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from pipeline.core.errors import ConfigError, DataFormatError
from tracker.db.documents import utc_now
from tracker.db.server import pid_alive
from tracker.db.settings import Settings
from tracker.db.store import Store
from tracker.record.chunked import check_voxel_chunks
from tracker.record.datasets import register_dataset, responses_sha256
from tracker.record.layers import choose_layer
from tracker.record.workflows import extract_and_log, feature_key, fit_and_log, fit_key

NONE_WORDS = {"none", "raw", "off", "false", ""}
#: Fault injection for tests: the first fit task to reach a progress update kills its
#: worker process (``os.kill(getpid(), SIGKILL)``) when this names a not-yet-existing file.
KILL_ONCE_ENV = "VIMTRACK_SWEEP_KILL_ONCE"


@dataclass(frozen=True)
class FeatureTask:
    config: Any  # pipeline.features.config.FeatureConfig
    key: str

    @property
    def label(self) -> str:
        c = self.config.to_dict()
        warp = "+warp" if c.get("retina_warp") else ""
        return f"features {c['variant']}/{c['layer']}/{c['preprocess']}{warp}"


@dataclass(frozen=True)
class FitTask:
    feature: FeatureTask
    subject: str
    roi: str
    config: Any  # pipeline.fit.config.FitConfig
    key: str
    layer: str | None = None  # the layer of a several-layer feature run

    @property
    def label(self) -> str:
        on = self.feature.label.removeprefix('features ')
        if self.layer is not None:
            on = f"{self.layer} of {on}"
        return f"fit {self.subject} {self.roi} {self.config.method} ({self.config.target}) on {on}"


@dataclass
class SweepSpec:
    name: str
    data_dir: Path | None
    features: dict[str, list[Any]]
    fits: dict[str, list[Any]]
    source: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def load_spec(path: Path | str) -> SweepSpec:
    """Read and validate a sweep TOML file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read sweep spec {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"sweep spec {path} is not valid TOML: {err}") from None
    unknown = set(raw) - {"sweep", "features", "fits"}
    if unknown:
        raise ConfigError(f"sweep spec {path}: unknown table(s) {', '.join(sorted(unknown))}; "
                          "expected [sweep], [features], [fits]")
    head = raw.get("sweep", {})
    fits = {k: _as_list(v) for k, v in raw.get("fits", {}).items()}
    fits.setdefault("subject", ["S1", "S2"])
    fits.setdefault("roi", ["V4"])
    data_dir = head.get("data_dir")
    if data_dir is not None:  # relative paths are relative to the spec file
        data_dir = Path(data_dir) if Path(data_dir).is_absolute() else path.parent / data_dir
    return SweepSpec(
        name=str(head.get("name", path.stem)),
        data_dir=Path(data_dir) if data_dir is not None else None,
        features={k: _as_list(v) for k, v in raw.get("features", {}).items()},
        fits=fits,
        source=path,
        options={k: v for k, v in head.items() if k not in {"name", "data_dir"}},
    )


def _product(table: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = sorted(table)
    return [dict(zip(names, values)) for values in itertools.product(*(table[n] for n in names))]


def _make(cls: type, values: dict[str, Any], where: str) -> Any:
    try:
        return cls(**values)
    except TypeError as err:
        names = [f.name for f in dataclasses.fields(cls)]
        raise ConfigError(f"sweep spec [{where}]: {err}; valid fields: {', '.join(names)}") from None


def expand(spec: SweepSpec, store: Store, data_dir: Path) -> tuple[list[FeatureTask], list[FitTask]]:
    """All feature and fit tasks of the grid, each with its ``config_key``."""
    from pipeline.features.config import FeatureConfig
    from pipeline.fit.config import FitConfig

    responses = responses_sha256(register_dataset(store, data_dir))
    feature_tasks = []
    for values in _product(spec.features):
        warp = values.get("retina_warp")
        if isinstance(warp, str | bool) and str(warp).lower() in NONE_WORDS:
            values["retina_warp"] = None
        config = _make(FeatureConfig, values, "features")
        key, _, _ = feature_key(store, data_dir, config)
        feature_tasks.append(FeatureTask(config, key))
    fit_tasks = []
    fit_fields = {k: v for k, v in spec.fits.items() if k not in {"subject", "roi", "layer"}}
    for feat in feature_tasks:
        for layer in _fit_layers(spec.fits.get("layer", [None]), feat):
            for subject in spec.fits["subject"]:
                for roi in spec.fits["roi"]:
                    for values in _product(fit_fields):
                        config = _make(FitConfig, values, "fits")
                        key = fit_key(feat.key, config, subject, roi, responses, layer=layer)
                        fit_tasks.append(FitTask(feat, subject, roi, config, key, layer))
    return feature_tasks, fit_tasks


def _fit_layers(values: list[Any], feat: FeatureTask) -> list[str | None]:
    """The ``[fits] layer`` values for one feature task (``"all"``: each of its layers),
    each as :func:`tracker.record.layers.choose_layer` records it."""
    layers = list(feat.config.layers)
    names: list[str | None] = []
    for value in values:
        names += layers if value == "all" else [None if value is None else str(value)]
    what = f"sweep spec [fits] layer: {feat.label}"
    return list(dict.fromkeys(choose_layer(layers, name, what) for name in names))


# ----------------------------------------------------------------- status
def task_states(store: Store, feature_tasks: list[FeatureTask], fit_tasks: list[FitTask]) -> list[dict]:
    """One row per task: label, key and state (done / running / failed / to do)."""
    rows = []
    for coll, tasks in (("feature_runs", feature_tasks), ("fit_runs", fit_tasks)):
        keys = [t.key for t in tasks]
        docs = store.find_runs(coll, {"config_key": {"$in": keys}},
                               projection={"config_key": 1, "status": 1}, sort=[("created", 1)])
        by_key: dict[str, set[str]] = {}
        for d in docs:
            by_key.setdefault(d["config_key"], set()).add(d["status"])
        for t in tasks:
            seen = by_key.get(t.key, set())
            state = ("done" if "COMPLETED" in seen else "running" if "RUNNING" in seen
                     else "failed" if seen & {"FAILED", "DEAD", "INTERRUPTED"} else "to do")
            rows.append({"task": t.label, "kind": coll.removesuffix("_runs"), "state": state,
                         "config_key": t.key})
    return rows


# ------------------------------------------------------------------ tasks
def _maybe_die() -> None:
    marker = os.environ.get(KILL_ONCE_ENV)
    if marker and not os.path.exists(marker):
        Path(marker).write_text(f"{socket.gethostname()}:{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)


def run_feature_task(settings: Settings, data_dir: str, task: FeatureTask) -> dict[str, Any]:
    """Dask task: extract features (reused when finished); returns a small summary."""
    with Store.open(settings, init=False) as store:
        out = extract_and_log(store, settings, Path(data_dir), task.config)
    return {"task": task.label, "run_id": out.run_id, "reused": out.reused, "key": task.key}


def run_fit_task(settings: Settings, data_dir: str, task: FitTask, feature: dict[str, Any],
                 voxel_chunks: int | None = None, voxel_block: int | None = None) -> dict[str, Any]:
    """Dask task: fit one model once its features exist (``feature`` is their summary).

    With ``voxel_chunks`` > 1 a chunkable fit fans its voxel chunks out over the
    cluster from inside this task (see :func:`tracker.record.chunked.chunked_fit`).
    """
    from pipeline.fit.chunks import chunkable

    def progress(stage: str, done: int, total: int) -> None:
        _maybe_die()

    def fit(store: Store, client: Any = None) -> Any:
        return fit_and_log(store, settings, feature["run_id"], task.subject, task.roi, task.config,
                           data_dir=Path(data_dir), progress=progress,
                           n_chunks=voxel_chunks, client=client, voxel_block=voxel_block,
                           layer=task.layer)

    with Store.open(settings, init=False) as store:
        if voxel_chunks and voxel_chunks > 1 and chunkable(task.config):
            from distributed import worker_client

            with worker_client() as client:  # secedes: chunk tasks may use this thread
                out = fit(store, client)
        else:
            out = fit(store)
        summary = (out.run.get("summary") or {}).get("validation", {}).get("r", {})
    return {"task": task.label, "run_id": out.run_id, "reused": out.reused, "key": task.key,
            "val_median_r": summary.get("median"), "val_mean_r": summary.get("mean")}


# --------------------------------------------------------------- running
def mark_dead_attempts(store: Store, keys: Iterable[str]) -> int:
    """Mark RUNNING attempts of these keys DEAD when their process (on this host) is gone.

    A worker killed mid-task leaves its run RUNNING; Dask retries the task elsewhere,
    and this records the lost attempt honestly instead of leaving it RUNNING forever.
    """
    host = socket.gethostname()
    n = 0
    for coll in ("feature_runs", "fit_runs"):
        for doc in store.find_runs(coll, {"config_key": {"$in": list(keys)}, "status": "RUNNING"},
                                   projection={"provenance.host": 1, "provenance.pid": 1}):
            prov = doc.get("provenance") or {}
            if prov.get("host") != host or int(prov.get("pid", -1)) > 0 and pid_alive(int(prov["pid"])):
                continue
            store.update_run(coll, doc["_id"], {"status": "DEAD", "finished": utc_now(),
                                                "error": {"type": "WorkerLost",
                                                          "message": "worker process died"}},
                             durable=True)
            n += 1
    return n


@dataclass
class SweepResult:
    done: list[dict[str, Any]]
    skipped: int
    failed: list[dict[str, Any]]
    dead_attempts: int
    seconds: float


def run_sweep(
    spec: SweepSpec,
    settings: Settings,
    store: Store,
    data_dir: Path,
    scheduler: str | None = None,
    n_workers: int | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
    voxel_chunks: int | None = None,
    voxel_block: int | None = None,
) -> SweepResult:
    """Run every task of the grid whose key has not completed, on a Dask cluster.

    Parameters
    ----------
    scheduler
        ``tcp://host:port`` of an existing cluster; None starts a local cluster with
        ``n_workers`` single-threaded worker processes (default: the number of cores).
    on_progress
        Called as ``(done, total, label)`` after each task.
    voxel_chunks
        Split each voxel-target fit of the recommended protocol into up to this many
        voxel chunks run as separate tasks (default: the spec's ``[sweep]
        voxel_chunks``, else none). Keys and numbers do not change.
    voxel_block
        Column block the chunks align to (default: the estimator's, 1000 voxels for
        ridge; tests use small ones to get several chunks out of a tiny ROI).
    """
    if voxel_chunks is None:
        voxel_chunks = check_voxel_chunks(spec.options.get("voxel_chunks"), "[sweep] voxel_chunks")
    else:
        voxel_chunks = check_voxel_chunks(voxel_chunks, "--voxel-chunks")
    t0 = time.perf_counter()
    feature_tasks, fit_tasks = expand(spec, store, data_dir)
    states = {r["config_key"]: r["state"] for r in task_states(store, feature_tasks, fit_tasks)}
    todo_fits = [t for t in fit_tasks if states[t.key] != "done"]
    needed = {t.feature.key for t in todo_fits}
    todo_feats = [t for t in feature_tasks if states[t.key] != "done" or t.key in needed]
    skipped = len(fit_tasks) - len(todo_fits) + sum(states[t.key] == "done" for t in feature_tasks)
    if not todo_fits and all(states[t.key] == "done" for t in feature_tasks):
        return SweepResult([], skipped, [], 0, time.perf_counter() - t0)
    if scheduler and not settings.mongo_uri:
        raise ConfigError("--scheduler needs a database every worker can reach: set TRACKER_MONGO_URI "
                          "(the embedded server listens on this machine's loopback only)")
    # Workers connect to exactly the server this process uses.
    worker_settings = dataclasses.replace(settings, mongo_uri=store.uri)
    done, failed = _run_on_cluster(scheduler, n_workers, worker_settings, str(data_dir), todo_feats,
                                   todo_fits, on_progress, voxel_chunks, voxel_block)
    dead = mark_dead_attempts(store, [t.key for t in (*feature_tasks, *fit_tasks)])
    return SweepResult(done, skipped, failed, dead, time.perf_counter() - t0)


def _run_on_cluster(
    scheduler: str | None, n_workers: int | None, settings: Settings, data_dir: str,
    feature_tasks: list[FeatureTask], fit_tasks: list[FitTask],
    on_progress: Callable[[int, int, str], None] | None, voxel_chunks: int | None,
    voxel_block: int | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Submit the tasks (each fit after its features) to a cluster; (done, failed) rows."""
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=None)
    client = Client(scheduler or cluster)
    done, failed = [], []
    try:
        feats = {t.key: client.submit(run_feature_task, settings, data_dir, t,
                                      key=f"features-{t.key[:16]}", pure=False, retries=1)
                 for t in feature_tasks}
        futures = list(feats.values())
        labels = {f.key: t.label for t, f in zip(feature_tasks, futures)}
        for t in fit_tasks:
            fut = client.submit(run_fit_task, settings, data_dir, t, feats[t.feature.key],
                                voxel_chunks, voxel_block, key=f"fit-{t.key[:16]}", pure=False,
                                retries=1)
            futures.append(fut)
            labels[fut.key] = t.label
        total = len(futures)
        for i, fut in enumerate(as_completed(futures), 1):
            try:
                done.append(fut.result())
            except Exception as exc:  # one failed task must not sink the sweep
                failed.append({"task": labels[fut.key], "error": f"{type(exc).__name__}: {exc}"})
            if on_progress is not None:
                on_progress(i, total, labels[fut.key])
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return done, failed


def resolve_data_dir(spec: SweepSpec, settings: Settings) -> Path:
    data_dir = spec.data_dir or settings.data_dir
    if not (Path(data_dir) / "EstimatedResponses.mat").exists():
        raise DataFormatError(f"sweep data directory {data_dir} holds no EstimatedResponses.mat")
    return Path(data_dir).resolve()
