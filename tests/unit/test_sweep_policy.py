"""plan_sweep and task_key: which labelled containers are orphans, and never an unlabelled one."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from airdock.hygiene.model import (
    ACTIVE_TASK_STATES,
    LABEL_DAG_ID,
    LABEL_MAP_INDEX,
    LABEL_RUN_ID,
    LABEL_STARTED_AT,
    LABEL_TASK_ID,
    LABEL_TRY_NUMBER,
    MANAGED_LABEL,
    ContainerInfo,
    SweepPolicy,
    TaskKey,
    TaskStatus,
    Verdict,
)
from airdock.hygiene.policy import plan_sweep, task_key

HOUR = 3600.0
DAY = 86400.0
NOW = 1_800_000_000.0
POLICY = SweepPolicy()  # 24h
KEY = TaskKey(dag_id="etl", run_id="manual__2027-01-01", task_id="scrape")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


def labels(
    *,
    managed: str | None = "true",
    dag_id: str | None = KEY.dag_id,
    run_id: str | None = KEY.run_id,
    task_id: str | None = KEY.task_id,
    try_number: str | None = "1",
    map_index: str | None = None,
    started_at: str | None = None,
) -> dict[str, str]:
    pairs = {
        MANAGED_LABEL: managed,
        LABEL_DAG_ID: dag_id,
        LABEL_RUN_ID: run_id,
        LABEL_TASK_ID: task_id,
        LABEL_TRY_NUMBER: try_number,
        LABEL_MAP_INDEX: map_index,
        LABEL_STARTED_AT: started_at,
    }
    return {k: v for k, v in pairs.items() if v is not None}


def box(
    cid: str = "c1", *, created: float = NOW - HOUR, state: str = "running", **label_args: str | None
) -> ContainerInfo:
    return ContainerInfo(
        id=cid, image_id="sha256:img", state=state, created=created, labels=labels(**label_args)
    )


def incomplete(overrides: dict[str, str | None], created: float = NOW - HOUR) -> ContainerInfo:
    """A labelled container with some task labels removed or spoiled."""
    return ContainerInfo("c1", "sha256:img", "running", created, labels(**overrides))


def decide(
    container: ContainerInfo, statuses: dict[TaskKey, TaskStatus] | None, policy: SweepPolicy = POLICY
) -> tuple[Verdict, str]:
    plan = plan_sweep([container], statuses, policy, NOW)
    assert len(plan.decisions) == 1
    decision = plan.decisions[0]
    assert decision.container is container
    return decision.verdict, decision.reason


# --- task_key


def test_task_key_from_complete_labels() -> None:
    assert task_key(box()) == KEY
    assert task_key(box(map_index="3")) == TaskKey(KEY.dag_id, KEY.run_id, KEY.task_id, 3)
    assert task_key(box(map_index="-1")) == KEY


@pytest.mark.parametrize(
    "missing",
    [
        {"dag_id": None},
        {"run_id": None},
        {"task_id": None},
        {"dag_id": ""},
        {"task_id": ""},
        {"map_index": "x"},
    ],
)
def test_task_key_none_when_labels_are_incomplete(missing: dict[str, str | None]) -> None:
    assert task_key(incomplete(missing)) is None


def test_task_key_does_not_need_the_managed_label() -> None:
    assert task_key(box(managed=None)) == KEY


# --- never touch what is not airdock's


@pytest.mark.parametrize("managed", [None, "false", "True", "1", "yes", ""])
@pytest.mark.parametrize(
    "statuses",
    [
        None,
        {},
        {KEY: TaskStatus("success", 1)},
        {KEY: TaskStatus(None)},
        {KEY: TaskStatus("running", 9)},
    ],
)
def test_a_container_without_airdocks_label_is_never_removed(
    managed: str | None, statuses: dict[TaskKey, TaskStatus] | None
) -> None:
    ancient = NOW - 1000 * DAY
    container = box(managed=managed, created=ancient, started_at=iso(ancient), state="exited", try_number="1")
    tiny = SweepPolicy(max_container_age_seconds=0)
    assert decide(container, statuses, tiny) == (Verdict.KEEP, "not airdock's")


def test_unlabelled_containers_stay_among_removed_neighbours() -> None:
    ancient = NOW - 1000 * DAY
    containers = [
        box("a", created=ancient),
        box("b", created=ancient, managed=None),
        box("c", created=ancient, managed="false"),
        box("d", created=ancient),
    ]
    plan = plan_sweep(containers, None, POLICY, NOW)
    assert [d.container.id for d in plan.decisions] == ["a", "b", "c", "d"]  # input order kept
    assert [d.container.id for d in plan.removals] == ["a", "d"]


# --- Airflow not asked: the age rule


def test_airflow_not_asked_old_containers_go_young_ones_stay() -> None:
    assert decide(box(created=NOW - 25 * HOUR), None) == (
        Verdict.REMOVE,
        "older than 24h (Airflow not asked)",
    )
    assert decide(box(created=NOW - 23 * HOUR), None) == (
        Verdict.KEEP,
        "younger than 24h (Airflow not asked)",
    )


def test_age_boundary_is_exclusive() -> None:
    assert decide(box(created=NOW - 24 * HOUR), None)[0] is Verdict.KEEP
    assert decide(box(created=NOW - 24 * HOUR - 1), None)[0] is Verdict.REMOVE


def test_custom_max_container_age() -> None:
    policy = SweepPolicy(max_container_age_seconds=2 * HOUR)
    assert decide(box(created=NOW - 3 * HOUR), None, policy) == (
        Verdict.REMOVE,
        "older than 2h (Airflow not asked)",
    )
    assert decide(box(created=NOW - HOUR), None, policy) == (
        Verdict.KEEP,
        "younger than 2h (Airflow not asked)",
    )
    policy = SweepPolicy(max_container_age_seconds=7 * DAY)
    assert decide(box(created=NOW - 8 * DAY), None, policy) == (
        Verdict.REMOVE,
        "older than 7d (Airflow not asked)",
    )


def test_started_at_label_wins_over_creation_time() -> None:
    # Created long ago (e.g. an old container restarted), started recently → young.
    young = box(created=NOW - 30 * DAY, started_at=iso(NOW - HOUR))
    assert decide(young, None)[0] is Verdict.KEEP
    # Created recently, but airdock says it started long ago → old.
    old = box(created=NOW - HOUR, started_at=iso(NOW - 2 * DAY))
    assert decide(old, None)[0] is Verdict.REMOVE


@pytest.mark.parametrize(
    ("started_at", "verdict"),
    [
        ("2027-01-13T08:00:00+00:00", Verdict.REMOVE),  # NOW is 2027-01-15 08:00 UTC
        ("2027-01-13T08:00:00Z", Verdict.REMOVE),
        ("2027-01-13T08:00:00", Verdict.REMOVE),  # naive: read as UTC
        ("2027-01-15T07:00:00Z", Verdict.KEEP),
        ("2027-01-15T09:00:00+02:00", Verdict.KEEP),  # 07:00 UTC
        ("2027-01-14T09:00:00-02:00", Verdict.KEEP),  # 11:00 UTC the day before: 21h
        ("2027-01-14T05:00:00-02:00", Verdict.REMOVE),  # 07:00 UTC the day before: 25h
    ],
)
def test_started_at_formats(started_at: str, verdict: Verdict) -> None:
    assert decide(box(created=NOW, started_at=started_at), None)[0] is verdict


def test_naive_started_at_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    try:
        assert decide(box(created=NOW, started_at="2027-01-14T20:00:00"), None)[0] is Verdict.KEEP
    finally:
        monkeypatch.undo()
        time.tzset()


def test_unparseable_started_at_falls_back_to_creation_time() -> None:
    assert decide(box(created=NOW - 2 * DAY, started_at="yesterday"), None)[0] is Verdict.REMOVE
    assert decide(box(created=NOW - HOUR, started_at="yesterday"), None)[0] is Verdict.KEEP


@pytest.mark.parametrize(
    "missing", [{"dag_id": None}, {"run_id": None}, {"task_id": None}, {"map_index": "?"}]
)
def test_incomplete_labels_fall_back_to_the_age_rule_even_when_airflow_answers(
    missing: dict[str, str | None],
) -> None:
    statuses = {KEY: TaskStatus("success", 1)}  # would say "finished" if the labels named KEY
    assert decide(incomplete(missing, NOW - 2 * DAY), statuses) == (
        Verdict.REMOVE,
        "older than 24h (task labels incomplete)",
    )
    assert decide(incomplete(missing, NOW - HOUR), statuses) == (
        Verdict.KEEP,
        "younger than 24h (task labels incomplete)",
    )


# --- Airflow asked


def test_task_instance_missing_means_orphan_however_young() -> None:
    assert decide(box(created=NOW), {}) == (Verdict.REMOVE, "task instance not found")
    other = TaskKey(KEY.dag_id, KEY.run_id, "another_task")
    assert decide(box(created=NOW), {other: TaskStatus("running", 1)}) == (
        Verdict.REMOVE,
        "task instance not found",
    )


def test_map_index_is_part_of_the_key() -> None:
    statuses = {TaskKey(KEY.dag_id, KEY.run_id, KEY.task_id, 0): TaskStatus("running", 1)}
    assert decide(box(map_index="0"), statuses) == (Verdict.KEEP, "task running")
    assert decide(box(map_index="1"), statuses) == (Verdict.REMOVE, "task instance not found")
    assert decide(box(), statuses) == (Verdict.REMOVE, "task instance not found")


def test_task_without_state_is_not_running() -> None:
    assert decide(box(), {KEY: TaskStatus(None, 1)}) == (Verdict.REMOVE, "task not running (no state)")


@pytest.mark.parametrize("state", sorted(ACTIVE_TASK_STATES))
def test_active_task_keeps_its_container_however_old(state: str) -> None:
    ancient = NOW - 1000 * DAY
    verdict, reason = decide(box(created=ancient, started_at=iso(ancient)), {KEY: TaskStatus(state, 1)})
    assert verdict is Verdict.KEEP
    assert reason == f"task {state}"


@pytest.mark.parametrize("state", ["success", "failed", "skipped", "upstream_failed", "removed"])
def test_finished_task_means_orphan_however_young(state: str) -> None:
    assert decide(box(created=NOW), {KEY: TaskStatus(state, 1)}) == (
        Verdict.REMOVE,
        f"task finished ({state})",
    )


@pytest.mark.parametrize("state", ["up_for_retry", "shutdown", "some_future_state"])
def test_other_inactive_states_mean_orphan(state: str) -> None:
    assert decide(box(created=NOW), {KEY: TaskStatus(state, 1)}) == (
        Verdict.REMOVE,
        f"task not running ({state})",
    )


@pytest.mark.parametrize(
    ("container_try", "task_try", "expected"),
    [
        ("1", 2, (Verdict.REMOVE, "older try (container try 1, task now on try 2)")),
        ("2", 5, (Verdict.REMOVE, "older try (container try 2, task now on try 5)")),
        ("2", 2, (Verdict.KEEP, "task running")),
        ("3", 2, (Verdict.KEEP, "task running")),  # Airflow's answer lags the container: keep
        ("1", None, (Verdict.KEEP, "task running")),  # no try number known: cannot tell
        (None, 2, (Verdict.KEEP, "task running")),  # container without a try label: cannot tell
        ("x", 2, (Verdict.KEEP, "task running")),
    ],
)
def test_container_of_an_older_try_is_an_orphan(
    container_try: str | None, task_try: int | None, expected: tuple[Verdict, str]
) -> None:
    assert decide(box(try_number=container_try), {KEY: TaskStatus("running", task_try)}) == expected


def test_older_try_while_the_task_is_queued_for_the_next_one() -> None:
    assert decide(box(try_number="1"), {KEY: TaskStatus("queued", 2)}) == (
        Verdict.REMOVE,
        "older try (container try 1, task now on try 2)",
    )


def test_airflow_answer_wins_over_age() -> None:
    ancient = NOW - 1000 * DAY
    statuses = {KEY: TaskStatus("running", 1)}
    assert decide(box(created=ancient), statuses)[0] is Verdict.KEEP
    assert decide(box(created=NOW), {KEY: TaskStatus("success", 1)})[0] is Verdict.REMOVE


def test_empty_inventory() -> None:
    assert plan_sweep([], None, POLICY, NOW).decisions == ()
    assert plan_sweep([], {}, POLICY, NOW).removals == ()


def test_a_mixed_host() -> None:
    statuses = {
        KEY: TaskStatus("running", 2),
        TaskKey("etl", "r2", "load"): TaskStatus("success", 1),
    }
    containers = [
        box("current", try_number="2"),
        box("previous-try", try_number="1"),
        box("done", run_id="r2", task_id="load"),
        box("unknown-run", run_id="r3"),
        box("foreign", managed=None),
    ]
    plan = plan_sweep(containers, statuses, POLICY, NOW)
    assert [(d.container.id, d.verdict.value, d.reason) for d in plan.decisions] == [
        ("current", "keep", "task running"),
        ("previous-try", "remove", "older try (container try 1, task now on try 2)"),
        ("done", "remove", "task finished (success)"),
        ("unknown-run", "remove", "task instance not found"),
        ("foreign", "keep", "not airdock's"),
    ]
    assert [d.container.id for d in plan.removals] == ["previous-try", "done", "unknown-run"]
