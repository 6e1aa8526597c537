"""The ``airdock`` command: parse, call the core, render. No logic of its own.

A module per subcommand group: ``local`` (the offline stack), ``push``, ``iam`` (``iam-policy``),
``doctor``, ``gc`` and ``connections``; this module assembles them and maps airdock's errors to
one red line and exit code 1.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from airdock import __version__
from airdock.cli.connections import connections_app
from airdock.cli.doctor import DOCTOR_HELP, doctor_command
from airdock.cli.gc import GC_HELP, gc_command
from airdock.cli.iam import IAM_HELP, iam_policy_command
from airdock.cli.local import local_app
from airdock.cli.push import PUSH_HELP, push_command
from airdock.errors import AirdockError

app = typer.Typer(
    name="airdock",
    help="Run private-registry (Amazon ECR first) container images as Airflow tasks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(local_app, name="local")
app.add_typer(connections_app, name="connections")
app.command("gc", help=GC_HELP)(gc_command)
app.command("push", help=PUSH_HELP)(push_command)
app.command("doctor", help=DOCTOR_HELP)(doctor_command)
app.command("iam-policy", help=IAM_HELP)(iam_policy_command)

out = Console()
err = Console(stderr=True, soft_wrap=True)  # one-line errors stay one line


def _version(value: bool) -> None:
    if value:
        out.print(f"airdock {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Run private-registry (Amazon ECR first) container images as Airflow tasks."""


def main() -> None:
    """Console entry point: one red line and exit 1 for airdock's own errors."""
    try:
        # In non-standalone mode click returns the code of a `typer.Exit` instead of exiting.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except AirdockError as exc:
        err.print(f"[red]airdock: error:[/red] {exc}", highlight=False)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("airdock: aborted")
        sys.exit(130)
    except Exception as exc:
        # Usage errors of the click that Typer bundles arrive here in non-standalone mode.
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        raise
