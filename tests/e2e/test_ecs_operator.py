"""The Amazon provider's own ECS operators and sensors, unmodified, on the local ECS (`airflow dags test`).

Only the AWS connection points them at the stack (its ``endpoint_url`` serves ECR, ECS and
CloudWatch Logs alike); the image is pushed to the stack's ECR and pulled by the local ECS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StackHandle
from tests.e2e.conftest import run_dag, write_dag

pytestmark = pytest.mark.e2e

ECS_DAG = """
    import os
    from datetime import datetime, timedelta

    from airflow.providers.amazon.aws.operators.ecs import (
        EcsRegisterTaskDefinitionOperator,
        EcsRunTaskOperator,
    )
    from airflow.providers.amazon.aws.sensors.ecs import (
        EcsClusterStateSensor,
        EcsTaskDefinitionStateSensor,
        EcsTaskStateSensor,
    )
    from airflow.sdk import DAG

    IMAGE = os.environ["AIRDOCK_LOCAL_REGISTRY"] + "/e2e/ecs-job:v1"
    ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
    VPC = {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c"], "assignPublicIp": "DISABLED"}}
    LOGS = {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": "/airdock/e2e-ecs",
            "awslogs-region": "us-east-1",
            "awslogs-stream-prefix": "ecs",
            "awslogs-create-group": "true",
        },
    }

    def run(task_id, command, **kwargs):
        return EcsRunTaskOperator(
            task_id=task_id,
            cluster="default",
            task_definition="airdock-e2e-ecs",
            launch_type="FARGATE",
            network_configuration=VPC,
            overrides={"containerOverrides": [{"name": "job", "command": command}]},
            awslogs_group="/airdock/e2e-ecs",
            awslogs_region="us-east-1",
            awslogs_stream_prefix="ecs",
            container_name="job",
            reattach=True,
            waiter_delay=1,
            awslogs_fetch_interval=timedelta(seconds=1),
            **kwargs,
        )

    with DAG("airdock_e2e_ecs", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        register = EcsRegisterTaskDefinitionOperator(
            task_id="register",
            family="airdock-e2e-ecs",
            container_definitions=[
                {"name": "job", "image": IMAGE, "essential": True, "logConfiguration": LOGS}
            ],
            register_task_kwargs={
                "requiresCompatibilities": ["FARGATE"],
                "networkMode": "awsvpc",
                "cpu": "256",
                "memory": "512",
                "executionRoleArn": ROLE,
            },
        )
        definition_active = EcsTaskDefinitionStateSensor(
            task_id="definition_active",
            task_definition="{{ ti.xcom_pull(task_ids='register') }}",
            poke_interval=1,
        )
        cluster_active = EcsClusterStateSensor(
            task_id="cluster_active", cluster_name="default", poke_interval=1
        )
        ok = run("ok", ["sh", "-c", "echo ecs-line-one; echo ecs-line-two"])
        task_stopped = EcsTaskStateSensor(
            task_id="task_stopped",
            cluster="default",
            task="{{ ti.xcom_pull(task_ids='ok', key='ecs_task_arn') }}",
            target_state="STOPPED",
            poke_interval=1,
        )
        failing = run("failing", ["sh", "-c", "echo about-to-fail; exit 3"], retries=0)
        register >> [definition_active, cluster_active] >> ok >> task_stopped >> failing
"""


def test_the_amazon_providers_ecs_operators_run_unmodified_on_the_local_ecs(
    stack: StackHandle, docker_client: Any, base_image: str, airflow_home: Path, tmp_path: Path
) -> None:
    stack.publish(docker_client, base_image, "e2e/ecs-job")
    dags = tmp_path / "dags"
    write_dag(dags, "ecs", ECS_DAG)
    before = stack.status()["ecs"]

    run = run_dag(airflow_home, dags, "airdock_e2e_ecs", stack, tmp_path / "cache")

    output = run.output
    assert run.state == "failed", output[-4000:]  # the last task fails on purpose
    for task_id in ("register", "definition_active", "cluster_active", "ok", "task_stopped", "failing"):
        assert f"[DAG TEST] end task task_id={task_id}" in output, task_id
    assert output.count("new_state=success") == 5 and output.count("new_state=failed") == 1, output[-4000:]
    assert "ecs-line-one" in output and "ecs-line-two" in output, "the container's output in the task log"
    # The operator's own failure message, with the failing container's last lines from CloudWatch Logs.
    assert "This task is not in success state - last 10 logs from Cloudwatch:\nabout-to-fail" in output
    after = stack.status()["ecs"]
    assert after["run_task_calls"] == before["run_task_calls"] + 2
    assert after["register_task_definition_calls"] == before["register_task_definition_calls"] + 1
