"""The CloudWatch Logs service of the local stack: its operations, and serving them.

Operations are small handlers over ``(Backend, Checks)`` (:mod:`.groups`, :mod:`.streams`,
:mod:`.events`) on the :class:`~airdock.local.logstore.LogStore`. Every input is validated before
any state changes; requests are serialised (``Backend.lock``), and the store's own methods are
atomic, so the ECS task runner may append to it at the same time.
"""

from __future__ import annotations

from airdock.local.api.logs.backend import TARGET_PREFIX, Backend, Handler
from airdock.local.api.logs.events import filter_log_events, get_log_events, put_log_events
from airdock.local.api.logs.groups import (
    create_log_group,
    delete_log_group,
    delete_retention_policy,
    describe_log_groups,
    list_tags_for_resource,
    list_tags_log_group,
    put_retention_policy,
)
from airdock.local.api.logs.streams import create_log_stream, delete_log_stream, describe_log_streams
from airdock.local.api.logs.validation import Checks
from airdock.local.api.params import JsonObject
from airdock.local.api.protocol import JsonService
from airdock.local.logstore import LogStore
from airdock.local.settings import DEFAULT_ACCOUNT_ID, DEFAULT_REGION

__all__ = ["OPERATIONS", "logs_service"]

OPERATIONS: dict[str, Handler] = {
    "CreateLogGroup": create_log_group,
    "DeleteLogGroup": delete_log_group,
    "DescribeLogGroups": describe_log_groups,
    "PutRetentionPolicy": put_retention_policy,
    "DeleteRetentionPolicy": delete_retention_policy,
    "ListTagsForResource": list_tags_for_resource,
    "ListTagsLogGroup": list_tags_log_group,
    "CreateLogStream": create_log_stream,
    "DeleteLogStream": delete_log_stream,
    "DescribeLogStreams": describe_log_streams,
    "PutLogEvents": put_log_events,
    "GetLogEvents": get_log_events,
    "FilterLogEvents": filter_log_events,
}


def serve(backend: Backend, op: str, data: JsonObject) -> JsonObject:
    """Run one operation, serialised with every other one."""
    with backend.lock:
        return OPERATIONS[op](backend, Checks(data))


def logs_service(
    store: LogStore, *, account_id: str = DEFAULT_ACCOUNT_ID, region: str = DEFAULT_REGION
) -> JsonService:
    """CloudWatch Logs as a JSON 1.1 service of the local stack's API app; ``account_id`` and
    ``region`` only shape the ARNs it answers with (pass the stack's settings)."""
    backend = Backend(store=store, account_id=account_id, region=region)
    return JsonService(
        name="logs",
        target_prefix=TARGET_PREFIX,
        operations=frozenset(OPERATIONS),
        serve=lambda op, data: serve(backend, op, data),
    )
