"""The ECR API subset, driven by real boto3 (and raw HTTP for protocol errors) over a live server.

Images come from pushes to the real Distribution registry over the stack's registry root, so
ListImages / DescribeImages / BatchGetImage / BatchDeleteImage read what a registry really wrote.
"""

from __future__ import annotations

import base64
import json
import logging
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

from airdock.local.api.ecr import REPOSITORY_NAME_PATTERN, TARGET_PREFIX, create_api_app
from airdock.local.registry import ImageRecord, RegistryStorage
from airdock.local.settings import StackSettings
from airdock.local.store import Store, TokenState
from tests.registry_push import (
    PushedImage,
    free_port,
    needs_registry,
    push_image,
    push_index,
    registry_available,
    running_registry,
)
from tests.serving import serving

pytestmark = pytest.mark.timeout(120)


ACCOUNT = "123456789012"
TTL = 3600.0
FAKE_AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/ecr/aws4_request, "
    "SignedHeaders=host;x-amz-date;x-amz-target, Signature=0123456789abcdef"
)
LIFECYCLE_POLICY = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "description": "expire untagged images older than 14 days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 14,
                },
                "action": {"type": "expire"},
            }
        ]
    }
)


@dataclass
class Stack:
    settings: StackSettings
    store: Store
    registry_url: str | None

    def ecr(self) -> Any:
        return boto3.client(
            "ecr",
            endpoint_url=self.settings.api_url,
            region_name=self.settings.region,
            aws_access_key_id="x",
            aws_secret_access_key="y",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    def raw(
        self,
        op: str | None,
        body: Any = None,
        *,
        auth: str | None = FAKE_AUTH,
        content: bytes | None = None,
    ) -> httpx.Response:
        """POST to the API by hand: ``body`` as JSON, or ``content`` as the exact bytes."""
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Date": "20260101T000000Z"}
        if op is not None:
            headers["X-Amz-Target"] = TARGET_PREFIX + op
        if auth is not None:
            headers["Authorization"] = auth
        data = content if content is not None else json.dumps({} if body is None else body).encode()
        return httpx.post(self.settings.api_url + "/", content=data, headers=headers, trust_env=False)

    def push(self, repo: str, tag: str | None, seed: str) -> PushedImage:
        if self.registry_url is None:
            pytest.skip("/usr/bin/docker-registry is not installed (`make test` installs it)")
        return push_image(self.registry_url, repo, tag, layers=[seed.encode() * 50])

    def status(self) -> dict[str, Any]:
        return dict(httpx.get(self.settings.api_url + "/_airdock/status", trust_env=False).json())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("stack")
    ports = set()
    while len(ports) < 3:
        ports.add(free_port())
    gateway_port, api_port, registry_port = sorted(ports)
    settings = StackSettings(
        data_dir=data_dir,
        gateway_port=gateway_port,
        api_port=api_port,
        registry_port=registry_port,
        token_ttl_seconds=TTL,
    )
    store = Store(settings.store_path)
    app = create_api_app(settings, store, RegistryStorage(settings.registry_root))
    try:
        with serving(app, api_port):
            if registry_available():
                with running_registry(settings.registry_root) as registry_url:
                    yield Stack(settings, store, registry_url)
            else:
                yield Stack(settings, store, None)
    finally:
        store.close()


@pytest.fixture
def ecr(stack: Stack) -> Any:
    return stack.ecr()


@pytest.fixture
def repo(ecr: Any) -> str:
    """A fresh repository name, created."""
    name = f"team/app-{uuid.uuid4().hex[:8]}"
    ecr.create_repository(repositoryName=name)
    return name


def unique(prefix: str = "repo") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    err = exc.value.response["Error"]
    return err["Code"], err["Message"]


def not_found_message(name: str) -> str:
    return f"The repository with name '{name}' does not exist in the registry with id '{ACCOUNT}'"


def repo_names(ecr: Any) -> set[str]:
    pages = ecr.get_paginator("describe_repositories").paginate()
    return {r["repositoryName"] for page in pages for r in page["repositories"]}


# -- GetAuthorizationToken -------------------------------------------------------------------------
def test_get_authorization_token(stack: Stack, ecr: Any) -> None:
    before = stack.status()["counters"].get("GetAuthorizationToken", 0)

    first = ecr.get_authorization_token()["authorizationData"]
    second = ecr.get_authorization_token()["authorizationData"]

    passwords = []
    for data in (first, second):
        assert len(data) == 1
        user, _, password = base64.b64decode(data[0]["authorizationToken"]).decode().partition(":")
        assert user == "AWS"
        assert data[0]["proxyEndpoint"] == stack.settings.gateway_url
        assert data[0]["expiresAt"].timestamp() == pytest.approx(time.time() + TTL, abs=30)
        assert stack.store.check_password(password) is TokenState.VALID
        passwords.append(password)
    assert passwords[0] != passwords[1]
    assert stack.status()["counters"]["GetAuthorizationToken"] == before + 2


def test_get_authorization_token_for_own_registry_id(stack: Stack, ecr: Any) -> None:
    data = ecr.get_authorization_token(registryIds=[ACCOUNT])["authorizationData"]
    assert data[0]["proxyEndpoint"] == stack.settings.gateway_url


def test_get_authorization_token_for_other_registry_is_denied_and_not_counted(stack: Stack, ecr: Any) -> None:
    before = stack.status()["counters"].get("GetAuthorizationToken", 0)
    with pytest.raises(ClientError) as exc:
        ecr.get_authorization_token(registryIds=["999999999999"])
    code, message = error_of(exc)
    assert code == "AccessDeniedException"
    assert "999999999999" in message
    assert stack.status()["counters"].get("GetAuthorizationToken", 0) == before


def test_status_endpoint(stack: Stack) -> None:
    status = stack.status()
    assert status["account_id"] == ACCOUNT
    assert status["region"] == stack.settings.region
    assert status["token_ttl_seconds"] == TTL
    assert isinstance(status["counters"], dict)


# -- repositories --------------------------------------------------------------------------------
def test_create_and_describe_repository(stack: Stack, ecr: Any) -> None:
    name = unique("team/svc")
    created = ecr.create_repository(
        repositoryName=name,
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "AES256"},
        tags=[{"Key": "team", "Value": "data"}],
    )["repository"]

    assert created["repositoryName"] == name
    assert created["repositoryArn"] == f"arn:aws:ecr:{stack.settings.region}:{ACCOUNT}:repository/{name}"
    assert created["registryId"] == ACCOUNT
    assert created["repositoryUri"] == f"{stack.settings.registry_host}/{name}"
    assert created["imageTagMutability"] == "IMMUTABLE"
    assert created["imageScanningConfiguration"] == {"scanOnPush": True}
    assert created["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert abs(created["createdAt"].timestamp() - time.time()) < 60

    (described,) = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    assert described == created


def test_create_repository_defaults(ecr: Any) -> None:
    created = ecr.create_repository(repositoryName=unique())["repository"]
    assert created["imageTagMutability"] == "MUTABLE"
    assert created["imageScanningConfiguration"] == {"scanOnPush": False}
    assert created["encryptionConfiguration"] == {"encryptionType": "AES256"}


def test_create_existing_repository(ecr: Any, repo: str) -> None:
    with pytest.raises(ClientError) as exc:
        ecr.create_repository(repositoryName=repo)
    assert error_of(exc) == (
        "RepositoryAlreadyExistsException",
        f"The repository with name '{repo}' already exists in the registry with id '{ACCOUNT}'",
    )


@pytest.mark.parametrize("name", ["UPPER", "bad_", "a//b", "-lead", "with space", "x" * 257])
def test_create_repository_with_invalid_name(ecr: Any, name: str) -> None:
    with pytest.raises(ClientError) as exc:
        ecr.create_repository(repositoryName=name)
    code, message = error_of(exc)
    assert code == "InvalidParameterException"
    if len(name) > 256:
        assert message == (
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
            "'must have length less than or equal to 256'"
        )
    else:
        assert message == (
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
            f"'must satisfy regular expression '{REPOSITORY_NAME_PATTERN}''"
        )
    assert name not in repo_names(ecr)


def test_create_repository_too_short_name_raw(stack: Stack, ecr: Any) -> None:
    resp = stack.raw("CreateRepository", {"repositoryName": "a"})  # botocore would refuse it
    assert resp.status_code == 400
    assert resp.json() == {
        "__type": "InvalidParameterException",
        "message": "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
        "'must have length greater than or equal to 2'",
    }
    assert "a" not in repo_names(ecr)


def test_create_repository_bad_mutability(ecr: Any) -> None:
    name = unique()
    with pytest.raises(ClientError) as exc:
        ecr.create_repository(repositoryName=name, imageTagMutability="SOMETIMES")
    code, message = error_of(exc)
    assert code == "InvalidParameterException"
    assert "imageTagMutability" in message
    assert "MUTABLE, IMMUTABLE" in message
    assert name not in repo_names(ecr)


def test_create_repository_with_too_many_tags_raw(stack: Stack, ecr: Any) -> None:
    name = unique()
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    resp = stack.raw("CreateRepository", {"repositoryName": name, "tags": tags})
    assert resp.status_code == 400
    assert resp.json()["__type"] == "TooManyTagsException"
    assert "maximum number of tags" in resp.json()["message"]
    assert name not in repo_names(ecr)
    # Exactly 50 is fine.
    ecr.create_repository(repositoryName=name, tags=tags[:50])
    assert name in repo_names(ecr)


def test_create_repository_with_bad_tag(ecr: Any) -> None:
    name = unique()
    with pytest.raises(ClientError) as exc:
        ecr.create_repository(repositoryName=name, tags=[{"Key": "k" * 129, "Value": "v"}])
    assert error_of(exc)[0] == "InvalidTagParameterException"
    assert name not in repo_names(ecr)


def test_describe_missing_repository(ecr: Any) -> None:
    name = unique()
    with pytest.raises(ClientError) as exc:
        ecr.describe_repositories(repositoryNames=[name])
    assert error_of(exc) == ("RepositoryNotFoundException", not_found_message(name))


def test_describe_repositories_paginates(ecr: Any) -> None:
    prefix = unique("page")
    names = [f"{prefix}/r{i}" for i in range(5)]
    for name in names:
        ecr.create_repository(repositoryName=name)

    pages = list(ecr.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 2}))
    listed = [r["repositoryName"] for page in pages for r in page["repositories"]]

    assert all(len(page["repositories"]) <= 2 for page in pages)
    assert len(pages) >= 3
    assert len(listed) == len(set(listed))
    assert [n for n in listed if n.startswith(prefix)] == names
    assert listed == sorted(listed)


