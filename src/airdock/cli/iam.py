"""``airdock iam-policy``: print a least-privilege IAM policy for pulling, pushing or maintaining images."""

from __future__ import annotations

from typing import Annotated

import typer

from airdock.analyst.iam_policy import FORMATS, ROLES, policy_document, render

IAM_HELP = (
    "Print a least-privilege IAM policy for ECR: puller, pusher or maintainer.\n\n"
    'puller (Airflow workers): ecr:GetAuthorizationToken on "*" plus ecr:BatchCheckLayerAvailability, '
    "ecr:BatchGetImage, ecr:GetDownloadUrlForLayer. pusher: the puller's plus ecr:InitiateLayerUpload, "
    "ecr:UploadLayerPart, ecr:CompleteLayerUpload, ecr:PutImage. maintainer: the pusher's plus "
    "ecr:CreateRepository, ecr:DescribeRepositories, ecr:DescribeImages, ecr:PutLifecyclePolicy.\n\n"
    'With --repo the repository actions are scoped to those repositories\' ARNs ("*" stands for an '
    "account or region not given).\n\n"
    "Examples:\n\n"
    "  airdock iam-policy puller --repo team/scraper --account 123456789012 --region eu-west-1\n\n"
    "  airdock iam-policy pusher --repo 'team/*' --format terraform > ecr_pusher.tf"
)


def iam_policy_command(
    role: Annotated[str, typer.Argument(help=f"One of: {', '.join(ROLES)}.", metavar="ROLE")],
    repo: Annotated[
        list[str] | None, typer.Option("--repo", help="Repository name (or pattern like team/*); repeatable.")
    ] = None,
    account: Annotated[str | None, typer.Option(help="AWS account id of the registry.")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region of the registry.")] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"Output: {' or '.join(FORMATS)}.")] = "json",
) -> None:
    """Print the policy to stdout (nothing else goes there)."""
    document = policy_document(role, tuple(repo or ()), account, region)
    print(render(document, fmt, f"airdock_{role}"))
