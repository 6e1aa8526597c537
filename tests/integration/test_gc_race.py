"""The race: a GC looping with no budget while tasks start containers from images just pulled.

Tasks follow the operator's protocol: lease the reference (under the host-wide lock) → find the
image present or "pull" it (re-import) → add the image id to the lease → a pause, as a real pull's
tail and the operator's setup take → create and start a labelled container → record the use →
remove the container → let go. Meanwhile a GC thread runs ``collect_gc`` + ``apply_gc`` with
``min_age 0`` and a budget of 0 bytes, so every image it may remove, it does.

The control runs the same tasks without leases and must see "No such image" failures, which
shows the test can catch the bug the protocol prevents.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from airdock.hygiene.gc_apply import SKIP_LEASED, apply_gc, collect_gc
from airdock.hygiene.model import LABEL_DAG_ID, MANAGED_LABEL, GcPolicy
from airdock.hygiene.usage import UsageStore
from airdock.local.offline_images import import_image

pytestmark = pytest.mark.integration

N_TASKS = 4
N_VICTIMS = 12
RUN_SECONDS = 10.0
MAX_RUN_SECONDS = 60.0  # the leased run goes on until the GC has competed for a task's image
POLICY = GcPolicy(max_image_bytes=0, high_watermark_percent=None, min_age_seconds=0)


@dataclass
class Tally:
    tasks_done: int = 0
    pulls: int = 0  # the image was absent (the GC removed it between tasks) and was re-imported
    failures: list[str] = field(default_factory=list)
    gc_rounds: int = 0
    gc_removed: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    gc_skipped_leased: int = 0
    gc_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def prefix(docker_client: Any) -> Iterator[str]:
    name = f"airdock-race-{uuid.uuid4().hex[:8]}"
    yield name
    for container in docker_client.api.containers(all=True, filters={"label": f"{LABEL_DAG_ID}={name}"}):
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_container(container["Id"], force=True)
    for image in docker_client.api.images(filters={"reference": f"{name}/*"}):
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_image(image["Id"], force=True)


def task_loop(
    prefix: str, n: int, store: UsageStore, lease: bool, stop: threading.Event, tally: Tally
) -> None:
    client = docker.from_env(timeout=120)
    rng = random.Random(n)
    ref = f"{prefix}/task-{n}:v1"
    labels = {MANAGED_LABEL: "true", LABEL_DAG_ID: prefix}
    while not stop.is_set():
        holding = store.lease([ref], seconds=60) if lease else contextlib.nullcontext()
        try:
            with holding as held:
                try:
                    image_id = client.api.inspect_image(ref)["Id"]
                except docker.errors.ImageNotFound:
                    image_id = import_image(client, ref, {"payload.bin": os.urandom(2_000)}).id
                    store.record_pull(image_id, time.time())  # what the operator records after a pull
                    with tally.lock:
                        tally.pulls += 1
                if held is not None:
                    held.add(image_id)
                time.sleep(rng.uniform(0.05, 0.2))  # the pull's tail, the operator's setup
                container = client.api.create_container(ref, command=["true"], labels=labels)["Id"]
                try:
                    client.api.start(container)
                    store.record_use(image_id, time.time())
                    client.api.wait(container, timeout=60)
                finally:
                    client.api.remove_container(container, force=True)
            with tally.lock:
                tally.tasks_done += 1
        except docker.errors.APIError as exc:
            with tally.lock:
                tally.failures.append(f"task-{n}: {exc.explanation or exc}")
        time.sleep(rng.uniform(0.0, 0.05))  # between tasks: unleased, no container — fair game


def gc_loop(prefix: str, store: UsageStore, stop: threading.Event, tally: Tally) -> None:
    client = docker.from_env(timeout=120)

    def mine(tags: tuple[str, ...]) -> bool:
        return any(tag.startswith(f"{prefix}/") for tag in tags)

    while not stop.is_set():
        try:
            plan = collect_gc(client, store, POLICY, time.time())
            # Scope the run to this test's images: the engine is shared with other tests.
            plan = replace(plan, decisions=tuple(d for d in plan.decisions if mine(d.image.tags)))
            result = apply_gc(client, plan, store)
        except Exception as exc:
            tally.gc_errors.append(repr(exc))
            continue
        with tally.lock:
            tally.gc_rounds += 1
            tally.gc_removed += [(d.image.id, d.image.tags) for d in result.removed]
            tally.gc_skipped_leased += sum(1 for _, why in result.skipped if why == SKIP_LEASED)
            tally.gc_errors += [f"{d.image.tags}: {why}" for d, why in result.failed]


def contended(tally: Tally) -> bool:
    """The GC competed for a task's image: removed one between tasks, or found one leased."""
    with tally.lock:
        removed = any("/task-" in tag for _, tags in tally.gc_removed for tag in tags)
        return removed or tally.gc_skipped_leased > 0


