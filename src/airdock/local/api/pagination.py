"""``nextToken`` pagination as AWS's list operations do it: an opaque token after the last key seen."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Sequence

from airdock.local.api.errors import invalid_parameter
from airdock.local.api.params import JsonObject, Params

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "paginate"]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _encode_token(key: Sequence[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_token(token: str) -> list[str]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        key = None
    if not (isinstance(key, list) and key and all(isinstance(part, str) for part in key)):
        raise invalid_parameter("nextToken", "Member must be a nextToken returned by a previous call")
    return key


def paginate(
    items: Iterable[JsonObject], key: Callable[[JsonObject], list[str]], params: Params
) -> tuple[list[JsonObject], str | None]:
    """One page of ``items`` (in ``key`` order) after ``nextToken``, and the token for the next."""
    max_results = params.integer("maxResults", low=1, high=MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE
    token = params.string("nextToken")
    ordered = sorted(items, key=key)
    if token is not None:
        after = _decode_token(token)
        ordered = [item for item in ordered if key(item) > after]
    page = ordered[:max_results]
    more = len(ordered) > max_results
    return page, (_encode_token(key(page[-1])) if more else None)
