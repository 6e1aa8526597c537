"""The local ECS runs tasks for real: containers on the engine, images from the local ECR, CloudWatch Logs.

Each stack here is started with `airdock local up` (a real server process, its real runner), the
images are pushed to its ECR through the gateway, and everything is driven with unmodified boto3.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from airdock.local import settings as local_settings
from airdock.local.ecs_runner import LABEL_STACK, LABEL_TASK
from tests.conftest import StackHandle, airdock, make_env, stacks_denying, start_stack
from tests.integration.test_docker_flow import push

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"


def client(stack: StackHandle, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack.settings.api_url,
        region_name=stack.settings.region,
        aws_access_key_id=local_settings.LOCAL_ACCESS_KEY_ID,
        aws_secret_access_key=local_settings.LOCAL_SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="module")
def ecs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    handle = start_stack(tmp_path_factory.mktemp("ecs-stack"))
    yield handle
    airdock("local", "down", "--data-dir", str(handle.data_dir), check=False)


@pytest.fixture(scope="module")
def job_image(ecs_stack: StackHandle, docker_client: Any, base_image: str) -> str:
    """The session's base image pushed to the ECS stack's ECR as ecs/job:v1 (and not left locally)."""
    ref = ecs_stack.publish(docker_client, base_image, "ecs/job")
    return ref


def definition(
    ecs: Any, image: str, command: list[str], *, group: str | None = "/airdock/test", **container: Any
) -> str:
    spec: dict[str, Any] = {"name": "job", "image": image, "memory": 64, "command": command, **container}
    if group is not None:
        spec["logConfiguration"] = {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": group,
                "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "ecs",
                "awslogs-create-group": "true",
            },
        }
    family = f"job-{uuid.uuid4().hex[:8]}"
    ecs.register_task_definition(family=family, containerDefinitions=[spec], executionRoleArn=ROLE)
    return family


def wait_for(predicate: Callable[[], Any], timeout: float = 90, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def task_of(ecs: Any, arn: str) -> dict[str, Any]:
    return dict(ecs.describe_tasks(tasks=[arn])["tasks"][0])


def stopped(ecs: Any, arn: str, timeout: float = 90) -> dict[str, Any]:
    return dict(
        wait_for(lambda: (t := task_of(ecs, arn))["lastStatus"] == "STOPPED" and t, timeout, "STOPPED")
    )


def messages(logs: Any, group: str, stream: str) -> list[str]:
    out: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        page = logs.get_log_events(**kwargs)
        out += [event["message"] for event in page["events"]]
        if page["nextForwardToken"] == token or not page["events"]:
            return out
        token = page["nextForwardToken"]


def test_a_task_runs_its_ecr_image_and_streams_its_output_while_it_runs(
    ecs_stack: StackHandle, job_image: str, docker_client: Any
) -> None:
    ecs, logs = client(ecs_stack, "ecs"), client(ecs_stack, "logs")
    family = definition(ecs, job_image, ["sh", "-c", "echo first; sleep 3; echo second; exit 3"])
    before = ecs_stack.status()["ecs"]
    arn = ecs.run_task(taskDefinition=family, startedBy="test")["tasks"][0]["taskArn"]
    task_id = arn.rsplit("/", 1)[1]
    stream = f"ecs/job/{task_id}"
    running = wait_for(lambda: (t := task_of(ecs, arn))["lastStatus"] == "RUNNING" and t, 60, "RUNNING")
    assert running["pullStartedAt"] <= running["pullStoppedAt"] <= running["startedAt"]
    assert running["containers"][0]["runtimeId"]
    labels = docker_client.api.inspect_container(running["containers"][0]["runtimeId"])["Config"]["Labels"]
    assert labels[LABEL_TASK] == arn and LABEL_STACK in labels
    assert "airdock.managed" not in labels, "airdock's hygiene must not take it for one of its tasks"
    # Logs are retrievable while the task runs (the second line comes 3 s later).
    wait_for(lambda: messages(logs, "/airdock/test", stream) == ["first"], 2.5, "the first line in the logs")
    assert task_of(ecs, arn)["lastStatus"] == "RUNNING"

    done = stopped(ecs, arn)
    assert done["stopCode"] == "EssentialContainerExited"
    assert done["stoppedReason"] == "Essential container in task exited"
    assert done["containers"][0]["exitCode"] == 3 and done["containers"][0]["lastStatus"] == "STOPPED"
    assert done["desiredStatus"] == "STOPPED" and done["stoppedAt"] >= done["startedAt"]
    assert messages(logs, "/airdock/test", stream) == ["first", "second"]
    # The runner removes a stopped task's container right after recording the stop: soon, not at once.
    wait_for(
        lambda: docker_client.containers.list(all=True, filters={"label": f"{LABEL_TASK}={arn}"}) == [],
        10,
        "the stopped task's container removed",
    )
    after = ecs_stack.status()["ecs"]
    assert after["run_task_calls"] == before["run_task_calls"] + 1
    assert after["tasks"].get("STOPPED", 0) >= 1
    assert arn in ecs.list_tasks(desiredStatus="STOPPED")["taskArns"]


def test_a_missing_image_fails_to_start_with_ecs_wording(ecs_stack: StackHandle) -> None:
    ecs = client(ecs_stack, "ecs")
    ecs_stack.ensure_repository("ecs/job")
    family = definition(ecs, f"{ecs_stack.settings.registry_host}/ecs/job:no-such-tag", ["true"], group=None)
    arn = ecs.run_task(taskDefinition=family)["tasks"][0]["taskArn"]
    done = stopped(ecs, arn)
    assert done["stopCode"] == "TaskFailedToStart"
    assert done["stoppedReason"].startswith("CannotPullContainerError: "), done["stoppedReason"]


def test_a_missing_log_group_without_create_group_fails_to_start(
    ecs_stack: StackHandle, job_image: str
) -> None:
    ecs = client(ecs_stack, "ecs")
    family = f"nogroup-{uuid.uuid4().hex[:6]}"
    ecs.register_task_definition(
        family=family,
        executionRoleArn=ROLE,
        containerDefinitions=[
            {
                "name": "job",
                "image": job_image,
                "memory": 64,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": "/never/created", "awslogs-region": "us-east-1"},
                },
            }
        ],
    )
    done = stopped(ecs, ecs.run_task(taskDefinition=family)["tasks"][0]["taskArn"])
    assert done["stopCode"] == "TaskFailedToStart"
    assert done["stoppedReason"].startswith("ResourceInitializationError: failed to validate logger args")
    assert "The specified log group does not exist." in done["stoppedReason"]


def test_stop_task_stops_the_container_with_its_grace(ecs_stack: StackHandle, job_image: str) -> None:
    ecs = client(ecs_stack, "ecs")
    family = definition(ecs, job_image, ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"], stopTimeout=5)
    arn = ecs.run_task(taskDefinition=family)["tasks"][0]["taskArn"]
    wait_for(lambda: task_of(ecs, arn)["lastStatus"] == "RUNNING", 60, "RUNNING")
    began = time.monotonic()
    ecs.stop_task(task=arn, reason="enough")
    done = stopped(ecs, arn, 30)
    assert time.monotonic() - began < 10
    assert done["stopCode"] == "UserInitiated" and done["stoppedReason"] == "enough"
    assert done["containers"][0]["exitCode"] == 0, "SIGTERM first: the job's trap ran"


def test_denied_pull_is_a_cannot_pull_error(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, base_image: str
) -> None:
    with stacks_denying(tmp_path_factory, ["ecr:BatchGetImage"]) as stacks:
        stack = stacks["ecr:BatchGetImage"]
        ref = stack.publish(docker_client, base_image, "ecs/denied")
        ecs = client(stack, "ecs")
        family = definition(ecs, ref, ["true"], group=None)
        done = stopped(ecs, ecs.run_task(taskDefinition=family)["tasks"][0]["taskArn"])
    assert done["stopCode"] == "TaskFailedToStart"
    assert done["stoppedReason"].startswith("CannotPullContainerError: ")
    assert "ecr:BatchGetImage" in done["stoppedReason"]


def server_pid(stack: StackHandle) -> int:
    return int(json.loads((stack.data_dir / "pids.json").read_text())["server"])


def test_a_task_survives_the_stack_process_being_killed_and_its_logs_stay_complete(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, base_image: str
) -> None:
    stack = start_stack(tmp_path_factory.mktemp("ecs-kill"))
    try:
        stack.ensure_repository("ecs/job")
        ref = f"{stack.settings.registry_host}/ecs/job:v1"
        docker_client.images.get(base_image).tag(ref)
        push(docker_client, ref, stack.auth_config())
        ecs, logs = client(stack, "ecs"), client(stack, "logs")
        script = "i=1; while [ $i -le 40 ]; do echo line-$i; i=$((i+1)); sleep 0.2; done"
        family = definition(ecs, ref, ["sh", "-c", script], group="/airdock/kill")
        arn = ecs.run_task(taskDefinition=family)["tasks"][0]["taskArn"]
        stream = f"ecs/job/{arn.rsplit('/', 1)[1]}"
        wait_for(lambda: task_of(ecs, arn)["lastStatus"] == "RUNNING", 60, "RUNNING")
        wait_for(lambda: len(messages(logs, "/airdock/kill", stream)) >= 5, 30, "some lines copied")
        os.kill(server_pid(stack), signal.SIGKILL)  # the stack's process dies; the task's container does not
        time.sleep(1)
        assert docker_client.containers.list(filters={"label": f"{LABEL_TASK}={arn}"}), (
            "the container runs on"
        )
        airdock("local", "up", "--data-dir", str(stack.data_dir))
        done = stopped(ecs, arn)
        assert done["stopCode"] == "EssentialContainerExited" and done["containers"][0]["exitCode"] == 0
        assert messages(logs, "/airdock/kill", stream) == [f"line-{n}" for n in range(1, 41)], (
            "complete, once"
        )
    finally:
        airdock("local", "down", "--data-dir", str(stack.data_dir), check=False)


def test_down_stops_the_tasks_and_gc_never_takes_them_for_airdocks(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, base_image: str, tmp_path: Path
) -> None:
    stack = start_stack(tmp_path_factory.mktemp("ecs-down"))
    try:
        stack.ensure_repository("ecs/job")
        ref = f"{stack.settings.registry_host}/ecs/job:v1"
        docker_client.images.get(base_image).tag(ref)
        push(docker_client, ref, stack.auth_config())
        ecs = client(stack, "ecs")
        family = definition(ecs, ref, ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"], group=None)
        arn = ecs.run_task(taskDefinition=family)["tasks"][0]["taskArn"]
        running = wait_for(lambda: (t := task_of(ecs, arn))["lastStatus"] == "RUNNING" and t, 60, "RUNNING")
        container_id = running["containers"][0]["runtimeId"]
        gc = airdock(
            "gc", "--dry-run", "--json", "--max-container-age", "0s",
            env=make_env(AIRDOCK_STATE_DIR=str(tmp_path / "state")),
        )  # fmt: skip
        verdicts = {c["id"]: c for c in json.loads(gc.stdout)["containers"]}
        assert (
            verdicts[container_id]["verdict"] == "kept"
            and verdicts[container_id]["reason"] == "not airdock's"
        )
        airdock("local", "down", "--data-dir", str(stack.data_dir))
        assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_TASK}={arn}"}) == []
        airdock("local", "up", "--data-dir", str(stack.data_dir))
        done = task_of(client(stack, "ecs"), arn)
        assert done["lastStatus"] == "STOPPED" and done["stopCode"] == "TerminationNotice"
        assert "airdock local down" in done["stoppedReason"]
        assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["family"] == family
    finally:
        airdock("local", "down", "--data-dir", str(stack.data_dir), check=False)


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


# The 1,000,000 lines run in `make bench` (ecs_local: ecs_local_log_rss_growth_mb); the
# suite prints a fifth of them, enough for the copy's buffers to fill and cycle many times.
LINES = 200_000


def test_many_lines_keep_the_stack_flat_and_all_arrive(ecs_stack: StackHandle, job_image: str) -> None:
    ecs, logs = client(ecs_stack, "ecs"), client(ecs_stack, "logs")
    pid = server_pid(ecs_stack)
    events_before = ecs_stack.status()["logs"]["events"]
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    rss_before = _rss_kb(pid, "VmRSS")
    family = definition(ecs, job_image, ["/bin/busybox", "seq", "1", str(LINES)], group="/airdock/many")
    arn = ecs.run_task(taskDefinition=family)["tasks"][0]["taskArn"]
    done = stopped(ecs, arn, 300)
    peak = _rss_kb(pid, "VmHWM")
    assert done["containers"][0]["exitCode"] == 0
    assert ecs_stack.status()["logs"]["events"] - events_before == LINES
    stream = f"ecs/job/{arn.rsplit('/', 1)[1]}"
    tail = logs.get_log_events(
        logGroupName="/airdock/many", logStreamName=stream, startFromHead=False, limit=3
    )
    assert [e["message"] for e in tail["events"]] == [str(n) for n in range(LINES - 2, LINES + 1)]
    print(f"{LINES} lines: stack RSS {rss_before / 1024:.0f} MB before, peak {peak / 1024:.0f} MB")
    assert (peak - rss_before) / 1024 < 50, f"the stack grew {(peak - rss_before) / 1024:.0f} MB"
