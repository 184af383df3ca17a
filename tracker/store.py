"""All database access goes through :class:`Store` (one small interface over pymongo).

Pure functions in :mod:`tracker.documents` build the documents; this class only
reads and writes them. Final results (run status, score buckets) are written with
write concern ``j=True``: losing an acknowledged result is a bug.

Per-voxel scores live in ``voxel_columns`` (one ``bson.Binary`` array per run, split and
field). Runs logged before that layout keep theirs: float64-list buckets in
``voxel_scores`` and, for later ones, float32 copies in ``voxel_arrays``; they are read
(:meth:`Store.buckets`, :meth:`Store.packed_buckets`) and deleted. The tracker writes
that layout only when it syncs a spool file from that time (tests and benchmarks build
old databases with :func:`tracker.documents.legacy_score_buckets`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pymongo
from bson import Binary
from pymongo import WriteConcern
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from pipeline.core.errors import ConfigError, DatabaseError
from tracker.security import redact_uri
from tracker.server import EmbeddedServer
from tracker.settings import Settings

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "mongo" / "schema.json"
RUN_COLLECTIONS = ("feature_runs", "fit_runs")
#: per-voxel score columns (current layout), one per (run_id, split, field, chunk)
COLUMNS = "voxel_columns"
#: legacy: compact (bson.Binary) copies of the score buckets, one per (run_id, split)
PACKED = "voxel_arrays"
#: legacy: float64-list score buckets, one per (run_id, split, chunk)
LISTS = "voxel_scores"
#: every collection holding per-voxel data keyed by ``run_id``
SCORE_COLLECTIONS = (COLUMNS, PACKED, LISTS)
DURABLE = WriteConcern(w=1, j=True)


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The index and validator definitions kept as data in ``mongo/schema.json``."""
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise DatabaseError(f"cannot read the schema definitions {path}: {err.strerror}") from None


