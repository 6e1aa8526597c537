"""ECS resource tags: TagResource, UntagResource, ListTagsForResource.

Clusters, task definitions and tasks are taggable, by ARN, as on ECS. Tags are ``{"key", "value"}``
pairs; at most 50 per resource; tagging an existing key replaces its value. An ARN of another
account or region, or one naming nothing, is ``ResourceNotFoundException`` and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from airdock.local.api.ecs.backend import EcsBackend, invalid_parameter
from airdock.local.api.ecs.clusters import tags_of
from airdock.local.api.errors import ApiError
from airdock.local.api.params import JsonObject, Params
from airdock.local.ecs_store import JsonDoc

MAX_TAGS = 50
_RESOURCE = re.compile(r"arn:aws:ecs:([^:]+):(\d{12}):(cluster|task-definition|task)/(.+)")


def _not_found() -> ApiError:
    return ApiError("ResourceNotFoundException", "The specified resource wasn't found.")


def _with_tags(
    backend: EcsBackend, arn: str, change: Callable[[list[JsonDoc]], list[JsonDoc]] | None
) -> list[JsonDoc]:
    """The tags of the resource ``arn``; with ``change``, replace them by ``change(tags)`` first."""
    match = _RESOURCE.fullmatch(arn)
    if match is None:
        raise invalid_parameter("Invalid resource ARN.")
    region, account, kind, rest = match.groups()
    if region != backend.settings.region or account != backend.settings.account_id:
        raise _not_found()
    store = backend.store
    with backend.lock:  # read-change-write of one resource's tags, serialised with the other writers
        if kind == "cluster":
            cluster = store.cluster(rest)
            if cluster is None or cluster.get("status") != "ACTIVE":
                raise _not_found()
            tags = list(cluster.get("tags") or [])
            if change is not None:
                cluster["tags"] = tags = change(tags)
                store.put_cluster(rest, cluster)
            return tags
        if kind == "task-definition":
            found = store.task_definition_by_arn(arn)
            if found is None:
                raise _not_found()
            tags = list(found[1])
            if change is not None:
                tags = change(tags)
                with store.transaction() as db:
                    store.set_task_definition_tags(db, arn, tags)
            return tags
        task = store.task(arn)
        if task is None:
            raise _not_found()
        tags = list(task[0].get("tags") or [])
        if change is not None:
            new_tags = tags = change(tags)
            store.update_task(arn, lambda doc, runtime: doc.__setitem__("tags", new_tags))
        return tags


def tag_resource(backend: EcsBackend, params: Params) -> JsonObject:
    arn = params.required_string("resourceArn")
    added = tags_of(params)
    if not added:
        raise invalid_parameter("Tags cannot be empty.")

    def merge(tags: list[JsonDoc]) -> list[JsonDoc]:
        merged = {t["key"]: t["value"] for t in tags}
        merged.update({t["key"]: t["value"] for t in added})
        if len(merged) > MAX_TAGS:
            raise invalid_parameter(f"A resource can have at most {MAX_TAGS} tags.")
        return [{"key": k, "value": v} for k, v in merged.items()]

    _with_tags(backend, arn, merge)
    return {}


def untag_resource(backend: EcsBackend, params: Params) -> JsonObject:
    arn = params.required_string("resourceArn")
    keys = set(params.strings("tagKeys", min_len=1, max_len=MAX_TAGS) or [])
    if not keys:
        raise invalid_parameter("TagKeys cannot be empty.")
    _with_tags(backend, arn, lambda tags: [t for t in tags if t["key"] not in keys])
    return {}


def list_tags_for_resource(backend: EcsBackend, params: Params) -> JsonObject:
    return {"tags": _with_tags(backend, params.required_string("resourceArn"), None)}
