"""ECR's repository operations: create, describe, delete; resource tags; lifecycle policies."""

from __future__ import annotations

import json

from airdock.local.api.ecr.backend import (
    ENCRYPTION_TYPES,
    MAX_RESOURCE_TAGS,
    REPOSITORY_NAME,
    REPOSITORY_NAME_PATTERN,
    TAG_MUTABILITY,
    Backend,
    repository_not_found,
    repository_shape,
)
from airdock.local.api.errors import ApiError, invalid_parameter
from airdock.local.api.pagination import paginate
from airdock.local.api.params import JsonObject, Params
from airdock.local.store import RepositoryExists


def repository_name(params: Params, name: str = "repositoryName") -> str:
    """The request's repository name, checked the way ECR checks it."""
    return check_repository_name(params.required_string(name), params.where(name))


def check_repository_name(value: str, path: str = "repositoryName") -> str:
    if len(value) < 2:
        raise invalid_parameter(path, "must have length greater than or equal to 2")
    if len(value) > 256:
        raise invalid_parameter(path, "must have length less than or equal to 256")
    if not REPOSITORY_NAME.fullmatch(value):
        raise invalid_parameter(path, f"must satisfy regular expression '{REPOSITORY_NAME_PATTERN}'")
    return value


def resource_tags(params: Params) -> tuple[tuple[str, str], ...]:
    members = params.structs("tags") or []
    tags = []
    for member in members:
        key = member.required_string("Key")
        value = member.required_string("Value")
        if not 1 <= len(key) <= 128:
            raise ApiError("InvalidTagParameterException", "Tag keys must be from 1 to 128 characters long")
        if len(value) > 256:
            raise ApiError("InvalidTagParameterException", "Tag values must be at most 256 characters long")
        tags.append((key, value))
    if len({key for key, _ in tags}) != len(tags):
        raise ApiError("InvalidTagParameterException", "Tag keys must be unique")
    if len(tags) > MAX_RESOURCE_TAGS:
        raise ApiError(
            "TooManyTagsException",
            "The list of tags on the repository is over the limit. The maximum number of tags "
            f"that can be applied to a repository is {MAX_RESOURCE_TAGS}.",
        )
    return tuple(tags)


def create_repository(backend: Backend, params: Params) -> JsonObject:
    name = repository_name(params)
    mutability = params.enum("imageTagMutability", TAG_MUTABILITY, default="MUTABLE")
    scanning = params.struct("imageScanningConfiguration")
    scan_on_push = scanning.boolean("scanOnPush") if scanning else False
    encryption = params.struct("encryptionConfiguration")
    encryption_type = "AES256"
    if encryption is not None:
        encryption_type = encryption.required_string("encryptionType")
        if encryption_type not in ENCRYPTION_TYPES:
            raise invalid_parameter(
                encryption.where("encryptionType"),
                f"Member must satisfy enum value set: [{', '.join(ENCRYPTION_TYPES)}]",
            )
        encryption.string("kmsKey", min_len=1, max_len=2048)
    tags = resource_tags(params)
    try:
        repo = backend.store.create_repository(
            name,
            tag_mutability=mutability,
            scan_on_push=scan_on_push,
            encryption_type=encryption_type,
            resource_tags=tags,
        )
    except RepositoryExists:
        raise ApiError(
            "RepositoryAlreadyExistsException",
            f"The repository with name '{name}' already exists "
            f"in the registry with id '{backend.registry_id}'",
        ) from None
    return {"repository": repository_shape(backend, repo)}


def describe_repositories(backend: Backend, params: Params) -> JsonObject:
    names = params.strings("repositoryNames", min_len=1, max_len=100)
    if names is not None:
        if params.has("maxResults") or params.has("nextToken"):
            raise ApiError(
                "InvalidParameterException",
                "maxResults and nextToken cannot be used when repositoryNames are specified",
            )
        for name in names:
            check_repository_name(name, "repositoryNames.member")
        return {"repositories": [repository_shape(backend, backend.repository(name)) for name in names]}
    shapes = [repository_shape(backend, repo) for repo in backend.store.list_repositories()]
    page, token = paginate(shapes, lambda r: [r["repositoryName"]], params)
    return with_token({"repositories": page}, token)


def delete_repository(backend: Backend, params: Params) -> JsonObject:
    name = repository_name(params)
    force = params.boolean("force")
    repo = backend.repository(name)
    if not force and backend.storage.images(name):
        raise ApiError(
            "RepositoryNotEmptyException",
            f"The repository with name '{name}' in registry with id '{backend.registry_id}' "
            "cannot be deleted because it still contains images",
        )
    backend.storage.delete_repository(name)
    backend.store.delete_repository(name)
    return {"repository": repository_shape(backend, repo)}


def _validated_policy(text: str) -> str:
    def failure(detail: str) -> ApiError:
        return invalid_parameter("LifecyclePolicyText", f"Lifecycle policy validation failure: {detail}")

    try:
        doc = json.loads(text)
    except ValueError:
        raise failure("the policy is not valid JSON") from None
    if not isinstance(doc, dict):
        raise failure("the policy must be a JSON object")
    rules = doc.get("rules")
    if not isinstance(rules, list) or not rules:
        raise failure('object has missing required properties (["rules"]) or an empty rules list')
    if not all(isinstance(rule, dict) for rule in rules):
        raise failure("every rule must be a JSON object")
    return text


def put_lifecycle_policy(backend: Backend, params: Params) -> JsonObject:
    name = repository_name(params)
    text = _validated_policy(params.required_string("lifecyclePolicyText", min_len=100, max_len=30720))
    backend.repository(name)
    if backend.store.put_lifecycle_policy(name, text) is None:
        raise repository_not_found(name, backend.registry_id)
    return {"registryId": backend.registry_id, "repositoryName": name, "lifecyclePolicyText": text}


def get_lifecycle_policy(backend: Backend, params: Params) -> JsonObject:
    name = repository_name(params)
    repo = backend.repository(name)
    if repo.lifecycle_policy is None:
        raise ApiError(
            "LifecyclePolicyNotFoundException",
            f"Lifecycle policy does not exist for the repository with name '{name}' "
            f"in the registry with id '{backend.registry_id}'",
        )
    return {
        "registryId": backend.registry_id,
        "repositoryName": name,
        "lifecyclePolicyText": repo.lifecycle_policy,
    }


def with_token(body: JsonObject, token: str | None) -> JsonObject:
    if token is not None:
        body["nextToken"] = token
    return body
