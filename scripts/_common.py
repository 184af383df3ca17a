"""Shared glue for the scripts: settings, store, error handling, progress bars."""

from __future__ import annotations

import re
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

#: environment that silences TensorFlow / XLA / oneDNN / absl start-up logging (set before
#: TensorFlow is imported; an explicit setting of the user's wins)
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_CPP_MAX_VLOG_LEVEL": "-1", "GRPC_VERBOSITY": "ERROR",
             "GLOG_minloglevel": "3", "ABSL_MIN_LOG_LEVEL": "3"}


#: native (C++) log lines dropped from stderr: absl's pre-init notice, glog-style INFO and
#: WARNING lines (``I0000 00:00:1796299654.258912 10751 cudart_stub.cc:31] ...``), oneDNN's note
NATIVE_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IW]\d{4} [\d:.]+ +\d+ [\w.\-]+:\d+\]"
    rb"|.*oneDNN custom operations are on"
    rb"|.*This TensorFlow binary is optimized to use)")


def filter_native_stderr() -> None:
    """Drop :data:`NATIVE_NOISE` lines that native libraries write to file descriptor 2.

    Python's own stderr (rich progress, errors, tracebacks) moves to a duplicate of the
    original descriptor, so it is never delayed or filtered; what C++ code writes to fd 2
    goes through a pipe whose reader thread forwards every line but the noise.
    """
    import os
    import threading

    sys.stderr.flush()
    original = os.dup(2)
    sys.stderr = open(original, "w", buffering=1, closefd=False, encoding="utf-8",  # noqa: SIM115
                      errors="backslashreplace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not NATIVE_NOISE.match(line):
                    os.write(original, line + b"\n")
        if pending and not NATIVE_NOISE.match(pending):
            os.write(original, pending)

    threading.Thread(target=forward, name="native-stderr-filter", daemon=True).start()


def quiet_backends(verbose: bool = False) -> None:
    """Silence backend start-up logging unless ``verbose`` (call before any TF import):
    TensorFlow's log-level variables, absl's Python logging, and the native lines that
    come before absl is initialised (:func:`filter_native_stderr`)."""
    import os
    import warnings

    if verbose:
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    filter_native_stderr()
    warnings.filterwarnings("ignore", module=r"(tensorflow|keras|absl)(\.|$)")
    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.set_verbosity(absl_logging.ERROR)
    absl_logging.set_stderrthreshold("error")


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
