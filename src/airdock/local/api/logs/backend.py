"""What the CloudWatch Logs operations work on: the LogStore, this stack's account and region,
CloudWatch Logs' wording of its errors, the response shapes, and the paging tokens."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airdock.local.api.errors import ApiError
from airdock.local.api.logs.validation import (
    GROUP_NAME_PATTERN,
    IDENTIFIER_PATTERN,
    LONG_MAX,
    STREAM_NAME_PATTERN,
    Checks,
    invalid,
)
from airdock.local.api.params import JsonObject
from airdock.local.logstore import LogGroup, LogStore, LogStream, Position

TARGET_PREFIX = "Logs_20140328."

INVALID_TOKEN = "The specified nextToken is invalid."  # noqa: S105 (a message, not a secret)
EITHER_GROUP = "You must include either logGroupIdentifier or logGroupName, but not both."


def group_missing() -> ApiError:
    return ApiError("ResourceNotFoundException", "The specified log group does not exist.")


def stream_missing() -> ApiError:
    return ApiError("ResourceNotFoundException", "The specified log stream does not exist.")


@dataclass(frozen=True)
class Backend:
    """What the handlers work on. ``lock`` serialises requests so check-then-act is atomic."""

    store: LogStore
    account_id: str
    region: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    def group_arn(self, group: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{group}"

    def stream_arn(self, group: str, stream: str) -> str:
        return f"{self.group_arn(group)}:log-stream:{stream}"

    def group_from_arn(self, arn: str) -> str | None:
        """The log group an ARN of this stack names (``…:log-group:NAME`` with or without ``:*``)."""
        prefix = self.group_arn("")
        if not arn.startswith(prefix):
            return None
        name = arn[len(prefix) :].removesuffix(":*")
        return name if re.fullmatch(GROUP_NAME_PATTERN, name) else None


Handler = Callable[[Backend, Checks], JsonObject]


def group_name(checks: Checks, name: str = "logGroupName") -> str:
    return checks.required_string(name, min_len=1, max_len=512, pattern=GROUP_NAME_PATTERN)


def stream_name(checks: Checks, name: str = "logStreamName") -> str:
    return checks.required_string(name, min_len=1, max_len=512, pattern=STREAM_NAME_PATTERN)


def check_stream_name(checks: Checks, path: str, value: str) -> None:
    checks.text(path, value, 1, 512, STREAM_NAME_PATTERN)


def group_reference(checks: Checks) -> Callable[[Backend], str]:
    """Read ``logGroupName`` or ``logGroupIdentifier`` (a name or this stack's ARN of one); the
    returned function, called after ``checks.done()``, names the group or refuses the request."""
    name = checks.string("logGroupName", min_len=1, max_len=512, pattern=GROUP_NAME_PATTERN)
    identifier = checks.string("logGroupIdentifier", min_len=1, max_len=2048, pattern=IDENTIFIER_PATTERN)

    def resolve(backend: Backend) -> str:
        if (name is None) == (identifier is None):
            raise invalid(EITHER_GROUP)
        if name is not None:
            return name
        assert identifier is not None
        if identifier.startswith("arn:"):
            # Another account's or region's group is out of this stack's reach, as if it did not exist.
            found = backend.group_from_arn(identifier)
            if found is None:
                raise group_missing()
            return found
        return identifier

    return resolve


def group_shape(backend: Backend, group: LogGroup, *, brief: bool = False) -> JsonObject:
    arn = backend.group_arn(group.name)
    shape: JsonObject = {"logGroupName": group.name, "creationTime": group.created_ms, "arn": f"{arn}:*"}
    if brief:  # DescribeLogGroups with logGroupNamePattern answers only these
        return shape
    if group.retention_days is not None:
        shape["retentionInDays"] = group.retention_days
    shape.update(
        metricFilterCount=0,
        storedBytes=group.stored_bytes,
        logGroupClass=group.group_class,
        logGroupArn=arn,
    )
    if group.kms_key_id is not None:
        shape["kmsKeyId"] = group.kms_key_id
    return shape


def sequence_token(seq: int | None) -> str:
    return f"{seq or 0:056d}"


def stream_shape(backend: Backend, group: str, stream: LogStream) -> JsonObject:
    shape: JsonObject = {"logStreamName": stream.name, "creationTime": stream.created_ms}
    if stream.last_seq is not None:
        shape.update(
            firstEventTimestamp=stream.first_ts,
            lastEventTimestamp=stream.last_ts,
            lastIngestionTime=stream.last_ingestion_ms,
            uploadSequenceToken=sequence_token(stream.last_seq),
        )
    # storedBytes of a stream is no longer reported by CloudWatch Logs: always 0.
    shape.update(arn=backend.stream_arn(group, stream.name), storedBytes=0)
    return shape


# -- tokens ------------------------------------------------------------------------------------
# GetLogEvents' tokens look like AWS's: "f/" or "b/", 56 digits, "/s". The digits carry a position
# in the stream's (timestamp, sequence) order: a forward token reads after it, a backward one before.
_EVENT_TOKEN = re.compile(r"([fb])/([0-9]{28})([0-9]{28})/s")
ORIGIN = Position(0, 0)  # before every event: timestamps are >= 0 and sequence numbers >= 1


def event_token(direction: str, position: Position) -> str:
    seq = min(max(position.seq, 0), LONG_MAX)  # a neighbour of a position at either end of the range
    return f"{direction}/{position.ts:028d}{seq:028d}/s"


def parse_event_token(token: str) -> tuple[str, Position]:
    match = _EVENT_TOKEN.fullmatch(token)
    if match is None or int(match[2]) > LONG_MAX or int(match[3]) > LONG_MAX:
        raise invalid(INVALID_TOKEN)
    return match[1], Position(int(match[2]), int(match[3]))


def list_token(kind: str, *key: object) -> str:
    """An opaque token for the list operations: the kind of listing and the last key returned."""
    return base64.urlsafe_b64encode(json.dumps([kind, *key]).encode()).decode()


def parse_list_token(token: str, kind: str, shape: tuple[type, ...]) -> list[Any]:
    """The key in a :func:`list_token` of ``kind`` whose parts have the types of ``shape``."""
    try:
        doc = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        doc = None
    if (
        not isinstance(doc, list)
        or len(doc) != len(shape) + 1
        or doc[0] != kind
        or not all(type(part) is typ for part, typ in zip(doc[1:], shape, strict=True))
        or not all(0 <= part <= LONG_MAX for part in doc[1:] if type(part) is int)  # SQLite's integers
    ):
        raise invalid(INVALID_TOKEN)
    return doc[1:]
