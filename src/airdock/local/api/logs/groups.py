"""CloudWatch Logs' log group operations: create, describe, delete; retention; tags."""

from __future__ import annotations

import unicodedata

from airdock.local.api.errors import ApiError
from airdock.local.api.logs.backend import (
    Backend,
    group_missing,
    group_name,
    group_shape,
    list_token,
    parse_list_token,
)
from airdock.local.api.logs.validation import GROUP_NAME_PATTERN, IDENTIFIER_PATTERN, Checks, invalid
from airdock.local.api.params import JsonObject
from airdock.local.logstore import LogGroupExists, LogGroupMissing

GROUP_CLASSES = ("STANDARD", "INFREQUENT_ACCESS", "DELIVERY", "ESSENTIALS")
RETENTION_DAYS: tuple[int, ...] = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731)
RETENTION_DAYS += (1096, 1827, 2192, 2557, 2922, 3288, 3653)
MAX_TAGS = 50
_TAG_KEY_PATTERN = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]+)$"
_TAG_VALUE_PATTERN = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"
_TAG_SYMBOLS = frozenset("_.:/=+-@")


def _tag_text(text: str) -> bool:
    # The model's \p{L}\p{Z}\p{N} classes (letters, separators, numbers), which Python's re lacks.
    return all(ch in _TAG_SYMBOLS or unicodedata.category(ch)[0] in "LZN" for ch in text)


def resource_tags(checks: Checks) -> dict[str, str] | None:
    tags = checks.string_map("tags", min_len=1, max_len=MAX_TAGS)
    if tags is None:
        return None
    key_rules: list[str] = []
    value_rules: list[str] = []
    for key, value in tags.items():
        if len(key) > 128:
            key_rules.append("Member must have length less than or equal to 128")
        if not key:
            key_rules.append("Member must have length greater than or equal to 1")
        if not key or not _tag_text(key):
            key_rules.append(f"Member must satisfy regular expression pattern: {_TAG_KEY_PATTERN}")
        if len(value) > 256:
            value_rules.append("Member must have length less than or equal to 256")
        if not _tag_text(value):
            value_rules.append(f"Member must satisfy regular expression pattern: {_TAG_VALUE_PATTERN}")
    for what, rules in (("Map keys", key_rules), ("Map value", value_rules)):
        if rules:
            unique = list(dict.fromkeys(rules))
            checks.fail(checks.where("tags"), tags, f"{what} must satisfy constraint: [{', '.join(unique)}]")
    return tags


def create_log_group(backend: Backend, checks: Checks) -> JsonObject:
    name = group_name(checks)
    kms_key_id = checks.string("kmsKeyId", max_len=256)
    tags = resource_tags(checks)
    group_class = checks.string("logGroupClass", enum=GROUP_CLASSES) or "STANDARD"
    protected = checks.boolean("deletionProtectionEnabled")
    checks.done()
    if protected:
        raise invalid("deletionProtectionEnabled is not supported by the airdock local stack")
    try:
        backend.store.create_group(name, tags=tags, group_class=group_class, kms_key_id=kms_key_id)
    except LogGroupExists:
        raise ApiError("ResourceAlreadyExistsException", "The specified log group already exists") from None
    return {}


def delete_log_group(backend: Backend, checks: Checks) -> JsonObject:
    name = group_name(checks)
    checks.done()
    try:
        backend.store.delete_group(name)
    except LogGroupMissing:
        raise group_missing() from None
    return {}


def _check_account(checks: Checks, path: str, value: str) -> None:
    checks.text(path, value, 12, 12, r"^\d{12}$")


def _check_identifier(checks: Checks, path: str, value: str) -> None:
    checks.text(path, value, 1, 2048, IDENTIFIER_PATTERN)


def describe_log_groups(backend: Backend, checks: Checks) -> JsonObject:
    accounts = checks.strings("accountIdentifiers", max_len=20, item=_check_account)
    checks.boolean("includeLinkedAccounts")  # this stack has no linked accounts: nothing to include
    prefix = checks.string("logGroupNamePrefix", min_len=1, max_len=512, pattern=GROUP_NAME_PATTERN)
    contains = checks.string("logGroupNamePattern", max_len=512, pattern=r"[\.\-_/#A-Za-z0-9]*")
    token = checks.string("nextToken", min_len=1)
    limit = checks.integer("limit", low=1, high=50) or 50
    group_class = checks.string("logGroupClass", enum=GROUP_CLASSES)
    identifiers = checks.strings("logGroupIdentifiers", min_len=1, max_len=50, item=_check_identifier)
    checks.done()
    if prefix is not None and contains is not None:
        raise invalid(
            "logGroupNamePattern and logGroupNamePrefix are mutually exclusive. "
            "Only one of these parameters can be passed."
        )
    after = str(parse_list_token(token, "groups", (str,))[0]) if token is not None else None
    if accounts and backend.account_id not in accounts:
        return {"logGroups": []}
    names = None
    if identifiers is not None:
        names = [(backend.group_from_arn(i) or "") if i.startswith("arn:") else i for i in identifiers]
    groups = backend.store.list_groups(
        prefix=prefix or "",
        contains=contains or "",
        group_class=group_class,
        names=names,
        after=after,
        limit=limit + 1,
    )
    body: JsonObject = {
        "logGroups": [group_shape(backend, g, brief=contains is not None) for g in groups[:limit]]
    }
    if len(groups) > limit:
        body["nextToken"] = list_token("groups", groups[limit - 1].name)
    return body


def put_retention_policy(backend: Backend, checks: Checks) -> JsonObject:
    name = group_name(checks)
    days = checks.integer("retentionInDays", low=-(1 << 31), high=(1 << 31) - 1, required=True)
    if days is not None and days not in RETENTION_DAYS:
        allowed = ", ".join(str(d) for d in RETENTION_DAYS)
        checks.fail("retentionInDays", days, f"Member must satisfy enum value set: [{allowed}]")
    checks.done()
    try:
        backend.store.set_retention(name, days)
    except LogGroupMissing:
        raise group_missing() from None
    return {}


def delete_retention_policy(backend: Backend, checks: Checks) -> JsonObject:
    name = group_name(checks)
    checks.done()
    try:
        backend.store.set_retention(name, None)
    except LogGroupMissing:
        raise group_missing() from None
    return {}


def list_tags_for_resource(backend: Backend, checks: Checks) -> JsonObject:
    arn = checks.required_string("resourceArn", min_len=1, max_len=1011, pattern=r"[\w+=/:,.@\-\*]*")
    checks.done()
    name = backend.group_from_arn(arn)
    group = None if name is None else backend.store.get_group(name)
    if group is None:
        raise group_missing()
    return {"tags": group.tags}


def list_tags_log_group(backend: Backend, checks: Checks) -> JsonObject:
    name = group_name(checks)
    checks.done()
    group = backend.store.get_group(name)
    if group is None:
        raise group_missing()
    return {"tags": group.tags}
