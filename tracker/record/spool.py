"""A local spool for run documents written while the database was unreachable.

When a run cannot reach the database (at its start, in the middle or at its end) the
:class:`~tracker.record.runs.RunRecorder` appends what it would have written to
``<spool_dir>/<run_id>.jsonl``: run-document snapshots and score buckets, one JSON
line (MongoDB extended JSON, so dates survive) per record, each append ``fsync``-ed.
A crash can at worst tear the last line, which the reader skips.

:meth:`Spool.sync` (``tracker sync``) uploads the files idempotently: buckets are
upserted on their unique key (run, split, field, chunk) and the run document is replaced by
``_id`` with its last snapshot, so running it twice (or after a crash half-way)
never duplicates anything. A synced file moves to ``<spool_dir>/synced/``.
If another run with the same config key completed meanwhile, the uploaded run is
stored as ``DUPLICATE`` of it (or, for a forced re-run, supersedes it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

from bson import json_util
from pymongo.errors import DuplicateKeyError

from pipeline.core.errors import DatabaseError, IntegrityError
from pipeline.core.files import exclusive_lock, fsync_dir, private_dir
from tracker.db.documents import utc_now
from tracker.db.store import Store

SPOOL_FORMAT = 1
_JSON_OUT = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED)
_JSON_IN = json_util.JSONOptions(tz_aware=True, tzinfo=timezone.utc)


@dataclass
class SyncReport:
    """What :meth:`Spool.sync` uploaded."""

    files: int = 0
    runs: int = 0
    buckets: int = 0
    duplicates: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    torn_lines: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Spool:
    """Run records kept on local disk until the database takes them.

    Parameters
    ----------
    directory
        The spool directory (``Settings.spool_dir``).
    db_name
        The database the records belong to; :meth:`sync` uploads only those.
    """

    def __init__(self, directory: Path | str, db_name: str) -> None:
        self.directory = Path(directory)
        self.db_name = db_name

    def path_of(self, run_id: str) -> Path:
        return self.directory / f"{run_id}.jsonl"

    # ----------------------------------------------------------------- write
    def append(self, run_id: str, record: Mapping[str, Any]) -> None:
        """Append one record (``op`` = ``"run"`` or ``"buckets"``) durably."""
        private_dir(self.directory)
        body = {"format": SPOOL_FORMAT, "db": self.db_name, "run_id": run_id, **record}
        data = (json_util.dumps(body, json_options=_JSON_OUT) + "\n").encode()
        path = self.path_of(run_id)
        is_new = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if is_new:
            fsync_dir(self.directory)

    def append_run(self, collection: str, doc: Mapping[str, Any], replace: bool = False) -> None:
        """Spool a snapshot of a whole run document (the last one wins at sync)."""
        self.append(str(doc["_id"]), {"op": "run", "collection": collection, "doc": dict(doc),
                                      "replace": replace})

    def append_buckets(self, run_id: str, docs: list[dict]) -> None:
        """Spool score buckets (without driver-assigned ``_id``)."""
        clean = [{k: v for k, v in d.items() if k != "_id"} for d in docs]
        self.append(run_id, {"op": "buckets", "docs": clean})

    # ------------------------------------------------------------------ read
    def pending(self) -> list[Path]:
        """Spool files not yet synced, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)

    def read(self, path: Path) -> tuple[list[dict], int]:
        """Records of one spool file and the number of torn (skipped) trailing lines."""
        lines = path.read_bytes().split(b"\n")
        records: list[dict] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json_util.loads(line.decode(), json_options=_JSON_IN))
            except (ValueError, UnicodeDecodeError):
                if any(rest.strip() for rest in lines[number:]):
                    raise IntegrityError(
                        f"spool file {path} line {number} is corrupt (not a torn last line); "
                        "it was left in place"
                    ) from None
                return records, 1
        return records, 0

    def pending_runs(self, collection: str) -> list[dict]:
        """The last snapshot of every run of ``collection`` still waiting in the spool
        (any database's): what ``gc`` must treat as referenced."""
        out = []
        for path in self.pending():
            try:
                records = self.read(path)[0]
            except (OSError, IntegrityError):
                continue
            runs = [r["doc"] for r in records if r.get("op") == "run" and r.get("collection") == collection]
            if runs:
                out.append(runs[-1])
        return out

    # ------------------------------------------------------------------ sync
    def sync(self, store: Store, run_id: str | None = None) -> SyncReport:
        """Upload pending files (all, or one run's) to ``store``; idempotent."""
        report = SyncReport()
        with self._locked():
            paths = [self.path_of(run_id)] if run_id else self.pending()
            for path in paths:
                if path.exists():
                    self._sync_file(store, path, report)
        return report

    def _sync_file(self, store: Store, path: Path, report: SyncReport) -> None:
        records, torn = self.read(path)
        report.torn_lines += torn
        if any(r.get("db") != self.db_name for r in records):
            report.skipped.append(path.name)
            return
        buckets = [d for r in records if r.get("op") == "buckets" for d in r["docs"]]
        last: dict[str, dict] = {}
        for r in records:
            if r.get("op") == "run":
                last[str(r["doc"]["_id"])] = r
        # Buckets first: a COMPLETED run is never visible without its scores.
        report.buckets += store.upsert_buckets(buckets)
        for r in last.values():
            status = upload_run(store, r["collection"], r["doc"], bool(r.get("replace")))
            report.runs += 1
            if status == "DUPLICATE":
                report.duplicates.append(str(r["doc"]["_id"]))
        done = private_dir(self.directory / "synced")
        stamp = utc_now().strftime("%Y%m%dT%H%M%S%f")
        os.replace(path, done / f"{path.stem}.{stamp}.jsonl")
        fsync_dir(self.directory)
        report.files += 1

    @contextmanager
    def _locked(self) -> Iterator[None]:
        private_dir(self.directory)
        with exclusive_lock(self.directory / ".sync.lock"):
            yield


def upload_run(store: Store, collection: str, doc: Mapping[str, Any], replace: bool = False) -> str:
    """Replace a run document by ``_id``; resolve a clash on its config key.

    Returns the status stored: a COMPLETED run whose config key completed meanwhile in
    another run becomes ``DUPLICATE`` (``duplicate_of`` names the winner), unless
    ``replace`` (a forced re-run), which supersedes the other run.
    """
    body = dict(doc)
    if "spool" in body:
        body["spool"] = {**body["spool"], "synced": utc_now()}
    for _ in range(3):
        try:
            store.replace_run(collection, body)
            return str(body["status"])
        except DuplicateKeyError:
            winner = store.find_completed(collection, body["config_key"])
            if winner is None or winner["_id"] == body["_id"]:
                continue
            if replace:
                store.supersede(collection, str(winner["_id"]), by=str(body["_id"]))
            else:
                body = {**body, "status": "DUPLICATE", "duplicate_of": winner["_id"]}
    raise DatabaseError(f"run {body['_id']} could not be uploaded: its config key kept changing hands")
