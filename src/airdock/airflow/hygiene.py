"""Airflow → hygiene: configuration, the after-task budget check, and ``DockerHygieneOperator``."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from airdock.airflow.config import option
from airdock.durations import parse_duration
from airdock.hygiene.model import GcPolicy, GcScope, SweepPolicy, TaskKey, TaskStatus

_UNSET = object()


def usage_store() -> Any:
    """The engine's image-usage record: ``AIRDOCK_STATE_DIR``, else ``[airdock] state_dir``, else XDG's."""
    from airdock.hygiene.usage import UsageStore

    return UsageStore.for_host(option("state_dir"))


def state_dir() -> Path:
    """This host's airdock state directory (the usage store's): resolved as :func:`usage_store` does."""
    from airdock.hygiene.state import resolve_state_dir

    return resolve_state_dir(option("state_dir"))


def parse_bytes(value: str | int | None) -> int | None:
    """``2GiB``, ``500MB``, ``1048576`` → bytes; None stays None."""
    if value is None or isinstance(value, int):
        return value
    from airdock.hygiene.units import parse_size

    return parse_size(value)


def gc_policy(
    *,
    max_image_bytes: str | int | object | None = _UNSET,
    high_watermark_percent: float | object | None = _UNSET,
    low_watermark_percent: float | object = _UNSET,
    min_age: str | float | object = _UNSET,
    max_unused_age: str | float | object | None = _UNSET,
    keep: Sequence[str] | object = _UNSET,
    scope: str | object = _UNSET,
) -> GcPolicy:
    """A GC policy from explicit values, else the ``[airdock] gc_*`` options, else the defaults."""
    defaults = GcPolicy()

    def pick(value: object, key: str) -> Any:
        return option(key) if value is _UNSET else value

    size = pick(max_image_bytes, "gc_max_image_bytes")
    high = pick(high_watermark_percent, "gc_high_watermark_percent")
    low = pick(low_watermark_percent, "gc_low_watermark_percent")
    young = pick(min_age, "gc_min_age")
    unused = pick(max_unused_age, "gc_max_unused_age")
    kept = pick(keep, "gc_keep")
    scoped = pick(scope, "gc_scope")
    return GcPolicy(
        max_image_bytes=parse_bytes(size),
        high_watermark_percent=defaults.high_watermark_percent if high is None else float(high),
        low_watermark_percent=defaults.low_watermark_percent if low is None else float(low),
        min_age_seconds=defaults.min_age_seconds if young is None else _seconds(young),
        max_unused_age_seconds=None if unused is None else _seconds(unused),
        keep=tuple(_patterns(kept)),
        scope=defaults.scope if scoped is None else GcScope.parse(str(scoped)),
    )


def _seconds(value: str | float) -> float:
    return parse_duration(value) if isinstance(value, str) else float(value)


def _patterns(value: Any) -> Iterable[str]:
    if value is None:
        return ()
    if isinstance(value, str):
        return [p.strip() for p in value.replace("\n", ",").split(",") if p.strip()]
    return [str(p) for p in value]


def run_auto_gc(api_client: Any, log: Any) -> None:
    """After a task: if image storage is over its budget, run the GC with the configured policy."""
    from airdock.engine.client import client_over
    from airdock.hygiene.gc_apply import apply_gc, collect_gc
    from airdock.hygiene.inventory import over_budget
    from airdock.hygiene.model import Verdict

    client = client_over(api_client)  # reuse the task's connection to the engine
    policy = gc_policy()
    started = time.monotonic()
    if not over_budget(client, policy):
        log.info("auto_gc: image storage within budget (checked in %.2f s)", time.monotonic() - started)
        return
    store = usage_store()
    plan = collect_gc(client, store, policy, time.time())
    result = apply_gc(client, plan, store)
    note_gc(result)
    from airdock.airflow import host_status

    host_status.publish(client, log, force=True)
    in_use = [
        f"{decision.image.tags[0] if decision.image.tags else decision.image.id[:19]} ({decision.reason})"
        for decision in plan.decisions
        if decision.verdict is Verdict.KEEP and decision.reason.startswith("in use")
    ]
    log.info(
        "auto_gc: removed %d images, reclaimed %d bytes in %.1f s; kept %d in use%s",
        len(result.removed),
        result.freed_bytes,
        time.monotonic() - started,
        len(in_use),
        f": {', '.join(in_use)}" if in_use else "",
    )


def note_gc(result: Any) -> None:
    """A GC run in this host's history (the Container hosts page): what went, and why."""
    from airdock.airflow import host_status
    from airdock.hosts import MAX_REASONS

    reasons = [f"{d.image.tags[0] if d.image.tags else d.image.id[:19]}: {d.reason}" for d in result.removed][
        :MAX_REASONS
    ]
    host_status.note(
        "gc",
        {"images_removed": len(result.removed), "bytes_reclaimed": result.freed_bytes, "reasons": reasons},
    )


