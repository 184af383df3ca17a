"""Benchmark the tracker: log one fit, compare across many, against MLflow in the same run.

python scripts/bench_tracker.py [--fits 100] [--voxels 26000] [--repeats 3] [--no-mlflow] [--json]

Seeds a fresh database (on $TRACKER_MONGO_URI, else a temporary embedded server) with
``--fits`` completed fit runs of ``--voxels`` voxels x 2 splits: 10 conditions (5 layers
x ridge/PLS) x 2 subjects x seeds (1000 fits: 50 seeds), then times:

- logging one such fit (summaries + score documents + run document), target < 0.1 s,
  and the same through :class:`tracker.record.runs.RunRecorder` (start, scores, complete);
- ``compare --by layer,method --over seed`` across all fits (one value per distinct
  voxel, seeds averaged per voxel), target < 3 s, plus the same with bootstrap CIs;
- ``contrast 'layer=conv4' 'layer=conv3' --where method=ridge --over seed`` and
  ``best --over layer --where method=ridge --average seed``, targets < 3 s;
- a contrast of two fits with stored validation predictions (the per-voxel swap test);
- server-side summaries, and one voxel looked up across all fits (``tracker scores voxel``);
- the same questions with MLflow (``log_batch`` on a sqlite store in a temp dir): logging
  ``--mlflow-fits`` fits and reading their metric histories; each question's time is the
  measured read time per fit times the fits that question reads (said in the output).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from _common import run_main

from pipeline.core.keys import content_key
from tracker.analysis import queries
from tracker.db import documents
from tracker.db.store import Store

METRICS = documents.METRICS


class _Split:
    def __init__(self, name: str, r: np.ndarray) -> None:
        self.name, self.kind, self.r = name, name, r
        self.r2_corr, self.r2 = r ** 2, r ** 2 - 0.01
        self.hyper = np.full(r.shape, 100.0)
        self.n_train, self.n_test, self.test_indices = 1500, 250 if name == "test" else 120, None


LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
METHODS = ("ridge", "pls")
N_CONDITIONS = len(LAYERS) * len(METHODS)


def feature_run(layer: str) -> dict:
    return {"_id": f"fe-bench-{layer}", "config_key": content_key("bench", layer), "dataset_id": "ds-bench",
            "config": {"model": "alexnet", "layer": layer, "preprocess": "caffe",
                       "weights": "/weights/bvlc_alexnet.npy"}}


def fake_fit(i: int, n_voxels: int, rng: np.random.Generator, layer: str | None = None):
    """Fit ``i``: condition ``i % 10`` (5 layers x ridge/PLS), subject ``(i // 10) % 2``,
    seed ``i // 20``: a COMPLETED fit document and its two splits of planted scores."""
    cond = i % N_CONDITIONS
    layer = layer or LAYERS[cond // len(METHODS)]
    config = {"method": METHODS[cond % len(METHODS)], "protocol": "recommended", "target": "voxels",
              "seed": i // (2 * N_CONDITIONS)}
    subject = ("S1", "S2")[(i // N_CONDITIONS) % 2]
    doc = documents.fit_run_doc(config, content_key(config, uuid.uuid4().hex), feature_run(layer),
                                subject, "all", {"host": "bench"})
    boost = 0.02 * LAYERS.index(layer) if layer in LAYERS else 0.0
    splits = [_Split(s, rng.normal(0.1 + boost, 0.1, n_voxels)) for s in ("test", "validation")]
    return doc, splits


def log_fit(store: Store, doc: dict, splits: list, voxel_ids: np.ndarray) -> float:
    """Log one fit (score documents, then the completed run); returns the seconds taken."""
    t0 = time.perf_counter()
    buckets = []
    for s in splits:
        buckets += documents.score_buckets(doc["_id"], doc["subject"], doc["roi"], s, voxel_ids)
    doc = {**doc, "status": "COMPLETED", "n_voxels": int(voxel_ids.size),
           "summary": {s.name: documents.split_summary(s, 0.15) for s in splits}}
    store.insert_buckets(buckets)
    store.insert_run("fit_runs", doc)
    return time.perf_counter() - t0


def log_fit_recorded(store: Store, doc: dict, splits: list, voxel_ids: np.ndarray) -> float:
    """Log one fit as ``tracker.record.workflows.fit_and_log`` does (RunRecorder: durable start,
    idempotent score upserts, durable completion); returns the seconds taken."""
    from tracker.record.runs import RunRecorder

    t0 = time.perf_counter()
    with RunRecorder(store, "fit_runs", doc) as rec:
        buckets = []
        for s in splits:
            buckets += documents.score_buckets(rec.run_id, doc["subject"], doc["roi"], s, voxel_ids)
        rec.insert_buckets(buckets)
        rec.complete({"n_voxels": int(voxel_ids.size),
                      "summary": {s.name: documents.split_summary(s, 0.15) for s in splits}})
    return time.perf_counter() - t0


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_ours(store: Store, n_fits: int, n_voxels: int, repeats: int) -> dict:
    from tracker.analysis import contrasts, voxels, winners

    rng = np.random.default_rng(0)
    ids = np.arange(n_voxels, dtype=np.int64) + 1
    t0 = time.perf_counter()
    for i in range(n_fits):
        log_fit(store, *fake_fit(i, n_voxels, rng), ids)
    seed_s = time.perf_counter() - t0
    extra = [log_fit(store, *fake_fit(n_fits + k, n_voxels, rng), ids) for k in range(repeats)]
    recorded = [log_fit_recorded(store, *fake_fit(n_fits + repeats + k, n_voxels, rng), ids)
                for k in range(repeats)]
    for extra_run in store.find_runs("fit_runs", {}, {"_id": 1}, limit=2 * repeats):
        store.update_run("fit_runs", extra_run["_id"], {"status": "FAILED"})  # the newest 2*repeats
    by = ["layer", "method"]
    common = {"roi": "all", "split": "validation", "metric": "r"}

    def run(**kw):
        return queries.compare(store, by, over=["seed"], **common, **kw)
    compare_s, rows = timed(lambda: run(n_boot=0), repeats)
    out = {"seed_s": seed_s, "log_fit_s": statistics.median(extra),
           "log_fit_times_s": extra, "log_fit_recorder_s": statistics.median(recorded),
           "compare_s": compare_s, "compare_groups": len(rows),
           "compare_fits": sum(r["n_runs"] for r in rows),
           "compare_voxels": sum(r["n"] for r in rows)}
    out["compare_ci_s"] = timed(lambda: run(n_boot=1000), 1)[0]
    ridge = {"config.method": "ridge"}
    fitted = [x for x in LAYERS if x in {r["layer"] for r in rows}]
    a, b = (fitted[-1], fitted[-2]) if len(fitted) > 1 else (fitted[0], fitted[0])
    out["contrast_layers"] = f"{a} - {b}"
    out["contrast_s"], crow = timed(lambda: contrasts.contrast(
        store, [f"layer={a}"], [f"layer={b}"], extra=ridge, over=["seed"], **common), repeats)
    out["contrast_fits"] = sum(1 for _ in store.find_runs(
        "fit_runs", {"status": "COMPLETED", "config.method": "ridge",
                     "features.layer": {"$in": [a, b]}}, {"_id": 1}))
    out["contrast_voxels"] = crow[0]["n"]
    out["best_s"], brow = timed(lambda: winners.best(
        store, "layer", extra=ridge, average=["seed"], **common), repeats)
    out["best_fits"] = sum(c["n_runs"] for c in brow[0]["conditions"])
    out["best_layer"] = brow[0]["best"]
    out["summaries_server_s"] = timed(lambda: queries.group_summaries(store, by), repeats)[0]
    runs = queries.completed_fits(store, "all")
    voxel = int(ids[len(ids) // 2])
    out["voxel_lookup_s"], hits = timed(
        lambda: voxels.voxel_across_runs(store, voxel, runs, "validation"), 1)
    out["voxel_lookup_hits"] = len(hits)
    out.update(bench_voxel_test(store, n_voxels, repeats))
    return out


def bench_voxel_test(store: Store, n_voxels: int, repeats: int, n_images: int = 120) -> dict:
    """A contrast of two fits with stored validation predictions: the per-voxel swap test
    (1000 patterns) over ``n_voxels`` voxels, timed end to end."""
    from tracker.analysis import contrasts

    rng = np.random.default_rng(1)
    ids = np.arange(n_voxels, dtype=np.int64) + 1
    y = rng.normal(size=(n_images, n_voxels)).astype(np.float32)
    for layer, w in (("fc6", 0.6), ("fc7", 0.4)):
        doc, splits = fake_fit(0, n_voxels, rng, layer=layer)
        doc["subject"] = "S3"
        splits[1].y_true = y
        splits[1].y_pred = (w * y + rng.normal(size=y.shape)).astype(np.float32)
        buckets = documents.prediction_docs(doc["_id"], "S3", "all", splits[1])
        store.insert_buckets(buckets)
        log_fit(store, doc, splits, ids)
    s, rows = timed(lambda: contrasts.contrast(store, ["layer=fc6"], ["layer=fc7"], roi="all",
                                               extra={"subject": "S3"}), repeats)
    return {"contrast_voxel_test_s": s, "contrast_voxel_test_voxels": rows[0]["n"],
            "contrast_voxel_share_a_wins": rows[0]["share_a_wins"]}


def bench_mlflow(n_fits: int, n_voxels: int, n_logged: int) -> dict:
    try:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient
    except ImportError:
        return {"skipped": "mlflow is not installed (pip install -e '.[bench]')"}
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
        exp = client.create_experiment("bench", artifact_location=f"{tmp}/artifacts")
        client.set_terminated(client.create_run(exp).info.run_id)  # schema set-up, untimed
        log_times, run_ids = [], []
        for i in range(n_logged):
            doc, splits = fake_fit(i, n_voxels, rng)
            t0 = time.perf_counter()
            run_id = client.create_run(exp, tags={"subject": doc["subject"]}).info.run_id
            client.log_batch(run_id, params=[Param("method", doc["config"]["method"])])
            metrics = [Metric(f"{s.name}_{m}", float(getattr(s, m)[v]), 0, v)
                       for s in splits for m in METRICS for v in range(n_voxels)]
            for start in range(0, len(metrics), 1000):
                client.log_batch(run_id, metrics=metrics[start:start + 1000])
            client.set_terminated(run_id)
            log_times.append(time.perf_counter() - t0)
            run_ids.append(run_id)
        t0 = time.perf_counter()
        values = [np.array([m.value for m in client.get_metric_history(r, "validation_r")]) for r in run_ids]
        pooled = np.concatenate(values)
        _ = float(np.median(pooled)), float(pooled.mean())
        read_s = time.perf_counter() - t0
    per_fit = read_s / n_logged
    return {"log_fit_s": statistics.median(log_times), "fits_logged": n_logged,
            "compare_read_s_measured": read_s, "read_s_per_fit": per_fit,
            "compare_s_extrapolated": per_fit * n_fits}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fits", type=int, default=100)
    p.add_argument("--voxels", type=int, default=26000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mlflow-fits", type=int, default=2, help="fits logged with MLflow")
    p.add_argument("--no-mlflow", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import os

    from tracker.db.server import EmbeddedServer

    uri = os.environ.get("TRACKER_MONGO_URI")
    with tempfile.TemporaryDirectory() as tmp:
        server = None if uri else EmbeddedServer(Path(tmp) / "db")
        uri = uri or server.ensure().uri
        name = "bench_" + uuid.uuid4().hex[:8]
        store = Store(uri, name)
        try:
            store.init_schema()
            ours = bench_ours(store, args.fits, args.voxels, args.repeats)
        finally:
            store.client.drop_database(name)
            store.close()
            if server is not None:
                server.stop()
    peer = ({"skipped": "--no-mlflow"} if args.no_mlflow
            else bench_mlflow(args.fits, args.voxels, args.mlflow_fits))
    result = {"fits": args.fits, "voxels": args.voxels, "splits": 2, "ours": ours, "mlflow": peer}
    if "log_fit_s" in peer:
        result["ratio_log_fit"] = peer["log_fit_s"] / ours["log_fit_s"]
        result["ratio_compare"] = peer["compare_s_extrapolated"] / ours["compare_s"]
        # the same questions answered from MLflow: read every fit they need (per-fit read
        # time measured above, scaled to the fits each question reads)
        for q in ("contrast", "best"):
            peer[f"{q}_s_extrapolated"] = peer["read_s_per_fit"] * ours[f"{q}_fits"]
            result[f"ratio_{q}"] = peer[f"{q}_s_extrapolated"] / ours[f"{q}_s"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0


def _print(res: dict) -> None:
    o, m = res["ours"], res["mlflow"]
    print(f"{res['fits']} fits x {res['voxels']} voxels x 2 splits")
    print(f"  log one fit:               {o['log_fit_s']:.3f} s   (target < 0.1 s)")
    print(f"  log one fit (RunRecorder): {o['log_fit_recorder_s']:.3f} s")
    print(f"  compare across all fits:   {o['compare_s']:.3f} s   (target < 3 s; "
          f"{o['compare_fits']} fits, {o['compare_groups']} conditions, seeds averaged: "
          f"{o['compare_voxels']} distinct voxels)")
    print(f"  compare with bootstrap CI: {o['compare_ci_s']:.3f} s")
    print(f"  contrast {o['contrast_layers']}:    {o['contrast_s']:.3f} s   (target < 3 s; "
          f"{o['contrast_fits']} fits, seeds averaged, {o['contrast_voxels']} voxels)")
    print(f"  best layer:                {o['best_s']:.3f} s   (target < 3 s; {o['best_fits']} fits; "
          f"best {o['best_layer']})")
    print(f"  contrast + voxel test:     {o['contrast_voxel_test_s']:.3f} s   "
          f"({o['contrast_voxel_test_voxels']} voxels x 120 images, 1000 swap patterns)")
    print(f"  server-side summaries:     {o['summaries_server_s']:.3f} s")
    print(f"  one voxel across all fits: {o['voxel_lookup_s']:.3f} s   ({o['voxel_lookup_hits']} runs)")
    if "skipped" in m:
        print(f"  MLflow: skipped ({m['skipped']})", file=sys.stderr)
        return
    print(f"  MLflow log one fit:        {m['log_fit_s']:.3f} s   (ratio {res['ratio_log_fit']:.0f}x)")
    print(f"  MLflow compare (extrap.):  {m['compare_s_extrapolated']:.3f} s   "
          f"(ratio {res['ratio_compare']:.0f}x; measured {m['compare_read_s_measured']:.3f} s "
          f"for {m['fits_logged']} fits)")
    for q in ("contrast", "best"):
        print(f"  MLflow {q} (extrap.): {m[f'{q}_s_extrapolated']:.3f} s   "
              f"(ratio {res[f'ratio_{q}']:.0f}x)")


if __name__ == "__main__":
    run_main(main)
