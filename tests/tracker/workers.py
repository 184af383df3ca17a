"""Child processes for the reliability tests: ``python -m tests.tracker.workers MODE ARGS``.

Each mode logs light-weight fake fits through the real code path (documents ->
RunRecorder -> Store) so the tests exercise processes, signals and races, not maths.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from pipeline.core.keys import content_key
from tests.tracker.seed_db import FakeSplit, feature_run
from tracker.db import documents
from tracker.db.store import Store
from tracker.record.runs import RunRecorder
from tracker.record.spool import Spool


def fake_fit_doc(subject: str = "S1", method: str = "ridge", key: str | None = None) -> dict:
    """A fit-run document (the real builder) with a fresh or given config key."""
    config = {"method": method, "protocol": "recommended", "target": "voxels"}
    key = key or content_key(config, documents.new_run_id("k"))
    return documents.fit_run_doc(config, key, feature_run(), subject, "V4", {"host": "test"})


def fake_buckets(run_id: str, n_voxels: int = 7, seed: int = 0, bucket_size: int = 4) -> list[dict]:
    """Score buckets of two splits for ``n_voxels`` voxels with seeded r values."""
    rng = np.random.default_rng(seed)
    splits = [FakeSplit("test", "test", rng.uniform(-0.2, 0.8, n_voxels)),
              FakeSplit("validation", "validation", rng.uniform(-0.2, 0.8, n_voxels), n_test=120)]
    ids = np.arange(n_voxels) + 1000
    out = []
    for s in splits:
        out += documents.score_buckets(run_id, "S1", "V4", s, ids, bucket_size=bucket_size)
    return out


def log_fake_fit(store: Store, doc: dict, seed: int = 0, heartbeat_s: float = 30.0,
                 spool: Spool | None = None, replace: bool = False) -> RunRecorder:
    """The fit-and-log sequence of :func:`tracker.record.workflows.fit_and_log`, without the fit."""
    with RunRecorder(store, "fit_runs", doc, heartbeat_s=heartbeat_s, spool=spool) as rec:
        rec.insert_buckets(fake_buckets(rec.run_id, seed=seed))
        rec.complete({"n_voxels": 7, "summary": {"validation": {"r": {"median": 0.1 * seed}}}},
                     replace=replace)
    return rec


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.01)


def race(uri: str, db: str, key: str, ready: str, go: str) -> None:
    """Log a fit with config key ``key``; complete only once ``go`` exists."""
    store = Store(uri, db)
    doc = fake_fit_doc(key=key)
    with RunRecorder(store, "fit_runs", doc, heartbeat_s=30) as rec:
        rec.insert_buckets(fake_buckets(rec.run_id))
        Path(ready).touch()
        _wait_for(Path(go))
        final = rec.complete({"n_voxels": 7})
    print(rec.run_id, final, flush=True)


def many(uri: str, db: str, n: str, tag: str) -> None:
    """Log ``n`` fake fits, each with its own config key."""
    store = Store(uri, db)
    for i in range(int(n)):
        log_fake_fit(store, fake_fit_doc(subject=f"{tag}-{i}"), seed=i)
    print("done", flush=True)


def hang(uri: str, db: str, run_id: str, heartbeat_s: str) -> None:
    """Start a run, say so, then work forever (until a signal or kill -9)."""
    store = Store(uri, db)
    doc = fake_fit_doc()
    doc["_id"] = run_id
    with RunRecorder(store, "fit_runs", doc, heartbeat_s=float(heartbeat_s)) as rec:
        rec.progress("fit", 1, 10)
        print("running", flush=True)
        while True:
            time.sleep(0.05)


def h5(out: str) -> None:
    """Write a feature file whose input stalls after the first batch (to be killed)."""
    from pipeline.features.config import FeatureConfig
    from pipeline.features.writer import write_feature_file
    from tests.pipeline.features.test_features import FakeExtractor, images

    def stalling():
        yield images(4, 1)
        print("writing", flush=True)
        time.sleep(600)
        yield images(4, 2)

    write_feature_file(out, FakeExtractor(), {"train": (8, stalling()), "val": (2, [images(2, 3)])},
                       FeatureConfig(), prefetch=False)


if __name__ == "__main__":
    {"race": race, "many": many, "hang": hang, "h5": h5}[sys.argv[1]](*sys.argv[2:])