def test_describe_repositories_max_results_out_of_range(stack: Stack, ecr: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ecr.describe_repositories(maxResults=1001)
    assert error_of(exc) == (
        "InvalidParameterException",
        "Invalid parameter at 'maxResults' failed to satisfy constraint: "
        "'Member must have value less than or equal to 1000'",
    )
    resp = stack.raw("DescribeRepositories", {"maxResults": 0})
    assert resp.status_code == 400
    assert resp.json()["__type"] == "InvalidParameterException"


def test_describe_repositories_bad_next_token(ecr: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ecr.describe_repositories(nextToken="garbage!")
    assert error_of(exc)[0] == "InvalidParameterException"


def test_delete_empty_repository(ecr: Any, repo: str) -> None:
    deleted = ecr.delete_repository(repositoryName=repo)["repository"]
    assert deleted["repositoryName"] == repo
    assert repo not in repo_names(ecr)
    with pytest.raises(ClientError) as exc:
        ecr.delete_repository(repositoryName=repo)
    assert error_of(exc) == ("RepositoryNotFoundException", not_found_message(repo))


@needs_registry
def test_delete_non_empty_repository_needs_force(stack: Stack, ecr: Any, repo: str) -> None:
    image = stack.push(repo, "v1", "non-empty")
    with pytest.raises(ClientError) as exc:
        ecr.delete_repository(repositoryName=repo)
    assert error_of(exc) == (
        "RepositoryNotEmptyException",
        f"The repository with name '{repo}' in registry with id '{ACCOUNT}' "
        "cannot be deleted because it still contains images",
    )
    assert repo in repo_names(ecr)
    assert ecr.list_images(repositoryName=repo)["imageIds"] == [
        {"imageDigest": image.digest, "imageTag": "v1"}
    ]

    ecr.delete_repository(repositoryName=repo, force=True)

    assert repo not in repo_names(ecr)
    assert RegistryStorage(stack.settings.registry_root).images(repo) == []


@needs_registry
def test_force_delete_keeps_nested_repository(stack: Stack, ecr: Any) -> None:
    parent = unique("nest")
    child = f"{parent}/child"
    ecr.create_repository(repositoryName=parent)
    ecr.create_repository(repositoryName=child)
    stack.push(parent, "v1", "parent")
    kept = stack.push(child, "v1", "child")

    ecr.delete_repository(repositoryName=parent, force=True)

    assert ecr.list_images(repositoryName=child)["imageIds"] == [
        {"imageDigest": kept.digest, "imageTag": "v1"}
    ]


# -- images ----------------------------------------------------------------------------------------
@pytest.fixture
def images(stack: Stack, repo: str) -> dict[str, PushedImage]:
    """``repo`` with: "multi" tagged v1 and latest, "single" tagged v2, and "loose" untagged."""
    multi = stack.push(repo, "v1", "multi")
    stack.push(repo, "latest", "multi")
    single = stack.push(repo, "v2", "single")
    loose = stack.push(repo, None, "loose")
    return {"multi": multi, "single": single, "loose": loose}


@needs_registry
def test_list_images_by_tag_status(ecr: Any, repo: str, images: dict[str, PushedImage]) -> None:
    multi, single, loose = images["multi"].digest, images["single"].digest, images["loose"].digest
    tagged = [
        {"imageDigest": multi, "imageTag": "latest"},
        {"imageDigest": multi, "imageTag": "v1"},
        {"imageDigest": single, "imageTag": "v2"},
    ]
    untagged = [{"imageDigest": loose}]

    def listed(status: str | None) -> list[dict[str, str]]:
        kwargs = {"filter": {"tagStatus": status}} if status else {}
        ids = ecr.list_images(repositoryName=repo, **kwargs)["imageIds"]
        return sorted(ids, key=lambda i: (i["imageDigest"], i.get("imageTag", "")))

    def ordered(ids: list[dict[str, str]]) -> list[dict[str, str]]:
        return sorted(ids, key=lambda i: (i["imageDigest"], i.get("imageTag", "")))

    assert listed(None) == ordered(tagged + untagged)
    assert listed("ANY") == ordered(tagged + untagged)
    assert listed("TAGGED") == ordered(tagged)
    assert listed("UNTAGGED") == untagged


@needs_registry
def test_list_images_paginates(stack: Stack, ecr: Any, repo: str) -> None:
    digests = {stack.push(repo, f"t{i}", f"page{i}").digest for i in range(5)}
    pages = list(
        ecr.get_paginator("list_images").paginate(repositoryName=repo, PaginationConfig={"PageSize": 2})
    )
    ids = [i for page in pages for i in page["imageIds"]]
    assert [len(page["imageIds"]) for page in pages] == [2, 2, 1]
    assert {i["imageDigest"] for i in ids} == digests
    assert len({i["imageTag"] for i in ids}) == 5


def test_list_images_of_missing_repository(ecr: Any) -> None:
    name = unique()
    with pytest.raises(ClientError) as exc:
        ecr.list_images(repositoryName=name)
    assert error_of(exc) == ("RepositoryNotFoundException", not_found_message(name))


def test_list_images_bad_tag_status(ecr: Any, repo: str) -> None:
    with pytest.raises(ClientError) as exc:
        ecr.list_images(repositoryName=repo, filter={"tagStatus": "SOME"})
    code, message = error_of(exc)
    assert code == "InvalidParameterException"
    assert "filter.tagStatus" in message


@needs_registry
def test_describe_images(ecr: Any, repo: str, images: dict[str, PushedImage]) -> None:
    details = {d["imageDigest"]: d for d in ecr.describe_images(repositoryName=repo)["imageDetails"]}

    multi = details[images["multi"].digest]
    assert sorted(multi["imageTags"]) == ["latest", "v1"]
    assert multi["registryId"] == ACCOUNT
    assert multi["repositoryName"] == repo
    assert multi["imageSizeInBytes"] == images["multi"].size_bytes
    assert multi["imageManifestMediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert abs(multi["imagePushedAt"].timestamp() - time.time()) < 120
    assert "imageTags" not in details[images["loose"].digest]
    assert len(details) == 3

    untagged = ecr.describe_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})["imageDetails"]
    assert [d["imageDigest"] for d in untagged] == [images["loose"].digest]
    tagged = ecr.describe_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageDetails"]
    assert {d["imageDigest"] for d in tagged} == {images["multi"].digest, images["single"].digest}

    by_ids = ecr.describe_images(
        repositoryName=repo,
        imageIds=[{"imageTag": "latest"}, {"imageDigest": images["multi"].digest}, {"imageTag": "v2"}],
    )["imageDetails"]
    assert [d["imageDigest"] for d in by_ids] == [images["multi"].digest, images["single"].digest]


@needs_registry
def test_describe_images_paginates(ecr: Any, repo: str, images: dict[str, PushedImage]) -> None:
    pages = list(
        ecr.get_paginator("describe_images").paginate(repositoryName=repo, PaginationConfig={"PageSize": 1})
    )
    digests = [d["imageDigest"] for page in pages for d in page["imageDetails"]]
    assert len(pages) == 3
    assert sorted(digests) == sorted(i.digest for i in images.values())


@needs_registry
def test_describe_unknown_image(ecr: Any, repo: str, images: dict[str, PushedImage]) -> None:
    with pytest.raises(ClientError) as exc:
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v1"}, {"imageTag": "nope"}])
    assert error_of(exc) == (
        "ImageNotFoundException",
        "The image with imageId {imageDigest:'null', imageTag:'nope'} does not exist within the "
        f"repository with name '{repo}' in the registry with id '{ACCOUNT}'",
    )
    digest = "sha256:" + "a" * 64
    with pytest.raises(ClientError) as exc:
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": digest}])
    assert error_of(exc)[1].startswith(f"The image with imageId {{imageDigest:'{digest}', imageTag:'null'}}")


@needs_registry
def test_batch_get_image(ecr: Any, repo: str, images: dict[str, PushedImage]) -> None:
    multi = images["multi"]
    wrong_digest = "sha256:" + "a" * 64
    result = ecr.batch_get_image(
        repositoryName=repo,
        imageIds=[
            {"imageTag": "v1"},
            {"imageDigest": multi.digest},
            {"imageTag": "nope"},
            {"imageTag": "v1", "imageDigest": wrong_digest},
            {"imageDigest": "no-digest"},
            {},
        ],
    )

    got = result["images"]
    assert [image["imageId"] for image in got] == [
        {"imageTag": "v1", "imageDigest": multi.digest},
        {"imageDigest": multi.digest},
    ]
    for image in got:
        assert image["imageManifest"] == multi.manifest.decode()
        assert image["imageManifestMediaType"] == multi.media_type
        assert image["registryId"] == ACCOUNT
        assert image["repositoryName"] == repo
    assert result["failures"] == [
        {
            "imageId": {"imageTag": "nope"},
            "failureCode": "ImageNotFound",
            "failureReason": "Requested image not found",
        },
        {
            "imageId": {"imageTag": "v1", "imageDigest": wrong_digest},
            "failureCode": "ImageTagDoesNotMatchDigest",
            "failureReason": "Invalid request parameters: given tag does not map to the given digest",
        },
        {
            "imageId": {"imageDigest": "no-digest"},
            "failureCode": "InvalidImageDigest",
            "failureReason": "Invalid request parameters: image digest should satisfy the regex "
            "'[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
        },
        {
            "imageId": {},
            "failureCode": "MissingDigestAndTag",
            "failureReason": "Invalid request parameters: both tag and digest cannot be null",
        },
    ]


@needs_registry
def test_batch_get_manifest_list(stack: Stack, ecr: Any, repo: str) -> None:
    assert stack.registry_url is not None
    child = stack.push(repo, None, "child")
    index = push_index(stack.registry_url, repo, "multi", [child])
    (image,) = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}])["images"]
    assert image["imageManifestMediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert json.loads(image["imageManifest"]) == json.loads(index.manifest)
    (detail,) = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "multi"}])["imageDetails"]
    assert detail["imageSizeInBytes"] == len(index.manifest)


