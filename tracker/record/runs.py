"""Run lifecycle: RUNNING -> COMPLETED | FAILED | INTERRUPTED | DUPLICATE (DEAD: the reaper).

Use :class:`RunRecorder` as a context manager around the work. It inserts the run
document, keeps a heartbeat (a background thread that ``$set``s only ``heartbeat``
and ``progress``, and only while the run is RUNNING), and whatever happens records
how the run ended: an exception stores FAILED with its traceback, Ctrl-C or SIGTERM
stores INTERRUPTED. A run killed outright (kill -9, power loss) stays RUNNING with a
heartbeat that stops moving; :func:`reap` marks it DEAD once its heartbeat is older
than ``stale_factor`` x its own ``heartbeat_interval_s``.

Identity: only one run per ``config_key`` can be COMPLETED (a partial unique index).
Two processes racing on the same key both work; the one that completes second gets
the index's DuplicateKeyError and is stored as ``DUPLICATE`` with ``duplicate_of``
naming the winner (its score buckets stay, but queries count only COMPLETED runs).
A forced re-run (``replace=True``) instead retires the other run as SUPERSEDED.

Offline: given a :class:`~tracker.record.spool.Spool`, a run that cannot reach the database
(connection errors at start, mid-run or at the end) keeps going; from then on its
writes go to the spool and are uploaded by ``tracker sync`` (or right at the end of
the run, if the database is back by then).
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from pipeline.core.errors import DatabaseError, VimtrackError
from tracker.db.documents import as_utc, utc_now
from tracker.db.security import redact_text
from tracker.db.store import RUN_COLLECTIONS, Store, unavailable
from tracker.record.spool import Spool

DEFAULT_HEARTBEAT_S = 15.0
DEFAULT_STALE_FACTOR = 4.0
ENDED = ("COMPLETED", "FAILED", "INTERRUPTED", "DEAD", "DUPLICATE", "SUPERSEDED")


class RunInterrupted(BaseException):
    """Raised in the main thread when SIGTERM arrives during a run."""


class RunRecorder:
    """Record one run's lifecycle in ``collection``.

    Parameters
    ----------
    store
        The database.
    collection
        ``"feature_runs"`` or ``"fit_runs"``.
    doc
        The run document built by :mod:`tracker.db.documents` (``_id``, config, ...).
    heartbeat_s
        Seconds between heartbeats (stored as ``heartbeat_interval_s`` for the reaper).
    spool
        Where writes go when the database is unreachable; None makes an unreachable
        database a :class:`DatabaseError` at start (later failures are then lost).
    """

    def __init__(
        self, store: Store, collection: str, doc: Mapping[str, Any],
        heartbeat_s: float = DEFAULT_HEARTBEAT_S, spool: Spool | None = None,
    ) -> None:
        self.store = store
        self.collection = collection
        self.doc = dict(doc)
        self.run_id = str(doc["_id"])
        self.heartbeat_s = heartbeat_s
        self.spool = spool
        #: the run that holds the result: this one, or the winner when DUPLICATE
        self.final_id = self.run_id
        #: why this run's writes go to the spool (None while the database takes them)
        self.spooled: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress: dict[str, Any] = {}
        self._completed = False
        self._old_sigterm: Any = None
        self._t0 = 0.0

    # ------------------------------------------------------------------
    def __enter__(self) -> RunRecorder:
        start = utc_now()
        self.doc.update(status="RUNNING", started=start, heartbeat=start,
                        heartbeat_interval_s=float(self.heartbeat_s))
        self._save(lambda: self.store.insert_run(self.collection, self.doc), "start")
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.run_id}", daemon=True)
        self._thread.start()
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
        if exc_type is None:
            if not self._completed:
                self._finish("FAILED", error={"type": "Incomplete",
                                              "message": "run ended without complete()"})
        elif issubclass(exc_type, (KeyboardInterrupt, RunInterrupted)):
            self._finish("INTERRUPTED", error={"type": exc_type.__name__, "message": "interrupted by signal"})
        elif not self._completed:
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            self._finish("FAILED", error={"type": exc_type.__name__, "message": redact_text(str(exc)),
                                          "traceback": redact_text(text)[-20000:]})
        self._flush_spool()
        return False

    # ------------------------------------------------------------------
    def progress(self, stage: str, done: int, total: int) -> None:
        """Note progress; written with the next heartbeat (never blocks the work)."""
        self._progress = {"stage": stage, "done": int(done), "total": int(total)}

    def insert_buckets(self, docs: list[dict]) -> int:
        """Write this run's score buckets (idempotent upserts; spooled when offline)."""
        if self.spooled is None:
            try:
                return self.store.upsert_buckets(docs)
            except PyMongoError as err:
                if not unavailable(err):
                    raise
                self._go_offline("buckets", err)
        assert self.spool is not None
        self.spool.append_buckets(self.run_id, docs)
        return len(docs)

    def complete(self, fields: Mapping[str, Any], replace: bool = False) -> str:
        """Store the results and mark the run COMPLETED (durable write).

        Parameters
        ----------
        fields
            Result fields to ``$set`` on the run document.
        replace
            A forced re-run: retire a completed run with the same config key
            (SUPERSEDED) instead of ending as its DUPLICATE.

        Returns
        -------
        run_id
            The run that holds the result: this one, or the winner of a race.
        """
        finished = utc_now()
        update = {**fields, "finished": finished, "heartbeat": finished,
                  "elapsed_s": time.perf_counter() - self._t0, "progress": self._progress or None}
        self.doc.update(update, status="COMPLETED")
        if self.spooled is None:
            try:
                self._complete_online(update, replace)
            except PyMongoError as err:
                if not unavailable(err):
                    raise
                self.doc["status"] = "COMPLETED"
                self._go_offline("complete", err, replace=replace)
                return self.final_id
        if self.spooled is not None:
            assert self.spool is not None
            self.spool.append_run(self.collection, self.doc, replace=replace)
        self._completed = True
        return self.final_id

    def final_run(self) -> dict[str, Any]:
        """The run document holding the result (from the database, else from memory)."""
        if self.spooled is None:
            try:
                return self.store.get_run(self.final_id)[1]
            except (PyMongoError, VimtrackError):
                pass
        return dict(self.doc)

    # ------------------------------------------------------------------
    def _complete_online(self, update: dict[str, Any], replace: bool) -> None:
        key = self.doc["config_key"]
        for _ in range(3):
            try:
                self.store.complete_run(self.collection, self.run_id, update)
                self._completed = True
                return
            except DuplicateKeyError:
                winner = self.store.find_completed(self.collection, key)
                if winner is None or winner["_id"] == self.run_id:
                    continue
                if replace:
                    self.store.supersede(self.collection, str(winner["_id"]), by=self.run_id)
                    continue
                self.final_id = str(winner["_id"])
                self.doc.update(status="DUPLICATE", duplicate_of=self.final_id)
                self.store.update_run(self.collection, self.run_id,
                                      {**update, "status": "DUPLICATE", "duplicate_of": self.final_id},
                                      durable=True)
                self._completed = True
                return
        raise DatabaseError(f"run {self.run_id} could not complete: config key {key[:12]} kept "
                            "changing hands")

    def _save(self, write: Callable[[], Any], stage: str) -> None:
        """Write the run document to the database, or its snapshot to the spool."""
        if self.spooled is None:
            try:
                write()
                return
            except PyMongoError as err:
                if not unavailable(err):
                    raise
                self._go_offline(stage, err)
                return
        assert self.spool is not None
        self.spool.append_run(self.collection, self.doc)

    def _go_offline(self, stage: str, err: Exception, replace: bool = False) -> None:
        """Switch this run to the spool for good (a snapshot of the run goes first)."""
        if self.spool is None:
            raise DatabaseError(
                f"run {self.run_id}: the database became unreachable at {stage} "
                f"({type(err).__name__}) and no spool is configured") from None
        reason = type(err).__name__ if not isinstance(err, OperationFailure) else "StorageFailure"
        self.spooled = f"{stage}: {reason}"
        self.doc["spool"] = {"stage": stage, "error": reason, "at": utc_now()}
        self.spool.append_run(self.collection, self.doc, replace=replace)
        if self.doc["status"] == "COMPLETED":
            self._completed = True

    def _finish(self, status: str, **fields: Any) -> None:
        finished = utc_now()
        update = {"status": status, "finished": finished, "heartbeat": finished,
                  "elapsed_s": time.perf_counter() - self._t0, **fields}
        self.doc.update(update)
        try:
            self._save(lambda: self.store.update_run(self.collection, self.run_id, update, durable=True),
                       "finish")
        except (PyMongoError, VimtrackError, OSError):  # the original error matters more
            pass

    def _flush_spool(self) -> None:
        """Upload this run's spool file now if the database is back (else ``tracker sync``)."""
        if self.spooled is None or self.spool is None:
            return
        try:
            if not self.store.reachable():
                return
            self.spool.sync(self.store, self.run_id)
            _, stored = self.store.get_run(self.run_id)
            self.spooled = None
            self.doc = stored
            if stored.get("status") == "DUPLICATE":
                self.final_id = str(stored["duplicate_of"])
        except (PyMongoError, VimtrackError, OSError):
            pass

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            fields: dict[str, Any] = {"heartbeat": utc_now()}
            if self._progress:
                fields["progress"] = self._progress
            try:
                self.store.update_run_if(self.collection, self.run_id, {"status": "RUNNING"}, fields)
            except PyMongoError:
                continue

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        raise RunInterrupted(f"signal {signum}")