class Store:
    """The tracker's database.

    Parameters
    ----------
    uri
        A MongoDB URI (embedded server, local mongod or Atlas).
    db_name
        Database name.
    timeout_ms
        Server selection timeout: how long to wait for an unreachable server.
    """

    def __init__(self, uri: str, db_name: str, timeout_ms: int = 5000) -> None:
        self.uri = uri
        self.db_name = db_name
        try:
            self.client: pymongo.MongoClient = pymongo.MongoClient(
                uri, serverSelectionTimeoutMS=timeout_ms, tz_aware=True
            )
        except (PyMongoError, ValueError) as err:
            raise DatabaseError(f"invalid MongoDB URI {redact_uri(uri)}: {err}") from None
        self.db = self.client[db_name]

    # ----------------------------------------------------------------- set-up
    @classmethod
    def open(cls, settings: Settings, init: bool = True) -> Store:
        """Connect as ``settings`` says: the URI if given, else the embedded server.

        The embedded server is started on ``settings.embedded_db_dir`` when none runs.
        """
        uri = settings.mongo_uri or EmbeddedServer(settings.embedded_db_dir).ensure().uri
        store = cls(uri, settings.db_name)
        store.ping()
        if init:
            store.init_schema()
        return store

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> None:
        """Raise :class:`DatabaseError` (without credentials) if the server is unreachable."""
        try:
            self.client.admin.command("ping")
        except PyMongoError as err:
            raise DatabaseError(
                f"cannot reach the database at {redact_uri(self.uri)}: {type(err).__name__}"
            ) from None

    def init_schema(self, schema: Mapping | None = None) -> dict[str, list[str]]:
        """Create collections, validators and indexes from ``mongo/schema.json``.

        Idempotent: existing collections get their validator updated with ``collMod``.
        Returns the index names per collection.
        """
        schema = schema or load_schema()
        existing = set(self.db.list_collection_names())
        applied: dict[str, list[str]] = {}
        for name, spec in schema["collections"].items():
            validator = spec.get("validator")
            try:
                if name not in existing:
                    self.db.create_collection(name, validator=validator) if validator else (
                        self.db.create_collection(name)
                    )
                elif validator:
                    self.db.command("collMod", name, validator=validator)
                coll = self.db[name]
                applied[name] = []
                for index in spec.get("indexes", []):
                    options = {k: v for k, v in index.items() if k != "keys"}
                    keys = [(field, direction) for field, direction in index["keys"]]
                    applied[name].append(coll.create_index(keys, **options))
            except OperationFailure as err:
                raise DatabaseError(f"could not apply the schema to '{name}': {err.details}") from None
        return applied

    # ------------------------------------------------------------------ runs
    def insert_run(self, collection: str, doc: Mapping[str, Any]) -> str:
        """Insert a new run document; returns its id."""
        self._check_collection(collection)
        self.db.get_collection(collection, write_concern=DURABLE).insert_one(dict(doc))
        return str(doc["_id"])

    def update_run(
        self, collection: str, run_id: str, fields: Mapping[str, Any], durable: bool = False
    ) -> None:
        """``$set`` ``fields`` on one run (heartbeats use durable=False)."""
        self._check_collection(collection)
        coll = self.db.get_collection(collection, write_concern=DURABLE if durable else None)
        coll.update_one({"_id": run_id}, {"$set": dict(fields)})

    def complete_run(self, collection: str, run_id: str, fields: Mapping[str, Any]) -> None:
        """Mark a run COMPLETED (durably). Raises DuplicateKeyError if an equal run completed."""
        self.update_run(collection, run_id, {**fields, "status": "COMPLETED"}, durable=True)

    def find_completed(self, collection: str, config_key: str) -> dict | None:
        """The completed run with this config key, if any."""
        self._check_collection(collection)
        return self.db[collection].find_one({"config_key": config_key, "status": "COMPLETED"})

    def supersede(self, collection: str, run_id: str, by: str) -> None:
        """Retire a completed run replaced by a forced re-run (it stays, with its data)."""
        self.update_run(collection, run_id, {"status": "SUPERSEDED", "superseded_by": by}, True)

    def get_run(self, run_id: str) -> tuple[str, dict]:
        """Find a run by id or unique id prefix in any run collection."""
        matches: list[tuple[str, dict]] = []
        for name in RUN_COLLECTIONS:
            doc = self.db[name].find_one({"_id": run_id})
            if doc is not None:
                return name, doc
            prefix = {"_id": {"$regex": "^" + _regex_escape(run_id)}}
            matches += [(name, d) for d in self.db[name].find(prefix).limit(2)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise ConfigError(f"no run with id or id prefix {run_id!r}")
        raise ConfigError(f"run id prefix {run_id!r} is ambiguous: give more characters")

    def find_runs(
        self,
        collection: str,
        query: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | None = None,
        limit: int = 0,
        sort: Iterable[tuple[str, int]] = (("created", -1),),
    ) -> list[dict]:
        """Runs matching a (validated) filter, newest first."""
        self._check_collection(collection)
        cursor = self.db[collection].find(dict(query or {}), projection, sort=list(sort))
        return list(cursor.limit(limit) if limit else cursor)

    # ------------------------------------------------------------- datasets
    def find_dataset(self, fingerprint: str) -> dict | None:
        return self.db.datasets.find_one({"fingerprint": fingerprint})

    def save_dataset(self, doc: Mapping[str, Any]) -> str:
        """Insert a dataset document (idempotent on its fingerprint); returns its id."""
        coll = self.db.get_collection("datasets", write_concern=DURABLE)
        try:
            coll.insert_one(dict(doc))
        except DuplicateKeyError:
            existing = coll.find_one({"fingerprint": doc["fingerprint"]})
            return str(existing["_id"])
        return str(doc["_id"])

    # --------------------------------------------------------------- scores
    def insert_buckets(self, docs: list[dict]) -> int:
        """Write score documents durably (one round trip); returns how many were given.

        ``docs`` are score columns (:func:`tracker.documents.score_buckets`); legacy
        buckets (:func:`tracker.documents.legacy_score_buckets`) go to their old collections.
        """
        if not docs:
            return 0
        columns, legacy = _partition(docs)
        if columns:
            self.db.get_collection(COLUMNS, write_concern=DURABLE).insert_many(columns)
        if legacy:
            plain, packed = _split_packed(legacy)
            self.db.get_collection(LISTS, write_concern=DURABLE).insert_many(plain)
            if packed:
                self.db.get_collection(PACKED, write_concern=DURABLE).insert_many(packed)
        return len(docs)

    def columns(
        self, run_ids: Iterable[str], splits: Iterable[str], fields: Iterable[str],
    ) -> list[dict]:
        """Score-column documents of the given runs, splits and fields (chunks unsorted).

        One query per (split, field), each an index scan (``split_field_run``) fetching only
        the documents asked for: a ``$in`` on another key too made the embedded server scan
        the whole collection. Only what decoding needs comes back.
        """
        ids = list(run_ids)
        projection = {"_id": 0, "run_id": 1, "split": 1, "field": 1, "chunk": 1, "dtype": 1,
                      "data": 1}
        out: list[dict] = []
        for split in dict.fromkeys(splits):
            for field in dict.fromkeys(fields):
                out += self.db[COLUMNS].find({"split": split, "field": field, "run_id": {"$in": ids}},
                                             projection)
        return out

    def buckets(
        self, run_ids: Iterable[str], split: str | None = None, fields: Iterable[str] = ()
    ) -> list[dict]:
        """Legacy float64-list score buckets of the given runs (optionally one split), in
        chunk order. Runs logged since score columns exist have none: read scores with
        :func:`tracker.arrays.load_scores`, which reads every layout."""
        query: dict[str, Any] = {"run_id": {"$in": list(run_ids)}}
        if split is not None:
            query["split"] = split
        projection = None
        if fields:
            projection = {f: 1 for f in ("run_id", "split", "chunk", *fields)}
        return list(self.db[LISTS].find(query, projection, sort=[("run_id", 1), ("chunk", 1)]))

    def packed_buckets(
        self, run_ids: Iterable[str], split: str | None = None, fields: Iterable[str] = ()
    ) -> list[dict]:
        """Legacy compact float32/int32 copies of score buckets (``documents.packed_arrays``).

        Written beside the float64 lists of ``voxel_scores`` before score columns existed;
        runs logged before these copies existed have none (read their buckets instead).
        """
        query: dict[str, Any] = {"run_id": {"$in": list(run_ids)}}
        if split is not None:
            query["split"] = split
        keep = ("run_id", "split", "chunk", "chunks", "sizes", *fields)
        projection = {f: 1 for f in keep} if fields else None
        return list(self.db[PACKED].find(query, projection, sort=[("run_id", 1), ("chunk", 1)]))

    def save_noise_ceiling(self, doc: Mapping[str, Any]) -> str:
        """Store a noise-ceiling record (durably); the newest per (dataset, subject, split) wins."""
        self.db.get_collection("noise_ceilings", write_concern=DURABLE).insert_one(dict(doc))
        return str(doc["_id"])

    def noise_ceilings(self, query: Mapping[str, Any]) -> list[dict]:
        """Noise-ceiling records (per dataset and subject) matching ``query``, newest first."""
        return list(self.db.noise_ceilings.find(dict(query), sort=[("created", -1)]))

    def aggregate(self, collection: str, pipeline: list[dict]) -> list[dict]:
        """Run an aggregation pipeline built by :mod:`tracker.queries`."""
        return list(self.db[collection].aggregate(pipeline, allowDiskUse=True))

    # ---------------------------------------------------------- reliability
    def reachable(self, timeout_ms: int = 500) -> bool:
        """True if the server answers ``ping`` within ``timeout_ms`` (a short, separate probe)."""
        probe: pymongo.MongoClient = pymongo.MongoClient(
            self.uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
        )
        try:
            probe.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            probe.close()

    def update_run_if(
        self, collection: str, run_id: str, expect: Mapping[str, Any], fields: Mapping[str, Any],
        durable: bool = False,
    ) -> bool:
        """``$set`` ``fields`` on a run only while it still matches ``expect``; True if it did.

        Heartbeats use ``expect={"status": "RUNNING"}`` so they never revive an ended run;
        the reaper also expects the heartbeat it judged stale, so a live beat wins the race.
        """
        self._check_collection(collection)
        coll = self.db.get_collection(collection, write_concern=DURABLE if durable else None)
        result = coll.update_one({**expect, "_id": run_id}, {"$set": dict(fields)})
        return result.matched_count == 1

    def replace_run(self, collection: str, doc: Mapping[str, Any]) -> None:
        """Upsert a whole run document by ``_id`` (spool uploads: replaying is harmless).

        Raises DuplicateKeyError when ``doc`` is COMPLETED and another run with its
        config key already completed.
        """
        self._check_collection(collection)
        coll = self.db.get_collection(collection, write_concern=DURABLE)
        coll.replace_one({"_id": doc["_id"]}, dict(doc), upsert=True)

    def upsert_buckets(self, docs: list[dict]) -> int:
        """Write score documents keyed by their unique key (run_id, split[, field], chunk):
        replays never duplicate. Legacy buckets (old spool files) go to their old collections."""
        if not docs:
            return 0
        columns, legacy = _partition(docs)
        plain, packed = _split_packed(legacy)
        if columns:  # insert first (one fast round trip); replace only what a replay finds there
            coll = self.db.get_collection(COLUMNS, write_concern=DURABLE)
            try:
                coll.insert_many([_without_id(d) for d in columns], ordered=False)
            except BulkWriteError as err:
                errors = err.details.get("writeErrors", [])
                if err.details.get("writeConcernErrors") or any(e.get("code") != 11000 for e in errors):
                    raise
                _replace(coll, [columns[e["index"]] for e in errors], ("run_id", "split", "field", "chunk"))
        for name, bodies in ((LISTS, plain), (PACKED, packed)):
            if bodies:
                _replace(self.db.get_collection(name, write_concern=DURABLE), bodies,
                         ("run_id", "split", "chunk"))
        return len(docs)

    def delete_run(self, collection: str, run_id: str) -> tuple[int, int]:
        """Delete a run document, then its score documents; returns (runs, score documents).

        Score documents are counted in every layout (columns, legacy buckets and their
        packed copies). The run goes first: a crash in between leaves orphan score
        documents, which no query counts and ``tracker gc`` removes.
        """
        self._check_collection(collection)
        runs = self.db.get_collection(collection, write_concern=DURABLE).delete_one({"_id": run_id})
        scores = 0
        for name in SCORE_COLLECTIONS:
            scores += self.db.get_collection(name, write_concern=DURABLE).delete_many(
                {"run_id": run_id}).deleted_count
        return runs.deleted_count, scores

    # --------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """Server version, database, collection counts and index names."""
        info = self.client.server_info()
        collections = {}
        for name in sorted(self.db.list_collection_names()):
            coll = self.db[name]
            collections[name] = {
                "documents": coll.estimated_document_count(),
                "indexes": sorted(coll.index_information()),
            }
        return {
            "uri": redact_uri(self.uri),
            "server_version": info.get("version"),
            "database": self.db_name,
            "collections": collections,
        }

    @staticmethod
    def _check_collection(name: str) -> None:
        if name not in (*RUN_COLLECTIONS, LISTS, "datasets"):
            raise ConfigError(f"unknown collection {name!r}")


def _without_id(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "_id"}


def _replace(coll: Any, docs: list[dict], key: tuple[str, ...]) -> None:
    """Upsert ``docs`` (without their ``_id``) by ``key``, in one unordered bulk write."""
    ops = []
    for doc in docs:
        body = _without_id(doc)
        ops.append(pymongo.ReplaceOne({k: body[k] for k in key}, body, upsert=True))
    coll.bulk_write(ops, ordered=False)


def _partition(docs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Score columns (current layout) and legacy buckets, in their given order."""
    from tracker.documents import is_column_doc

    columns: list[dict] = []
    legacy: list[dict] = []
    for doc in docs:
        (columns if is_column_doc(doc) else legacy).append(doc)
    return columns, legacy


def _split_packed(docs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Score buckets without their ``packed`` field, and those fields as documents of their own.

    The packed copies of one (run, split) written together become ONE document (arrays
    concatenated in chunk order, ``chunks`` and ``sizes`` recording the buckets), keyed by
    its first chunk: reading a run's arrays is then one small document per split.
    """
    from tracker.documents import PACKED_EXTRA, pack_list

    plain: list[dict] = []
    groups: dict[tuple, list[dict]] = {}
    for doc in docs:
        plain.append({k: v for k, v in doc.items() if k != "packed"})
        if "packed" in doc:
            extra = {f: pack_list(doc[f]) for f in PACKED_EXTRA
                     if isinstance(doc.get(f), list) and f not in doc["packed"]}
            groups.setdefault((doc["run_id"], doc["split"]), []).append(
                {"chunk": doc["chunk"], "size": len(doc["voxel_ids"]), "schema_version":
                 doc.get("schema_version", 1), **doc["packed"], **extra})
    packed = []
    for (run_id, split), parts in groups.items():
        parts.sort(key=lambda d: d["chunk"])
        fields = [f for f in parts[0] if f not in ("chunk", "size", "schema_version")
                  and all(f in d for d in parts)]
        packed.append({"schema_version": parts[0]["schema_version"], "run_id": run_id, "split": split,
                       "chunk": parts[0]["chunk"], "chunks": [d["chunk"] for d in parts],
                       "sizes": [d["size"] for d in parts],
                       **{f: Binary(b"".join(bytes(d[f]) for d in parts)) for f in fields}})
    return plain, packed


def _regex_escape(text: str) -> str:
    import re

    return re.escape(text)
