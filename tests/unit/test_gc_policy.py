"""plan_gc: every rule, its precedence, budgets, shared layers, determinism, random inventories."""

from __future__ import annotations

import fnmatch
import random
import time
from collections.abc import Sequence
from typing import Any

import pytest

from airdock.hygiene.gc_plan import OUT_OF_SCOPE, plan_gc
from airdock.hygiene.model import (
    ContainerInfo,
    DiskUsage,
    GcPlan,
    GcPolicy,
    GcScope,
    ImageDecision,
    ImageInfo,
    ImageUsage,
    Layer,
    Verdict,
)
from airdock.hygiene.units import format_age, format_bytes

MB = 1_000_000
GB = 1_000_000_000
MIN = 60.0
HOUR = 3600.0
DAY = 86400.0
NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
OLD = NOW - 30 * DAY


def gc_policy(**kwargs: Any) -> GcPolicy:
    """The rules below hold in every scope; they are pinned with ``scope=all`` (scope has its own tests)."""
    kwargs.setdefault("scope", GcScope.ALL)
    return GcPolicy(**kwargs)


NO_WATERMARKS = gc_policy(high_watermark_percent=None)
EVERYTHING_GOES = gc_policy(max_image_bytes=0)


def image(
    image_id: str,
    *tags: str,
    mb: int = 10,
    created: float = OLD,
    last_tagged: float | None = None,
    layers: Sequence[tuple[str, int]] | None = None,
) -> ImageInfo:
    """An image; by default one own layer of ``mb`` megabytes named after the image."""
    layer_list = (
        tuple(Layer(lid, size * MB) for lid, size in layers)
        if layers is not None
        else (Layer(f"layer-{image_id}", mb * MB),)
    )
    return ImageInfo(
        id=image_id,
        tags=tags,
        size=sum(layer.size for layer in layer_list),
        created=created,
        layers=layer_list,
        last_tagged=last_tagged,
    )


def container(image_id: str, state: str = "running", cid: str | None = None) -> ContainerInfo:
    return ContainerInfo(id=cid or f"c-{image_id}-{state}", image_id=image_id, state=state, created=OLD)


def used(image_id: str, at: float | None = None, leased_until: float | None = None) -> ImageUsage:
    return ImageUsage(image_id=image_id, last_used=at, leased_until=leased_until)


def usage_map(*records: ImageUsage) -> dict[str, ImageUsage]:
    return {r.image_id: r for r in records}


def by_id(plan: GcPlan) -> dict[str, ImageDecision]:
    return {d.image.id: d for d in plan.decisions}


def removed_ids(plan: GcPlan) -> list[str]:
    return [d.image.id for d in plan.removals]


def assert_well_formed(plan: GcPlan, images: Sequence[ImageInfo]) -> None:
    """Each image decided once, removals first, frees adding up."""
    assert sorted(d.image.id for d in plan.decisions) == sorted({i.id for i in images})
    verdicts = [d.verdict for d in plan.decisions]
    assert verdicts == sorted(verdicts, key=lambda v: v is Verdict.KEEP)
    assert sum(d.frees_bytes for d in plan.decisions) == plan.frees_bytes
    assert all(d.frees_bytes == 0 for d in plan.decisions if d.verdict is Verdict.KEEP)
    assert 0 <= plan.frees_bytes <= plan.image_bytes


