"""Schema migrations: ``tracker db migrate``.

Every document carries ``schema_version`` (a missing one counts as 0). A migration is
a pure function ``(collection, doc) -> doc`` registered for one step ``n -> n + 1``;
:func:`migrate` first writes a backup of every collection (MongoDB extended JSON
lines, written to a temporary name, fsynced, then renamed), then upgrades each older
document step by step with a replace that expects the version it read, so running it
twice, or beside a writer, never applies a step twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bson import json_util
from pymongo.errors import OperationFailure

from pipeline.core.files import atomic_path
from tracker.db.documents import SCHEMA_VERSION, utc_now
from tracker.db.store import RUN_COLLECTIONS, Store, load_schema

Migration = Callable[[str, dict[str, Any]], dict[str, Any]]
MIGRATIONS: dict[int, Migration] = {}


def migration(from_version: int) -> Callable[[Migration], Migration]:
    """Register ``fn`` as the step ``from_version -> from_version + 1``."""
    def register(fn: Migration) -> Migration:
        MIGRATIONS[from_version] = fn
        return fn
    return register


@migration(0)
def v0_to_v1(collection: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Documents from before versioning: add the fields v1 requires, keep everything else.

    Run documents get ``kind`` (from their collection), ``status`` (``DEAD`` if absent:
    nobody can say how such a run ended), ``created`` (from ``started``, else now),
    ``config`` and ``provenance`` (empty) and ``heartbeat_interval_s`` when missing.
    Every document gets ``schema_version: 1``. Present fields are never changed.
    """
    out = dict(doc)
    if collection in RUN_COLLECTIONS:
        out.setdefault("kind", {"fit_runs": "fit", "partition_runs": "partition"}.get(collection, "features"))
        out.setdefault("status", "DEAD")
        out.setdefault("created", out.get("started") or utc_now())
        out.setdefault("config", {})
        out.setdefault("provenance", {})
        out.setdefault("heartbeat_interval_s", None)
    out["schema_version"] = 1
    return out


def backup(store: Store, directory: Path) -> dict[str, str]:
    """Write every collection of the database to ``directory/<collection>.jsonl``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    options = json_util.JSONOptions(json_mode=json_util.JSONMode.CANONICAL)
    for name in store.collection_names():
        path = directory / f"{name}.jsonl"
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for doc in store.iter_documents(name):
                fh.write(json_util.dumps(doc, json_options=options) + "\n")
        written[name] = str(path)
    return written


def migrate(store: Store, backup_dir: Path, target: int = SCHEMA_VERSION) -> dict[str, Any]:
    """Back up, then upgrade every document older than ``target``.

    Returns
    -------
    report
        ``backup`` (collection -> file), ``migrated`` (collection -> count),
        ``failed`` (list of ``{collection, id, error}``: documents left as they were).
    """
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    files = backup(store, Path(backup_dir) / stamp)
    migrated: dict[str, int] = {}
    failed: list[dict[str, Any]] = []
    old = {"$or": [{"schema_version": {"$exists": False}}, {"schema_version": {"$lt": target}}]}
    for name in load_schema()["collections"]:
        migrated[name] = 0
        for doc in list(store.iter_documents(name, old)):
            try:
                migrated[name] += store.replace_if(name, _as_read(doc), upgrade(name, doc, target))
            except OperationFailure as err:
                failed.append({"collection": name, "id": str(doc["_id"]), "error": str(err)[:300]})
    return {"backup": files, "migrated": migrated, "failed": failed, "target": target}


def upgrade(collection: str, doc: dict[str, Any], target: int = SCHEMA_VERSION) -> dict[str, Any]:
    """``doc`` (of ``collection``) taken step by step from its version to ``target``."""
    new = doc
    for step in range(int(doc.get("schema_version") or 0), target):
        new = MIGRATIONS[step](collection, new)
    return new


def _as_read(doc: dict[str, Any]) -> dict[str, Any]:
    """A filter matching ``doc`` only while its ``schema_version`` is still the one read."""
    if "schema_version" in doc:
        return {"_id": doc["_id"], "schema_version": doc["schema_version"]}
    return {"_id": doc["_id"], "schema_version": {"$exists": False}}
