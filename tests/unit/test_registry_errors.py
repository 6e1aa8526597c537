"""One classification of registry refusals for pulls and pushes, and the pull's progress accounting."""

from __future__ import annotations

import pytest

from airdock.analyst.push import push_failure
from airdock.engine.pull import PullProgress, _classify
from airdock.engine.registry_errors import Refusal, classify
from airdock.images import parse_image_ref

HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("denied: User: arn:x is not authorized to perform: ecr:PutImage on resource", Refusal.DENIED_ACTION),
        ("name unknown: The repository with name 'a/b' does not exist", Refusal.REPOSITORY_MISSING),
        ("manifest for x:v1 not found: manifest unknown", Refusal.TAG_MISSING),
        ("tag invalid: The image tag 'v1' already exists ... cannot be overwritten because the repository is immutable", Refusal.TAG_IMMUTABLE),  # noqa: E501
        ("denied: Your authorization token has expired. Reauthenticate and try again.", Refusal.AUTH_REFUSED),
        ("pull access denied for x, repository does not exist or may require 'docker login': denied: "
         "Your authorization token is invalid.", Refusal.AUTH_REFUSED),
        ('Head "https://x/v2/a/manifests/v1": no basic auth credentials', Refusal.AUTH_REFUSED),
        ('Get "http://127.0.0.1:1/v2/": dial tcp: connect: connection refused', Refusal.UNREACHABLE),
        ("unexpected EOF", Refusal.UNREACHABLE),
        ("received unexpected HTTP status: 503 Service Unavailable", Refusal.UNREACHABLE),
        ("denied: requested access to the resource is denied", Refusal.DENIED),
        ("something else", Refusal.OTHER),
    ],
)  # fmt: skip
def test_classification(message: str, kind: Refusal) -> None:
    assert classify(message).kind is kind


def test_pulls_and_pushes_read_a_refusal_alike() -> None:
    """The same wording means the same thing on both paths (they used to keep drifted copies)."""
    ref = parse_image_ref(f"{HOST}/team/app:v1")
    for message, pull_text, push_text in [
        ("unexpected EOF", "pull of", "unreachable while pushing"),
        (
            "denied: Your authorization token has expired.",
            "refused the credentials",
            "refused the credentials",
        ),
        ("name unknown: repository with name 'team/app' does not exist", "does not exist", "does not exist"),
    ]:
        assert pull_text in str(_classify(ref, message))
        assert push_text in str(push_failure(HOST, "team/app", "v1", message, []))
    # A pull retries UNREACHABLE before ever classifying it into a final error:
    assert classify("unexpected EOF").kind is Refusal.UNREACHABLE


def test_a_multi_line_message_becomes_one_line() -> None:
    refusal = classify("denied\n  second line\n")
    assert refusal.line == "denied second line"


# -- the pull's progress ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_tag_line_is_not_a_layer_and_bytes_add_up() -> None:
    clock = Clock()
    progress = PullProgress(clock)
    events = [
        {"status": "Pulling from team/app", "id": "v1"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
        {"status": "Already exists", "progressDetail": {}, "id": "bbb"},
        {"status": "Downloading", "progressDetail": {"current": 65536, "total": 4_000_000}, "id": "aaa"},
    ]
    for event in events:
        progress.feed(event)
    assert progress.layers == 2, "the 'Pulling from' event names the tag, not a layer"
    assert progress.layers_done == 1
    assert progress.summary() == "1/2 layers done, 0.1 of 4.0 MB downloaded"
    progress.feed(
        {"status": "Downloading", "progressDetail": {"current": 1_000_000, "total": 4_000_000}, "id": "aaa"}
    )
    assert progress.bytes_done == 1_000_000
    # The engine's last Downloading event may stop short of the total: a downloaded layer counts whole.
    progress.feed({"status": "Download complete", "progressDetail": {}, "id": "aaa"})
    progress.feed(
        {"status": "Extracting", "progressDetail": {"current": 4_000_000, "total": 4_000_000}, "id": "aaa"}
    )
    progress.feed({"status": "Pull complete", "progressDetail": {}, "id": "aaa"})
    assert progress.summary() == "2/2 layers done, 4.0 of 4.0 MB downloaded"


def test_progress_time_moves_only_on_progress() -> None:
    clock = Clock()
    progress = PullProgress(clock)
    event = {"status": "Downloading", "progressDetail": {"current": 10, "total": 100}, "id": "aaa"}
    progress.feed(event)
    assert progress.changed_at == 100.0
    clock.now = 130.0
    progress.feed(event)  # the same numbers again: no progress
    assert progress.changed_at == 100.0
    progress.feed({**event, "progressDetail": {"current": 20, "total": 100}})
    assert progress.changed_at == 130.0


def test_an_up_to_date_pull_says_so() -> None:
    progress = PullProgress()
    progress.feed({"status": "Pulling from team/app", "id": "v1"})
    assert progress.summary() == "nothing to download (the engine had every layer)"
