"""Progress behind the plain ``progress(stage, done, total)`` callback that the pipeline
functions accept: rich bars on a terminal, periodic plain lines in a log file or pipe.

Piped output (``make demo > demo.log``, CI) gets plain lines instead: at most one every
:data:`LINE_INTERVAL_S` seconds per running stage, and one when a stage that ran for a
second or more finishes::

    features: 512/1870 (27%), 14 s elapsed, about 37 s left
"""

from __future__ import annotations

import time
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
#: seconds between two plain progress lines of one stage
LINE_INTERVAL_S = 10.0


class ProgressBars:
    """One bar (or one line series) per stage; use as a context manager and pass
    ``self.update`` on.

    Parameters
    ----------
    enabled
        False gives a silent callback (``--quiet``, tests, ``--json``).
    chain
        Another callback to forward every update to (e.g. a run's heartbeat progress).
    plain
        Plain lines instead of bars; default: when stderr is not a terminal.
    console
        Where to write (default: stderr).
    """

    def __init__(self, enabled: bool = True, chain: ProgressFn | None = None,
                 plain: bool | None = None, console: Console | None = None) -> None:
        self.enabled = enabled
        self.chain = chain
        self.console = console or err_console
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self._tasks: dict[str, Any] = {}
        #: stage -> (series start, done then, last line time, ended, last done)
        self._lines: dict[str, tuple[float, int, float, bool, int]] = {}
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
        ) if enabled and not self.plain else None

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
        if not self.enabled:
            return
        if self.plain:
            self._line(stage, done, total)
            return
        task = self._tasks.get(stage)
        if task is None:
            task = self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(task, completed=done, total=total)

    def _line(self, stage: str, done: int, total: int, now: float | None = None) -> None:
        """A plain line every LINE_INTERVAL_S while a stage runs, and one when it finishes
        if it ran a second or more; a stage whose count goes back to 0 or down (the same
        stage of the next fit) starts a new series."""
        now = time.monotonic() if now is None else now
        state = self._lines.get(stage)
        if state is None or state[3] or done == 0 or done < state[4]:
            state = (now, done, now, False, done)
        start, done0, last, _, _ = state
        finished = total > 0 and done >= total
        if finished:
            due = now - start >= 1.0 or last > start  # quick stages finish silently
        else:
            due = now - last >= LINE_INTERVAL_S
        self._lines[stage] = (start, done0, now if due else last, finished, done)
        if due:
            self.console.print(plain_line(stage, done, total, now - start, done - done0),
                               highlight=False, markup=False, soft_wrap=True)


def plain_line(stage: str, done: int, total: int, elapsed: float, progressed: int = 0) -> str:
    """``features: 512/1870 (27%), 14 s elapsed, about 37 s left``: ``progressed`` items
    took ``elapsed`` seconds (the estimate of what is left uses that rate; none before)."""
    if total <= 0:
        return f"{stage}: {done}, {elapsed:.0f} s"
    if done >= total:
        return f"{stage}: {done}/{total} done" + (f" ({elapsed:.0f} s)" if progressed else "")
    text = f"{stage}: {done}/{total} ({100 * done / total:.0f}%)"
    if progressed > 0 and elapsed >= 1:
        text += f", about {elapsed * (total - done) / progressed:.0f} s left"
    return text
