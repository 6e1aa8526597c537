"""The ECR service of the local stack: its operations, the registry and IAM-denial checks, serving.

Operations are small handlers over ``(Backend, Params)`` (:mod:`.repositories`, :mod:`.images`, and
GetAuthorizationToken here): the repository records live in the ``Store`` (SQLite), the images in
the registry's storage. Every input is validated before any state changes; requests are
serialised (``Backend.lock``), so check-then-act is atomic.

Other registries: this stack is one registry (``settings.account_id``). A request naming any
other ``registryId`` is refused with ``AccessDeniedException``, as ECR refuses a caller with no
cross-account permission, and changes nothing.
"""

from __future__ import annotations

import base64
import logging

from starlette.applications import Starlette

from airdock.local.api.ecr.backend import REGISTRY_ID, TARGET_PREFIX, Backend, Handler
from airdock.local.api.ecr.images import batch_delete_image, batch_get_image, describe_images, list_images
from airdock.local.api.ecr.repositories import (
    create_repository,
    delete_repository,
    describe_repositories,
    get_lifecycle_policy,
    put_lifecycle_policy,
)
from airdock.local.api.errors import ApiError, invalid_parameter
from airdock.local.api.params import JsonObject, Params
from airdock.local.api.protocol import JsonService
from airdock.local.api.protocol import create_api_app as create_protocol_app
from airdock.local.api.rehearsal import Rehearsal
from airdock.local.iam_simulation import denial_message
from airdock.local.registry import RegistryStorage
from airdock.local.settings import StackSettings
from airdock.local.store import Store

__all__ = ["OPERATIONS", "create_api_app", "ecr_service"]

log = logging.getLogger("airdock.local.api.ecr")


def get_authorization_token(backend: Backend, params: Params) -> JsonObject:
    params.strings("registryIds", min_len=1, max_len=10)  # checked against this registry by dispatch
    backend.store.bump("GetAuthorizationToken")
    rehearsed = backend.rehearsal.token_ttl_seconds if backend.rehearsal is not None else None
    issued = backend.store.issue_token(rehearsed or backend.settings.token_ttl_seconds)
    token = base64.b64encode(f"AWS:{issued.password}".encode()).decode()
    return {
        "authorizationData": [
            {
                "authorizationToken": token,
                "expiresAt": issued.expires_at,
                "proxyEndpoint": backend.settings.gateway_url,
            }
        ]
    }


OPERATIONS: dict[str, Handler] = {
    "GetAuthorizationToken": get_authorization_token,
    "CreateRepository": create_repository,
    "DescribeRepositories": describe_repositories,
    "DeleteRepository": delete_repository,
    "ListImages": list_images,
    "DescribeImages": describe_images,
    "BatchGetImage": batch_get_image,
    "BatchDeleteImage": batch_delete_image,
    "PutLifecyclePolicy": put_lifecycle_policy,
    "GetLifecyclePolicy": get_lifecycle_policy,
}


def check_registry(backend: Backend, op: str, params: Params) -> None:
    """Only this stack's registry is reachable; refuse any other ``registryId`` up front."""
    ids = params.strings("registryIds") if op == "GetAuthorizationToken" else None
    single = params.string("registryId")
    for registry_id in [*(ids or []), *([single] if single is not None else [])]:
        if not REGISTRY_ID.fullmatch(registry_id):
            field_name = "registryIds.member" if ids and registry_id in ids else "registryId"
            raise invalid_parameter(field_name, "must satisfy regular expression '[0-9]{12}'")
        if registry_id != backend.registry_id:
            raise ApiError(
                "AccessDeniedException",
                f"Not authorized to perform: ecr:{op} on registry '{registry_id}': this local stack "
                f"serves only registry '{backend.registry_id}'",
            )


def serve(backend: Backend, op: str, data: JsonObject) -> JsonObject:
    """Validate the registry and run one operation, serialised with every other one."""
    params = Params(data)
    with backend.lock:
        check_registry(backend, op, params)
        check_denied(backend, op, params)
        return OPERATIONS[op](backend, params)


def check_denied(backend: Backend, op: str, params: Params) -> None:
    """Refuse actions the stack was told to deny (``--deny-action``), as IAM would."""
    action = f"ecr:{op}"
    settings = backend.settings
    if action in settings.denied_actions:
        repository = None if op == "GetAuthorizationToken" else params.string("repositoryName")
        raise ApiError(
            "AccessDeniedException", denial_message(settings.account_id, settings.region, action, repository)
        )


def ecr_service(
    settings: StackSettings, store: Store, storage: RegistryStorage, rehearsal: Rehearsal | None = None
) -> JsonService:
    """The ECR control plane as a JSON 1.1 service of the local stack's API app."""
    backend = Backend(settings=settings, store=store, storage=storage, rehearsal=rehearsal)
    return JsonService(
        name="ecr",
        target_prefix=TARGET_PREFIX,
        operations=frozenset(OPERATIONS),
        serve=lambda op, data: serve(backend, op, data),
    )


def create_api_app(settings: StackSettings, store: Store, storage: RegistryStorage) -> Starlette:
    """The stack's control plane (serve it on ``settings.api_port``): ECR, and the status route."""

    def status() -> dict[str, object]:
        return {
            "account_id": settings.account_id,
            "region": settings.region,
            "token_ttl_seconds": settings.token_ttl_seconds,
            "counters": store.counters(),
        }

    return create_protocol_app([ecr_service(settings, store, storage)], status)