# --- formatting


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1 kB"),
        (1500, "1.5 kB"),
        (100 * MB, "100 MB"),
        (1_500_000_000, "1.5 GB"),
        (12_340_000_000, "12.3 GB"),
        (999_960_000, "1 GB"),
        (2 * 10**15, "2 PB"),
        (3 * 10**18, "3000 PB"),
        (-1_500_000, "-1.5 MB"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "0s"),
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m"),
        (4 * MIN + 59, "4m"),
        (10 * MIN, "10m"),
        (3 * HOUR, "3h"),
        (24 * HOUR, "24h"),
        (47 * HOUR, "47h"),
        (48 * HOUR, "2d"),
        (7 * DAY, "7d"),
    ],
)
def test_format_age(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


# --- empty and trivial


def test_empty_inventory_plans_nothing() -> None:
    plan = plan_gc([], [], {}, gc_policy(), NOW)
    assert plan == GcPlan(decisions=(), image_bytes=0, target_bytes=None, frees_bytes=0)


def test_empty_inventory_with_a_budget_reports_it() -> None:
    plan = plan_gc([], [container("gone")], {}, gc_policy(max_image_bytes=5 * GB), NOW)
    assert plan.decisions == ()
    assert plan.target_bytes == 5 * GB


def test_nothing_configured_keeps_everything_with_no_budget_set() -> None:
    images = [image("sha256:a", "a:1"), image("sha256:b", "b:1")]
    plan = plan_gc(images, [], {}, gc_policy(), NOW)  # watermarks default on, but no disk given
    assert plan.removals == ()
    assert plan.target_bytes is None
    assert {d.reason for d in plan.decisions} == {"no budget set"}
    assert plan.image_bytes == 20 * MB


def test_container_of_a_missing_image_and_usage_of_a_missing_image_are_ignored() -> None:
    images = [image("sha256:a", "a:1")]
    plan = plan_gc(
        images, [container("sha256:gone")], usage_map(used("sha256:gone", NOW)), EVERYTHING_GOES, NOW
    )
    assert removed_ids(plan) == ["sha256:a"]


def test_duplicate_images_in_the_inventory_are_decided_once() -> None:
    a = image("sha256:a", "a:1")
    plan = plan_gc([a, a], [], {}, EVERYTHING_GOES, NOW)
    assert removed_ids(plan) == ["sha256:a"]
    assert plan.image_bytes == 10 * MB
    assert plan.frees_bytes == 10 * MB


# --- protection


def test_protection_precedence_in_use_then_lease_then_keep_then_young() -> None:
    young = NOW - 4 * MIN
    everything = image("sha256:1", "prod/app:1", created=young)
    lease_keep_young = image("sha256:2", "prod/app:2", created=young)
    keep_young = image("sha256:3", "prod/app:3", created=young)
    young_only = image("sha256:4", "dev/app:4", created=young)
    unprotected = image("sha256:5", "dev/app:5")
    usage = usage_map(
        used("sha256:1", leased_until=NOW + 60), used("sha256:2", leased_until=NOW + 60), used("sha256:5")
    )
    policy = gc_policy(max_image_bytes=0, keep=("prod/*",))
    plan = plan_gc(
        [everything, lease_keep_young, keep_young, young_only, unprotected],
        [container("sha256:1")],
        usage,
        policy,
        NOW,
    )
    reasons = {i: (d.verdict, d.reason) for i, d in by_id(plan).items()}
    assert reasons == {
        "sha256:1": (Verdict.KEEP, "in use by 1 container"),
        "sha256:2": (Verdict.KEEP, "in use: a task is starting it"),
        "sha256:3": (Verdict.KEEP, "keep pattern 'prod/*'"),
        "sha256:4": (Verdict.KEEP, "too young (4m < 10m)"),
        "sha256:5": (Verdict.REMOVE, "least recently used"),
    }


@pytest.mark.parametrize("state", ["running", "exited", "created", "paused", "restarting", "dead"])
def test_a_container_in_any_state_protects_its_image(state: str) -> None:
    plan = plan_gc([image("sha256:a", "a:1")], [container("sha256:a", state)], {}, EVERYTHING_GOES, NOW)
    assert plan.removals == ()
    assert plan.decisions[0].reason == "in use by 1 container"


def test_containers_are_counted() -> None:
    containers = [container("sha256:a", "running", "c1"), container("sha256:a", "exited", "c2")]
    plan = plan_gc([image("sha256:a")], containers, {}, EVERYTHING_GOES, NOW)
    assert plan.decisions[0].reason == "in use by 2 containers"
    assert plan.removals == ()


def test_a_container_protects_even_a_dangling_stale_image() -> None:
    policy = gc_policy(max_image_bytes=0, max_unused_age_seconds=DAY)
    plan = plan_gc([image("sha256:a", created=NOW - 400 * DAY)], [container("sha256:a")], {}, policy, NOW)
    assert plan.removals == ()


@pytest.mark.parametrize(
    ("leased_until", "protected"),
    [(NOW + 1, True), (NOW + HOUR, True), (NOW, False), (NOW - 1, False), (None, False)],
)
def test_a_live_lease_protects(leased_until: float | None, protected: bool) -> None:
    usage = usage_map(used("sha256:a", leased_until=leased_until))
    plan = plan_gc([image("sha256:a", "a:1")], [], usage, EVERYTHING_GOES, NOW)
    assert (plan.removals == ()) is protected
    if protected:
        assert plan.decisions[0].reason == "in use: a task is starting it"


def test_a_lease_taken_on_a_tag_before_the_pull_protects_the_image_carrying_it() -> None:
    ref = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1"
    usage = {ref: ImageUsage(image_id=ref, leased_until=NOW + 60)}
    images = [image("sha256:a", ref), image("sha256:b", "other:1")]
    plan = plan_gc(images, [], usage, EVERYTHING_GOES, NOW)
    assert removed_ids(plan) == ["sha256:b"]
    assert by_id(plan)["sha256:a"].reason == "in use: a task is starting it"


def test_a_lease_protects_a_dangling_image() -> None:
    usage = usage_map(used("sha256:a", leased_until=NOW + 60))
    plan = plan_gc([image("sha256:a")], [], usage, EVERYTHING_GOES, NOW)
    assert plan.removals == ()


@pytest.mark.parametrize(
    ("patterns", "tags", "reason"),
    [
        (("prod/*",), ("prod/app:1",), "keep pattern 'prod/*'"),
        (("prod/*",), ("dev/app:1", "prod/app:1"), "keep pattern 'prod/*'"),  # any tag
        (("*:stable",), ("dev/app:1", "dev/app:stable"), "keep pattern '*:stable'"),
        (("a:?",), ("a:1",), "keep pattern 'a:?'"),
        (("a:[0-9]",), ("a:7",), "keep pattern 'a:[0-9]'"),
        (("nope", "*:lts", "*"), ("x:lts",), "keep pattern '*:lts'"),  # first pattern that matches
        (("*",), ("anything/at/all:1",), "keep pattern '*'"),
    ],
)
def test_keep_patterns_match_any_tag(patterns: tuple[str, ...], tags: tuple[str, ...], reason: str) -> None:
    plan = plan_gc([image("sha256:a", *tags)], [], {}, gc_policy(max_image_bytes=0, keep=patterns), NOW)
    assert plan.removals == ()
    assert plan.decisions[0].reason == reason


@pytest.mark.parametrize(
    ("pattern", "tag"),
    [
        ("prod/*", "registry.example.com/prod/app:1"),  # anchored at the start
        ("prod/*", "PROD/app:1"),  # case-sensitive
        ("app:1", "app:10"),  # anchored at the end
        ("app", "docker.io/library/app:latest"),  # tags as given, no normalisation
    ],
)
def test_keep_patterns_that_do_not_match(pattern: str, tag: str) -> None:
    plan = plan_gc([image("sha256:a", tag)], [], {}, gc_policy(max_image_bytes=0, keep=(pattern,)), NOW)
    assert removed_ids(plan) == ["sha256:a"]


def test_keep_patterns_never_match_a_dangling_image() -> None:
    plan = plan_gc([image("sha256:a")], [], {}, gc_policy(keep=("*",)), NOW)
    assert removed_ids(plan) == ["sha256:a"]


@pytest.mark.parametrize(
    ("created", "last_tagged", "last_used", "reason"),
    [
        (NOW - 4 * MIN, None, None, "too young (4m < 10m)"),  # just built
        (NOW - 400 * DAY, NOW - 2 * MIN, None, "too young (2m < 10m)"),  # built long ago, just pulled
        (NOW - 400 * DAY, NOW - 100 * DAY, NOW - 30, "too young (30s < 10m)"),  # just used
        (NOW + 5 * MIN, None, None, "too young (0s < 10m)"),  # clock skew: created in the future
    ],
)
def test_young_images_are_protected(
    created: float, last_tagged: float | None, last_used: float | None, reason: str
) -> None:
    img = image("sha256:a", "a:1", created=created, last_tagged=last_tagged)
    usage = usage_map(used("sha256:a", last_used)) if last_used is not None else {}
    plan = plan_gc([img], [], usage, EVERYTHING_GOES, NOW)
    assert plan.removals == ()
    assert plan.decisions[0].reason == reason


def test_min_age_boundary_and_custom_value() -> None:
    at_limit = image("sha256:a", "a:1", created=NOW - 10 * MIN)
    just_under = image("sha256:b", "b:1", created=NOW - 10 * MIN + 1)
    plan = plan_gc([at_limit, just_under], [], {}, EVERYTHING_GOES, NOW)
    assert removed_ids(plan) == ["sha256:a"]
    plan = plan_gc(
        [image("sha256:c", "c:1", created=NOW - 2 * HOUR)],
        [],
        {},
        gc_policy(max_image_bytes=0, min_age_seconds=3 * HOUR),
        NOW,
    )
    assert plan.decisions[0].reason == "too young (2h < 3h)"
    plan = plan_gc([image("sha256:d", created=NOW)], [], {}, gc_policy(min_age_seconds=0), NOW)
    assert removed_ids(plan) == ["sha256:d"]


def test_young_protects_dangling_images_too() -> None:
    plan = plan_gc([image("sha256:a", created=NOW - MIN)], [], {}, EVERYTHING_GOES, NOW)
    assert plan.removals == ()
    assert plan.decisions[0].reason == "too young (1m < 10m)"


# --- order


def test_least_recently_used_go_first() -> None:
    images = [image(f"sha256:{c}", f"{c}:1") for c in "abcd"]
    usage = usage_map(
        used("sha256:a", NOW - 1 * DAY),
        used("sha256:b", NOW - 9 * DAY),
        used("sha256:c", NOW - 3 * DAY),
        used("sha256:d", NOW - 5 * DAY),
    )
    plan = plan_gc(images, [], usage, EVERYTHING_GOES, NOW)
    assert removed_ids(plan) == ["sha256:b", "sha256:d", "sha256:c", "sha256:a"]
    assert [d.last_used for d in plan.removals] == [NOW - 9 * DAY, NOW - 5 * DAY, NOW - 3 * DAY, NOW - DAY]
    assert {d.reason for d in plan.removals} == {"least recently used"}


def test_last_used_falls_back_to_the_latest_of_tagged_and_created() -> None:
    recorded = image("sha256:rec", "r:1", created=NOW - 100 * DAY, last_tagged=NOW - 20 * DAY)
    created_only = image("sha256:cre", "c:1", created=NOW - 40 * DAY)
    retagged = image("sha256:tag", "t:1", created=NOW - 300 * DAY, last_tagged=NOW - 10 * DAY)
    tagged_before_build = image("sha256:odd", "o:1", created=NOW - 5 * DAY, last_tagged=NOW - 60 * DAY)
    # The usage record wins over the fallback, even when it is older than the last tag.
    usage = usage_map(used("sha256:rec", NOW - 50 * DAY))
    plan = plan_gc([recorded, created_only, retagged, tagged_before_build], [], usage, EVERYTHING_GOES, NOW)
    assert removed_ids(plan) == ["sha256:rec", "sha256:cre", "sha256:tag", "sha256:odd"]
    assert [d.last_used for d in plan.removals] == [
        NOW - 50 * DAY,
        NOW - 40 * DAY,
        NOW - 10 * DAY,
        NOW - 5 * DAY,
    ]


def test_usage_recorded_under_a_tag_counts_and_the_latest_record_wins() -> None:
    a = image("sha256:a", "a:1", "a:latest", created=NOW - 90 * DAY)
    b = image("sha256:b", "b:1", created=NOW - 60 * DAY)
    usage = {
        "sha256:a": used("sha256:a", NOW - 80 * DAY),
        "a:latest": ImageUsage(image_id="a:latest", last_used=NOW - 2 * DAY),
        "a:1": ImageUsage(image_id="a:1", last_used=None),
    }
    plan = plan_gc([a, b], [], usage, EVERYTHING_GOES, NOW)
    assert removed_ids(plan) == ["sha256:b", "sha256:a"]
    assert by_id(plan)["sha256:a"].last_used == NOW - 2 * DAY


def test_dangling_images_go_first_oldest_first_whatever_the_budget() -> None:
    tagged_old = image("sha256:t-old", "t:1", created=NOW - 300 * DAY)
    dangling_new = image("sha256:d-new", created=NOW - 1 * DAY)
    dangling_old = image("sha256:d-old", created=NOW - 50 * DAY)
    images = [tagged_old, dangling_new, dangling_old]
    plan = plan_gc(images, [], {}, EVERYTHING_GOES, NOW)
    assert removed_ids(plan) == ["sha256:d-old", "sha256:d-new", "sha256:t-old"]
    assert [d.reason for d in plan.removals] == ["dangling", "dangling", "least recently used"]
    # Without any budget, dangling images still go; tagged ones stay.
    plan = plan_gc(images, [], {}, NO_WATERMARKS, NOW)
    assert removed_ids(plan) == ["sha256:d-old", "sha256:d-new"]
    assert by_id(plan)["sha256:t-old"].reason == "no budget set"


def test_dangling_removal_counts_toward_the_budget() -> None:
    dangling = image("sha256:d", mb=50)
    tagged = image("sha256:t", "t:1", mb=50, created=NOW - 300 * DAY)
    plan = plan_gc([dangling, tagged], [], {}, gc_policy(max_image_bytes=60 * MB), NOW)
    assert removed_ids(plan) == ["sha256:d"]
    assert by_id(plan)["sha256:t"].reason == "within budget"


def test_ties_break_on_image_id() -> None:
    images = [image(f"sha256:{c}", f"{c}:1", created=OLD) for c in "dbca"]
    plan = plan_gc(images, [], {}, EVERYTHING_GOES, NOW)
    assert removed_ids(plan) == ["sha256:a", "sha256:b", "sha256:c", "sha256:d"]


def test_kept_images_follow_the_removals_in_lru_order() -> None:
    images = [
        image("sha256:a", "a:1", created=NOW - 5 * DAY),
        image("sha256:b", "b:1", created=NOW - 50 * DAY),
        image("sha256:c", "prod/c:1", created=NOW - 500 * DAY),
        image("sha256:d", "d:1", created=NOW - 90 * DAY),
    ]
    plan = plan_gc(images, [], {}, gc_policy(max_image_bytes=25 * MB, keep=("prod/*",)), NOW)
    assert [(d.image.id, d.verdict) for d in plan.decisions] == [
        ("sha256:d", Verdict.REMOVE),
        ("sha256:b", Verdict.REMOVE),
        ("sha256:c", Verdict.KEEP),
        ("sha256:a", Verdict.KEEP),
    ]


# --- max_unused_age


def test_max_unused_age_removes_under_budget_and_without_one() -> None:
    stale = image("sha256:stale", "s:1", created=NOW - 100 * DAY)
    fresh = image("sha256:fresh", "f:1", created=NOW - 100 * DAY)
    usage = usage_map(used("sha256:stale", NOW - 8 * DAY), used("sha256:fresh", NOW - 6 * DAY))
    for policy in (
        gc_policy(max_unused_age_seconds=7 * DAY),  # no budget measurable
        gc_policy(max_unused_age_seconds=7 * DAY, max_image_bytes=100 * GB),  # far under budget
    ):
        plan = plan_gc([stale, fresh], [], usage, policy, NOW)
        assert removed_ids(plan) == ["sha256:stale"]
        # 1800000000 - 8 days = 2027-01-07 08:00 UTC
        assert plan.removals[0].reason == "unused since 2027-01-07 08:00 (> 7d)"
        assert plan.removals[0].frees_bytes == 10 * MB
    assert by_id(plan)["sha256:fresh"].reason == "within budget"


def test_max_unused_age_uses_the_fallback_and_its_boundary_is_exclusive() -> None:
    at_limit = image("sha256:a", "a:1", created=NOW - 7 * DAY)
    beyond = image("sha256:b", "b:1", created=NOW - 9 * DAY, last_tagged=NOW - 7 * DAY - 1)
    plan = plan_gc([at_limit, beyond], [], {}, gc_policy(max_unused_age_seconds=7 * DAY), NOW)
    assert removed_ids(plan) == ["sha256:b"]


def test_max_unused_age_never_overrides_protection() -> None:
    ancient = NOW - 1000 * DAY
    images = [
        image("sha256:in-use", "a:1", created=ancient),
        image("sha256:leased", "b:1", created=ancient),
        image("sha256:kept", "prod/c:1", created=ancient),
    ]
    usage = usage_map(used("sha256:leased", ancient, leased_until=NOW + 1))
    policy = gc_policy(max_unused_age_seconds=DAY, keep=("prod/*",))
    plan = plan_gc(images, [container("sha256:in-use", "exited")], usage, policy, NOW)
    assert plan.removals == ()


def test_order_is_dangling_then_stale_then_lru() -> None:
    images = [
        image("sha256:lru", "l:1", created=NOW - 500 * DAY),  # oldest, but not stale by record
        image("sha256:stale", "s:1", created=NOW - 20 * DAY),
        image("sha256:dangling", created=NOW - 2 * DAY),
        image("sha256:kept", "k:1", created=NOW - 3 * DAY),
    ]
    usage = usage_map(used("sha256:lru", NOW - 3 * DAY - 1))
    policy = gc_policy(max_unused_age_seconds=7 * DAY, max_image_bytes=15 * MB)
    plan = plan_gc(images, [], usage, policy, NOW)
    assert [(d.image.id, d.reason.split(" (")[0].split(" since")[0]) for d in plan.decisions] == [
        ("sha256:dangling", "dangling"),
        ("sha256:stale", "unused"),
        ("sha256:lru", "least recently used"),
        ("sha256:kept", "within budget"),
    ]


# --- budgets


def test_max_image_bytes_removes_lru_until_at_or_under_it() -> None:
    images = [image(f"sha256:{i}", f"i:{i}", mb=10, created=NOW - (10 - i) * DAY) for i in range(5)]
    plan = plan_gc(images, [], {}, gc_policy(max_image_bytes=30 * MB), NOW)  # exactly at target after 2
    assert removed_ids(plan) == ["sha256:0", "sha256:1"]
    assert plan.target_bytes == 30 * MB
    assert plan.image_bytes == 50 * MB
    assert plan.frees_bytes == 20 * MB
    plan = plan_gc(images, [], {}, gc_policy(max_image_bytes=29 * MB), NOW)
    assert removed_ids(plan) == ["sha256:0", "sha256:1", "sha256:2"]
    assert {d.reason for d in plan.decisions if d.verdict is Verdict.KEEP} == {"within budget"}


def test_under_max_image_bytes_nothing_goes() -> None:
    images = [image("sha256:a", "a:1"), image("sha256:b", "b:1")]
    plan = plan_gc(images, [], {}, gc_policy(max_image_bytes=20 * MB), NOW)
    assert plan.removals == ()
    assert plan.target_bytes == 20 * MB
    assert {d.reason for d in plan.decisions} == {"within budget"}


def test_watermarks_free_down_to_the_low_watermark() -> None:
    images = [image(f"sha256:{i}", f"i:{i}", mb=1000, created=NOW - (10 - i) * DAY) for i in range(5)]
    disk = DiskUsage(total_bytes=10 * GB, used_bytes=9 * GB)  # 90% ≥ 85%: free 1 GB to reach 80%
    plan = plan_gc(images, [], {}, gc_policy(), NOW, disk)
    assert plan.target_bytes == 4 * GB
    assert removed_ids(plan) == ["sha256:0"]
    assert plan.frees_bytes == 1 * GB
    assert plan.removals[0].reason == "least recently used"


def test_watermark_target_is_never_negative() -> None:
    images = [image(f"sha256:{i}", f"i:{i}", mb=1000, created=NOW - (10 - i) * DAY) for i in range(5)]
    disk = DiskUsage(total_bytes=100 * GB, used_bytes=90 * GB)  # must free 10 GB; images hold 5 GB
    plan = plan_gc(images, [], {}, gc_policy(), NOW, disk)
    assert plan.target_bytes == 0
    assert len(plan.removals) == 5


def test_watermark_target_rounds_down_to_free_enough() -> None:
    images = [image("sha256:a", "a:1", mb=100, created=NOW - 2 * DAY)]
    disk = DiskUsage(total_bytes=999, used_bytes=900)  # must free 100.8 bytes to reach 80%: 101
    plan = plan_gc(images, [], {}, gc_policy(), NOW, disk)
    assert plan.target_bytes == 100 * MB - 101


@pytest.mark.parametrize(
    ("used_percent", "applies"), [(84.99, False), (85.0, True), (85.01, True), (100.0, True)]
)
def test_high_watermark_boundary(used_percent: float, applies: bool) -> None:
    total = 10_000_000
    disk = DiskUsage(total_bytes=total, used_bytes=round(total * used_percent / 100))
    images = [image("sha256:a", "a:1", mb=1)]
    plan = plan_gc(images, [], {}, gc_policy(), NOW, disk)
    assert (plan.target_bytes is not None) is applies
    assert (plan.removals != ()) is applies
    if not applies:
        assert plan.decisions[0].reason == "within budget"


def test_custom_watermarks() -> None:
    images = [image(f"sha256:{i}", f"i:{i}", mb=100, created=NOW - (10 - i) * DAY) for i in range(5)]
    disk = DiskUsage(total_bytes=1 * GB, used_bytes=700 * MB)  # 70%
    assert plan_gc(images, [], {}, gc_policy(), NOW, disk).removals == ()
    policy = gc_policy(high_watermark_percent=60, low_watermark_percent=50)
    plan = plan_gc(images, [], {}, policy, NOW, disk)
    assert plan.target_bytes == 300 * MB  # free 200 MB of the 500 MB
    assert removed_ids(plan) == ["sha256:0", "sha256:1"]


def test_watermarks_off_or_no_disk_means_no_watermark_budget() -> None:
    images = [image("sha256:a", "a:1")]
    full = DiskUsage(total_bytes=100, used_bytes=100)
    assert plan_gc(images, [], {}, NO_WATERMARKS, NOW, full).removals == ()
    assert plan_gc(images, [], {}, NO_WATERMARKS, NOW, full).decisions[0].reason == "no budget set"
    assert plan_gc(images, [], {}, gc_policy(), NOW, None).removals == ()
    assert plan_gc(images, [], {}, gc_policy(), NOW, DiskUsage(0, 0)).removals == ()


@pytest.mark.parametrize(
    ("max_image_bytes", "disk_used", "target"),
    [
        (300 * MB, 950 * MB, 300 * MB),  # bytes budget stricter: watermark target 350 MB
        (400 * MB, 950 * MB, 350 * MB),  # watermark stricter: free 150 MB of 500 → 350 MB
        (400 * MB, 700 * MB, 400 * MB),  # under the high watermark: only the bytes budget
    ],
)
def test_both_budgets_the_stricter_wins(max_image_bytes: int, disk_used: int, target: int) -> None:
    images = [image(f"sha256:{i}", f"i:{i}", mb=50, created=NOW - (20 - i) * DAY) for i in range(10)]
    disk = DiskUsage(total_bytes=1 * GB, used_bytes=disk_used)
    plan = plan_gc(images, [], {}, gc_policy(max_image_bytes=max_image_bytes), NOW, disk)
    assert plan.target_bytes == target
    assert plan.image_bytes - plan.frees_bytes == target  # 50 MB steps land exactly on each target
    assert removed_ids(plan) == [f"sha256:{i}" for i in range((500 * MB - target) // (50 * MB))]


def test_budget_unreachable_removes_every_candidate_and_keeps_the_protected() -> None:
    images = [
        image("sha256:a", "a:1", mb=100),
        image("sha256:b", "prod/b:1", mb=100),
        image("sha256:c", "c:1", mb=100, created=NOW - 10 * DAY),
    ]
    plan = plan_gc(images, [container("sha256:a")], {}, gc_policy(max_image_bytes=0, keep=("prod/*",)), NOW)
    assert removed_ids(plan) == ["sha256:c"]
    assert plan.image_bytes - plan.frees_bytes == 200 * MB


def test_negative_max_image_bytes_is_treated_as_zero() -> None:
    plan = plan_gc([image("sha256:a", "a:1")], [], {}, gc_policy(max_image_bytes=-5), NOW)
    assert plan.target_bytes == 0
    assert removed_ids(plan) == ["sha256:a"]


# --- layers


BASE = ("base", 100)


def test_shared_layers_count_once_in_image_bytes() -> None:
    a = image("sha256:a", "a:1", layers=[BASE, ("a-own", 10)])
    b = image("sha256:b", "b:1", layers=[BASE, ("b-own", 10)])
    plan = plan_gc([a, b], [], {}, NO_WATERMARKS, NOW)
    assert plan.image_bytes == 120 * MB


def test_removing_one_of_two_images_sharing_a_base_frees_only_its_own_layers() -> None:
    a = image("sha256:a", "a:1", layers=[BASE, ("a-own", 10)], created=NOW - 9 * DAY)
    b = image("sha256:b", "b:1", layers=[BASE, ("b-own", 10)], created=NOW - 1 * DAY)
    plan = plan_gc([a, b], [], {}, gc_policy(max_image_bytes=115 * MB), NOW)
    assert removed_ids(plan) == ["sha256:a"]
    assert plan.removals[0].frees_bytes == 10 * MB
    assert plan.frees_bytes == 10 * MB


def test_removing_both_frees_the_base_with_the_last_one() -> None:
    a = image("sha256:a", "a:1", layers=[BASE, ("a-own", 10)], created=NOW - 9 * DAY)
    b = image("sha256:b", "b:1", layers=[BASE, ("b-own", 10)], created=NOW - 1 * DAY)
    plan = plan_gc([a, b], [], {}, EVERYTHING_GOES, NOW)
    assert [(d.image.id, d.frees_bytes) for d in plan.removals] == [
        ("sha256:a", 10 * MB),
        ("sha256:b", 110 * MB),
    ]
    assert plan.frees_bytes == 120 * MB == plan.image_bytes


def test_a_base_held_by_a_protected_image_is_never_counted_as_freed() -> None:
    a = image("sha256:a", "a:1", layers=[BASE, ("a-own", 10)])
    b = image("sha256:b", "b:1", layers=[BASE, ("b-own", 10)])
    plan = plan_gc([a, b], [container("sha256:b")], {}, EVERYTHING_GOES, NOW)
    assert removed_ids(plan) == ["sha256:a"]
    assert plan.frees_bytes == 10 * MB


def test_the_lru_walk_continues_past_images_that_free_nothing() -> None:
    # a and b only add a tag-level difference over the base: removing a alone frees nothing.
    a = image("sha256:a", "a:1", layers=[BASE], created=NOW - 9 * DAY)
    b = image("sha256:b", "b:1", layers=[BASE, ("b-own", 10)], created=NOW - 5 * DAY)
    c = image("sha256:c", "c:1", layers=[("c-own", 10)], created=NOW - 1 * DAY)
    plan = plan_gc([a, b, c], [], {}, gc_policy(max_image_bytes=20 * MB), NOW)
    assert [(d.image.id, d.frees_bytes) for d in plan.removals] == [("sha256:a", 0), ("sha256:b", 110 * MB)]
    assert by_id(plan)["sha256:c"].reason == "within budget"


def test_images_without_layers_count_as_one_unit_of_their_size() -> None:
    bare = ImageInfo(id="sha256:bare", tags=("bare:1",), size=40 * MB, created=OLD)
    layered = image("sha256:lay", "lay:1", layers=[BASE])
    plan = plan_gc([bare, layered], [], {}, EVERYTHING_GOES, NOW)
    assert plan.image_bytes == 140 * MB
    assert {d.image.id: d.frees_bytes for d in plan.removals} == {
        "sha256:bare": 40 * MB,
        "sha256:lay": 100 * MB,
    }


def test_a_layer_repeated_within_one_image_counts_once() -> None:
    a = image("sha256:a", "a:1", layers=[("empty", 1), ("own", 10), ("empty", 1)])
    plan = plan_gc([a], [], {}, EVERYTHING_GOES, NOW)
    assert plan.image_bytes == 11 * MB
    assert plan.frees_bytes == 11 * MB


# --- determinism


def test_input_order_does_not_change_the_plan() -> None:
    rng = random.Random(7)
    images, containers, usage = random_inventory(rng, 300)
    policy = gc_policy(max_image_bytes=sum(i.size for i in images) // 4, keep=("prod/*",))
    plan = plan_gc(images, containers, usage, policy, NOW)
    for _ in range(5):
        shuffled = list(images)
        rng.shuffle(shuffled)
        other_containers = list(containers)
        rng.shuffle(other_containers)
        assert plan_gc(shuffled, other_containers, dict(reversed(list(usage.items()))), policy, NOW) == plan


# --- random inventories


def random_inventory(
    rng: random.Random, n: int
) -> tuple[list[ImageInfo], list[ContainerInfo], dict[str, ImageUsage]]:
    bases = [(f"base-{k}", rng.randint(1, 300)) for k in range(max(1, n // 20))]
    images: list[ImageInfo] = []
    for k in range(n):
        layers = rng.sample(bases, rng.randint(0, min(2, len(bases))))
        layers += [(f"own-{k}-{j}", rng.randint(0, 50)) for j in range(rng.randint(0, 5))]
        roll = rng.random()
        tags: tuple[str, ...] = ()
        if roll > 0.15:
            repo = rng.choice(["prod/api", "dev/api", "dev/web", "tools/x", "scratch"])
            tags = tuple(f"{repo}:{k}-{t}" for t in range(rng.randint(1, 3)))
        created = NOW - rng.uniform(0, 200 * DAY)
        last_tagged = rng.choice([None, created + rng.uniform(0, NOW - created)])
        if layers or rng.random() < 0.5:
            images.append(
                image(f"sha256:{k:06d}", *tags, created=created, last_tagged=last_tagged, layers=layers)
            )
        else:  # no layer information at all
            images.append(
                ImageInfo(f"sha256:{k:06d}", tags, rng.randint(1, 100) * MB, created, (), last_tagged)
            )
    containers = [
        container(rng.choice(images).id, rng.choice(["running", "exited"]), f"c{j}") for j in range(n // 5)
    ]
    usage: dict[str, ImageUsage] = {}
    for img in rng.sample(images, n // 2):
        key = rng.choice([img.id, *img.tags])
        lease = rng.choice([None, None, None, NOW - 10, NOW + 60])
        usage[key] = ImageUsage(key, rng.choice([None, NOW - rng.uniform(0, 100 * DAY)]), lease)
    return images, containers, usage


def protected(
    img: ImageInfo, containers: Sequence[ContainerInfo], usage: dict[str, ImageUsage], policy: GcPolicy
) -> bool:
    """An independent, naive statement of the protection rules."""
    if any(c.image_id == img.id for c in containers):
        return True
    records = [usage[k] for k in (img.id, *img.tags) if k in usage]
    if any(r.leased_until is not None and r.leased_until > NOW for r in records):
        return True
    if any(fnmatch.fnmatchcase(t, p) for t in img.tags for p in policy.keep):
        return True
    times = [img.created] + [t for t in [img.last_tagged, *(r.last_used for r in records)] if t is not None]
    return NOW - max(times) < policy.min_age_seconds


def remaining_bytes(images: Sequence[ImageInfo], removed: set[str]) -> int:
    """Bytes of the images left, shared layers once — recomputed from scratch."""
    sizes: dict[str, int] = {}
    for img in images:
        if img.id in removed:
            continue
        if img.layers:
            for layer in img.layers:
                sizes[layer.id] = layer.size
        else:
            sizes["whole:" + img.id] = img.size
    return sum(sizes.values())


@pytest.mark.parametrize("seed", range(60))
def test_random_inventories_hold_the_invariants(seed: int) -> None:
    rng = random.Random(seed)
    images, containers, usage = random_inventory(rng, rng.randint(0, 120))
    total = remaining_bytes(images, set())
    policy = gc_policy(
        max_image_bytes=rng.choice([None, 0, int(total * rng.random())]),
        high_watermark_percent=rng.choice([None, 85.0]),
        min_age_seconds=rng.choice([0.0, 600.0, 30 * DAY]),
        max_unused_age_seconds=rng.choice([None, 7 * DAY, 90 * DAY]),
        keep=rng.choice([(), ("prod/*",), ("*:1-0", "tools/*")]),
    )
    disk_total = total * 2 + 1
    disk = rng.choice([None, DiskUsage(disk_total, int(disk_total * rng.uniform(0.5, 1.0)))])
    plan = plan_gc(images, containers, usage, policy, NOW, disk)

    assert_well_formed(plan, images)
    assert plan.image_bytes == total
    removed = {d.image.id for d in plan.removals}
    is_protected = {img.id: protected(img, containers, usage, policy) for img in images}
    # Protected images are never removed, and every unprotected dangling image is.
    assert not any(is_protected[i] for i in removed)
    assert all(img.id in removed for img in images if img.dangling and not is_protected[img.id])
    # What the plan says it frees is what removing those images frees.
    assert plan.image_bytes - plan.frees_bytes == remaining_bytes(images, removed)
    if plan.target_bytes is not None:
        floor = remaining_bytes(images, {i.id for i in images if not is_protected[i.id]})
        if floor <= plan.target_bytes:  # enough unprotected candidates exist
            assert plan.image_bytes - plan.frees_bytes <= plan.target_bytes
        # No removal for the budget beyond the first that reaches the target.
        lru = [d for d in plan.removals if d.reason == "least recently used"]
        if lru:
            assert plan.image_bytes - plan.frees_bytes + lru[-1].frees_bytes > plan.target_bytes
    else:
        assert all(d.reason != "least recently used" for d in plan.removals)
    if policy.max_unused_age_seconds is None:
        assert not any(d.reason.startswith("unused since") for d in plan.removals)
    # Removals keep their phase order: dangling, then stale, then LRU, each in LRU order.
    phases = [
        0 if d.reason == "dangling" else 1 if d.reason.startswith("unused") else 2 for d in plan.removals
    ]
    assert phases == sorted(phases)
    for phase in range(3):
        keys = [(d.last_used, d.image.id) for d, p in zip(plan.removals, phases, strict=True) if p == phase]
        assert keys == sorted(keys)


def test_ten_thousand_images_plan_quickly() -> None:
    """A guard against quadratic behaviour; the benchmark measures the real figure (< 1 s)."""
    rng = random.Random(1)
    images, containers, usage = random_inventory(rng, 10_000)
    policy = gc_policy(max_image_bytes=sum(i.size for i in images) // 3, keep=("prod/*",))
    started = time.perf_counter()
    plan = plan_gc(images, containers, usage, policy, NOW)
    assert time.perf_counter() - started < 5.0
    assert len(plan.decisions) == 10_000


# --- scope: only what airdock brought (default) or every image


def brought(image_id: str, at: float | None = None) -> ImageUsage:
    return ImageUsage(image_id=image_id, last_used=at, brought=True)


def test_default_scope_removes_only_what_airdock_brought_and_dangling_images() -> None:
    images = [
        image("ours", "team/job:1"),
        image("theirs", "other/team:1"),
        image("dangling"),
        image("ours-by-tag", "team/job:2"),
    ]
    usage = {"ours": brought("ours", OLD), "team/job:2": brought("team/job:2")}
    plan = plan_gc(images, [], usage, GcPolicy(max_image_bytes=0), NOW)
    assert sorted(removed_ids(plan)) == ["dangling", "ours", "ours-by-tag"]
    assert by_id(plan)["theirs"].reason == OUT_OF_SCOPE
    assert GcPolicy().scope is GcScope.AIRDOCK


def test_out_of_scope_images_are_kept_even_when_long_unused() -> None:
    images = [image("theirs", "other/team:1", created=NOW - 400 * DAY)]
    plan = plan_gc(images, [], {}, GcPolicy(max_unused_age_seconds=7 * DAY, max_image_bytes=0), NOW)
    assert plan.removals == ()
    assert by_id(plan)["theirs"].reason == OUT_OF_SCOPE


def test_scope_all_considers_every_image() -> None:
    images = [image("theirs", "other/team:1")]
    plan = plan_gc(images, [], {}, GcPolicy(max_image_bytes=0, scope=GcScope.ALL), NOW)
    assert removed_ids(plan) == ["theirs"]


@pytest.mark.parametrize("scope", list(GcScope))
def test_protections_apply_in_both_scopes(scope: GcScope) -> None:
    images = [
        image("in-use", "team/a:1"),
        image("leased", "team/b:1"),
        image("young", "team/c:1", created=NOW - MIN),
        image("kept", "prod/d:1"),
        image("dangling-in-use"),
    ]
    usage = {
        "in-use": brought("in-use"),
        "leased": ImageUsage("leased", leased_until=NOW + HOUR, brought=True),
        "young": brought("young"),
        "kept": brought("kept"),
    }
    containers = [container("in-use"), container("dangling-in-use", "exited")]
    plan = plan_gc(images, containers, usage, GcPolicy(max_image_bytes=0, keep=("prod/*",), scope=scope), NOW)
    assert plan.removals == ()
    reasons = {i: d.reason for i, d in by_id(plan).items()}
    assert reasons["in-use"] == "in use by 1 container"
    assert reasons["leased"] == "in use: a task is starting it"
    assert reasons["young"].startswith("too young")
    assert reasons["kept"] == "keep pattern 'prod/*'"
    assert reasons["dangling-in-use"] == "in use by 1 container"


def test_scope_parsing() -> None:
    assert GcScope.parse(" ALL ") is GcScope.ALL
    assert GcScope.parse("airdock") is GcScope.AIRDOCK
    with pytest.raises(ValueError, match="invalid gc_scope 'everything'"):
        GcScope.parse("everything")
