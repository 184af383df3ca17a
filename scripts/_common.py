"""Shared glue for the scripts: settings, store, error handling, progress bars."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python scripts/x.py` without installing
    sys.path.insert(0, str(ROOT))

from pipeline.core.errors import VimtrackError  # noqa: E402
from tracker.db.security import redact_text  # noqa: E402


def run_main(main) -> None:
    """Call ``main()``; our errors become one line on stderr and exit code 2."""
    try:
        code = main()
    except VimtrackError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted (the run is recorded as INTERRUPTED)", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
