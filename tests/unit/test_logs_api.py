"""The CloudWatch Logs API subset, driven by unmodified boto3 (and raw HTTP for what botocore refuses
to send) against the local stack's app served by uvicorn; and the LogStore the ECS runner writes to."""

from __future__ import annotations

import base64
import json
import re
import resource
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from airdock.local.api.errors import ApiError
from airdock.local.api.logs import TARGET_PREFIX, logs_service
from airdock.local.api.logs.events import SCAN_BUDGET
from airdock.local.api.protocol import create_api_app
from airdock.local.logstore import LogGroupMissing, LogStore, LogStreamMissing
from tests.registry_push import free_port
from tests.serving import serving

pytestmark = pytest.mark.timeout(300)

ACCOUNT = "123456789012"
REGION = "us-east-1"
DAY_MS = 86_400_000
FAKE_AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/logs/aws4_request, "
    "SignedHeaders=host;x-amz-date;x-amz-target, Signature=0123456789abcdef"
)
GROUP_PATTERN = r"[\.\-_/#A-Za-z0-9]+"
TOKEN = re.compile(r"[fb]/[0-9]{56}/s")


def client(url: str) -> Any:
    return boto3.client(
        "logs",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


@dataclass
class Served:
    url: str
    store: LogStore

    def raw(self, op: str, body: Any) -> httpx.Response:
        """POST a body botocore would refuse to send."""
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Date": "20260101T000000Z",
            "X-Amz-Target": TARGET_PREFIX + op,
            "Authorization": FAKE_AUTH,
        }
        return httpx.post(self.url + "/", content=json.dumps(body), headers=headers, trust_env=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store = LogStore(tmp_path_factory.mktemp("logs") / "logs.db")
    app = create_api_app([logs_service(store, account_id=ACCOUNT, region=REGION)], status=lambda: {})
    try:
        with serving(app, free_port()) as url:
            yield Served(url, store)
    finally:
        store.close()


@pytest.fixture
def logs(served: Served) -> Any:
    return client(served.url)


def unique(prefix: str = "/airdock/test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def group(logs: Any) -> str:
    name = unique()
    logs.create_log_group(logGroupName=name)
    return name


@pytest.fixture
def stream(logs: Any, group: str) -> tuple[str, str]:
    logs.create_log_stream(logGroupName=group, logStreamName="app/main/1")
    return group, "app/main/1"


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    err = exc.value.response["Error"]
    return err["Code"], err["Message"]


def raw_error(resp: httpx.Response) -> tuple[str, str]:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    return body["__type"], body["message"]


def validation(*errors: str) -> str:
    noun = "validation error" if len(errors) == 1 else "validation errors"
    return f"{len(errors)} {noun} detected: " + "; ".join(errors)


def now_ms() -> int:
    return int(time.time() * 1000)


def group_names(logs: Any) -> set[str]:
    pages = logs.get_paginator("describe_log_groups").paginate()
    return {g["logGroupName"] for page in pages for g in page["logGroups"]}


def messages(response: dict[str, Any]) -> list[str]:
    return [e["message"] for e in response["events"]]


def put(logs: Any, where: tuple[str, str], texts: list[str], start: int | None = None) -> dict[str, Any]:
    base = now_ms() if start is None else start
    events = [{"timestamp": base + i, "message": text} for i, text in enumerate(texts)]
    return dict(logs.put_log_events(logGroupName=where[0], logStreamName=where[1], logEvents=events))


GROUP_MISSING = ("ResourceNotFoundException", "The specified log group does not exist.")
STREAM_MISSING = ("ResourceNotFoundException", "The specified log stream does not exist.")
BAD_TOKEN = ("InvalidParameterException", "The specified nextToken is invalid.")


# -- log groups ----------------------------------------------------------------------------------
def test_create_and_describe_log_group(logs: Any) -> None:
    name = unique()
    logs.create_log_group(logGroupName=name, tags={"team": "data", "cost:center": "42"})

    (described,) = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}"
    assert described == {
        "logGroupName": name,
        "creationTime": described["creationTime"],
        "arn": f"{arn}:*",
        "metricFilterCount": 0,
        "storedBytes": 0,
        "logGroupClass": "STANDARD",
        "logGroupArn": arn,
    }
    assert abs(described["creationTime"] - now_ms()) < 60_000
    tags = {"team": "data", "cost:center": "42"}
    assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == tags
    assert logs.list_tags_for_resource(resourceArn=f"{arn}:*")["tags"] == tags
    assert logs.list_tags_log_group(logGroupName=name)["tags"] == tags


def test_create_existing_log_group(logs: Any, group: str) -> None:
    with pytest.raises(logs.exceptions.ResourceAlreadyExistsException) as exc:
        logs.create_log_group(logGroupName=group)
    assert error_of(exc) == ("ResourceAlreadyExistsException", "The specified log group already exists")


@pytest.mark.parametrize("name", ["bad name", "a:b", "star*", "x" * 513])
def test_create_log_group_with_invalid_name(logs: Any, name: str) -> None:
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.create_log_group(logGroupName=name)
    constraint = (
        "Member must have length less than or equal to 512"
        if len(name) > 512
        else f"Member must satisfy regular expression pattern: {GROUP_PATTERN}"
    )
    assert error_of(exc) == (
        "InvalidParameterException",
        validation(f"Value '{name}' at 'logGroupName' failed to satisfy constraint: {constraint}"),
    )
    assert name not in group_names(logs)


def test_create_log_group_empty_or_missing_name_raw(served: Served, logs: Any) -> None:
    before = group_names(logs)
    assert raw_error(served.raw("CreateLogGroup", {"logGroupName": ""})) == (
        "InvalidParameterException",
        validation(
            f"Value '' at 'logGroupName' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {GROUP_PATTERN}",
            "Value '' at 'logGroupName' failed to satisfy constraint: "
            "Member must have length greater than or equal to 1",
        ),
    )
    assert raw_error(served.raw("CreateLogGroup", {})) == (
        "InvalidParameterException",
        validation("Value null at 'logGroupName' failed to satisfy constraint: Member must not be null"),
    )
    assert raw_error(served.raw("CreateLogGroup", {"logGroupName": 5})) == (
        "SerializationException",
        "NUMBER_VALUE can not be converted to a String",
    )
    assert group_names(logs) == before


def test_create_log_group_with_bad_tags(served: Served, logs: Any) -> None:
    name = unique()
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.create_log_group(logGroupName=name, tags={"k" * 129: "v"})
    assert (
        "Map keys must satisfy constraint: [Member must have length less than or equal to 128]"
        in (error_of(exc)[1])
    )
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.create_log_group(logGroupName=name, tags={"ok": "semi;colon"})
    assert "at 'tags' failed to satisfy constraint: Map value must satisfy constraint" in error_of(exc)[1]
    too_many = {f"k{i}": "v" for i in range(51)}
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.create_log_group(logGroupName=name, tags=too_many)
    assert error_of(exc)[1].endswith("Member must have length less than or equal to 50")
    resp = served.raw("CreateLogGroup", {"logGroupName": "bad name", "tags": {}})
    assert raw_error(resp)[1].startswith("2 validation errors detected: ")  # all problems, at once
    assert name not in group_names(logs)
    logs.create_log_group(logGroupName=name, tags={f"k{i}": "v" for i in range(50)})
    assert name in group_names(logs)


def test_create_log_group_class_and_protection(logs: Any) -> None:
    name = unique()
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.create_log_group(logGroupName=name, deletionProtectionEnabled=True)
    assert "deletionProtectionEnabled" in error_of(exc)[1]
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.create_log_group(logGroupName=name, logGroupClass="CHEAP")
    assert "Member must satisfy enum value set: [STANDARD, INFREQUENT_ACCESS" in error_of(exc)[1]
    assert name not in group_names(logs)
    logs.create_log_group(logGroupName=name, logGroupClass="INFREQUENT_ACCESS")
    found = logs.describe_log_groups(logGroupNamePrefix=name, logGroupClass="INFREQUENT_ACCESS")
    assert [g["logGroupClass"] for g in found["logGroups"]] == ["INFREQUENT_ACCESS"]
    assert logs.describe_log_groups(logGroupNamePrefix=name, logGroupClass="STANDARD")["logGroups"] == []


def test_describe_log_groups_pages(logs: Any) -> None:
    prefix = unique("/airdock/page")
    names = [f"{prefix}/g{i}" for i in range(7)]
    for name in reversed(names):
        logs.create_log_group(logGroupName=name)

    first = logs.describe_log_groups(logGroupNamePrefix=prefix, limit=3)
    second = logs.describe_log_groups(logGroupNamePrefix=prefix, limit=3, nextToken=first["nextToken"])
    third = logs.describe_log_groups(logGroupNamePrefix=prefix, limit=3, nextToken=second["nextToken"])

    pages = [first, second, third]
    assert [[g["logGroupName"] for g in p["logGroups"]] for p in pages] == [names[:3], names[3:6], names[6:]]
    assert "nextToken" not in third
    paged = logs.get_paginator("describe_log_groups").paginate(
        logGroupNamePrefix=prefix, PaginationConfig={"PageSize": 2}
    )
    assert [g["logGroupName"] for page in paged for g in page["logGroups"]] == names


def test_describe_log_groups_filters(logs: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    names = [f"/airdock/{tag}/DataLogs", f"/airdock/x{tag}DataLogs", f"/airdock/{tag}/datalogs"]
    for name in names:
        logs.create_log_group(logGroupName=name)

    found = logs.describe_log_groups(logGroupNamePattern=f"{tag}/DataLogs")["logGroups"]
    assert [set(g) for g in found] == [{"logGroupName", "creationTime", "arn"}]  # only these, as AWS
    assert [g["logGroupName"] for g in found] == [names[0]]
    both = logs.describe_log_groups(
        logGroupIdentifiers=[names[1], f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{names[2]}"]
    )
    assert sorted(g["logGroupName"] for g in both["logGroups"]) == sorted(names[1:])
    assert logs.describe_log_groups(accountIdentifiers=["999999999999"])["logGroups"] == []
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.describe_log_groups(logGroupNamePrefix="/airdock", logGroupNamePattern="x")
    assert "mutually exclusive" in error_of(exc)[1]


def test_describe_log_groups_bad_input(served: Served, logs: Any) -> None:
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.describe_log_groups(limit=51)
    assert error_of(exc)[1] == validation(
        "Value '51' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 50"
    )
    assert raw_error(served.raw("DescribeLogGroups", {"limit": 0}))[1] == validation(
        "Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1"
    )
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.describe_log_groups(nextToken="garbage")
    assert error_of(exc) == BAD_TOKEN
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.describe_log_groups(logGroupNamePrefix="no spaces")
    assert "at 'logGroupNamePrefix' failed to satisfy constraint" in error_of(exc)[1]


def test_delete_log_group_takes_streams_and_events(
    served: Served, logs: Any, stream: tuple[str, str]
) -> None:
    put(logs, stream, ["one", "two"])
    before = served.store.event_count()

    logs.delete_log_group(logGroupName=stream[0])

    assert stream[0] not in group_names(logs)
    assert served.store.event_count() == before - 2
    with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
        logs.describe_log_streams(logGroupName=stream[0])
    assert error_of(exc) == GROUP_MISSING
    with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
        logs.delete_log_group(logGroupName=stream[0])
    assert error_of(exc) == GROUP_MISSING


def test_retention_policy(logs: Any, group: str) -> None:
    logs.put_retention_policy(logGroupName=group, retentionInDays=7)
    (found,) = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert found["retentionInDays"] == 7

    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.put_retention_policy(logGroupName=group, retentionInDays=2)
    assert error_of(exc)[1].startswith(
        "1 validation error detected: Value '2' at 'retentionInDays' failed to satisfy constraint: "
        "Member must satisfy enum value set: [1, 3, 5, 7, 14, 30,"
    )
    (found,) = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert found["retentionInDays"] == 7

    logs.delete_retention_policy(logGroupName=group)
    (found,) = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert "retentionInDays" not in found
    for call in (logs.put_retention_policy, logs.delete_retention_policy):
        kwargs = {"retentionInDays": 1} if call == logs.put_retention_policy else {}
        with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
            call(logGroupName=unique(), **kwargs)
        assert error_of(exc) == GROUP_MISSING


def test_tags_of_missing_or_foreign_group(logs: Any, group: str) -> None:
    for arn in (
        f"arn:aws:logs:{REGION}:999999999999:log-group:{group}",
        f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:{group}",
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{unique()}",
    ):
        with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
            logs.list_tags_for_resource(resourceArn=arn)
        assert error_of(exc) == GROUP_MISSING


def test_group_operations_refuse_bad_input_and_change_nothing(served: Served, logs: Any, group: str) -> None:
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.delete_log_group(logGroupName=group + " ")
    assert error_of(exc)[1] == validation(
        f"Value '{group} ' at 'logGroupName' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {GROUP_PATTERN}"
    )
    assert group in group_names(logs)
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.describe_log_groups(accountIdentifiers=["1234567890123"], logGroupIdentifiers=["bad name"])
    assert error_of(exc)[1] == validation(
        "Value '1234567890123' at 'accountIdentifiers.1.member' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: ^\\d{12}$",
        "Value '1234567890123' at 'accountIdentifiers.1.member' failed to satisfy constraint: "
        "Member must have length less than or equal to 12",
        "Value 'bad name' at 'logGroupIdentifiers.1.member' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [\\w#+=/:,.@-]*",
    )
    with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
        logs.list_tags_log_group(logGroupName=unique())
    assert error_of(exc) == GROUP_MISSING
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.list_tags_for_resource(resourceArn="arn with spaces")
    assert "at 'resourceArn' failed to satisfy constraint" in error_of(exc)[1]
    resp = served.raw("CreateLogGroup", {"logGroupName": unique(), "tags": ["team"]})
    assert raw_error(resp) == ("SerializationException", "Start of list found where not expected")
    assert logs.list_tags_log_group(logGroupName=group)["tags"] == {}


# -- log streams ---------------------------------------------------------------------------------
def test_create_and_describe_log_stream(logs: Any, group: str) -> None:
    logs.create_log_stream(logGroupName=group, logStreamName="web/app/abc")
    (fresh,) = logs.describe_log_streams(logGroupName=group)["logStreams"]
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:web/app/abc"
    assert fresh == {
        "logStreamName": "web/app/abc",
        "creationTime": fresh["creationTime"],
        "arn": arn,
        "storedBytes": 0,
    }
    base = now_ms() - 1000
    token = put(logs, (group, "web/app/abc"), ["a", "b", "c"], start=base)["nextSequenceToken"]

    (used,) = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert used["firstEventTimestamp"] == base
    assert used["lastEventTimestamp"] == base + 2
    assert abs(used["lastIngestionTime"] - now_ms()) < 60_000
    assert used["uploadSequenceToken"] == token
    (by_arn,) = logs.describe_log_streams(
        logGroupIdentifier=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"
    )["logStreams"]
    assert by_arn == used


def test_create_log_stream_errors(logs: Any, stream: tuple[str, str]) -> None:
    with pytest.raises(logs.exceptions.ResourceAlreadyExistsException) as exc:
        logs.create_log_stream(logGroupName=stream[0], logStreamName=stream[1])
    assert error_of(exc) == ("ResourceAlreadyExistsException", "The specified log stream already exists")
    missing = unique()
    with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
        logs.create_log_stream(logGroupName=missing, logStreamName="s")
    assert error_of(exc) == GROUP_MISSING
    assert missing not in group_names(logs)


@pytest.mark.parametrize("name", ["a:b", "a*b", "x" * 513])
def test_create_log_stream_with_invalid_name(logs: Any, group: str, name: str) -> None:
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.create_log_stream(logGroupName=group, logStreamName=name)
    constraint = (
        "Member must have length less than or equal to 512"
        if len(name) > 512
        else "Member must satisfy regular expression pattern: [^:*]*"
    )
    assert error_of(exc)[1] == validation(
        f"Value '{name}' at 'logStreamName' failed to satisfy constraint: {constraint}"
    )
    assert logs.describe_log_streams(logGroupName=group)["logStreams"] == []


def test_create_log_stream_empty_name_raw(served: Served, logs: Any, group: str) -> None:
    resp = served.raw("CreateLogStream", {"logGroupName": group, "logStreamName": ""})
    assert raw_error(resp) == (
        "InvalidParameterException",
        validation(
            "Value '' at 'logStreamName' failed to satisfy constraint: "
            "Member must have length greater than or equal to 1"
        ),
    )
    assert logs.describe_log_streams(logGroupName=group)["logStreams"] == []


def test_describe_log_streams_orders_and_pages(logs: Any, group: str) -> None:
    names = ["b-1", "a-2", "c-3", "a-1"]
    base = now_ms() - 10_000
    for offset, name in zip((300, 100, 200, 0), names, strict=True):
        logs.create_log_stream(logGroupName=group, logStreamName=name)
        put(logs, (group, name), [name], start=base + offset)
    logs.create_log_stream(logGroupName=group, logStreamName="d-empty")

    def listed(**kwargs: Any) -> list[str]:
        pages = logs.get_paginator("describe_log_streams").paginate(
            logGroupName=group, PaginationConfig={"PageSize": 2}, **kwargs
        )
        return [s["logStreamName"] for page in pages for s in page["logStreams"]]

    assert listed() == ["a-1", "a-2", "b-1", "c-3", "d-empty"]
    assert listed(descending=True) == ["d-empty", "c-3", "b-1", "a-2", "a-1"]
    assert listed(logStreamNamePrefix="a-") == ["a-1", "a-2"]
    assert listed(orderBy="LastEventTime") == ["d-empty", "a-1", "a-2", "c-3", "b-1"]
    assert listed(orderBy="LastEventTime", descending=True) == ["b-1", "c-3", "a-2", "a-1", "d-empty"]
    first = logs.describe_log_streams(logGroupName=group, limit=2)
    assert [s["logStreamName"] for s in first["logStreams"]] == ["a-1", "a-2"]
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:  # a token of another order
        logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime", nextToken=first["nextToken"])
    assert error_of(exc) == BAD_TOKEN


def test_describe_log_streams_errors(served: Served, logs: Any, group: str) -> None:
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime", logStreamNamePrefix="a")
    assert error_of(exc) == (
        "InvalidParameterException",
        "Cannot order by LastEventTime with a logStreamNamePrefix.",
    )
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.describe_log_streams(logGroupName=group, orderBy="Size")
    assert error_of(exc)[1] == validation(
        "Value 'Size' at 'orderBy' failed to satisfy constraint: "
        "Member must satisfy enum value set: [LogStreamName, LastEventTime]"
    )
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.describe_log_streams(logGroupName=group, limit=51)
    assert "Member must have value less than or equal to 50" in error_of(exc)[1]
    either = "You must include either logGroupIdentifier or logGroupName, but not both."
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.describe_log_streams()
    assert error_of(exc) == ("InvalidParameterException", either)
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.describe_log_streams(logGroupName=group, logGroupIdentifier=group)
    assert error_of(exc) == ("InvalidParameterException", either)
    with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
        logs.describe_log_streams(logGroupName=unique())
    assert error_of(exc) == GROUP_MISSING
    resp = served.raw("DescribeLogStreams", {"logGroupName": group, "descending": "yes"})
    assert raw_error(resp) == ("SerializationException", "STRING_VALUE can not be converted to a Boolean")


def test_delete_log_stream(served: Served, logs: Any, stream: tuple[str, str]) -> None:
    put(logs, stream, ["x", "y", "z"])
    logs.create_log_stream(logGroupName=stream[0], logStreamName="kept")
    put(logs, (stream[0], "kept"), ["k"])
    before = served.store.event_count()

    logs.delete_log_stream(logGroupName=stream[0], logStreamName=stream[1])

    listed = logs.describe_log_streams(logGroupName=stream[0])["logStreams"]
    assert [s["logStreamName"] for s in listed] == ["kept"]
    assert served.store.event_count() == before - 3
    (found,) = logs.describe_log_groups(logGroupNamePrefix=stream[0])["logGroups"]
    assert found["storedBytes"] == 1
    with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
        logs.delete_log_stream(logGroupName=stream[0], logStreamName=stream[1])
    assert error_of(exc) == STREAM_MISSING
    with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
        logs.delete_log_stream(logGroupName=unique(), logStreamName="kept")
    assert error_of(exc) == GROUP_MISSING


# -- PutLogEvents --------------------------------------------------------------------------------
def test_put_log_events(served: Served, logs: Any, stream: tuple[str, str]) -> None:
    base = now_ms() - 5000
    first = put(logs, stream, ["one", "two"], start=base)
    second = put(logs, stream, ["three"], start=base + 10)

    assert re.fullmatch(r"[0-9]{56}", first["nextSequenceToken"])
    assert int(second["nextSequenceToken"]) > int(first["nextSequenceToken"])
    assert "rejectedLogEventsInfo" not in first
    got = logs.get_log_events(logGroupName=stream[0], logStreamName=stream[1], startFromHead=True)
    assert [(e["timestamp"], e["message"]) for e in got["events"]] == [
        (base, "one"),
        (base + 1, "two"),
        (base + 10, "three"),
    ]
    assert all(abs(e["ingestionTime"] - now_ms()) < 60_000 for e in got["events"])
    (found,) = logs.describe_log_groups(logGroupNamePrefix=stream[0])["logGroups"]
    assert found["storedBytes"] == len("onetwothree")
    assert served.store.last_timestamp(*stream) == base + 10


def test_put_log_events_out_of_order(logs: Any, stream: tuple[str, str]) -> None:
    now = now_ms()
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.put_log_events(
            logGroupName=stream[0],
            logStreamName=stream[1],
            logEvents=[{"timestamp": now, "message": "late"}, {"timestamp": now - 1, "message": "early"}],
        )
    assert error_of(exc) == (
        "InvalidParameterException",
        "Log events in a single PutLogEvents request must be in chronological order.",
    )
    assert logs.get_log_events(logGroupName=stream[0], logStreamName=stream[1])["events"] == []


def test_put_log_events_bad_batches_raw(served: Served, logs: Any, stream: tuple[str, str]) -> None:
    where = {"logGroupName": stream[0], "logStreamName": stream[1]}
    now = now_ms()
    assert raw_error(served.raw("PutLogEvents", {**where, "logEvents": []}))[1] == validation(
        "Value '[]' at 'logEvents' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )
    assert raw_error(served.raw("PutLogEvents", where))[1] == validation(
        "Value null at 'logEvents' failed to satisfy constraint: Member must not be null"
    )
    broken = [{"timestamp": now, "message": ""}, {"message": "no time"}, {"timestamp": -1, "message": "x"}]
    assert raw_error(served.raw("PutLogEvents", {**where, "logEvents": broken}))[1] == validation(
        "Value '' at 'logEvents.1.member.message' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1",
        "Value null at 'logEvents.2.member.timestamp' failed to satisfy constraint: Member must not be null",
        "Value '-1' at 'logEvents.3.member.timestamp' failed to satisfy constraint: "
        "Member must have value greater than or equal to 0",
    )
    bad_type = [{"timestamp": "soon", "message": "x"}]
    assert raw_error(served.raw("PutLogEvents", {**where, "logEvents": bad_type})) == (
        "SerializationException",
        "STRING_VALUE can not be converted to a Long",
    )
    assert logs.get_log_events(logGroupName=stream[0], logStreamName=stream[1])["events"] == []


def test_put_log_events_with_an_unpaired_surrogate(
    served: Served, logs: Any, stream: tuple[str, str]
) -> None:
    event = {"timestamp": now_ms(), "message": "\ud800"}  # JSON can carry it ("\\ud800"); UTF-8 cannot
    resp = served.raw(
        "PutLogEvents", {"logGroupName": stream[0], "logStreamName": stream[1], "logEvents": [event]}
    )
    assert raw_error(resp)[0] == "SerializationException"
    assert logs.get_log_events(logGroupName=stream[0], logStreamName=stream[1])["events"] == []


def test_put_log_events_too_many(logs: Any, stream: tuple[str, str]) -> None:
    now = now_ms()
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.put_log_events(
            logGroupName=stream[0],
            logStreamName=stream[1],
            logEvents=[{"timestamp": now, "message": "m"}] * 10_001,
        )
    assert error_of(exc)[1].endswith(
        "at 'logEvents' failed to satisfy constraint: Member must have length less than or equal to 10000"
    )
    assert logs.get_log_events(logGroupName=stream[0], logStreamName=stream[1])["events"] == []
    logs.put_log_events(
        logGroupName=stream[0],
        logStreamName=stream[1],
        logEvents=[{"timestamp": now, "message": "m"}] * 10_000,
    )
    assert len(logs.get_log_events(logGroupName=stream[0], logStreamName=stream[1])["events"]) == 10_000


def test_put_log_events_upload_too_large(served: Served, stream: tuple[str, str]) -> None:
    # Past the HTTP body limit already: driven through the service, as the app would after parsing.
    service = logs_service(served.store)
    events = [{"timestamp": now_ms(), "message": "x" * 100_000} for _ in range(11)]
    with pytest.raises(ApiError) as exc:
        service.serve(
            "PutLogEvents", {"logGroupName": stream[0], "logStreamName": stream[1], "logEvents": events}
        )
    assert (exc.value.code, exc.value.message) == (
        "InvalidParameterException",
        f"Upload too large: {11 * 100_026} bytes exceeds limit of 1048576",
    )
    assert served.store.last_timestamp(*stream) is None


def test_put_log_events_to_missing_group_or_stream(logs: Any, group: str) -> None:
    for where, expected in (((unique(), "s"), GROUP_MISSING), ((group, "nope"), STREAM_MISSING)):
        with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
            put(logs, where, ["lost"])
        assert error_of(exc) == expected
    assert unique() not in group_names(logs)
    assert logs.describe_log_streams(logGroupName=group)["logStreams"] == []


def test_put_log_events_rejects_too_old_too_new_and_expired(logs: Any, stream: tuple[str, str]) -> None:
    now = now_ms()
    events = [
        {"timestamp": now - 15 * DAY_MS, "message": "too old"},
        {"timestamp": now - 60_000, "message": "fine 1"},
        {"timestamp": now, "message": "fine 2"},
        {"timestamp": now + 3 * 3600_000, "message": "too new"},
    ]
    result = logs.put_log_events(logGroupName=stream[0], logStreamName=stream[1], logEvents=events)
    assert result["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 0, "tooNewLogEventStartIndex": 3}
    got = logs.get_log_events(logGroupName=stream[0], logStreamName=stream[1], startFromHead=True)
    assert messages(got) == ["fine 1", "fine 2"]

    logs.put_retention_policy(logGroupName=stream[0], retentionInDays=1)
    expired = [{"timestamp": now - 2 * DAY_MS, "message": "expired"}, {"timestamp": now, "message": "fine 3"}]
    result = logs.put_log_events(logGroupName=stream[0], logStreamName=stream[1], logEvents=expired)
    assert result["rejectedLogEventsInfo"] == {"expiredLogEventEndIndex": 0}
    got = logs.get_log_events(logGroupName=stream[0], logStreamName=stream[1], startFromHead=True)
    assert messages(got) == ["fine 1", "fine 2", "fine 3"]


def test_put_log_events_spanning_more_than_a_day(logs: Any, stream: tuple[str, str]) -> None:
    now = now_ms()
    events = [{"timestamp": now - 2 * DAY_MS, "message": "a"}, {"timestamp": now, "message": "b"}]
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.put_log_events(logGroupName=stream[0], logStreamName=stream[1], logEvents=events)
    assert error_of(exc) == (
        "InvalidParameterException",
        "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
    )
    assert logs.get_log_events(logGroupName=stream[0], logStreamName=stream[1])["events"] == []


# -- GetLogEvents --------------------------------------------------------------------------------
def test_get_log_events_forward_pages_and_polls(logs: Any, stream: tuple[str, str]) -> None:
    base = now_ms() - 60_000
    put(logs, stream, [f"m{i}" for i in range(5)], start=base)
    args = {"logGroupName": stream[0], "logStreamName": stream[1], "limit": 2}

    first = logs.get_log_events(startFromHead=True, **args)
    second = logs.get_log_events(startFromHead=True, nextToken=first["nextForwardToken"], **args)
    third = logs.get_log_events(startFromHead=True, nextToken=second["nextForwardToken"], **args)
    assert [messages(p) for p in (first, second, third)] == [["m0", "m1"], ["m2", "m3"], ["m4"]]
    assert all(
        TOKEN.fullmatch(p[k])
        for p in (first, second, third)
        for k in ("nextForwardToken", "nextBackwardToken")
    )

    # Nothing new: the forward token passed in comes back unchanged (how pollers know they are done).
    idle = logs.get_log_events(startFromHead=True, nextToken=third["nextForwardToken"], **args)
    assert idle["events"] == []
    assert idle["nextForwardToken"] == third["nextForwardToken"]
    again = logs.get_log_events(startFromHead=True, nextToken=idle["nextForwardToken"], **args)
    assert again["nextForwardToken"] == third["nextForwardToken"]

    put(logs, stream, ["m5"], start=base + 10)
    fresh = logs.get_log_events(startFromHead=True, nextToken=idle["nextForwardToken"], **args)
    assert messages(fresh) == ["m5"]
    assert fresh["nextForwardToken"] != idle["nextForwardToken"]
    # Back from the idle poll's backward token: the events up to and with the last one seen.
    back = logs.get_log_events(nextToken=idle["nextBackwardToken"], **args)
    assert messages(back) == ["m3", "m4"]


def test_get_log_events_newest_first_then_backward(logs: Any, stream: tuple[str, str]) -> None:
    put(logs, stream, [f"m{i}" for i in range(7)], start=now_ms() - 60_000)
    args = {"logGroupName": stream[0], "logStreamName": stream[1], "limit": 3}

    tail = logs.get_log_events(**args)  # startFromHead defaults to false: the newest, in order
    assert messages(tail) == ["m4", "m5", "m6"]
    page = tail
    seen = [messages(tail)]
    while True:
        older = logs.get_log_events(nextToken=page["nextBackwardToken"], **args)
        if older["nextBackwardToken"] == page["nextBackwardToken"]:
            assert older["events"] == []  # the head: the backward token comes back unchanged
            break
        seen.insert(0, messages(older))
        page = older
    assert seen == [["m0"], ["m1", "m2", "m3"], ["m4", "m5", "m6"]]
    # From the head, forward again.
    ahead = logs.get_log_events(nextToken=older["nextForwardToken"], **args)
    assert messages(ahead) == ["m0", "m1", "m2"]


def test_get_log_events_time_range(logs: Any, stream: tuple[str, str]) -> None:
    base = now_ms() - 60_000
    put(logs, stream, [f"m{i}" for i in range(6)], start=base)
    args = {"logGroupName": stream[0], "logStreamName": stream[1]}
    ranged = logs.get_log_events(startTime=base + 1, endTime=base + 4, startFromHead=True, **args)
    assert messages(ranged) == ["m1", "m2", "m3"]  # endTime is exclusive
    assert messages(logs.get_log_events(startTime=base + 1, endTime=base + 4, limit=2, **args)) == [
        "m2",
        "m3",
    ]
    assert logs.get_log_events(startTime=base + 100, **args)["events"] == []


def test_get_log_events_of_an_empty_stream_then_poll(logs: Any, stream: tuple[str, str]) -> None:
    args = {"logGroupName": stream[0], "logStreamName": stream[1], "startFromHead": True}
    empty = logs.get_log_events(**args)
    assert empty["events"] == []
    assert TOKEN.fullmatch(empty["nextForwardToken"]) and TOKEN.fullmatch(empty["nextBackwardToken"])
    assert (
        logs.get_log_events(nextToken=empty["nextForwardToken"], **args)["nextForwardToken"]
        == (empty["nextForwardToken"])
    )
    put(logs, stream, ["arrived"])
    assert messages(logs.get_log_events(nextToken=empty["nextForwardToken"], **args)) == ["arrived"]


def test_get_log_events_like_airflows_task_log_fetcher(logs: Any, stream: tuple[str, str]) -> None:
    """Poll with the forward token until it stops changing, as AwsLogsHook.get_log_events does."""
    put(logs, stream, [f"line {i}" for i in range(25)], start=now_ms() - 60_000)
    token: str | None = None
    lines: list[str] = []
    for _ in range(20):
        kwargs = {"nextToken": token} if token else {}
        page = logs.get_log_events(
            logGroupName=stream[0], logStreamName=stream[1], startFromHead=True, limit=10, **kwargs
        )
        lines.extend(messages(page))
        if page["nextForwardToken"] == token:
            break
        token = page["nextForwardToken"]
    assert lines == [f"line {i}" for i in range(25)]


def test_get_log_events_with_airflows_aws_logs_hook(logs: Any, stream: tuple[str, str]) -> None:
    """Airflow's own reader (what its ECS task log fetcher calls every poll) over this API."""
    from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook

    hook = AwsLogsHook(aws_conn_id=None, region_name=REGION)
    hook.__dict__["conn"] = logs  # its cached boto3 client: this one, pointed at the local stack
    put(logs, stream, [f"line {i}" for i in range(3)], start=now_ms() - 60_000)
    token = AwsLogsHook.ContinuationToken()

    first = [e["message"] for e in hook.get_log_events(stream[0], stream[1], continuation_token=token)]
    idle = [e["message"] for e in hook.get_log_events(stream[0], stream[1], continuation_token=token)]
    put(logs, stream, ["line 3"])
    later = [e["message"] for e in hook.get_log_events(stream[0], stream[1], continuation_token=token)]

    assert (first, idle, later) == (["line 0", "line 1", "line 2"], [], ["line 3"])


def test_get_log_events_by_group_identifier(logs: Any, stream: tuple[str, str]) -> None:
    put(logs, stream, ["hello"])
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{stream[0]}"
    for identifier in (stream[0], arn):
        got = logs.get_log_events(logGroupIdentifier=identifier, logStreamName=stream[1])
        assert messages(got) == ["hello"]
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:  # "*" is not in the pattern
        logs.get_log_events(logGroupIdentifier=f"{arn}:*", logStreamName=stream[1])
    assert error_of(exc)[1] == validation(
        f"Value '{arn}:*' at 'logGroupIdentifier' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: [\w#+=/:,.@-]*"
    )
    with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
        logs.get_log_events(
            logGroupIdentifier=f"arn:aws:logs:{REGION}:999999999999:log-group:{stream[0]}",
            logStreamName=stream[1],
        )
    assert error_of(exc) == GROUP_MISSING
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.get_log_events(logGroupName=stream[0], logGroupIdentifier=arn, logStreamName=stream[1])
    assert error_of(exc)[1] == "You must include either logGroupIdentifier or logGroupName, but not both."


def test_get_log_events_errors(served: Served, logs: Any, stream: tuple[str, str]) -> None:
    args = {"logGroupName": stream[0], "logStreamName": stream[1]}
    for token in ("garbage", "f/123/s", "x/" + "0" * 56 + "/s", "f/" + "9" * 56 + "/s"):
        with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
            logs.get_log_events(nextToken=token, **args)
        assert error_of(exc) == BAD_TOKEN
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.get_log_events(limit=10_001, **args)
    assert error_of(exc)[1] == validation(
        "Value '10001' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 10000"
    )
    resp = served.raw("GetLogEvents", {**args, "limit": 0, "startTime": -5})
    assert raw_error(resp)[1] == validation(
        "Value '-5' at 'startTime' failed to satisfy constraint: "
        "Member must have value greater than or equal to 0",
        "Value '0' at 'limit' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1",
    )
    with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
        logs.get_log_events(logGroupName=stream[0], logStreamName="nope")
    assert error_of(exc) == STREAM_MISSING
    with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
        logs.get_log_events(logGroupName=unique(), logStreamName=stream[1])
    assert error_of(exc) == GROUP_MISSING


# -- FilterLogEvents -----------------------------------------------------------------------------
@pytest.fixture
def busy_group(logs: Any, group: str) -> tuple[str, int]:
    """Two streams whose events interleave in time."""
    base = now_ms() - 60_000
    for name in ("api/1", "api/2", "worker/1"):
        logs.create_log_stream(logGroupName=group, logStreamName=name)
    put(logs, (group, "api/1"), ["GET /a 200", "ERROR db timeout", "GET /b 500 ERROR"], start=base)
    put(logs, (group, "api/2"), ["ERROR: disk full", "WARN slow"], start=base + 10)
    put(logs, (group, "worker/1"), ['job "nightly" ERROR 401 done', "job ok"], start=base + 1)
    return group, base


def test_filter_log_events_interleaves_streams(logs: Any, busy_group: tuple[str, int]) -> None:
    group, base = busy_group
    got = logs.filter_log_events(logGroupName=group)
    assert [(e["logStreamName"], e["timestamp"], e["message"]) for e in got["events"]] == [
        ("api/1", base, "GET /a 200"),
        ("api/1", base + 1, "ERROR db timeout"),
        ("worker/1", base + 1, 'job "nightly" ERROR 401 done'),
        ("api/1", base + 2, "GET /b 500 ERROR"),
        ("worker/1", base + 2, "job ok"),
        ("api/2", base + 10, "ERROR: disk full"),
        ("api/2", base + 11, "WARN slow"),
    ]
    assert got["searchedLogStreams"] == []
    assert "nextToken" not in got
    ids = [e["eventId"] for e in got["events"]]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[0-9]{56}", i) for i in ids)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("", 7),
        (
            "ERROR",
            ["ERROR db timeout", 'job "nightly" ERROR 401 done', "GET /b 500 ERROR", "ERROR: disk full"],
        ),
        ("ERROR GET", ["GET /b 500 ERROR"]),
        ('"ERROR 401"', ['job "nightly" ERROR 401 done']),
        ('"\\"nightly\\""', ['job "nightly" ERROR 401 done']),
        ("?WARN ?timeout", ["ERROR db timeout", "WARN slow"]),
        ("ERROR -GET -job", ["ERROR db timeout", "ERROR: disk full"]),
        ("%^job .* done$%", ['job "nightly" ERROR 401 done']),
        ("error", []),  # case-sensitive
    ],
)
def test_filter_log_events_patterns(
    logs: Any, busy_group: tuple[str, int], pattern: str, expected: list[str] | int
) -> None:
    got = messages(logs.filter_log_events(logGroupName=busy_group[0], filterPattern=pattern))
    assert (len(got) if isinstance(expected, int) else got) == expected


def test_filter_log_events_by_stream_and_time(logs: Any, busy_group: tuple[str, int]) -> None:
    group, base = busy_group
    named = logs.filter_log_events(logGroupName=group, logStreamNames=["api/2", "worker/1", "missing"])
    assert {e["logStreamName"] for e in named["events"]} == {"api/2", "worker/1"}
    prefixed = logs.filter_log_events(logGroupName=group, logStreamNamePrefix="api/")
    assert {e["logStreamName"] for e in prefixed["events"]} == {"api/1", "api/2"}
    timed = logs.filter_log_events(logGroupName=group, startTime=base + 2, endTime=base + 10)
    assert messages(timed) == ["GET /b 500 ERROR", "job ok", "ERROR: disk full"]  # endTime is inclusive


def test_filter_log_events_pages_both_ways(logs: Any, busy_group: tuple[str, int]) -> None:
    group, _ = busy_group
    everything = messages(logs.filter_log_events(logGroupName=group))
    pages = list(
        logs.get_paginator("filter_log_events").paginate(logGroupName=group, PaginationConfig={"PageSize": 2})
    )
    assert [len(p["events"]) for p in pages] == [2, 2, 2, 1]
    assert [m for p in pages for m in messages(p)] == everything
    newest = logs.filter_log_events(logGroupName=group, startFromHead=False, limit=3)
    assert messages(newest) == everything[::-1][:3]
    older = logs.filter_log_events(logGroupName=group, nextToken=newest["nextToken"], limit=3)
    assert messages(older) == everything[::-1][3:6]  # the token keeps the direction


def test_filter_log_events_scans_in_bounded_steps(served: Served, logs: Any, stream: tuple[str, str]) -> None:
    base = now_ms() - 60_000
    served.store.append(*stream, [(base, "noise")] * (SCAN_BUDGET + 500) + [(base + 1, "needle")])
    first = logs.filter_log_events(logGroupName=stream[0], filterPattern="needle")
    assert first["events"] == [] and "nextToken" in first  # AWS too may answer empty with a token
    second = logs.filter_log_events(
        logGroupName=stream[0], filterPattern="needle", nextToken=first["nextToken"]
    )
    assert messages(second) == ["needle"]
    assert "nextToken" not in second


def test_filter_log_events_errors(logs: Any, busy_group: tuple[str, int]) -> None:
    group, _ = busy_group
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.filter_log_events(logGroupName=group, logStreamNames=["api/1"], logStreamNamePrefix="api")
    assert error_of(exc) == (
        "InvalidParameterException",
        "You cannot specify both logStreamNames and logStreamNamePrefix.",
    )
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.filter_log_events(logGroupName=group, filterPattern='{ $.level = "error" }')
    assert "not supported by the airdock local stack" in error_of(exc)[1]
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.filter_log_events(logGroupName=group, filterPattern='"unbalanced')
    assert "unbalanced double quote" in error_of(exc)[1]
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.filter_log_events(logGroupName=group, filterPattern="%(%")
    assert "Invalid regular expression in filter pattern" in error_of(exc)[1]
    huge = base64.urlsafe_b64encode(json.dumps(["filter", "asc", 1 << 70, 1]).encode()).decode()
    for token in ("garbage", huge):
        with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
            logs.filter_log_events(logGroupName=group, nextToken=token)
        assert error_of(exc) == BAD_TOKEN
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.filter_log_events(logGroupName=group, startFromHead=False, startTime=1_000)
    assert "startTime is on or after Jan 1, 2024" in error_of(exc)[1]
    with pytest.raises(logs.exceptions.InvalidParameterException) as exc:
        logs.filter_log_events(logGroupName=group, logStreamNames=["a:b"])
    assert error_of(exc)[1] == validation(
        "Value 'a:b' at 'logStreamNames.1.member' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [^:*]*"
    )
    with pytest.raises(logs.exceptions.ResourceNotFoundException) as exc:
        logs.filter_log_events(logGroupName=unique())
    assert error_of(exc) == GROUP_MISSING


# -- the LogStore, as the ECS task runner uses it ------------------------------------------------
def test_log_store_runner_api(tmp_path: Path) -> None:
    path = tmp_path / "state" / "logs.db"
    store = LogStore(path, clock=lambda: 1_700_000_000.5)
    try:
        assert not store.group_exists("/ecs/app")
        with pytest.raises(LogGroupMissing):
            store.ensure_stream("/ecs/app", "web/web/1")
        store.ensure_group("/ecs/app")
        store.ensure_group("/ecs/app")  # idempotent
        assert store.group_exists("/ecs/app")
        with pytest.raises(LogGroupMissing):
            store.append("/ecs/missing", "s", [(1, "x")])
        with pytest.raises(KeyError):
            store.append("/ecs/app", "web/web/1", [(1, "x")])
        with pytest.raises(LogStreamMissing):
            store.append("/ecs/app", "web/web/1", [])
        store.ensure_stream("/ecs/app", "web/web/1")
        store.ensure_stream("/ecs/app", "web/web/1")
        assert store.last_timestamp("/ecs/app", "web/web/1") is None
        assert store.last_timestamp("/ecs/app", "nope") is None

        assert store.append("/ecs/app", "web/web/1", [(1000, "a"), (1005, "b"), (1005, "c")]) == 3
        assert store.append("/ecs/app", "web/web/1", []) == 0
        assert store.last_timestamp("/ecs/app", "web/web/1") == 1005
        assert store.event_count() == 3
        for name in (path.name, path.name + "-wal", path.name + "-shm"):  # the log is nobody else's
            assert stat.S_IMODE(path.with_name(name).stat().st_mode) == 0o600, name
        events = store.read_events("/ecs/app", "web/web/1")
        assert [(e.ts, e.message, e.ingested_ms) for e in events] == [
            (1000, "a", 1_700_000_000_500),
            (1005, "b", 1_700_000_000_500),
            (1005, "c", 1_700_000_000_500),
        ]
        with pytest.raises(UnicodeEncodeError):  # one transaction: nothing of a broken batch lands
            store.append("/ecs/app", "web/web/1", [(2000, "fine"), (2001, "\ud800")])
        assert store.event_count() == 3
    finally:
        store.close()
    reopened = LogStore(path)
    try:
        assert reopened.last_timestamp("/ecs/app", "web/web/1") == 1005
        assert reopened.event_count() == 3
    finally:
        reopened.close()


def test_log_store_appends_from_threads(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db")
    try:
        store.ensure_group("g")
        for i in range(4):
            store.ensure_stream("g", f"s{i}")

        def writer(i: int) -> None:
            for batch in range(50):
                store.append("g", f"s{i}", [(batch * 10 + k, f"{i}:{batch}:{k}") for k in range(10)])

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.event_count() == 4 * 50 * 10
        for i in range(4):
            events = store.read_events("g", f"s{i}")
            assert [e.message for e in events] == [f"{i}:{b}:{k}" for b in range(50) for k in range(10)]
            assert store.last_timestamp("g", f"s{i}") == 499
    finally:
        store.close()


# -- a million events ----------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def test_a_million_events_stay_flat_and_fast(tmp_path: Path) -> None:
    """1,000,000 events appended in batches of 1,000: memory stays flat, and GetLogEvents pages
    through the head and the tail (and FilterLogEvents through a slice) without scanning it all."""
    store = LogStore(tmp_path / "big.db")
    try:
        store.ensure_group("/big")
        store.ensure_stream("/big", "s")
        base = now_ms() - 3_600_000
        with serving(create_api_app([logs_service(store)], status=lambda: {}), free_port()) as url:
            logs = client(url)  # made before measuring: botocore's service model alone is tens of MB
            args = {"logGroupName": "/big", "logStreamName": "s"}
            logs.get_log_events(**args)
            rss_before = peak_rss_mb()
            started = time.monotonic()
            for batch in range(1000):
                first = batch * 1000
                events = [(base + (first + i) // 10, f"event {first + i}") for i in range(1000)]
                assert store.append("/big", "s", events) == 1000
            append_seconds = time.monotonic() - started
            append_growth = peak_rss_mb() - rss_before
            assert store.event_count() == 1_000_000
            assert store.last_timestamp("/big", "s") == base + 99_999
            timings: list[float] = []

            def timed(call: Any, **kwargs: Any) -> dict[str, Any]:
                began = time.monotonic()
                page = dict(call(**kwargs))
                timings.append(time.monotonic() - began)
                return page

            page = head = timed(logs.get_log_events, startFromHead=True, **args)
            assert messages(head)[:2] == ["event 0", "event 1"] and len(head["events"]) == 10_000
            for n in range(1, 4):
                page = timed(
                    logs.get_log_events, startFromHead=True, nextToken=page["nextForwardToken"], **args
                )
                assert messages(page)[0] == f"event {n * 10_000}"
            page = tail = timed(logs.get_log_events, **args)
            assert messages(tail)[-1] == "event 999999" and len(tail["events"]) == 10_000
            for n in range(1, 4):
                page = timed(logs.get_log_events, nextToken=page["nextBackwardToken"], **args)
                assert messages(page)[-1] == f"event {999_999 - n * 10_000}"
            idle = timed(logs.get_log_events, startFromHead=True, nextToken=tail["nextForwardToken"], **args)
            assert idle["events"] == [] and idle["nextForwardToken"] == tail["nextForwardToken"]
            ranged = timed(logs.get_log_events, startTime=base + 99_990, endTime=base + 99_991, **args)
            assert messages(ranged) == [f"event {999_900 + i}" for i in range(10)]
            found = timed(
                logs.filter_log_events, logGroupName="/big", startTime=base + 99_000, filterPattern="99999"
            )
            assert messages(found) == [f"event {999_990 + i}" for i in range(10)]
            nothing = timed(logs.filter_log_events, logGroupName="/big", filterPattern="absent")
            assert nothing["events"] == [] and "nextToken" in nothing  # one bounded step, not a full scan
        growth = peak_rss_mb() - rss_before
        print(
            f"\n1M events: append {append_seconds:.1f}s (peak RSS +{append_growth:.1f} MB); "
            f"slowest page {max(timings):.2f}s; peak RSS growth overall {growth:.1f} MB"
        )
        assert growth < 50, f"peak RSS grew {growth:.1f} MB"
        assert max(timings) < 5, timings
    finally:
        store.close()
