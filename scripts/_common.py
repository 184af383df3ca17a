"""Shared glue for the scripts: settings, store, error handling, progress bars."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python scripts/x.py` without installing
    sys.path.insert(0, str(ROOT))

from pymongo.errors import PyMongoError  # noqa: E402

from pipeline.core.errors import VimtrackError  # noqa: E402
from tracker.db.security import redact_text  # noqa: E402
from tracker.db.store import describe_failure  # noqa: E402
from tracker.record.runs import RunInterrupted  # noqa: E402

#: exit codes, the same as the ``tracker`` command's
EXIT_ERROR, EXIT_DATABASE, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 3, 130, 143


def run_main(main) -> None:
    """Call ``main()``; every failure becomes one line on stderr (never a traceback):
    exit 2 for our errors (bad input, changed files...), 3 when the database refused or
    could not be reached, 130 on Ctrl-C and 143 on SIGTERM (a run is then recorded as
    INTERRUPTED)."""
    try:
        code = main()
    except VimtrackError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    except PyMongoError as exc:
        print(f"database error: {describe_failure(exc)}", file=sys.stderr)
        sys.exit(EXIT_DATABASE)
    except KeyboardInterrupt:
        print("interrupted (the run is recorded as INTERRUPTED)", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except RunInterrupted:
        print("terminated by SIGTERM (the run is recorded as INTERRUPTED)", file=sys.stderr)
        sys.exit(EXIT_TERMINATED)
    sys.exit(code or 0)