def test_batch_get_image_of_missing_repository(ecr: Any) -> None:
    name = unique()
    with pytest.raises(ClientError) as exc:
        ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert error_of(exc) == ("RepositoryNotFoundException", not_found_message(name))


@needs_registry
def test_batch_delete_by_tag_keeps_image_until_last_tag(
    stack: Stack, ecr: Any, repo: str, images: dict[str, PushedImage]
) -> None:
    multi = images["multi"].digest

    first = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "latest"}])
    assert first["imageIds"] == [{"imageDigest": multi, "imageTag": "latest"}]
    assert first["failures"] == []
    (detail,) = ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": multi}])["imageDetails"]
    assert detail["imageTags"] == ["v1"]

    last = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert last["imageIds"] == [{"imageDigest": multi, "imageTag": "v1"}]
    # ECR: removing an image's last tag deletes the image.
    remaining = {d["imageDigest"] for d in ecr.describe_images(repositoryName=repo)["imageDetails"]}
    assert remaining == {images["single"].digest, images["loose"].digest}


@needs_registry
def test_batch_delete_by_digest_removes_all_tags(ecr: Any, repo: str, images: dict[str, PushedImage]) -> None:
    multi, loose = images["multi"].digest, images["loose"].digest
    result = ecr.batch_delete_image(
        repositoryName=repo,
        imageIds=[{"imageDigest": multi}, {"imageTag": "v1"}, {"imageDigest": loose}, {"imageTag": "gone"}],
    )
    assert sorted(result["imageIds"], key=lambda i: (i["imageDigest"], i.get("imageTag", ""))) == sorted(
        [
            {"imageDigest": multi, "imageTag": "latest"},
            {"imageDigest": multi, "imageTag": "v1"},
            {"imageDigest": loose},
        ],
        key=lambda i: (i["imageDigest"], i.get("imageTag", "")),
    )
    assert result["failures"] == [
        {
            "imageId": {"imageTag": "gone"},
            "failureCode": "ImageNotFound",
            "failureReason": "Requested image not found",
        }
    ]
    listed = ecr.list_images(repositoryName=repo)["imageIds"]
    assert listed == [{"imageDigest": images["single"].digest, "imageTag": "v2"}]


