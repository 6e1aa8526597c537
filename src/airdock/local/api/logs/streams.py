"""CloudWatch Logs' log stream operations: create, describe, delete."""

from __future__ import annotations

from airdock.local.api.errors import ApiError
from airdock.local.api.logs.backend import (
    Backend,
    group_missing,
    group_name,
    group_reference,
    list_token,
    parse_list_token,
    stream_missing,
    stream_name,
    stream_shape,
)
from airdock.local.api.logs.validation import STREAM_NAME_PATTERN, Checks, invalid
from airdock.local.api.params import JsonObject
from airdock.local.logstore import LogGroupMissing, LogStreamExists, LogStreamMissing

ORDERS = ("LogStreamName", "LastEventTime")


def create_log_stream(backend: Backend, checks: Checks) -> JsonObject:
    group = group_name(checks)
    stream = stream_name(checks)
    checks.done()
    try:
        backend.store.create_stream(group, stream)
    except LogGroupMissing:
        raise group_missing() from None
    except LogStreamExists:
        raise ApiError("ResourceAlreadyExistsException", "The specified log stream already exists") from None
    return {}


def delete_log_stream(backend: Backend, checks: Checks) -> JsonObject:
    group = group_name(checks)
    stream = stream_name(checks)
    checks.done()
    try:
        backend.store.delete_stream(group, stream)
    except LogGroupMissing:
        raise group_missing() from None
    except LogStreamMissing:
        raise stream_missing() from None
    return {}


def describe_log_streams(backend: Backend, checks: Checks) -> JsonObject:
    """Streams by name, or by last event time (then name); ``descending`` reverses either order."""
    resolve = group_reference(checks)
    prefix = checks.string("logStreamNamePrefix", min_len=1, max_len=512, pattern=STREAM_NAME_PATTERN)
    order = checks.string("orderBy", enum=ORDERS) or "LogStreamName"
    descending = checks.boolean("descending")
    token = checks.string("nextToken", min_len=1)
    limit = checks.integer("limit", low=1, high=50) or 50
    checks.done()
    by_time = order == "LastEventTime"
    if by_time and prefix is not None:
        raise invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
    group = resolve(backend)
    # The token names its listing's order: one from another order (or direction) is refused.
    kind = f"streams:{order}:{'desc' if descending else 'asc'}"
    after = None
    if token is not None:
        last_time, last_name = parse_list_token(token, kind, (int, str))
        after = (last_time, last_name)
    try:
        streams = backend.store.list_streams(
            group,
            prefix=prefix or "",
            by_last_event=by_time,
            descending=descending,
            after=after,
            limit=limit + 1,
        )
    except LogGroupMissing:
        raise group_missing() from None
    body: JsonObject = {"logStreams": [stream_shape(backend, group, s) for s in streams[:limit]]}
    if len(streams) > limit:
        last = streams[limit - 1]
        body["nextToken"] = list_token(kind, (last.last_ts or 0) if by_time else 0, last.name)
    return body
