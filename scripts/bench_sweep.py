"""Benchmark: a sweep of 8 fits run serially vs on a local Dask cluster, same data, same run.

Fits 2 subjects x 2 methods x 2 targets on one feature run of a synthetic dataset,
first in a plain loop (fit_and_log), then through `tracker sweep` on a local cluster
(one single-threaded worker per core), each into its own fresh database on the
embedded server. Prints both wall times and the ratio.

python scripts/bench_sweep.py [--workers 2] [--n-train 700] [--image-size 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from _common import run_main

from pipeline import synth
from pipeline.features import FeatureConfig
from pipeline.fit import FitConfig
from tracker import sweep
from tracker.server import EmbeddedServer
from tracker.settings import Settings
from tracker.store import Store
from tracker.workflows import extract_and_log, fit_and_log, load_features

SPEC = """
[sweep]
name = "bench"
[features]
batch_size = 64
[fits]
subject = ["S1", "S2"]
roi = ["V4"]
method = ["ridge", "pls"]
target = ["voxels", "roi_mean"]
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--n-train", type=int, default=700)
    p.add_argument("--image-size", type=int, default=128)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        tmp = Path(tmp)
        data = synth.generate(tmp / "data", dataclasses.replace(
            synth.PRESETS["demo"], n_train=args.n_train, image_size=args.image_size))
        server = EmbeddedServer(tmp / "db")
        uri = server.ensure().uri
        try:
            base = Settings(mongo_uri=uri, db_name="bench_serial", home=tmp / "home", data_dir=data)
            with Store.open(base) as store:
                feat = extract_and_log(store, base, data, FeatureConfig(batch_size=64))
                configs = [FitConfig(method=m, target=t) for m in ("ridge", "pls")
                           for t in ("voxels", "roi_mean")]
                t0 = time.perf_counter()
                ff = load_features(feat.run, base)
                for subject in ("S1", "S2"):
                    for c in configs:
                        fit_and_log(store, base, feat.run_id, subject, "V4", c, features=ff)
                serial = time.perf_counter() - t0
            spec_path = tmp / "bench.toml"
            spec_path.write_text(SPEC)
            par = dataclasses.replace(base, db_name="bench_dask")
            with Store.open(par) as store:
                spec = sweep.load_spec(spec_path)
                extract_and_log(store, par, data, FeatureConfig(batch_size=64))  # features not timed
                t0 = time.perf_counter()
                result = sweep.run_sweep(spec, par, store, data, n_workers=args.workers)
                dask_s = time.perf_counter() - t0
            assert len(result.done) == 9 and not result.failed, result.failed
        finally:
            server.stop()
    print(f"8 fits ({args.n_train} training images, V4, ridge/PLS x voxels/average, S1+S2)")
    print(f"  serial loop:              {serial:7.1f} s")
    print(f"  Dask local, {args.workers} workers:    {dask_s:7.1f} s  (cluster start included)")
    print(f"  speed-up:                 {serial / dask_s:7.2f}x")
    return 0


if __name__ == "__main__":
    run_main(main)