@needs_registry
def test_batch_delete_tag_digest_mismatch_changes_nothing(
    ecr: Any, repo: str, images: dict[str, PushedImage]
) -> None:
    before = ecr.list_images(repositoryName=repo)["imageIds"]
    result = ecr.batch_delete_image(
        repositoryName=repo, imageIds=[{"imageTag": "v1", "imageDigest": images["single"].digest}]
    )
    assert result["imageIds"] == []
    assert result["failures"][0]["failureCode"] == "ImageTagDoesNotMatchDigest"
    assert ecr.list_images(repositoryName=repo)["imageIds"] == before


@needs_registry
def test_too_many_image_ids_raw(stack: Stack, ecr: Any, repo: str, images: dict[str, PushedImage]) -> None:
    before = ecr.list_images(repositoryName=repo)["imageIds"]
    ids = [{"imageDigest": images["loose"].digest}] + [{"imageTag": f"t{i}"} for i in range(100)]
    for op in ("BatchDeleteImage", "BatchGetImage", "DescribeImages"):
        resp = stack.raw(op, {"repositoryName": repo, "imageIds": ids})
        assert resp.status_code == 400
        assert resp.json() == {
            "__type": "InvalidParameterException",
            "message": "Invalid parameter at 'imageIds' failed to satisfy constraint: "
            "'Member must have length less than or equal to 100'",
        }
    assert ecr.list_images(repositoryName=repo)["imageIds"] == before


