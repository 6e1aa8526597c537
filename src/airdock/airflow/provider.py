"""Provider metadata, found by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

import airdock

# [airdock] options: name → (description, example, default).
_OPTIONS: dict[str, tuple[str, str, str]] = {
    "ecr_registries": (
        "Comma-separated registry hosts (host or host:port) to treat as Amazon ECR besides the "
        "standard *.dkr.ecr.*.amazonaws.com hosts: VPC endpoints, custom DNS names, or the local "
        "stack's gateway.",
        "127.0.0.1:5780",
        "",
    ),
    "token_cache_dir": (
        "Directory of the host-wide registry token cache shared by all task processes on a worker "
        "(files 0600, directory 0700). Empty: $XDG_CACHE_HOME/airdock/registry-tokens or "
        "~/.cache/airdock/registry-tokens.",
        "/var/cache/airdock/registry-tokens",
        "",
    ),
    "token_refresh_margin": (
        "Refresh a cached registry token when less than this remains (a duration: 30m, 1h; at most "
        "half the token's lifetime is used).",
        "30m",
        "1h",
    ),
    "state_dir": (
        "Directory of the Docker engine's image-usage record (usage.sqlite: what airdock pulled and "
        "started, last use of each image, in-use leases of starting tasks). The environment variable "
        "AIRDOCK_STATE_DIR wins over it; empty: $XDG_STATE_HOME/airdock or ~/.local/state/airdock. "
        "Tasks and the GC of one engine must resolve the same directory.",
        "/var/lib/airdock",
        "",
    ),
    "gc_scope": (
        "Which images the GC may remove: 'airdock' (images airdock pulled or started on this engine, "
        "and dangling images) or 'all' (every image on the engine). Protections apply in both.",
        "all",
        "airdock",
    ),
    "gc_max_image_bytes": (
        "Image GC budget in bytes of image storage (e.g. 20GB, 50GiB). Empty: no byte budget.",
        "20GB",
        "",
    ),
    "gc_high_watermark_percent": (
        "Image GC starts when the filesystem under Docker's data root is this full (percent).",
        "85",
        "85",
    ),
    "gc_low_watermark_percent": ("...and frees images until that filesystem is this full.", "80", "80"),
    "gc_min_age": ("Never remove an image used, pulled or created more recently than this.", "10m", "10m"),
    "gc_max_unused_age": (
        "Remove images unused for longer than this even under budget. Empty: never.",
        "7d",
        "",
    ),
    "log_lines_per_record": (
        "How many lines of a container's output one task-log record may carry: the lines that "
        "arrived together go out as one record (at most this many, and 64 KB). 1: a record per line.",
        "1",
        "1000",
    ),
    "run_on": (
        "Where ContainerOperator tasks run unless the task says: 'docker' (the worker's Docker engine) "
        "or 'ecs' (AWS ECS, with the ecs_* settings below).",
        "ecs",
        "docker",
    ),
    "deferrable": (
        "Whether ContainerOperator tasks defer by default: start the container or ECS task, then let "
        "the triggerer wait for it while the worker slot is free.",
        "true",
        "false",
    ),
    "triggerer_on_host": (
        "Whether a triggerer can reach this worker's Docker engine through its unix socket: 'auto' looks "
        "for an 'airflow triggerer' process on the host; 'true' when it runs elsewhere with the socket "
        "shared (another container); 'false' never defers docker tasks on a local engine.",
        "true",
        "auto",
    ),
    "ecs_cluster": ("ECS cluster of ContainerOperator tasks run on ECS.", "jobs", "default"),
    "ecs_launch_type": (
        "FARGATE or EC2 (ignored when ecs_capacity_provider_strategy is set).",
        "EC2",
        "FARGATE",
    ),
    "ecs_subnets": (
        "Comma-separated subnet ids of awsvpc tasks (FARGATE needs them).",
        "subnet-0a1b,subnet-2c3d",
        "",
    ),
    "ecs_security_groups": ("Comma-separated security group ids of awsvpc tasks.", "sg-0a1b", ""),
    "ecs_assign_public_ip": ("Give awsvpc tasks a public IP (true/false).", "true", "false"),
    "ecs_execution_role_arn": (
        "Task execution role: pulls from ECR, writes CloudWatch Logs, reads ECS secrets (FARGATE needs it).",
        "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        "",
    ),
    "ecs_task_role_arn": ("Role the job itself runs as.", "arn:aws:iam::123456789012:role/jobRole", ""),
    "ecs_log_group": (
        "CloudWatch log group of the tasks' output (created when missing).",
        "/team/jobs",
        "/airdock/tasks",
    ),
    "ecs_capacity_provider_strategy": (
        "Comma-separated provider[:weight[:base]] items; replaces the launch type.",
        "FARGATE_SPOT:3,FARGATE:1",
        "",
    ),
    "ecs_keep_revisions": (
        "Task-definition revisions airdock keeps per family; older ones it registered are deregistered.",
        "10",
        "5",
    ),
    "worker_queues": (
        "Comma-separated queues, one per worker host (each Celery worker serves its own queue besides "
        "the default one): the example hygiene DAG runs one task on each, so every host's engine is "
        "cleaned. Empty: one task on the default queue.",
        "worker-1,worker-2",
        "",
    ),
    "gc_keep": (
        "Comma-separated patterns (fnmatch) of image references the GC never removes.",
        "prod/*,*:stable",
        "",
    ),
}


def get_provider_info() -> dict[str, Any]:
    """Return airdock's provider description, in the shape of Airflow's provider_info schema."""
    return {
        "package-name": "airdock",
        "name": "airdock",
        "description": "Run private-registry (Amazon ECR first) container images as Airflow tasks, "
        "with no credential upkeep.",
        "versions": [airdock.__version__],
        "triggers": [
            {"integration-name": "airdock", "python-modules": ["airdock.airflow.triggers"]},
        ],
        "integrations": [
            {
                "integration-name": "airdock",
                "external-doc-url": "https://pypi.org/project/airdock/",
                "tags": ["software"],
            }
        ],
        "config": {
            "airdock": {
                "description": "Settings of the airdock provider.",
                "options": {
                    name: {
                        "description": description + "\n",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": example,
                        "default": default,
                    }
                    for name, (description, example, default) in _OPTIONS.items()
                },
            }
        },
    }
