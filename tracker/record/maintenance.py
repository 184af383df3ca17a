"""Retention and housekeeping: delete a run, collect garbage, describe the database.

- :func:`delete_run` removes one run and its score buckets, and optionally the feature
  file of a feature run (refused while other runs still use it).
- :func:`collect_garbage` lists (and with ``delete=True`` removes) feature files no run
  references, temporary files left by killed writers, score buckets whose run is gone,
  and feature runs whose file is gone.
- :func:`database_status` is ``tracker db status``: server, counts per status,
  schema versions, stale runs, pending spool files, indexes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError, IntegrityError
from tracker.db.documents import SCHEMA_VERSION, as_utc, utc_now
from tracker.db.settings import Settings
from tracker.db.store import RUN_COLLECTIONS, Store
from tracker.record.feature_files import resolve_feature_path
from tracker.record.runs import DEFAULT_HEARTBEAT_S
from tracker.record.spool import Spool

_TMP_RE = re.compile(r"^\..+\.tmp-(\d+)$")


def delete_run(store: Store, settings: Settings, run_id: str, with_files: bool = False) -> dict[str, Any]:
    """Delete a run (id or unique prefix) and its score buckets.

    Parameters
    ----------
    with_files
        Also delete the feature file of a feature run, unless another run records the
        same file.

    Returns
    -------
    report
        ``{"id", "collection", "runs", "buckets", "files"}`` (what was deleted; ``buckets``
        counts score columns).

    Raises
    ------
    ConfigError
        The run does not exist, or it is a feature run that fits still use.
    IntegrityError
        ``with_files`` and another run records the same feature file.
    """
    collection, doc = store.get_run(run_id)
    run_id = str(doc["_id"])
    path: Path | None = None
    if collection == "feature_runs":
        users = store.find_runs("fit_runs", {"feature_run_id": run_id}, projection={"_id": 1})
        if users:
            raise ConfigError(
                f"feature run {run_id} is used by {len(users)} fit run(s) "
                f"(e.g. {users[0]['_id']}); delete those first")
        if with_files and doc.get("output", {}).get("path"):
            recorded = doc["output"]["path"]
            others = store.find_runs("feature_runs", {"output.path": recorded, "_id": {"$ne": run_id}},
                                     projection={"_id": 1})
            if others:
                raise IntegrityError(f"feature file {recorded} is also recorded by run "
                                     f"{others[0]['_id']}; not deleting it")
            try:
                path = resolve_feature_path(doc["output"], settings)
            except IntegrityError:
                path = None
    runs, buckets = store.delete_run(collection, run_id)
    files = []
    if path is not None:
        path.unlink(missing_ok=True)
        files.append(str(path))
    return {"id": run_id, "collection": collection, "runs": runs, "buckets": buckets, "files": files}


def collect_garbage(store: Store, settings: Settings, delete: bool = False) -> dict[str, Any]:
    """Find (and with ``delete`` remove) what no run needs and runs whose files are gone.

    Returns
    -------
    report
        ``orphan_files`` (feature files no run records), ``temp_files`` (left by a
        killed writer whose process is gone), ``orphan_bucket_runs`` (run ids whose
        buckets outlived the run), ``missing_file_runs`` (feature runs whose file is
        gone; with ``delete`` those no fit uses are deleted, the rest are ``kept``),
        ``unchecked_databases`` (databases of the server that could not be read: while
        any is listed, ``delete`` keeps every feature file), and ``deleted`` (bool).
        Every database on the server and every run waiting in the spool counts as a
        reference, so a file that any of them names is never an orphan.
    """
    root = settings.feature_root
    outputs, unreadable = store.feature_outputs_everywhere()
    spooled = Spool(settings.spool_dir, store.db_name).pending_runs("feature_runs")
    spooled_ids = {str(d["_id"]) for d in spooled}
    outputs += [{"db": "spool", "id": d["_id"], "status": d.get("status"), "output": d["output"]}
                for d in spooled if d.get("output", {}).get("path")]
    referenced: set[str] = set()
    referenced_ids = {str(o["id"]) for o in outputs}
    missing: list[dict[str, Any]] = []
    for item in outputs:
        try:
            referenced.add(str(resolve_feature_path(item["output"], settings).resolve()))
        except IntegrityError:
            if item["db"] == store.db_name and str(item["id"]) not in spooled_ids:
                missing.append({"id": item["id"], "path": item["output"]["path"], "status": item["status"]})
    files = sorted(root.glob("*.h5")) if root.is_dir() else []
    # a file is kept when any run of any database on this server, or in the spool, names
    # it, by its path or by the run id in its name (``{key}_{run_id}.h5``)
    orphans = [str(p) for p in files if str(p.resolve()) not in referenced
               and p.stem.rpartition("_")[2] not in referenced_ids]
    temps = [str(p) for p in (root.glob(".*.tmp-*") if root.is_dir() else [])
             if _dead_writer(p.name)]
    run_ids = {d["_id"] for c in RUN_COLLECTIONS for d in store.find_runs(c, {}, projection={"_id": 1})}
    orphan_buckets = sorted(r for r in store.scored_run_ids() if r not in run_ids)
    for item in missing:
        item["used_by_fits"] = len(store.find_runs("fit_runs", {"feature_run_id": item["id"]},
                                                   projection={"_id": 1}))
    if delete:
        # an unreadable database may name a file here: then no feature file is deleted
        for name in temps + ([] if unreadable else orphans):
            Path(name).unlink(missing_ok=True)
        store.delete_scores(orphan_buckets)
        for item in missing:
            item["kept"] = item["used_by_fits"] > 0
            if not item["kept"]:
                store.delete_run("feature_runs", item["id"])
    return {"orphan_files": orphans, "temp_files": temps, "orphan_bucket_runs": orphan_buckets,
            "missing_file_runs": missing, "unchecked_databases": unreadable, "deleted": delete}


def _dead_writer(name: str) -> bool:
    """A ``.name.tmp-PID`` file whose writing process no longer exists."""
    m = _TMP_RE.match(name)
    if m is None:
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def database_status(store: Store, settings: Settings, stale_factor: float = 4.0) -> dict[str, Any]:
    """Everything ``tracker db status`` shows.

    Returns
    -------
    status
        ``uri`` (redacted), ``server_version``, ``database``, ``embedded`` (bool),
        ``schema_version`` (current), ``collections`` (documents, indexes, ``by_status``
        and ``schema_versions`` counts), ``stale_running`` (runs the reaper would mark
        DEAD now), ``spool`` (pending files and their directory).
    """
    status = store.status()
    status["embedded"] = settings.mongo_uri is None
    status["schema_version"] = SCHEMA_VERSION
    for name, info in status["collections"].items():
        info["schema_versions"] = {str(v): n for v, n in store.count_by(name, "schema_version").items()}
        if name in RUN_COLLECTIONS:
            info["by_status"] = store.count_by(name, "status")
    stale = []
    at = utc_now()
    for name in RUN_COLLECTIONS:
        if name not in status["collections"]:
            continue
        for doc in store.find_runs(name, {"status": "RUNNING"},
                                   projection={"heartbeat": 1, "heartbeat_interval_s": 1}):
            beat = doc.get("heartbeat")
            interval = float(doc.get("heartbeat_interval_s") or DEFAULT_HEARTBEAT_S)
            if beat is not None and (at - as_utc(beat)).total_seconds() > stale_factor * interval:
                stale.append(doc["_id"])
    status["stale_running"] = stale
    pending = Spool(settings.spool_dir, store.db_name).pending()
    status["spool"] = {"directory": str(settings.spool_dir), "pending": [p.name for p in pending]}
    return status
