"""Run lifecycle: RUNNING -> COMPLETED | FAILED | INTERRUPTED (DEAD is set by a reaper).

Use :class:`RunRecorder` as a context manager around the work. It inserts the run
document, keeps a heartbeat (a background thread that ``$set``s only ``heartbeat``
and ``progress``), and whatever happens records how the run ended: an exception
stores FAILED with its traceback, Ctrl-C or SIGTERM stores INTERRUPTED.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from pymongo.errors import PyMongoError

from tracker.security import redact_text
from tracker.store import Store


class RunInterrupted(BaseException):
    """Raised in the main thread when SIGTERM arrives during a run."""


def now() -> datetime:
    return datetime.now(timezone.utc)


class RunRecorder:
    """Record one run's lifecycle in ``collection``.

    Parameters
    ----------
    store
        The database.
    collection
        ``"feature_runs"`` or ``"fit_runs"``.
    doc
        The run document built by :mod:`tracker.documents` (``_id``, config, ...).
    heartbeat_s
        Seconds between heartbeats.
    """

    def __init__(
        self, store: Store, collection: str, doc: Mapping[str, Any], heartbeat_s: float = 15.0
    ) -> None:
        self.store = store
        self.collection = collection
        self.doc = dict(doc)
        self.run_id = str(doc["_id"])
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress: dict[str, Any] = {}
        self._completed = False
        self._old_sigterm: Any = None
        self._t0 = 0.0

    # ------------------------------------------------------------------
    def __enter__(self) -> RunRecorder:
        start = now()
        self.doc.update(status="RUNNING", started=start, heartbeat=start)
        self.store.insert_run(self.collection, self.doc)
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
            return False
        if issubclass(exc_type, (KeyboardInterrupt, RunInterrupted)):
            self._finish("INTERRUPTED", error={"type": exc_type.__name__, "message": "interrupted by signal"})
        elif not self._completed:
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            self._finish(
                "FAILED",
                error={
                    "type": exc_type.__name__,
                    "message": redact_text(str(exc)),
                    "traceback": redact_text(text)[-20000:],
                },
            )
        return False

    # ------------------------------------------------------------------
    def progress(self, stage: str, done: int, total: int) -> None:
        """Note progress; written with the next heartbeat (never blocks the work)."""
        self._progress = {"stage": stage, "done": int(done), "total": int(total)}

    def complete(self, fields: Mapping[str, Any]) -> None:
        """Store the results and mark the run COMPLETED (durable write)."""
        finished = now()
        self.store.complete_run(
            self.collection,
            self.run_id,
            {**fields, "finished": finished, "heartbeat": finished,
             "elapsed_s": time.perf_counter() - self._t0, "progress": self._progress or None},
        )
        self._completed = True

    # ------------------------------------------------------------------
    def _finish(self, status: str, **fields: Any) -> None:
        finished = now()
        try:
            self.store.update_run(
                self.collection,
                self.run_id,
                {"status": status, "finished": finished, "heartbeat": finished,
                 "elapsed_s": time.perf_counter() - self._t0, **fields},
                durable=True,
            )
        except PyMongoError:  # the original error matters more than this one
            pass

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                fields: dict[str, Any] = {"heartbeat": now()}
                if self._progress:
                    fields["progress"] = self._progress
                self.store.update_run(self.collection, self.run_id, fields)
            except PyMongoError:
                continue

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        raise RunInterrupted(f"signal {signum}")
