"""Progress bars (rich, on stderr) behind the plain ``progress(stage, done, total)`` callback
that the pipeline functions accept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

ProgressFn = Callable[[str, int, int], None]
err_console = Console(stderr=True)


class ProgressBars:
    """One bar per stage; use as a context manager and pass ``self.update`` on.

    Parameters
    ----------
    enabled
        False gives a silent callback (``--quiet``, tests, ``--json``).
    chain
        Another callback to forward every update to (e.g. a run's heartbeat progress).
    """

    def __init__(self, enabled: bool = True, chain: ProgressFn | None = None) -> None:
        self.enabled = enabled
        self.chain = chain
        self._tasks: dict[str, Any] = {}
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False,
        ) if enabled else None

    def __enter__(self) -> ProgressBars:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, stage: str, done: int, total: int) -> None:
        if self.chain is not None:
            self.chain(stage, done, total)
        if self._progress is None:
            return
        task = self._tasks.get(stage)
        if task is None:
            task = self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(task, completed=done, total=total)