def task_statuses(ti: Any, containers: Sequence[Any]) -> dict[TaskKey, TaskStatus]:
    """Ask Airflow for the state of each labelled container's task instance.

    ``ti`` is the running task's instance from its context; its ``get_task_states`` is the task
    SDK's public way to read other task instances' states (through the Execution API on a real
    deployment). A task instance Airflow does not know is absent from the result.
    """
    from airdock.hygiene.sweep_plan import task_key

    wanted: dict[str, set[TaskKey]] = defaultdict(set)
    for container in containers:
        key = task_key(container)
        if key is not None:
            wanted[key.dag_id].add(key)
    statuses: dict[TaskKey, TaskStatus] = {}
    for dag_id, keys in wanted.items():
        states = ti.get_task_states(
            dag_id=dag_id,
            run_ids=sorted({k.run_id for k in keys}),
            task_ids=sorted({k.task_id for k in keys}),
        )
        for key in keys:
            by_task = states.get(key.run_id, {})
            name = key.task_id if key.map_index < 0 else f"{key.task_id}_{key.map_index}"
            if name in by_task:
                statuses[key] = TaskStatus(state=by_task[name])
    return statuses


def ask_airflow(context: Any, containers: Sequence[Any], log: Any) -> dict[TaskKey, TaskStatus] | None:
    """The task states of ``containers``' task instances, or None when Airflow cannot be asked.

    Expected: no task instance in the context (``execute`` called outside a task runner) and the
    Execution API answering with an error (``AirflowRuntimeError``) — both mean "Airflow not
    asked", so only stopped containers past ``max_container_age`` go. Anything else is a defect
    to see, not a reason to switch rules silently: the task fails with one line.
    """
    from airflow.sdk.exceptions import AirflowRuntimeError

    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is None or not hasattr(ti, "get_task_states"):
        log.warning("no task instance in the context: Airflow not asked; only the age rule applies")
        return None
    if not containers:
        return {}
    try:
        return task_statuses(ti, containers)
    except AirflowRuntimeError as exc:
        log.warning("Airflow did not answer the task-state lookup (%s); only the age rule applies", exc)
        return None
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        raise AirflowException(
            f"asking Airflow for the task states of {len(containers)} airdock containers failed "
            f"({type(exc).__name__}: {detail}); nothing was removed"
        ) from None


