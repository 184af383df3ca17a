"""All database access goes through :class:`Store` (one small interface over pymongo).

Pure functions in :mod:`tracker.db.documents` build the documents; this class only
reads and writes them. Final results (run status, score columns) are written with
write concern ``j=True``: losing an acknowledged result is a bug.

Per-voxel scores live in ``voxel_columns``: one ``bson.Binary`` array per run, split and
field (:func:`tracker.db.documents.score_buckets`).

The index and validator definitions are package data (``tracker/db/schema.json``; the
repository's ``mongo/schema.json`` links to it), read with :mod:`importlib.resources` so
an installed wheel finds them too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pymongo
from pymongo import WriteConcern
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from pipeline.core.errors import ConfigError, DatabaseError, check_utf8
from tracker.db.security import redact_text, redact_uri
from tracker.db.server import EmbeddedServer
from tracker.db.settings import Settings

RUN_COLLECTIONS = ("feature_runs", "fit_runs", "partition_runs")
#: per-voxel score columns, one per (run_id, split, field, chunk)
COLUMNS = "voxel_columns"
#: the unique key of a score column
COLUMN_KEY = ("run_id", "split", "field", "chunk")
DURABLE = WriteConcern(w=1, j=True)


def load_schema(path: Path | None = None) -> dict:
    """The index and validator definitions (package data ``tracker/db/schema.json``).

    Parameters
    ----------
    path
        Another definitions file (default: the one shipped with the package).
    """
    try:
        if path is None:
            return json.loads(resources.files("tracker.db").joinpath("schema.json").read_text())
        return json.loads(Path(path).read_text())
    except OSError as err:
        raise DatabaseError(f"cannot read the schema definitions {path or 'schema.json'}: "
                            f"{err.strerror}") from None


def unavailable(err: BaseException) -> bool:
    """Whether ``err`` means the database cannot take writes now (so a run spools):
    unreachable, or its storage failed (SecantusDB answers ``internal server error``,
    code 1, to everything but ping once its storage engine panicked, e.g. on a full disk)."""
    if isinstance(err, pymongo.errors.ConnectionFailure):
        return True
    return isinstance(err, OperationFailure) and err.code == 1


def describe_failure(err: BaseException) -> str:
    """One line for a driver error (credentials redacted), with what to do."""
    if isinstance(err, OperationFailure) and err.code == 1:
        return ("the database's storage failed (internal server error; a full disk does this): free "
                "space, then run the command again (the embedded server is restarted; its log is "
                "TRACKER_HOME/server.log)")
    return redact_text(str(err))[:500]


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
            self.db.list_collection_names()  # needs a login where authentication is on
        except OperationFailure as err:
            if err.code in (13, 18):  # Unauthorized, AuthenticationFailed
                raise DatabaseError(
                    f"the database at {redact_uri(self.uri)} refused the login "
                    f"({'authentication failed' if err.code == 18 else 'not authorised'}): check the user "
                    "and password in TRACKER_MONGO_URI (the embedded server's are in "
                    "TRACKER_HOME/credentials.json)") from None
            raise DatabaseError(f"the database at {redact_uri(self.uri)} answers, but: "
                                f"{describe_failure(err)}") from None
        except PyMongoError as err:
            raise DatabaseError(
                f"cannot reach the database at {redact_uri(self.uri)}: {type(err).__name__}"
            ) from None

    def init_schema(self, schema: Mapping | None = None) -> dict[str, list[str]]:
        """Create collections, validators and indexes from the schema definitions.

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
        """Mark a run COMPLETED (durably). Raises DuplicateKeyError if an equal run completed.

        A run the reaper had marked DEAD that then finishes loses that ``error``: it did
        not die (the reaping is kept in ``reaped`` for the record).
        """
        self._check_collection(collection)
        coll = self.db.get_collection(collection, write_concern=DURABLE)
        doc = coll.find_one({"_id": run_id}, {"error": 1})
        update: dict[str, Any] = {"$set": {**fields, "status": "COMPLETED"}}
        if doc is not None and (doc.get("error") or {}).get("type") == "Dead":
            update["$set"]["reaped"] = doc["error"]
            update["$unset"] = {"error": ""}
        coll.update_one({"_id": run_id}, update)

    def find_completed(self, collection: str, config_key: str) -> dict | None:
        """The completed run with this config key, if any."""
        self._check_collection(collection)
        return self.db[collection].find_one({"config_key": config_key, "status": "COMPLETED"})

    def supersede(self, collection: str, run_id: str, by: str) -> None:
        """Retire a completed run replaced by a forced re-run (it stays, with its data)."""
        self.update_run(collection, run_id, {"status": "SUPERSEDED", "superseded_by": by}, True)

    def get_run(self, run_id: str) -> tuple[str, dict]:
        """Find a run by id or unique id prefix in any run collection."""
        check_utf8(run_id, "run id")
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

    def feature_outputs_everywhere(self) -> tuple[list[dict], list[str]]:
        """The ``output`` of every feature run in every database of this server.

        Returns
        -------
        outputs : list of ``{"db", "id", "status", "output"}``, this database's first.
        unreadable : names of databases that could not be read (no privilege to list
            or read them), plus ``"*"`` when the databases cannot be listed at all.
        """
        names, unreadable = [self.db_name], []
        try:
            names += sorted(n for n in self.client.list_database_names()
                            if n != self.db_name and n not in ("admin", "local", "config"))
        except pymongo.errors.PyMongoError:
            unreadable.append("*")
        outputs = []
        for name in names:
            try:
                coll = self.client[name]["feature_runs"]
                for doc in coll.find({"output.path": {"$exists": True}}, {"output": 1, "status": 1}):
                    outputs.append({"db": name, "id": doc["_id"], "status": doc.get("status"),
                                    "output": doc["output"]})
            except pymongo.errors.PyMongoError:
                unreadable.append(name)
        return outputs, unreadable

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
        """Write score columns (:func:`tracker.db.documents.score_buckets`) durably, in one
        round trip; returns how many were given."""
        if docs:
            self.db.get_collection(COLUMNS, write_concern=DURABLE).insert_many(docs)
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
                      "data": 1, "n_images": 1}
        out: list[dict] = []
        for split in dict.fromkeys(splits):
            for field in dict.fromkeys(fields):
                out += self.db[COLUMNS].find({"split": split, "field": field, "run_id": {"$in": ids}},
                                             projection)
        return out

    def save_noise_ceiling(self, doc: Mapping[str, Any]) -> str:
        """Store a noise-ceiling record (durably); the newest per (dataset, subject, split) wins."""
        self.db.get_collection("noise_ceilings", write_concern=DURABLE).insert_one(dict(doc))
        return str(doc["_id"])

    def noise_ceilings(self, query: Mapping[str, Any]) -> list[dict]:
        """Noise-ceiling records (per dataset and subject) matching ``query``, newest first."""
        return list(self.db.noise_ceilings.find(dict(query), sort=[("created", -1)]))

    def aggregate(self, collection: str, pipeline: list[dict]) -> list[dict]:
        """Run an aggregation pipeline built by :mod:`tracker.analysis.queries`."""
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
        """Write score columns keyed by their unique key (run_id, split, field, chunk):
        replays never duplicate. Returns how many were given."""
        if not docs:
            return 0
        coll = self.db.get_collection(COLUMNS, write_concern=DURABLE)
        try:  # insert first (one fast round trip); replace only what a replay finds there
            coll.insert_many([_without_id(d) for d in docs], ordered=False)
        except BulkWriteError as err:
            errors = err.details.get("writeErrors", [])
            if err.details.get("writeConcernErrors") or any(e.get("code") != 11000 for e in errors):
                raise
            self.replace_many(COLUMNS, [docs[e["index"]] for e in errors], COLUMN_KEY)
        return len(docs)

    def delete_run(self, collection: str, run_id: str) -> tuple[int, int]:
        """Delete a run document, then its score documents; returns (runs, score documents).

        The run goes first: a crash in between leaves orphan score documents, which no
        query counts and ``tracker gc`` removes.
        """
        self._check_collection(collection)
        runs = self.db.get_collection(collection, write_concern=DURABLE).delete_one({"_id": run_id})
        return runs.deleted_count, self.delete_scores([run_id])

    def delete_scores(self, run_ids: Iterable[str]) -> int:
        """Delete the score columns of ``run_ids`` (durably); returns how many went."""
        coll = self.db.get_collection(COLUMNS, write_concern=DURABLE)
        return coll.delete_many({"run_id": {"$in": list(run_ids)}}).deleted_count

    def scored_run_ids(self) -> set[str]:
        """Run ids that have score columns (their runs may be gone: ``tracker gc``)."""
        return set(self.db[COLUMNS].distinct("run_id"))

    # ------------------------------------------------------ whole collections
    def collection_names(self) -> list[str]:
        """The collections of the database, sorted by name."""
        return sorted(self.db.list_collection_names())

    def iter_documents(self, collection: str, query: Mapping[str, Any] | None = None
                       ) -> Iterator[dict]:
        """Every document of ``collection`` matching ``query``, in ``_id`` order (backups,
        migrations: any collection, not only the run collections)."""
        return self.db[collection].find(dict(query or {}), sort=[("_id", 1)])

    def count_by(self, collection: str, field: str) -> dict[Any, int]:
        """How many documents of ``collection`` hold each value of ``field`` (missing: None)."""
        rows = self.db[collection].aggregate([{"$group": {"_id": f"${field}", "n": {"$sum": 1}}}])
        return {row["_id"]: row["n"] for row in rows}

    def replace_if(self, collection: str, expect: Mapping[str, Any], doc: Mapping[str, Any]) -> int:
        """Replace the document matching ``expect`` by ``doc`` (durably) only while it still
        matches; returns 1 if it was replaced, else 0 (a writer changed it meanwhile)."""
        coll = self.db.get_collection(collection, write_concern=DURABLE)
        return coll.replace_one(dict(expect), dict(doc)).modified_count

    def replace_many(self, collection: str, docs: list[dict], key: Iterable[str]) -> None:
        """Upsert ``docs`` (without their ``_id``) by the fields ``key``, in one unordered
        bulk write (durably)."""
        names = tuple(key)
        ops = []
        for doc in docs:
            body = _without_id(doc)
            ops.append(pymongo.ReplaceOne({k: body[k] for k in names}, body, upsert=True))
        if ops:
            self.db.get_collection(collection, write_concern=DURABLE).bulk_write(ops, ordered=False)

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
        if name not in (*RUN_COLLECTIONS, "datasets"):
            raise ConfigError(f"unknown collection {name!r}")


def _without_id(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "_id"}


def _regex_escape(text: str) -> str:
    return re.escape(text)