def test_empty_image_ids_raw(stack: Stack, repo: str) -> None:
    resp = stack.raw("BatchDeleteImage", {"repositoryName": repo, "imageIds": []})
    assert resp.status_code == 400
    assert resp.json()["message"] == (
        "Invalid parameter at 'imageIds' failed to satisfy constraint: "
        "'Member must have length greater than or equal to 1'"
    )


# -- lifecycle policies ----------------------------------------------------------------------------
def test_lifecycle_policy_round_trip(ecr: Any, repo: str) -> None:
    with pytest.raises(ClientError) as exc:
        ecr.get_lifecycle_policy(repositoryName=repo)
    assert error_of(exc) == (
        "LifecyclePolicyNotFoundException",
        f"Lifecycle policy does not exist for the repository with name '{repo}' "
        f"in the registry with id '{ACCOUNT}'",
    )

    put = ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=LIFECYCLE_POLICY)
    assert put["lifecyclePolicyText"] == LIFECYCLE_POLICY
    assert put["registryId"] == ACCOUNT
    assert put["repositoryName"] == repo

    got = ecr.get_lifecycle_policy(repositoryName=repo)
    assert got["lifecyclePolicyText"] == LIFECYCLE_POLICY
    assert got["repositoryName"] == repo


@pytest.mark.parametrize(
    "text",
    [
        "{not json" + " " * 100,
        json.dumps({"policy": "no rules", "padding": "x" * 100}),
        json.dumps({"rules": "not a list", "padding": "x" * 100}),
        json.dumps(["rules", "x" * 100]),
    ],
)
def test_invalid_lifecycle_policy(ecr: Any, repo: str, text: str) -> None:
    with pytest.raises(ClientError) as exc:
        ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=text)
    code, message = error_of(exc)
    assert code == "InvalidParameterException"
    assert message.startswith(
        "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
        "'Lifecycle policy validation failure: "
    )
    with pytest.raises(ClientError):
        ecr.get_lifecycle_policy(repositoryName=repo)


