"""One small exception family shared by the pipeline and the tracker.

Every error carries one clear, complete sentence: the CLI prints ``str(err)`` on
stderr and exits non-zero, never a traceback (a traceback could show a URI with a
password in its local variables).
"""

from __future__ import annotations


class VimtrackError(Exception):
    """Base class: a message that names the file, field or flag and what was expected."""


class DataFormatError(VimtrackError):
    """An input file is missing, truncated, or not in the layout we expect."""


class ConfigError(VimtrackError):
    """A configuration value, flag or argument is invalid."""


class IntegrityError(VimtrackError):
    """Stored data does not match what was recorded (hash mismatch, duplicate rows...)."""


class DatabaseError(VimtrackError):
    """The database could not be reached or refused an operation."""


def check_utf8(text: str, what: str) -> str:
    """``text`` if it is valid UTF-8 (command-line arguments with undecodable bytes
    arrive as lone surrogates), else a ``ConfigError`` naming ``what``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise ConfigError(f"{what} {shown!r} is not valid UTF-8 text.") from None
    return text