def race(
    client: Any,
    prefix: str,
    db: Path,
    *,
    lease: bool,
    seconds: float,
    until_failure: bool = False,
    until_contended_within: float | None = None,
) -> Tally:
    """Run tasks and the GC together for ``seconds``; with ``until_contended_within``, go on (up to
    that many seconds in all) until the GC has competed for a task's image, so the run proves
    something however fast or loaded the machine is."""
    store = UsageStore(db)
    for n in range(N_TASKS):
        image = import_image(client, f"{prefix}/task-{n}:v1", {"payload.bin": os.urandom(2_000)})
        store.record_pull(image.id, time.time())
    for n in range(N_VICTIMS):
        image = import_image(client, f"{prefix}/victim-{n}:v1", {"payload.bin": os.urandom(1_000 + n)})
        store.record_pull(image.id, time.time())
    tally = Tally()
    stop = threading.Event()
    threads = [
        threading.Thread(target=task_loop, args=(prefix, n, store, lease, stop, tally))
        for n in range(N_TASKS)
    ]
    threads.append(threading.Thread(target=gc_loop, args=(prefix, store, stop, tally)))
    for thread in threads:
        thread.start()
    started = time.monotonic()
    while not (until_failure and tally.failures):
        elapsed = time.monotonic() - started
        if elapsed >= seconds and (until_contended_within is None or contended(tally)):
            break
        if until_contended_within is not None and elapsed >= until_contended_within:
            break
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(120)
    return tally


def test_gc_never_removes_an_image_a_task_is_starting(
    docker_client: Any, prefix: str, tmp_path: Path
) -> None:
    tally = race(
        docker_client,
        prefix,
        tmp_path / "usage.sqlite",
        lease=True,
        seconds=RUN_SECONDS,
        until_contended_within=MAX_RUN_SECONDS,
    )
    print(
        f"race: {tally.tasks_done} tasks, {tally.pulls} re-pulls, {tally.gc_rounds} GC rounds, "
        f"{len(tally.gc_removed)} removals, {tally.gc_skipped_leased} skipped as leased at removal time"
    )
    assert tally.failures == []
    assert tally.gc_errors == []
    assert tally.tasks_done >= 10
    assert tally.gc_rounds >= 3
    # The GC did its work: every victim went, and it contended for the tasks' images too.
    removed_tags = {tag for _, tags in tally.gc_removed for tag in tags}
    assert {f"{prefix}/victim-{n}:v1" for n in range(N_VICTIMS)} <= removed_tags
    assert contended(tally), f"the GC never competed for a task's image within {MAX_RUN_SECONDS:.0f} s"


def test_without_leases_tasks_fail(docker_client: Any, prefix: str, tmp_path: Path) -> None:
    """The control: the same race with leasing off breaks tasks, so the test above can fail."""
    tally = race(
        docker_client,
        prefix,
        tmp_path / "usage.sqlite",
        lease=False,
        seconds=MAX_RUN_SECONDS,  # it stops at the first failure: seconds, unless the machine is slow
        until_failure=True,
    )
    print(f"control: {tally.tasks_done} tasks, {len(tally.failures)} failures, e.g. {tally.failures[:1]}")
    assert tally.failures, "no task failed without leases: the race did not happen, the test proves nothing"
    assert any("No such image" in failure for failure in tally.failures), tally.failures
