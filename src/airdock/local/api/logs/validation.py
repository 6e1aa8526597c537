"""CloudWatch Logs' request validation, in its own wording.

CloudWatch Logs checks every member of a request against its model's constraints and reports all
the broken ones together, as one InvalidParameterException::

    2 validation errors detected: Value '' at 'logGroupNamePrefix' failed to satisfy constraint:
    Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+; Value '' at ...

Values of the wrong JSON type fail at once with a SerializationException (the shared wording of
:func:`airdock.local.api.params.type_error`). Nothing here touches state: handlers call
:meth:`Checks.done` before they change anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from airdock.local.api.errors import ApiError
from airdock.local.api.params import JsonObject, type_error

__all__ = ["GROUP_NAME_PATTERN", "IDENTIFIER_PATTERN", "LONG_MAX", "STREAM_NAME_PATTERN", "Checks", "invalid"]

GROUP_NAME_PATTERN = r"[\.\-_/#A-Za-z0-9]+"
STREAM_NAME_PATTERN = r"[^:*]*"
IDENTIFIER_PATTERN = r"[\w#+=/:,.@-]*"
LONG_MAX = (1 << 63) - 1


def invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterException", message)


def render(value: object) -> str:
    """A value as the Java service prints it in its messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(render(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={render(item)}" for key, item in value.items()) + "}"
    return str(value)


class Checks:
    """Typed, validated access to one JSON object of a request; broken constraints are collected
    (shared by nested objects) and raised together by :meth:`done`."""

    def __init__(self, data: JsonObject, path: str = "", errors: list[str] | None = None) -> None:
        self._data = data
        self._path = path
        self.errors: list[str] = [] if errors is None else errors

    def where(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def has(self, name: str) -> bool:
        return self._data.get(name) is not None

    def fail(self, path: str, value: object, constraint: str) -> None:
        shown = "null" if value is None else f"'{render(value)}'"
        self.errors.append(f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}")

    def done(self) -> None:
        """Raise the collected errors, if any, as CloudWatch Logs does: all in one message."""
        if self.errors:
            count = len(self.errors)
            noun = "validation error" if count == 1 else "validation errors"
            raise invalid(f"{count} {noun} detected: " + "; ".join(self.errors))

    def _value(self, name: str, required: bool) -> Any:
        value = self._data.get(name)
        if value is None and required:
            self.fail(self.where(name), None, "Member must not be null")
        return value

    def length(self, path: str, value: object, size: int, min_len: int, max_len: int | None) -> None:
        if size < min_len:
            self.fail(path, value, f"Member must have length greater than or equal to {min_len}")
        if max_len is not None and size > max_len:
            self.fail(path, value, f"Member must have length less than or equal to {max_len}")

    def text(self, path: str, value: str, min_len: int, max_len: int | None, pattern: str | None) -> None:
        """Check a string found at ``path``: the pattern first, then the length, as AWS lists them."""
        if pattern is not None and not re.fullmatch(pattern, value, re.ASCII):
            self.fail(path, value, f"Member must satisfy regular expression pattern: {pattern}")
        self.length(path, value, len(value), min_len, max_len)

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        min_len: int = 0,
        max_len: int | None = None,
        pattern: str | None = None,
        enum: tuple[str, ...] | None = None,
    ) -> str | None:
        value = self._value(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise type_error(value, "a String")
        if enum is not None and value not in enum:
            self.fail(self.where(name), value, f"Member must satisfy enum value set: [{', '.join(enum)}]")
        self.text(self.where(name), value, min_len, max_len, pattern)
        return value

    def required_string(
        self, name: str, *, min_len: int = 0, max_len: int | None = None, pattern: str | None = None
    ) -> str:
        # The empty string stands in for a missing value: done() refuses the request before use.
        return self.string(name, required=True, min_len=min_len, max_len=max_len, pattern=pattern) or ""

    def integer(
        self, name: str, *, low: int, high: int, required: bool = False, kind: str = "an Integer"
    ) -> int | None:
        value = self._value(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not -LONG_MAX - 1 <= value <= LONG_MAX:
            raise type_error(value, kind)
        if value < low:
            self.fail(self.where(name), value, f"Member must have value greater than or equal to {low}")
        if value > high:
            self.fail(self.where(name), value, f"Member must have value less than or equal to {high}")
        return value

    def timestamp(self, name: str, *, required: bool = False) -> int | None:
        return self.integer(name, low=0, high=LONG_MAX, required=required, kind="a Long")

    def boolean(self, name: str, *, default: bool = False) -> bool:
        value = self._data.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise type_error(value, "a Boolean")
        return value

    def items(
        self, name: str, *, required: bool = False, min_len: int = 0, max_len: int | None = None
    ) -> list[Any] | None:
        value = self._value(name, required)
        if value is None:
            return None
        if not isinstance(value, list):
            raise type_error(value, "a List")
        self.length(self.where(name), value, len(value), min_len, max_len)
        return value

    def strings(
        self,
        name: str,
        *,
        min_len: int = 0,
        max_len: int | None = None,
        item: Callable[[Checks, str, str], None] | None = None,
    ) -> list[str] | None:
        """A list of strings; ``item(checks, path, value)`` checks each member."""
        values = self.items(name, min_len=min_len, max_len=max_len)
        if values is None:
            return None
        for index, value in enumerate(values, start=1):
            if not isinstance(value, str):
                raise type_error(value, "a String")
            if item is not None:
                item(self, f"{self.where(name)}.{index}.member", value)
        return values

    def structs(
        self, name: str, *, required: bool = False, min_len: int = 0, max_len: int | None = None
    ) -> list[Checks] | None:
        """A list of objects, each checked in turn (paths ``name.1.member.field``, counting from 1)."""
        values = self.items(name, required=required, min_len=min_len, max_len=max_len)
        if values is None:
            return None
        members = []
        for index, value in enumerate(values, start=1):
            if not isinstance(value, dict):
                raise type_error(value, "a Structure")
            members.append(Checks(value, f"{self.where(name)}.{index}.member", self.errors))
        return members

    def string_map(self, name: str, *, min_len: int = 0, max_len: int | None = None) -> dict[str, str] | None:
        value = self._value(name, False)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise type_error(value, "a Map")
        for item in value.values():
            if not isinstance(item, str):
                raise type_error(item, "a String")
        self.length(self.where(name), value, len(value), min_len, max_len)
        return dict(value)
