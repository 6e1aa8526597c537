"""``airdock iam-policy``: print a least-privilege IAM policy for pulling, pushing or maintaining images."""

from __future__ import annotations

from typing import Annotated

import typer

from airdock.analyst.iam_policy import ALL_ROLES, ECS_RUNNER, FORMATS, policy_document, render

IAM_HELP = (
    "Print a least-privilege IAM policy: puller, pusher or maintainer (ECR), ecs-runner (ECS).\n\n"
    'puller (Airflow workers): ecr:GetAuthorizationToken on "*" plus ecr:BatchCheckLayerAvailability, '
    "ecr:BatchGetImage, ecr:GetDownloadUrlForLayer. pusher: the puller's plus ecr:InitiateLayerUpload, "
    "ecr:UploadLayerPart, ecr:CompleteLayerUpload, ecr:PutImage. maintainer: the pusher's plus "
    "ecr:CreateRepository, ecr:DescribeRepositories, ecr:DescribeImages, ecr:PutLifecyclePolicy. "
    "ecs-runner (workers running ContainerOperator on ECS): Register/Deregister/Describe/"
    "ListTaskDefinitions, RunTask on airdock-* task definitions in --cluster, DescribeTasks, ListTasks, "
    "StopTask, TagResource there, iam:PassRole on each --pass-role (to ECS only), logs:GetLogEvents on "
    "--log-group, ecr:BatchGetImage on the repositories.\n\n"
    'With --repo the repository actions are scoped to those repositories\' ARNs ("*" stands for an '
    "account or region not given).\n\n"
    "Examples:\n\n"
    "  airdock iam-policy puller --repo team/scraper --account 123456789012 --region eu-west-1\n\n"
    "  airdock iam-policy pusher --repo 'team/*' --format terraform > ecr_pusher.tf\n\n"
    "  airdock iam-policy ecs-runner --account 123456789012 --region eu-west-1 --cluster jobs "
    "--pass-role arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
)


def iam_policy_command(
    role: Annotated[str, typer.Argument(help=f"One of: {', '.join(ALL_ROLES)}.", metavar="ROLE")],
    repo: Annotated[
        list[str] | None, typer.Option("--repo", help="Repository name (or pattern like team/*); repeatable.")
    ] = None,
    account: Annotated[str | None, typer.Option(help="AWS account id of the registry.")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region of the registry.")] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"Output: {' or '.join(FORMATS)}.")] = "json",
    cluster: Annotated[
        str, typer.Option(help=f"{ECS_RUNNER}: the ECS cluster the tasks run in.")
    ] = "default",
    pass_role: Annotated[
        list[str] | None,
        typer.Option("--pass-role", help=f"{ECS_RUNNER}: task execution / task role ARN; repeatable."),
    ] = None,
    log_group: Annotated[
        str, typer.Option(help=f"{ECS_RUNNER}: the CloudWatch log group of the tasks.")
    ] = "/airdock/tasks",
) -> None:
    """Print the policy to stdout (nothing else goes there)."""
    document = policy_document(
        role,
        tuple(repo or ()),
        account,
        region,
        cluster=cluster,
        pass_roles=tuple(pass_role or ()),
        log_group=log_group,
    )
    print(render(document, fmt, f"airdock_{role}"))
