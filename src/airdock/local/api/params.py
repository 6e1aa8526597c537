"""Typed, validated access to a JSON 1.1 request's parameters, failing with AWS's own wording."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airdock.local.api.errors import ApiError, invalid_parameter, serialization_error

__all__ = ["JsonObject", "Params", "check_length", "type_error"]

JsonObject = dict[str, Any]

_JSON_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "BOOLEAN_VALUE"),
    (int, "NUMBER_VALUE"),
    (float, "NUMBER_VALUE"),
    (str, "STRING_VALUE"),
)


def type_error(value: object, wanted: str) -> ApiError:
    # The wording of AWS's JSON deserializer ("NUMBER_VALUE can not be converted to a String").
    if isinstance(value, list):
        return serialization_error("Start of list found where not expected")
    if isinstance(value, dict):
        return serialization_error("Start of structure or map found where not expected")
    kind = next((name for typ, name in _JSON_KINDS if isinstance(value, typ)), "VALUE")
    return serialization_error(f"{kind} can not be converted to {wanted}")


class Params:
    """Typed access to one JSON object of a request; ``path`` names it in error messages."""

    def __init__(self, data: JsonObject, path: str = "") -> None:
        self._data = data
        self._path = path

    def where(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def keys(self) -> list[str]:
        """The names present in this object (for maps of free-form keys, such as log options)."""
        return sorted(self._data)

    def has(self, name: str) -> bool:
        return self._data.get(name) is not None

    def _get(self, name: str, required: bool) -> Any:
        value = self._data.get(name)
        if value is None and required:
            raise invalid_parameter(self.where(name), "Member must not be null")
        return value

    def string(
        self, name: str, *, required: bool = False, min_len: int = 0, max_len: int | None = None
    ) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise type_error(value, "a String")
        check_length(self.where(name), len(value), min_len, max_len)
        return value

    def required_string(self, name: str, *, min_len: int = 0, max_len: int | None = None) -> str:
        value = self.string(name, required=True, min_len=min_len, max_len=max_len)
        assert value is not None
        return value

    def enum(self, name: str, allowed: Sequence[str], *, default: str) -> str:
        value = self.string(name)
        if value is None:
            return default
        if value not in allowed:
            raise invalid_parameter(
                self.where(name), f"Member must satisfy enum value set: [{', '.join(allowed)}]"
            )
        return value

    def boolean(self, name: str, *, default: bool = False) -> bool:
        value = self._get(name, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise type_error(value, "a Boolean")
        return value

    def integer(self, name: str, *, low: int, high: int) -> int | None:
        value = self._get(name, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise type_error(value, "an Integer")
        if value < low:
            raise invalid_parameter(
                self.where(name), f"Member must have value greater than or equal to {low}"
            )
        if value > high:
            raise invalid_parameter(self.where(name), f"Member must have value less than or equal to {high}")
        return value

    def struct(self, name: str) -> Params | None:
        value = self._get(name, False)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise type_error(value, "a Structure")
        return Params(value, self.where(name))

    def items(
        self, name: str, *, required: bool = False, min_len: int = 0, max_len: int | None = None
    ) -> list[Any] | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, list):
            raise type_error(value, "a List")
        check_length(self.where(name), len(value), min_len, max_len)
        return value

    def structs(
        self, name: str, *, required: bool = False, min_len: int = 0, max_len: int | None = None
    ) -> list[Params] | None:
        values = self.items(name, required=required, min_len=min_len, max_len=max_len)
        if values is None:
            return None
        out = []
        for value in values:
            if not isinstance(value, dict):
                raise type_error(value, "a Structure")
            out.append(Params(value, f"{self.where(name)}.member"))
        return out

    def strings(self, name: str, *, min_len: int = 0, max_len: int | None = None) -> list[str] | None:
        values = self.items(name, min_len=min_len, max_len=max_len)
        if values is None:
            return None
        for value in values:
            if not isinstance(value, str):
                raise type_error(value, "a String")
        return values


def check_length(path: str, length: int, min_len: int, max_len: int | None) -> None:
    if length < min_len:
        raise invalid_parameter(path, f"Member must have length greater than or equal to {min_len}")
    if max_len is not None and length > max_len:
        raise invalid_parameter(path, f"Member must have length less than or equal to {max_len}")
