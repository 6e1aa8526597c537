"""CloudWatch Logs' event operations: PutLogEvents, GetLogEvents (one stream, both directions, with
f/… and b/… tokens), FilterLogEvents (a group's streams, through a filter pattern).

Every read is a bounded index range scan of the LogStore: a page never holds more than its limit
and about 1 MB of messages, and FilterLogEvents looks at no more than ``SCAN_BUDGET`` events per
call, handing out a nextToken to go on (AWS too may answer a page with few or no events and a token).
"""

from __future__ import annotations

import itertools

from airdock.local.api.errors import serialization_error
from airdock.local.api.logs.backend import (
    INVALID_TOKEN,
    ORIGIN,
    Backend,
    check_stream_name,
    event_token,
    group_missing,
    group_name,
    group_reference,
    list_token,
    parse_event_token,
    parse_list_token,
    sequence_token,
    stream_missing,
    stream_name,
)
from airdock.local.api.logs.patterns import compile_pattern
from airdock.local.api.logs.validation import LONG_MAX, STREAM_NAME_PATTERN, Checks, invalid
from airdock.local.api.params import JsonObject
from airdock.local.logstore import LogEvent, LogGroupMissing, LogStreamMissing, Position

MAX_EVENTS = 10_000
MAX_BYTES = 1_048_576
EVENT_OVERHEAD = 26  # bytes CloudWatch Logs counts for each event on top of its message
MAX_FUTURE_MS = 2 * 3600 * 1000
MAX_AGE_MS = 14 * 86400 * 1000
MAX_SPAN_MS = 24 * 3600 * 1000
DAY_MS = 86400 * 1000
NEWEST_FIRST_SINCE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z: FilterLogEvents' startFromHead=false
SCAN_CHUNK = 1000
SCAN_BUDGET = 50_000

CHRONOLOGICAL = "Log events in a single PutLogEvents request must be in chronological order."
SPAN = "The batch of log events in a single PutLogEvents request cannot span more than 24 hours."


def put_log_events(backend: Backend, checks: Checks) -> JsonObject:
    """Store a chronological batch; events too old, too new or past the group's retention are
    rejected (and reported by index) while the rest are stored, as CloudWatch Logs does."""
    group = group_name(checks)
    stream = stream_name(checks)
    members = checks.structs("logEvents", required=True, min_len=1, max_len=MAX_EVENTS) or []
    checks.string("sequenceToken", min_len=1)  # ignored, as CloudWatch Logs now ignores it
    events = [
        (m.timestamp("timestamp", required=True) or 0, m.required_string("message", min_len=1))
        for m in members
    ]
    checks.done()
    try:
        size = sum(len(message.encode("utf-8")) + EVENT_OVERHEAD for _, message in events)
    except UnicodeEncodeError:
        raise serialization_error("Invalid UTF-8: a log event message holds an unpaired surrogate") from None
    if size > MAX_BYTES:
        raise invalid(f"Upload too large: {size} bytes exceeds limit of {MAX_BYTES}")
    if any(later[0] < earlier[0] for earlier, later in itertools.pairwise(events)):
        raise invalid(CHRONOLOGICAL)
    found = backend.store.get_group(group)
    if found is None:
        raise group_missing()
    now = backend.store.now_ms()
    oldest = now - MAX_AGE_MS
    kept = oldest if found.retention_days is None else max(oldest, now - found.retention_days * DAY_MS)
    rejected: JsonObject = {}
    first = 0
    for index, (ts, _) in enumerate(events):  # chronological: the old ones lead, the new ones trail
        if ts >= kept:
            break
        rejected["tooOldLogEventEndIndex" if ts < oldest else "expiredLogEventEndIndex"] = index
        first = index + 1
    if "tooOldLogEventEndIndex" in rejected and "expiredLogEventEndIndex" in rejected:
        rejected["expiredLogEventEndIndex"] = first - 1  # the expired range covers the too-old one
    stop = next((i for i in range(first, len(events)) if events[i][0] > now + MAX_FUTURE_MS), len(events))
    if stop < len(events):
        rejected["tooNewLogEventStartIndex"] = stop
    accepted = events[first:stop]
    if accepted and accepted[-1][0] - accepted[0][0] > MAX_SPAN_MS:
        raise invalid(SPAN)
    try:
        backend.store.append(group, stream, accepted)
        stored = backend.store.get_stream(group, stream)
    except LogGroupMissing:
        raise group_missing() from None
    except LogStreamMissing:
        raise stream_missing() from None
    body: JsonObject = {"nextSequenceToken": sequence_token(stored.last_seq)}
    if rejected:
        body["rejectedLogEventsInfo"] = rejected
    return body


def _output(event: LogEvent) -> JsonObject:
    return {"timestamp": event.ts, "message": event.message, "ingestionTime": event.ingested_ms}