class DockerHygieneOperator(BaseOperator):  # type: ignore[misc]  # Airflow is untyped here
    """Keep a worker's Docker engine clean: remove orphaned airdock containers and GC images.

    Containers: those labelled ``airdock.managed=true`` whose task instance Airflow says is
    finished or gone (asked through the task SDK) are stopped and removed. When Airflow cannot be
    asked, only stopped ones older than ``max_container_age`` go: a running container is never
    removed on its age. A container without the label is never touched.

    Images: only those airdock pulled or started on this engine, and dangling ones (``gc_scope``
    ``"airdock"``, the default; ``"all"`` for every image), least recently used first (dangling
    first) until image storage is under
    ``max_image_bytes`` and/or the data-root filesystem under the low watermark once above the high
    one; images of existing containers, images in use by starting tasks, younger than ``min_age``
    or matching a ``keep`` pattern are never removed; unused longer than ``max_unused_age`` go
    even under budget. Unset arguments come from ``[airdock] gc_*``. ``dry_run`` only plans.
    Returns a summary (counts and bytes) as XCom; the per-item reasons go to the log.
    """

    template_fields: Sequence[str] = ("keep", "max_image_bytes", "min_age", "max_unused_age", "gc_scope")

    def __init__(
        self,
        *,
        docker_url: str | None = None,
        max_image_bytes: str | int | object | None = _UNSET,
        high_watermark_percent: float | object | None = _UNSET,
        low_watermark_percent: float | object = _UNSET,
        min_age: str | float | object = _UNSET,
        max_unused_age: str | float | object | None = _UNSET,
        keep: Sequence[str] | object = _UNSET,
        gc_scope: str | object = _UNSET,
        max_container_age: str | float = "24h",
        sweep_containers: bool = True,
        collect_images: bool = True,
        stop_grace_seconds: int = 10,
        dry_run: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.docker_url = docker_url
        self.max_image_bytes = max_image_bytes
        self.high_watermark_percent = high_watermark_percent
        self.low_watermark_percent = low_watermark_percent
        self.min_age = min_age
        self.max_unused_age = max_unused_age
        self.keep = keep
        self.gc_scope = gc_scope
        if isinstance(gc_scope, str) and "{{" not in gc_scope:
            GcScope.parse(gc_scope)  # bad input fails when the DAG is parsed
        self.max_container_age = max_container_age
        self.sweep_containers = sweep_containers
        self.collect_images = collect_images
        self.stop_grace_seconds = stop_grace_seconds
        self.dry_run = dry_run

    def execute(self, context: Any) -> dict[str, Any]:
        import docker

        from airdock.hygiene.gc_apply import apply_gc, collect_gc
        from airdock.hygiene.inventory import read_inventory
        from airdock.hygiene.sweep_apply import apply_sweep, collect_sweep

        client = docker.DockerClient(base_url=self.docker_url) if self.docker_url else docker.from_env()
        now = time.time()
        summary: dict[str, Any] = {"dry_run": self.dry_run}
        if self.sweep_containers:
            inventory = read_inventory(client)
            managed = [c for c in inventory.containers if c.managed]
            statuses = ask_airflow(context, managed, self.log)
            policy = SweepPolicy(max_container_age_seconds=_seconds(self.max_container_age))
            plan = collect_sweep(client, statuses, policy, now)
            for decision in plan.decisions:
                self.log.info(
                    "container %s: %s (%s)",
                    decision.container.id[:12],
                    decision.verdict.value,
                    decision.reason,
                )
            removed = [] if self.dry_run else apply_sweep(client, plan, grace_seconds=self.stop_grace_seconds)
            summary["containers_removed"] = len(plan.removals) if self.dry_run else len(removed)
            if not self.dry_run:
                from airdock.airflow import host_status

                host_status.note(
                    "sweeps",
                    {"containers": [f"{d.container.id[:12]} ({d.reason})" for d in removed][:20]},
                )
        if self.collect_images:
            store = usage_store()
            gc = gc_policy(
                max_image_bytes=self.max_image_bytes,
                high_watermark_percent=self.high_watermark_percent,
                low_watermark_percent=self.low_watermark_percent,
                min_age=self.min_age,
                max_unused_age=self.max_unused_age,
                keep=self.keep,
                scope=self.gc_scope,
            )
            gc_plan = collect_gc(client, store, gc, now)
            self.log.info("image GC scope: %s (gc_scope=%s)", gc.scope.describe(), gc.scope.value)
            for image in gc_plan.decisions:
                name = image.image.tags[0] if image.image.tags else image.image.id[:19]
                self.log.info("image %s: %s (%s)", name, image.verdict.value, image.reason)
            summary["gc_scope"] = gc.scope.value
            if self.dry_run:
                summary.update(images_removed=len(gc_plan.removals), bytes_reclaimed=gc_plan.frees_bytes)
            else:
                result = apply_gc(client, gc_plan, store)
                note_gc(result)
                summary.update(images_removed=len(result.removed), bytes_reclaimed=result.freed_bytes)
        self.log.info("hygiene: %s", summary)
        if not self.dry_run:
            from airdock.airflow import host_status

            host_status.publish(client, self.log, force=True)
        return summary
