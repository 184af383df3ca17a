"""Keep secrets out of the database, logs and CLI output."""

from __future__ import annotations

import re
from collections.abc import Iterable

# user info runs to the LAST '@' of the URI token: a raw password may hold / ? # @ (it
# should be percent-encoded, but users paste them as they are); hiding a little too much
# of an odd URI is fine, showing any of a password is not.
_URI_CREDENTIALS = re.compile(r"(?P<scheme>mongodb(?:\+srv)?://)(?P<cred>\S*)@")
_SECRET_WORDS = ("password", "passwd", "secret", "token", "apikey", "api_key", "credential")


def redact_uri(uri: str) -> str:
    """``mongodb://user:pw@host`` -> ``mongodb://***@host`` (everything up to the last '@')."""
    return _URI_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", uri)


def redact_text(text: str) -> str:
    """Redact URIs with credentials and ``--password=...``-style values in free text."""
    text = _URI_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", text)
    for word in _SECRET_WORDS:
        text = re.sub(rf"(?i)({word}[A-Za-z_]*\s*[=:]\s*)\S+", r"\1***", text)
    return text


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A command line safe to store: the value after a secret-looking flag is hidden."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        lowered = arg.lower().lstrip("-")
        if arg.startswith("--") and "=" not in arg and any(w in lowered for w in _SECRET_WORDS):
            out.append(arg)
            hide_next = True
            continue
        if arg.startswith("--") and "=" in arg and any(w in lowered.split("=")[0] for w in _SECRET_WORDS):
            out.append(arg.split("=", 1)[0] + "=***")
            continue
        out.append(redact_text(arg))
    return out
