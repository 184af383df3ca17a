"""The canonical content key: one hasher for every identity in the project.

A key is the hex sha256 of the canonical JSON of a value: keys of objects sorted, no
spaces, NaN and infinity refused, tuples as lists, paths as strings, numpy scalars as
Python numbers. Anything else is a ``ConfigError`` (never a silent ``str()``), so two
runs get the same key exactly when their recorded identities are equal.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePath
from typing import Any

from pipeline.core.errors import ConfigError


def _plain(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    raise ConfigError(f"a {type(value).__name__} value ({value!r}) cannot be part of a content key; "
                      "use strings, numbers, booleans, lists and dicts.")


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value`` (sorted keys, compact, no NaN)."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False,
                          default=_plain)
    except ValueError as exc:
        raise ConfigError(f"a content key cannot hold NaN or infinity ({exc}).") from None


def content_key(*parts: Any) -> str:
    """Hex sha256 of the canonical JSON of ``parts`` (one part: of that part alone)."""
    value = parts[0] if len(parts) == 1 else list(parts)
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