def test_lifecycle_policy_of_missing_repository(ecr: Any) -> None:
    name = unique()
    for call in (
        lambda: ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=LIFECYCLE_POLICY),
        lambda: ecr.get_lifecycle_policy(repositoryName=name),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == ("RepositoryNotFoundException", not_found_message(name))


# -- registryId ------------------------------------------------------------------------------------
def test_own_registry_id_is_accepted(ecr: Any, repo: str) -> None:
    (described,) = ecr.describe_repositories(registryId=ACCOUNT, repositoryNames=[repo])["repositories"]
    assert described["repositoryName"] == repo


def test_other_registry_id_is_denied_and_changes_nothing(ecr: Any) -> None:
    name = unique()
    with pytest.raises(ClientError) as exc:
        ecr.create_repository(registryId="999999999999", repositoryName=name)
    code, message = error_of(exc)
    assert code == "AccessDeniedException"
    assert "999999999999" in message
    assert name not in repo_names(ecr)


def test_malformed_registry_id(ecr: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ecr.describe_repositories(registryId="12")
    assert error_of(exc) == (
        "InvalidParameterException",
        "Invalid parameter at 'registryId' failed to satisfy constraint: "
        "'must satisfy regular expression '[0-9]{12}''",
    )


# -- protocol --------------------------------------------------------------------------------------
def test_response_headers(stack: Stack) -> None:
    resp = stack.raw("DescribeRepositories", {})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/x-amz-json-1.1"
    assert uuid.UUID(resp.headers["x-amzn-requestid"])
    error = stack.raw("DescribeRepositories", {"repositoryNames": ["missing-repo"]})
    assert error.headers["x-amzn-errortype"] == "RepositoryNotFoundException"
    assert uuid.UUID(error.headers["x-amzn-requestid"])


def test_unsigned_request_is_refused(stack: Stack, ecr: Any) -> None:
    name = unique()
    resp = stack.raw("CreateRepository", {"repositoryName": name}, auth=None)
    assert resp.status_code == 403
    assert resp.json() == {
        "__type": "MissingAuthenticationTokenException",
        "message": "Missing Authentication Token",
    }
    assert name not in repo_names(ecr)


@pytest.mark.parametrize(
    "auth",
    [
        "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ecr/aws4_request",
        "Bearer abc",
        "AWS4-HMAC-SHA256",
    ],
)
def test_malformed_signature_is_refused(stack: Stack, ecr: Any, auth: str) -> None:
    name = unique()
    resp = stack.raw("CreateRepository", {"repositoryName": name}, auth=auth)
    assert resp.status_code == 400
    assert resp.json()["__type"] == "IncompleteSignatureException"
    assert "Authorization header requires" in resp.json()["message"]
    assert name not in repo_names(ecr)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"text"', b"42"])
def test_malformed_body(stack: Stack, ecr: Any, content: bytes) -> None:
    resp = stack.raw("CreateRepository", content=content)
    assert resp.status_code == 400
    assert resp.json()["__type"] == "SerializationException"


def test_wrong_types(stack: Stack, ecr: Any) -> None:
    name = unique()
    cases = [
        ({"repositoryName": 5}, "NUMBER_VALUE can not be converted to a String"),
        ({"repositoryName": name, "imageScanningConfiguration": {"scanOnPush": "yes"}}, None),
        (
            {"repositoryName": name, "tags": {"Key": "k"}},
            "Start of structure or map found where not expected",
        ),
    ]
    for body, message in cases:
        resp = stack.raw("CreateRepository", body)
        assert resp.status_code == 400, body
        assert resp.json()["__type"] == "SerializationException"
        if message is not None:
            assert resp.json()["message"] == message
    assert name not in repo_names(ecr)


def test_missing_required_parameter(stack: Stack) -> None:
    resp = stack.raw("CreateRepository", {})
    assert resp.status_code == 400
    assert resp.json() == {
        "__type": "InvalidParameterException",
        "message": "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
        "'Member must not be null'",
    }


@pytest.mark.parametrize("op", [None, "PutImage", "NoSuchThing"])
def test_unknown_operation(stack: Stack, op: str | None) -> None:
    resp = stack.raw(op, {})
    assert resp.status_code == 400
    assert resp.json()["__type"] == "UnknownOperationException"


def test_wrong_target_prefix(stack: Stack) -> None:
    resp = httpx.post(
        stack.settings.api_url + "/",
        content=b"{}",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Authorization": FAKE_AUTH,
            "X-Amz-Date": "x",
        },
        trust_env=False,
    )
    assert resp.status_code == 400
    assert resp.json()["__type"] == "UnknownOperationException"