def reap(store: Store, stale_factor: float = DEFAULT_STALE_FACTOR,
         at: datetime | None = None) -> list[dict[str, Any]]:
    """Mark DEAD every RUNNING run whose heartbeat is older than ``stale_factor`` x its interval.

    Parameters
    ----------
    store
        The database.
    stale_factor
        How many missed heartbeats make a run dead (> 1; clocks of other hosts may drift).
    at
        The current time (default: now, UTC).

    Returns
    -------
    reaped
        ``{"id", "collection", "heartbeat", "silent_s"}`` per run marked DEAD.
    """
    if stale_factor <= 1:
        from pipeline.core.errors import ConfigError

        raise ConfigError(f"--stale-factor must be above 1 (missed heartbeats), got {stale_factor}")
    at = at or utc_now()
    reaped = []
    for collection in RUN_COLLECTIONS:
        running = store.find_runs(collection, {"status": "RUNNING"},
                                  projection={"heartbeat": 1, "heartbeat_interval_s": 1})
        for doc in running:
            beat = doc.get("heartbeat")
            interval = float(doc.get("heartbeat_interval_s") or DEFAULT_HEARTBEAT_S)
            if beat is None or at - as_utc(beat) <= timedelta(seconds=stale_factor * interval):
                continue
            silent = (at - as_utc(beat)).total_seconds()
            fields = {"status": "DEAD", "finished": at, "error": {
                "type": "Dead", "message": f"no heartbeat for {silent:.0f} s "
                f"(limit {stale_factor:g} x {interval:g} s); the process was killed or lost"}}
            if store.update_run_if(collection, str(doc["_id"]), {"status": "RUNNING", "heartbeat": beat},
                                   fields, durable=True):
                reaped.append({"id": doc["_id"], "collection": collection, "heartbeat": beat,
                               "silent_s": silent})
    return reaped
