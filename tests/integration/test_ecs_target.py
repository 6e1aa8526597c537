"""The ECS target against the local stack's ECS: real RunTask, containers, CloudWatch Logs.

Pin to digest, derive and reuse the task definition, start, follow the output to the outcome,
find a task an earlier try left behind (running, or stopped and not yet collected), stop.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from airdock.engine.logs import KeepPolicy
from airdock.errors import ImagePullError
from airdock.images import ecr_registry_for, parse_image_ref
from airdock.targets.ecs.image import pin_to_digest
from airdock.targets.ecs.settings import EcsSettings
from airdock.targets.ecs.target import EcsRunError, EcsTarget
from airdock.targets.ecs.task_definition import desired_definition, family_for
from airdock.targets.ecs.task_definitions import TaskDefinitions
from airdock.targets.spec import COLLECTED_TAG, ContainerSpec, TaskIdentity
from tests.conftest import StackHandle
from tests.integration.test_local_ecs import ROLE, client, stopped, task_of, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ecs_image(stack: StackHandle, docker_client: Any, base_image: str) -> str:
    ref = stack.publish(docker_client, base_image, "target/job")
    return ref


class Runner:
    """What the operator does, minus Airflow: pin, ensure the definition, start."""

    def __init__(self, stack: StackHandle, lock_dir: Path, **settings: Any) -> None:
        self.stack = stack
        self.ecs, self.logs, self.ecr = client(stack, "ecs"), client(stack, "logs"), client(stack, "ecr")
        self.settings = EcsSettings(
            region=stack.settings.region, subnets=("subnet-0test",), execution_role_arn=ROLE, **settings
        )
        self.definitions = TaskDefinitions(self.ecs, lock_dir)
        self.target = EcsTarget(self.ecs, self.logs, self.settings, poll_seconds=0.5)

    def start(self, spec: ContainerSpec, identity: TaskIdentity) -> Any:
        ref = parse_image_ref(spec.image)
        registry = ecr_registry_for(ref, [self.stack.settings.registry_host])
        assert registry is not None
        pinned, _ = pin_to_digest(self.ecr, ref, registry)
        definition = self.definitions.ensure(
            desired_definition(spec, pinned, family_for(identity.dag_id, identity.task_id), self.settings)
        )
        return self.target.start(spec, identity, definition, pinned)


def identity(**kwargs: Any) -> TaskIdentity:
    return TaskIdentity(
        dag_id="target", task_id=kwargs.pop("task_id", "job"), run_id=uuid.uuid4().hex, **kwargs
    )


def test_a_task_runs_and_its_output_arrives_line_by_line(
    stack: StackHandle, ecs_image: str, tmp_path: Path
) -> None:
    runner = Runner(stack, tmp_path)
    spec = ContainerSpec(
        image=ecs_image,
        command=("sh", "-c", 'echo "one $MODE"; echo "two $TOKEN"; echo last'),
        environment={"MODE": "full"},
        secret_environment={"TOKEN": "t0k"},
    )
    handle = runner.start(spec, identity())
    assert "@sha256:" in handle.image
    seen: list[str] = []
    outcome = runner.target.follow(handle, seen.append, KeepPolicy.LAST)
    assert seen == ["one full", "two t0k", "last"]
    assert outcome.succeeded and outcome.exit_code == 0 and outcome.kept == ["last"]
    task = runner.ecs.describe_tasks(tasks=[handle.task_arn], include=["TAGS"])["tasks"][0]
    tags = {t["key"]: t["value"] for t in task["tags"]}
    assert tags["airdock.dag_id"] == "target" and tags[COLLECTED_TAG] == "true"
    assert task["containers"][0]["image"] == handle.image


def test_a_page_of_log_events_goes_out_as_few_records_of_whole_lines(
    stack: StackHandle, ecs_image: str, tmp_path: Path
) -> None:
    runner = Runner(stack, tmp_path)
    runner.target.lines_per_record = 40
    program = "i=1; while [ $i -le 100 ]; do echo line-$i; i=$((i+1)); done"
    handle = runner.start(ContainerSpec(image=ecs_image, command=("sh", "-c", program)), identity())
    records: list[str] = []
    outcome = runner.target.follow(handle, records.append, KeepPolicy.LAST)
    assert "\n".join(records).split("\n") == [f"line-{i}" for i in range(1, 101)]
    assert all(len(record.split("\n")) <= 40 for record in records)
    assert len(records) < 100 / 4, f"a page's events share records ({len(records)} records)"
    assert outcome.kept == ["line-100"]


def test_a_failing_task_reports_its_exit_code_and_last_lines(
    stack: StackHandle, ecs_image: str, tmp_path: Path
) -> None:
    runner = Runner(stack, tmp_path)
    spec = ContainerSpec(image=ecs_image, command=("sh", "-c", "echo before-failing; exit 3"))
    outcome = runner.target.follow(runner.start(spec, identity()), lambda line: None, KeepPolicy.NONE)
    assert outcome.exit_code == 3 and outcome.reason == "the container exited with code 3"
    assert outcome.tail == ["before-failing"] and outcome.kept == []


def test_a_missing_image_is_refused_before_any_task(
    stack: StackHandle, ecs_image: str, tmp_path: Path
) -> None:
    runner = Runner(stack, tmp_path)
    before = stack.status()["ecs"]["run_task_calls"]
    with pytest.raises(ImagePullError, match="does not exist"):
        runner.start(ContainerSpec(image=ecs_image.replace(":v1", ":nope")), identity())
    with pytest.raises(ImagePullError, match="repository target/none is not in"):
        runner.start(ContainerSpec(image=ecs_image.replace("target/job", "target/none")), identity())
    assert stack.status()["ecs"]["run_task_calls"] == before


def test_an_unknown_cluster_is_one_line(stack: StackHandle, ecs_image: str, tmp_path: Path) -> None:
    runner = Runner(stack, tmp_path, cluster="nowhere")
    with pytest.raises(EcsRunError) as caught:
        runner.start(ContainerSpec(image=ecs_image), identity())
    assert str(caught.value) == (
        "ECS cluster 'nowhere' does not exist in us-east-1: create it or set [airdock] ecs_cluster"
    )


def test_a_retry_finds_the_running_task_and_follows_it_to_the_end(
    stack: StackHandle, ecs_image: str, tmp_path: Path
) -> None:
    runner = Runner(stack, tmp_path)
    first = identity(try_number=1)
    script = "i=1; while [ $i -le 12 ]; do echo line-$i; i=$((i+1)); sleep 0.25; done"
    handle = runner.start(ContainerSpec(image=ecs_image, command=("sh", "-c", script)), first)
    wait_for(lambda: task_of(runner.ecs, handle.task_arn)["lastStatus"] == "RUNNING", 60, "RUNNING")
    # The worker running try 1 dies here. Try 2, on another worker, looks for what try 1 started.
    retry = TaskIdentity(first.dag_id, first.task_id, first.run_id, first.map_index, try_number=2)
    found = Runner(stack, tmp_path).target.find(retry)
    assert found is not None and found[0].task_arn == handle.task_arn and found[1] is True
    seen: list[str] = []
    outcome = runner.target.follow(found[0], seen.append)
    assert outcome.succeeded and seen == [f"line-{n}" for n in range(1, 13)]
    assert runner.target.find(retry) is None, "collected: a third try starts afresh"
    assert len(runner.ecs.list_tasks(startedBy=first.started_by(), desiredStatus="STOPPED")["taskArns"]) == 1


def test_a_retry_collects_a_task_that_finished_while_nobody_watched(
    stack: StackHandle, ecs_image: str, tmp_path: Path
) -> None:
    runner = Runner(stack, tmp_path)
    first = identity()
    handle = runner.start(
        ContainerSpec(image=ecs_image, command=("sh", "-c", "echo done-alone; exit 4")), first
    )
    stopped(runner.ecs, handle.task_arn)
    found = runner.target.find(TaskIdentity(first.dag_id, first.task_id, first.run_id, try_number=2))
    assert found is not None and found[1] is False
    seen: list[str] = []
    outcome = runner.target.follow(found[0], seen.append)
    assert seen == ["done-alone"] and outcome.exit_code == 4


def test_stop_ends_a_running_task(stack: StackHandle, ecs_image: str, tmp_path: Path) -> None:
    runner = Runner(stack, tmp_path)
    handle = runner.start(
        ContainerSpec(
            image=ecs_image, command=("sh", "-c", "echo started; trap 'exit 0' TERM; sleep 60 & wait")
        ),
        identity(),
    )
    seen: list[str] = []
    box: dict[str, Any] = {}
    follower = threading.Thread(target=lambda: box.update(outcome=runner.target.follow(handle, seen.append)))
    follower.start()
    wait_for(lambda: seen == ["started"], 60, "the first line")
    runner.target.stop(handle, "stopped by the test")
    follower.join(60)
    outcome = box["outcome"]
    assert outcome.reason == "the ECS task was stopped: stopped by the test"


def _ensure_in_process(
    stack_dir: str, api_url: str, lock_dir: str, desired: dict[str, Any], barrier: Any
) -> None:
    """One task process: its own ECS client and TaskDefinitions, released with the others."""
    import boto3

    from airdock.local import settings as local_settings

    ecs = boto3.client(
        "ecs",
        endpoint_url=api_url,
        region_name="us-east-1",
        aws_access_key_id=local_settings.LOCAL_ACCESS_KEY_ID,
        aws_secret_access_key=local_settings.LOCAL_SECRET_ACCESS_KEY,
    )
    barrier.wait()
    TaskDefinitions(ecs, Path(lock_dir)).ensure(desired)


def test_twenty_task_processes_of_one_family_register_one_revision_then_only_on_change(
    stack: StackHandle, ecs_image: str, tmp_path: Path
) -> None:
    import multiprocessing

    runner = Runner(stack, tmp_path)
    ref = parse_image_ref(ecs_image)
    registry = ecr_registry_for(ref, [stack.settings.registry_host])
    assert registry is not None
    pinned, _ = pin_to_digest(runner.ecr, ref, registry)
    family = family_for("fanout", uuid.uuid4().hex)

    def registrations() -> int:
        return int(stack.status()["ecs"]["register_task_definition_calls"])

    def together(desired: dict[str, Any]) -> int:
        before = registrations()
        context = multiprocessing.get_context("fork")
        barrier = context.Barrier(20)
        args = (str(stack.data_dir), stack.settings.api_url, str(tmp_path / "locks"), desired, barrier)
        workers = [context.Process(target=_ensure_in_process, args=args) for _ in range(20)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
        assert [w.exitcode for w in workers] == [0] * 20
        return registrations() - before

    spec = ContainerSpec(image=ecs_image, command=("echo", "one"))
    assert together(desired_definition(spec, pinned, family, runner.settings)) == 1
    per_run = ContainerSpec(image=ecs_image, command=("echo", "two"), environment={"NEW": "1"})
    assert together(desired_definition(per_run, pinned, family, runner.settings)) == 0, "command, env: none"
    secret = ContainerSpec(
        image=ecs_image, secret_arns={"K": "arn:aws:ssm:us-east-1:123456789012:parameter/k"}
    )
    assert together(desired_definition(secret, pinned, family, runner.settings)) == 1, "a changed secret: one"
    new_image = pinned.rsplit("@", 1)[0] + "@sha256:" + "0" * 64
    assert together(desired_definition(secret, new_image, family, runner.settings)) == 1, "a new digest: one"
