"""CloudWatch Logs filter patterns for unstructured events, as FilterLogEvents applies them.

Supported: the empty pattern (every event); terms, which must all occur (``ERROR Exception``);
quoted terms, for exact phrases and other characters (``"ERROR 401"``); ``?term``, of which at
least one must occur (``?ERROR ?WARN``); ``-term``, which must not occur; and a whole pattern in
``%…%``, a regular expression searched for in the message. Matching is case-sensitive and finds a
term anywhere in the message. JSON (``{ $.x = … }``) and space-delimited (``[a, b]``) patterns are
refused with InvalidParameterException: the local stack does not evaluate them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airdock.local.api.logs.validation import invalid

__all__ = ["FilterPattern", "compile_pattern"]

_TERM = re.compile(r'\s*([?-]?)(?:"((?:[^"\\]|\\.)*)"|([^\s"]+))')


@dataclass(frozen=True)
class FilterPattern:
    """A compiled pattern: what must occur, what may (one at least), what must not, or a regex."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None

    def matches(self, message: str) -> bool:
        if self.regex is not None:
            return self.regex.search(message) is not None
        return (
            all(term in message for term in self.required)
            and (not self.optional or any(term in message for term in self.optional))
            and not any(term in message for term in self.excluded)
        )


def compile_pattern(text: str | None) -> FilterPattern:
    pattern = (text or "").strip()
    if not pattern:
        return FilterPattern()
    if pattern.startswith(("{", "[")):
        raise invalid(
            "JSON and space-delimited filter patterns are not supported by the airdock local stack; "
            'use terms, "quoted phrases", ?term, -term or %regex%'
        )
    if len(pattern) >= 2 and pattern.startswith("%") and pattern.endswith("%"):
        try:
            return FilterPattern(regex=re.compile(pattern[1:-1]))
        except re.error as err:
            raise invalid(f"Invalid regular expression in filter pattern: {err}") from None
    required: list[str] = []
    optional: list[str] = []
    excluded: list[str] = []
    position = 0
    while position < len(pattern):
        match = _TERM.match(pattern, position)
        if match is None:
            raise invalid(f"Invalid filter pattern: unbalanced double quote in {pattern!r}")
        operator, quoted, bare = match.groups()
        term = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        {"": required, "?": optional, "-": excluded}[operator].append(term)
        position = match.end()
        while position < len(pattern) and pattern[position].isspace():
            position += 1
    return FilterPattern(tuple(required), tuple(optional), tuple(excluded))