def test_other_paths(stack: Stack) -> None:
    resp = httpx.get(stack.settings.api_url + "/", trust_env=False)
    assert resp.status_code == 404
    assert resp.json()["__type"] == "UnknownOperationException"


class BrokenStorage(RegistryStorage):
    def images(self, repo: str) -> list[ImageRecord]:
        raise RuntimeError("disk on fire: secret-detail")


def test_internal_error_is_a_server_exception_without_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    settings = StackSettings(data_dir=tmp_path, gateway_port=1, api_port=port, registry_port=2)
    store = Store(settings.store_path)
    store.create_repository("broken")
    app = create_api_app(settings, store, BrokenStorage(settings.registry_root))
    with caplog.at_level(logging.INFO, logger="airdock.local.api.ecr"), serving(app, port) as url:
        resp = httpx.post(
            url + "/",
            trust_env=False,
            content=json.dumps({"repositoryName": "broken"}),
            headers={
                "X-Amz-Target": TARGET_PREFIX + "ListImages",
                "Authorization": FAKE_AUTH,
                "X-Amz-Date": "x",
            },
        )
    store.close()
    assert resp.status_code == 500
    body = resp.json()
    assert body["__type"] == "ServerException"
    assert "secret-detail" not in resp.text
    assert "Traceback" not in resp.text
    assert resp.headers["x-amzn-requestid"] in body["message"]
    assert "disk on fire" in caplog.text  # logged server-side, with the traceback


def test_request_log_lines_carry_no_secrets(stack: Stack, ecr: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="airdock.local.api.ecr"):
        data = ecr.get_authorization_token()["authorizationData"][0]
    password = base64.b64decode(data["authorizationToken"]).decode().partition(":")[2]
    lines = [r.getMessage() for r in caplog.records if r.name == "airdock.local.api.ecr"]
    assert any("GetAuthorizationToken" in line and "200" in line for line in lines)
    assert all(password not in line and data["authorizationToken"] not in line for line in lines)


def test_presigned_query_signature_is_accepted(stack: Stack) -> None:
    query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2Fscope&X-Amz-Signature=abc"
    resp = httpx.post(
        f"{stack.settings.api_url}/?{query}",
        content=b"{}",
        headers={"X-Amz-Target": TARGET_PREFIX + "DescribeRepositories"},
        trust_env=False,
    )
    assert resp.status_code == 200
    assert "repositories" in resp.json()
