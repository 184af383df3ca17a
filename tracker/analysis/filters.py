"""Safe ``--where`` filters: a small hand-written grammar -> a MongoDB filter.

Users never write MongoDB syntax. Each ``--where`` is an expression over friendly
field names (a whitelist mapped to document paths) and a handful of operators;
several ``--where`` are ANDed::

    expr       := and_expr ("or" and_expr)*
    and_expr   := atom ("and" atom)*
    atom       := "(" expr ")" | comparison
    comparison := FIELD OP VALUE | FIELD ["not"] "in" "[" VALUE ("," VALUE)* "]"
    OP         := "=" | "==" | "!=" | ">" | ">=" | "<" | "<="
    VALUE      := number | word | 'quoted' | "quoted"

Examples: ``subject=S1``, ``method in [ridge,pls]``, ``val_median_r>0.1``,
``subject=S1 or subject=S2``, ``(method=pls or layer=conv4) and r>=0.05``.

The output only ever holds whitelisted paths and the operators ``$eq $ne $gt $gte
$lt $lte $in $nin $or $and`` over plain strings and numbers: no ``$where``, no
``$function``, no JavaScript, no ``$``-prefixed input (it is rejected with a
:class:`~pipeline.core.errors.ConfigError`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pipeline.core.errors import ConfigError, check_utf8
from tracker.analysis.fields import WHERE_FIELDS
from tracker.analysis.names import FIELD_KINDS, resolve

#: how deep ``--where`` parentheses may nest (deeper is refused, never a RecursionError)
MAX_NESTING = 32
OPERATORS = {"=": "$eq", "==": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}
ALLOWED_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$or", "$and"})
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<op>==|!=|>=|<=|=|>|<)
    | (?P<punct>[()\[\],])
    | '(?P<sq>[^']*)'
    | "(?P<dq>[^"]*)"
    | (?P<word>[\w.+\-:/@$]+)
    )""", re.VERBOSE)


def tokenize(text: str) -> list[tuple[str, str]]:
    """``(kind, text)`` tokens; kinds: op, punct, str (quoted), word."""
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ConfigError(f"--where {text!r}: unexpected character {text[pos:].strip()[:1]!r} "
                              f"at position {pos}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        tokens.append(("str" if kind in ("sq", "dq") else kind, value))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str, fields: dict[str, tuple[str, type]]) -> None:
        self.text = text
        self.fields = fields
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def fail(self, what: str) -> ConfigError:
        shown = self.text if len(self.text) <= 80 else f"{self.text[:60]}... ({len(self.text)} characters)"
        return ConfigError(f"--where {shown!r}: {what}")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self.fail("the expression ends too early")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "word" and tok[1].lower() == word:
            self.i += 1
            return True
        return False

    def expect(self, punct: str) -> None:
        tok = self.take()
        if tok != ("punct", punct):
            raise self.fail(f"expected {punct!r}, found {tok[1]!r}")

    def parse(self) -> dict[str, Any]:
        if not self.tokens:
            raise self.fail("empty expression")
        node = self.expr()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r} (join conditions with 'and' / 'or')")
        return node

    def expr(self) -> dict[str, Any]:
        parts = [self.and_expr()]
        while self.keyword("or"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else {"$or": parts}

    def and_expr(self) -> dict[str, Any]:
        parts = [self.atom()]
        while self.keyword("and"):
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def atom(self) -> dict[str, Any]:
        if self.peek() == ("punct", "("):
            self.take()
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise self.fail(f"parentheses nest deeper than {MAX_NESTING} levels")
            node = self.expr()
            self.expect(")")
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> dict[str, Any]:
        kind, name = self.take()
        if kind != "word":
            raise self.fail(f"expected a field name, found {name!r}")
        if name.startswith("$"):
            raise self.fail(f"{name!r}: MongoDB operators are not accepted, only field names")
        if name not in self.fields:
            raise self.fail(f"unknown field {name!r}; `tracker runs fields` lists them "
                            f"(e.g. {', '.join(list(self.fields)[:6])}, ...)")
        path, vtype = self.fields[name]
        if self.keyword("not"):
            if not self.keyword("in"):
                raise self.fail(f"expected 'in' after '{name} not'")
            return {path: {"$nin": self.value_list(name, vtype)}}
        if self.keyword("in"):
            return {path: {"$in": self.value_list(name, vtype)}}
        kind, op = self.take()
        if kind != "op":
            raise self.fail(f"expected an operator (= != > >= < <= in) after {name!r}, found {op!r}")
        return {path: {OPERATORS[op]: self.value(name, vtype)}}

    def value_list(self, name: str, vtype: type) -> list[Any]:
        self.expect("[")
        values = [self.value(name, vtype)]
        while self.peek() == ("punct", ","):
            self.take()
            values.append(self.value(name, vtype))
        self.expect("]")
        return values

    def value(self, name: str, vtype: type) -> str | float | int:
        kind, text = self.take()
        if kind not in ("word", "str"):
            raise self.fail(f"expected a value for {name!r}, found {text!r}")
        if text.startswith("$"):
            raise self.fail(f"value {text!r} for {name!r}: values may not start with '$'")
        if vtype is str:
            if name == "status":
                return text.upper()
            kind = FIELD_KINDS.get(name)
            return resolve(kind, text, f"--where {name}") if kind is not None else text
        try:
            number = float(text)
        except ValueError:
            raise self.fail(f"{name!r} takes a number, got {text!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise self.fail(f"{name!r} takes a finite number, got {text!r}")
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def parse_where(where: Iterable[str], kind: str = "fit") -> dict[str, Any]:
    """Parse ``--where`` expressions (ANDed) into a MongoDB filter over whitelisted fields.

    Parameters
    ----------
    where
        Expressions such as ``"subject=S1 or subject=S2"``, ``"method in [ridge,pls]"``,
        ``"val_median_r>0.1"``.
    kind
        ``"fit"`` (fields of :data:`tracker.analysis.fields.FIT_FIELDS`) or ``"features"``
        (:data:`tracker.analysis.fields.FEATURE_FIELDS`).

    Returns
    -------
    filter
        ``{}`` when no expression is given; else a filter using only whitelisted paths
        and the operators in :data:`ALLOWED_OPERATORS`.

    Raises
    ------
    ConfigError
        Unknown field or operator, ``$``-prefixed input, bad value or syntax.
    """
    if kind not in WHERE_FIELDS:
        raise ConfigError(f"--kind {kind!r}: choose from {', '.join(WHERE_FIELDS)}")
    parts = [_Parser(check_utf8(text, "--where"), WHERE_FIELDS[kind]).parse()
             for text in where if text.strip()]
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


def allowed_paths(kind: str = "fit") -> frozenset[str]:
    """Document paths a parsed filter may name."""
    return frozenset(path for path, _ in WHERE_FIELDS[kind].values())