def get_log_events(backend: Backend, checks: Checks) -> JsonObject:
    """A page of one stream. Without a token: the first ``limit`` events of the time range
    (``startFromHead``) or its last ones (the default). A forward token reads on after the page it
    came from, a backward token before it; at either end the token passed in comes back unchanged."""
    resolve = group_reference(checks)
    stream = stream_name(checks)
    start = checks.timestamp("startTime")
    end = checks.timestamp("endTime")
    token = checks.string("nextToken", min_len=1)
    limit = checks.integer("limit", low=1, high=MAX_EVENTS) or MAX_EVENTS
    from_head = checks.boolean("startFromHead")
    checks.boolean("unmask")
    checks.done()
    direction, position = parse_event_token(token) if token is not None else ("", ORIGIN)
    group = resolve(backend)
    # The token's direction wins over startFromHead, as FilterLogEvents documents for its tokens.
    backward = direction == "b" or (not direction and not from_head)
    try:
        events = backend.store.read_events(
            group,
            stream,
            start=start or 0,
            end=end,
            after=position if direction == "f" else None,
            before=position if direction == "b" else None,
            backward=backward,
            limit=limit,
            max_bytes=MAX_BYTES,
            overhead=EVENT_OVERHEAD,
        )
    except LogGroupMissing:
        raise group_missing() from None
    except LogStreamMissing:
        raise stream_missing() from None
    if events:
        forward, back = events[-1].position, events[0].position
    elif direction == "f":  # nothing new after it: the same forward token; back reads up to and with it
        forward, back = position, Position(position.ts, position.seq + 1)
    elif direction == "b":  # nothing before it: the same backward token; forward reads from it on
        forward, back = Position(position.ts, position.seq - 1), position
    else:  # an empty range: reading forward from the origin sees whatever arrives in it
        forward, back = ORIGIN, Position(LONG_MAX, LONG_MAX)
    return {
        "events": [_output(e) for e in events],
        "nextForwardToken": event_token("f", forward),
        "nextBackwardToken": event_token("b", back),
    }


def filter_log_events(backend: Backend, checks: Checks) -> JsonObject:
    """Events of a group's streams that match ``filterPattern``, by (timestamp, ingestion order);
    ``startFromHead=false`` reads newest first. ``searchedLogStreams`` is empty, as CloudWatch Logs
    has answered since it stopped supporting it."""
    resolve = group_reference(checks)
    names = checks.strings("logStreamNames", min_len=1, max_len=100, item=check_stream_name)
    prefix = checks.string("logStreamNamePrefix", min_len=1, max_len=512, pattern=STREAM_NAME_PATTERN)
    start = checks.timestamp("startTime")
    end = checks.timestamp("endTime")
    text = checks.string("filterPattern", max_len=1024)
    token = checks.string("nextToken", min_len=1)
    limit = checks.integer("limit", low=1, high=MAX_EVENTS) or MAX_EVENTS
    from_head = checks.boolean("startFromHead", default=True)
    for flag in ("interleaved", "unmask"):
        checks.boolean(flag)
    checks.done()
    if names is not None and prefix is not None:
        raise invalid("You cannot specify both logStreamNames and logStreamNamePrefix.")
    pattern = compile_pattern(text)
    cursor: Position | None = None
    if token is not None:  # the token's direction wins over startFromHead
        kind, ts, seq = _filter_token(token)
        from_head, cursor = kind == "asc", Position(ts, seq)
    if not from_head and start is not None and start < NEWEST_FIRST_SINCE_MS:
        raise invalid(
            "Setting startFromHead to false is supported only when startTime is on or after "
            "Jan 1, 2024 00:00:00 UTC."
        )
    group = resolve(backend)
    found: list[JsonObject] = []
    used = scanned = 0
    more = False
    while not more:
        try:
            chunk = backend.store.read_events(
                group,
                streams=names,
                stream_prefix=prefix,
                start=start or 0,
                end=end,
                end_inclusive=True,
                after=cursor if from_head else None,
                before=None if from_head else cursor,
                backward=not from_head,
                limit=SCAN_CHUNK,
            )
        except LogGroupMissing:
            raise group_missing() from None
        for event in chunk if from_head else reversed(chunk):  # read_events answers oldest first
            scanned += 1
            if pattern.matches(event.message):
                used += len(event.message.encode("utf-8")) + EVENT_OVERHEAD
                if used > MAX_BYTES and found:
                    more = True
                    break
                found.append({"logStreamName": event.stream, **_output(event), "eventId": _event_id(event)})
            cursor = event.position
            if len(found) == limit:
                more = True
                break
        if len(chunk) < SCAN_CHUNK:
            break
        more = more or scanned >= SCAN_BUDGET
    body: JsonObject = {"events": found, "searchedLogStreams": []}
    if more and cursor is not None:
        body["nextToken"] = list_token("filter", "asc" if from_head else "desc", cursor.ts, cursor.seq)
    return body


def _filter_token(token: str) -> tuple[str, int, int]:
    kind, ts, seq = parse_list_token(token, "filter", (str, int, int))
    if kind not in ("asc", "desc"):
        raise invalid(INVALID_TOKEN)
    return kind, ts, seq


def _event_id(event: LogEvent) -> str:
    return f"{event.ts:028d}{event.seq:028d}"
