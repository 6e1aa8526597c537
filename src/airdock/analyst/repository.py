"""Make sure an ECR repository exists (created with scan-on-push and immutable tags unless told
otherwise; an existing one is left as it is), and clean up one this push created when nothing
could be pushed to it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airdock.analyst.reporter import Reporter
from airdock.engine.registry_errors import denied_action, first_line
from airdock.errors import AccessDeniedError, AirdockError, ConfigError, PublishError

__all__ = [
    "REPOSITORY_NAME_PATTERN",
    "RepositoryOptions",
    "RepositoryState",
    "check_repository_name",
    "delete_if_empty",
    "ensure_repository",
]

# ECR's repository-name rule as ECR states it in InvalidParameterException (the local stack's
# ECR API holds the same text; product code does not import it).
REPOSITORY_NAME_PATTERN = r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
_REPOSITORY_NAME = re.compile(REPOSITORY_NAME_PATTERN)
_REPOSITORY_NAME_RULE = (
    "ECR repository names are 2 to 256 characters: lowercase letters and digits in '/'-separated "
    "parts, joined inside a part by single '.', '_' or '-'"
)
_NOT_FOUND_CODES = ("RepositoryNotFoundException",)
_DENIED_CODES = ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation")


@dataclass(frozen=True)
class RepositoryOptions:
    """Settings for a repository ``publish`` creates (an existing one is never changed)."""

    scan_on_push: bool = True
    immutable_tags: bool = True

    @property
    def tag_mutability(self) -> str:
        return "IMMUTABLE" if self.immutable_tags else "MUTABLE"


def check_repository_name(name: str) -> str:
    """``name`` if ECR accepts it as a repository name, else a one-line ConfigError."""
    if 2 <= len(name) <= 256 and _REPOSITORY_NAME.fullmatch(name):
        return name
    hint = ""
    lowered = name.lower()
    if lowered != name and 2 <= len(lowered) <= 256 and _REPOSITORY_NAME.fullmatch(lowered):
        hint = f"; did you mean {lowered!r}?"
    raise ConfigError(f"invalid repository name {name!r}: {_REPOSITORY_NAME_RULE}{hint}")


@dataclass(frozen=True)
class RepositoryState:
    """The repository pushed to: whether this run created it, and its settings when known."""

    name: str
    created: bool
    tag_mutability: str | None = None
    scan_on_push: bool | None = None


def ensure_repository(
    ecr: Any, name: str, options: RepositoryOptions, registry_id: str | None, reporter: Reporter
) -> RepositoryState:
    """Create ``name`` when it does not exist; leave an existing repository as it is."""
    ids: dict[str, str] = {"registryId": registry_id} if registry_id else {}
    try:
        reply = ecr.describe_repositories(repositoryNames=[name], **ids)
        repo = reply["repositories"][0]
        state = RepositoryState(
            name,
            created=False,
            tag_mutability=repo.get("imageTagMutability"),
            scan_on_push=(repo.get("imageScanningConfiguration") or {}).get("scanOnPush"),
        )
        reporter.note(
            f"repository {name} exists (tags {state.tag_mutability or 'MUTABLE'}, scan on push "
            f"{'on' if state.scan_on_push else 'off'}); its settings are left as they are"
        )
        return state
    except ClientError as exc:
        code = _client_error_code(exc)
        if code in _DENIED_CODES:
            describe_denied = True
        elif code in _NOT_FOUND_CODES:
            describe_denied = False
        else:
            raise _repository_error(name, "DescribeRepositories", exc) from None
    except BotoCoreError as exc:
        raise PublishError(f"DescribeRepositories failed for {name}: {exc}") from None

    try:
        ecr.create_repository(
            repositoryName=name,
            imageTagMutability=options.tag_mutability,
            imageScanningConfiguration={"scanOnPush": options.scan_on_push},
            **ids,
        )
    except ClientError as exc:
        code = _client_error_code(exc)
        if code == "RepositoryAlreadyExistsException":
            reporter.note(f"repository {name} exists; its settings are left as they are")
            return RepositoryState(name, created=False)
        if code in _DENIED_CODES and describe_denied:
            # A pusher's policy: no DescribeRepositories, no CreateRepository. Push to what is there.
            reporter.note(
                f"may not describe or create repositories (no ecr:DescribeRepositories, "
                f"ecr:CreateRepository): pushing to {name} assuming it exists"
            )
            return RepositoryState(name, created=False)
        if code == "InvalidParameterException":
            raise ConfigError(
                f"invalid repository name {name!r}: ECR refused it ({first_line(_client_error_message(exc))})"
            ) from None
        raise _repository_error(name, "CreateRepository", exc) from None
    except BotoCoreError as exc:
        raise PublishError(f"CreateRepository failed for {name}: {exc}") from None
    reporter.note(
        f"created repository {name} (tags {options.tag_mutability}, scan on push "
        f"{'on' if options.scan_on_push else 'off'})"
    )
    return RepositoryState(name, True, options.tag_mutability, options.scan_on_push)


def _repository_error(name: str, operation: str, exc: ClientError) -> AirdockError:
    code, message = _client_error_code(exc), _client_error_message(exc)
    if code in _DENIED_CODES:
        action = denied_action(message) or f"ecr:{operation}"
        return AccessDeniedError(
            f"access denied: your AWS identity lacks {action} on repository '{name}'; add it to its IAM "
            "policy (see `airdock iam-policy maintainer`), or create the repository beforehand",
            action=action,
        )
    return PublishError(f"{operation} failed for repository '{name}': {code}: {first_line(message)}")


def delete_if_empty(ecr: Any, name: str, registry_id: str | None, reporter: Reporter) -> None:
    ids: dict[str, str] = {"registryId": registry_id} if registry_id else {}
    try:
        ecr.delete_repository(repositoryName=name, force=False, **ids)
    except (ClientError, BotoCoreError) as exc:
        reporter.note(f"could not delete repository {name}, created by this push: {first_line(str(exc))}")
        return
    reporter.note(f"deleted repository {name} again: this push created it and could push nothing to it")


def _client_error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _client_error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))
