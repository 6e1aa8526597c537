"""plan_sweep and task_key: which labelled containers are orphans, and never an unlabelled one."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from airdock.hygiene.model import (
    ACTIVE_TASK_STATES,
    FINISHED_TASK_STATES,
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
from airdock.hygiene.sweep_plan import plan_sweep, task_key

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


def stopped(cid: str = "c1", **kwargs: Any) -> ContainerInfo:
    """An exited labelled container (the age rule applies only to stopped ones)."""
    return box(cid, state="exited", **kwargs)


def incomplete(
    overrides: dict[str, str | None], created: float = NOW - HOUR, state: str = "running"
) -> ContainerInfo:
    """A labelled container with some task labels removed or spoiled."""
    return ContainerInfo("c1", "sha256:img", state, created, labels(**overrides))


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
        {KEY: TaskStatus("success")},
        {KEY: TaskStatus(None)},
        {KEY: TaskStatus("running")},
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
        stopped("a", created=ancient),
        stopped("b", created=ancient, managed=None),
        stopped("c", created=ancient, managed="false"),
        stopped("d", created=ancient),
    ]
    plan = plan_sweep(containers, None, POLICY, NOW)
    assert [d.container.id for d in plan.decisions] == ["a", "b", "c", "d"]  # input order kept
    assert [d.container.id for d in plan.removals] == ["a", "d"]


# --- Airflow not asked: the age rule


@pytest.mark.parametrize("state", ["exited", "created", "dead"])
def test_airflow_not_asked_old_stopped_containers_go_young_ones_stay(state: str) -> None:
    assert decide(box(created=NOW - 25 * HOUR, state=state), None) == (
        Verdict.REMOVE,
        "older than 24h (Airflow not asked)",
    )
    assert decide(box(created=NOW - 23 * HOUR, state=state), None) == (
        Verdict.KEEP,
        "younger than 24h (Airflow not asked)",
    )


@pytest.mark.parametrize("state", ["running", "paused", "restarting", "removing", "some_future_state"])
def test_airflow_not_asked_a_running_container_is_kept_however_old(state: str) -> None:
    """A 25-hour training job must survive the nightly `airdock gc`: age never stops a running job."""
    ancient = NOW - 1000 * DAY
    assert decide(box(created=ancient, started_at=iso(ancient), state=state), None) == (
        Verdict.KEEP,
        f"{state}; Airflow not asked",
    )
    assert decide(box(created=NOW - 25 * HOUR, state="running"), None) == (
        Verdict.KEEP,
        "running; Airflow not asked",
    )


def test_age_boundary_is_exclusive() -> None:
    assert decide(stopped(created=NOW - 24 * HOUR), None)[0] is Verdict.KEEP
    assert decide(stopped(created=NOW - 24 * HOUR - 1), None)[0] is Verdict.REMOVE


def test_custom_max_container_age() -> None:
    policy = SweepPolicy(max_container_age_seconds=2 * HOUR)
    assert decide(stopped(created=NOW - 3 * HOUR), None, policy) == (
        Verdict.REMOVE,
        "older than 2h (Airflow not asked)",
    )
    assert decide(stopped(created=NOW - HOUR), None, policy) == (
        Verdict.KEEP,
        "younger than 2h (Airflow not asked)",
    )
    policy = SweepPolicy(max_container_age_seconds=7 * DAY)
    assert decide(stopped(created=NOW - 8 * DAY), None, policy) == (
        Verdict.REMOVE,
        "older than 7d (Airflow not asked)",
    )


def test_started_at_label_wins_over_creation_time() -> None:
    # Created long ago (e.g. an old container restarted), started recently → young.
    young = stopped(created=NOW - 30 * DAY, started_at=iso(NOW - HOUR))
    assert decide(young, None)[0] is Verdict.KEEP
    # Created recently, but airdock says it started long ago → old.
    old = stopped(created=NOW - HOUR, started_at=iso(NOW - 2 * DAY))
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
    assert decide(stopped(created=NOW, started_at=started_at), None)[0] is verdict


def test_naive_started_at_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    try:
        assert decide(stopped(created=NOW, started_at="2027-01-14T20:00:00"), None)[0] is Verdict.KEEP
    finally:
        monkeypatch.undo()
        time.tzset()


def test_unparseable_started_at_falls_back_to_creation_time() -> None:
    assert decide(stopped(created=NOW - 2 * DAY, started_at="yesterday"), None)[0] is Verdict.REMOVE
    assert decide(stopped(created=NOW - HOUR, started_at="yesterday"), None)[0] is Verdict.KEEP


@pytest.mark.parametrize(
    "missing", [{"dag_id": None}, {"run_id": None}, {"task_id": None}, {"map_index": "?"}]
)
def test_incomplete_labels_fall_back_to_the_age_rule_even_when_airflow_answers(
    missing: dict[str, str | None],
) -> None:
    statuses = {KEY: TaskStatus("success")}  # would say "finished" if the labels named KEY
    assert decide(incomplete(missing, NOW - 2 * DAY, state="exited"), statuses) == (
        Verdict.REMOVE,
        "older than 24h (task labels incomplete)",
    )
    assert decide(incomplete(missing, NOW - HOUR, state="exited"), statuses) == (
        Verdict.KEEP,
        "younger than 24h (task labels incomplete)",
    )
    assert decide(incomplete(missing, NOW - 2 * DAY), statuses) == (
        Verdict.KEEP,
        "running; task labels incomplete",
    )


# --- Airflow asked


def test_task_instance_missing_means_orphan_however_young() -> None:
    assert decide(box(created=NOW), {}) == (Verdict.REMOVE, "task instance not found")
    other = TaskKey(KEY.dag_id, KEY.run_id, "another_task")
    assert decide(box(created=NOW), {other: TaskStatus("running")}) == (
        Verdict.REMOVE,
        "task instance not found",
    )


def test_map_index_is_part_of_the_key() -> None:
    statuses = {TaskKey(KEY.dag_id, KEY.run_id, KEY.task_id, 0): TaskStatus("running")}
    assert decide(box(map_index="0"), statuses) == (Verdict.KEEP, "task running")
    assert decide(box(map_index="1"), statuses) == (Verdict.REMOVE, "task instance not found")
    assert decide(box(), statuses) == (Verdict.REMOVE, "task instance not found")


def test_task_without_state_removes_a_stopped_container_and_keeps_a_running_one() -> None:
    assert decide(stopped(), {KEY: TaskStatus(None)}) == (Verdict.REMOVE, "task not running (no state)")
    assert decide(box(), {KEY: TaskStatus(None)}) == (Verdict.KEEP, "running; task not finished (no state)")


@pytest.mark.parametrize("state", sorted(ACTIVE_TASK_STATES))
@pytest.mark.parametrize("container_state", ["running", "exited"])
def test_active_task_keeps_its_container_however_old(state: str, container_state: str) -> None:
    ancient = NOW - 1000 * DAY
    container = box(created=ancient, started_at=iso(ancient), state=container_state)
    verdict, reason = decide(container, {KEY: TaskStatus(state)})
    assert verdict is Verdict.KEEP
    assert reason == f"task {state}"


def test_a_task_waiting_for_its_retry_keeps_the_container_a_dead_worker_left_running() -> None:
    assert decide(box(), {KEY: TaskStatus("up_for_retry")}) == (Verdict.KEEP, "task up_for_retry")


@pytest.mark.parametrize("state", sorted(FINISHED_TASK_STATES))
@pytest.mark.parametrize("container_state", ["running", "exited", "created"])
def test_finished_task_means_orphan_however_young(state: str, container_state: str) -> None:
    assert decide(box(created=NOW, state=container_state), {KEY: TaskStatus(state)}) == (
        Verdict.REMOVE,
        f"task finished ({state})",
    )


@pytest.mark.parametrize("state", ["shutdown", "some_future_state"])
def test_other_states_remove_a_stopped_container_and_keep_a_running_one(state: str) -> None:
    assert decide(stopped(created=NOW), {KEY: TaskStatus(state)}) == (
        Verdict.REMOVE,
        f"task not running ({state})",
    )
    assert decide(box(created=NOW), {KEY: TaskStatus(state)}) == (
        Verdict.KEEP,
        f"running; task not finished ({state})",
    )


def test_airflow_answer_wins_over_age() -> None:
    ancient = NOW - 1000 * DAY
    statuses = {KEY: TaskStatus("running")}
    assert decide(box(created=ancient), statuses)[0] is Verdict.KEEP
    assert decide(stopped(created=ancient), statuses)[0] is Verdict.KEEP
    assert decide(box(created=NOW), {KEY: TaskStatus("success")})[0] is Verdict.REMOVE


def test_empty_inventory() -> None:
    assert plan_sweep([], None, POLICY, NOW).decisions == ()
    assert plan_sweep([], {}, POLICY, NOW).removals == ()


def test_a_mixed_host() -> None:
    statuses = {
        KEY: TaskStatus("running"),
        TaskKey("etl", "r2", "load"): TaskStatus("success"),
    }
    ancient = NOW - 30 * DAY
    containers = [
        box("current"),
        box("done", run_id="r2", task_id="load"),
        box("unknown-run", run_id="r3"),
        box("foreign", managed=None),
        box("old-job", run_id="r2", task_id="other", created=ancient, started_at=iso(ancient)),
    ]
    plan = plan_sweep(containers, statuses, POLICY, NOW)
    assert [(d.container.id, d.verdict.value, d.reason) for d in plan.decisions] == [
        ("current", "keep", "task running"),
        ("done", "remove", "task finished (success)"),
        ("unknown-run", "remove", "task instance not found"),
        ("foreign", "keep", "not airdock's"),
        ("old-job", "remove", "task instance not found"),
    ]
    assert [d.container.id for d in plan.removals] == ["done", "unknown-run", "old-job"]
    # The same host when Airflow is not asked: only the old stopped container could go; none is.
    plan = plan_sweep(containers, None, POLICY, NOW)
    assert plan.removals == ()
    assert {d.reason for d in plan.decisions} == {"running; Airflow not asked", "not airdock's"}
