"""AWS's JSON 1.1 protocol for the local stack's control plane: one app, a service per target prefix.

``POST /`` with ``X-Amz-Target: <prefix>.<Operation>`` and a JSON body answers
``application/x-amz-json-1.1`` with an ``x-amzn-RequestId``; errors have AWS's shape (``__type``,
``message``) so botocore raises ``ClientError`` with the service's codes. Any SigV4-signed request
is accepted: there is no IAM here, only the signature's shape is checked, as AWS does before it
looks at credentials. Each :class:`JsonService` (ECR in :mod:`airdock.local.api.ecr`; ECS and
CloudWatch Logs can sit beside it) owns a target prefix and its operations. ``GET
/_airdock/status`` (not AWS) reports the stack's counters.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airdock.local.api.errors import ApiError, serialization_error
from airdock.local.api.params import JsonObject, type_error
from airdock.local.api.rehearsal import REHEARSAL_PATH, Rehearsal

__all__ = ["CONTENT_TYPE", "MAX_BODY_BYTES", "STATUS_PATH", "JsonService", "create_api_app"]

CONTENT_TYPE = "application/x-amz-json-1.1"
STATUS_PATH = "/_airdock/status"
MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class JsonService:
    """One AWS JSON 1.1 service: its ``X-Amz-Target`` prefix (with the dot), its operations' names,
    and ``serve(operation, body) -> result`` (run in a worker thread; raises ApiError)."""

    name: str  # names its request log: airdock.local.api.<name>
    target_prefix: str
    operations: frozenset[str]
    serve: Callable[[str, JsonObject], JsonObject]

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"airdock.local.api.{self.name}")


_SIGV4_PARTS = ("Credential", "SignedHeaders", "Signature")


def check_signature_shape(request: Request) -> None:
    """Refuse what AWS refuses before looking at credentials: no SigV4 header, or a malformed one."""
    header = request.headers.get("authorization")
    query = request.query_params
    if header is None and all(query.get(f"X-Amz-{k}") for k in ("Algorithm", "Credential", "Signature")):
        return  # a presigned (query-string) SigV4 request
    if header is None:
        raise ApiError("MissingAuthenticationTokenException", "Missing Authentication Token", status=403)
    scheme, _, rest = header.strip().partition(" ")
    problems = []
    if scheme != "AWS4-HMAC-SHA256":
        problems.append("Authorization header requires 'AWS4-HMAC-SHA256' as its algorithm.")
    fields = {}
    for part in rest.split(","):
        key, sep, value = part.strip().partition("=")
        if sep and value:
            fields[key] = value
    problems.extend(
        f"Authorization header requires '{part}' parameter." for part in _SIGV4_PARTS if part not in fields
    )
    if "x-amz-date" not in request.headers and "date" not in request.headers:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if problems:
        raise ApiError("IncompleteSignatureException", " ".join(problems))


def operation_name(request: Request, services: Sequence[JsonService]) -> tuple[JsonService, str]:
    """The service and operation ``X-Amz-Target`` names; UnknownOperationException otherwise."""
    target = request.headers.get("x-amz-target", "")
    prefix, _, op = target.partition(".")
    for service in services:
        if f"{prefix}." == service.target_prefix and op in service.operations:
            return service, op
    raise ApiError(
        "UnknownOperationException", f"Unknown operation {target!r}" if target else "Missing X-Amz-Target"
    )


def parse_body(body: bytes) -> JsonObject:
    if not body.strip():
        return {}
    try:
        doc = json.loads(body)
    except ValueError:
        raise serialization_error("The request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise type_error(doc, "a Structure")
    return doc


def _response(status: int, body: JsonObject, request_id: str, error: str | None = None) -> Response:
    headers = {"x-amzn-RequestId": request_id}
    if error is not None:
        headers["x-amzn-ErrorType"] = error
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, headers=headers, media_type=CONTENT_TYPE
    )


def create_api_app(
    services: Sequence[JsonService],
    status: Callable[[], Mapping[str, object]],
    rehearsal: Rehearsal | None = None,
) -> Starlette:
    """The control plane as a Starlette app: ``services`` on ``POST /``, ``status()`` on the status
    path, and (given ``rehearsal``) the faults it plays on request at the rehearsal path."""
    by_prefix = {service.target_prefix: service for service in services}

    def claimed(request: Request) -> tuple[JsonService | None, str]:
        # Log only known operation names: the header is the caller's text.
        prefix, _, op = request.headers.get("x-amz-target", "").partition(".")
        service = by_prefix.get(f"{prefix}.")
        return service, (op if service is not None and op in service.operations else "-")

    async def dispatch(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        service, op = claimed(request)
        log = service.log if service is not None else logging.getLogger("airdock.local.api")
        name = service.name if service is not None else "api"
        try:
            check_signature_shape(request)
            service, op = operation_name(request, services)
            log, name = service.log, service.name
            if rehearsal is not None and rehearsal.throttled(service.name, op):
                raise ApiError("ThrottlingException", "Rate exceeded (rehearsed)")
            body = await request.body()
            if len(body) > MAX_BODY_BYTES:
                raise serialization_error(f"The request body is larger than {MAX_BODY_BYTES} bytes")
            result = await run_in_threadpool(service.serve, op, parse_body(body))
        except ApiError as err:
            log.info("%s %s -> %d %s request_id=%s", name, op, err.status, err.code, request_id)
            return _response(err.status, {"__type": err.code, "message": err.message}, request_id, err.code)
        except Exception:
            log.exception("%s %s -> 500 ServerException request_id=%s", name, op, request_id)
            message = f"An internal error occurred; see the airdock API log for request {request_id}"
            return _response(
                500, {"__type": "ServerException", "message": message}, request_id, "ServerException"
            )
        log.info("%s %s -> 200 request_id=%s", name, op, request_id)
        return _response(200, result, request_id)

    async def status_route(request: Request) -> Response:
        return JSONResponse(dict(await run_in_threadpool(status)))

    async def rehearse(request: Request) -> Response:
        assert rehearsal is not None
        try:
            armed = rehearsal.apply(parse_body(await request.body()))
        except ApiError as err:
            return _response(
                err.status, {"__type": err.code, "message": err.message}, str(uuid.uuid4()), err.code
            )
        logging.getLogger("airdock.local.api").info("rehearsal armed: %s", armed)
        return JSONResponse(armed)

    async def unknown(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        logging.getLogger("airdock.local.api").info(
            "%s %s -> 404 UnknownOperationException", request.method, request.url.path
        )
        body = {
            "__type": "UnknownOperationException",
            "message": f"No operation at {request.method} {request.url.path}",
        }
        return _response(404, body, request_id, "UnknownOperationException")

    return Starlette(
        routes=[
            Route("/", dispatch, methods=["POST"]),
            Route(STATUS_PATH, status_route, methods=["GET"]),
            *([Route(REHEARSAL_PATH, rehearse, methods=["POST"])] if rehearsal is not None else []),
            Route("/{path:path}", unknown, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
        ]
    )
