"""The doctor's Airflow check, registered through the ``airdock.doctor`` entry point.

The Airflow connection ``--aws-conn-id`` exists when run inside an Airflow installation; and the
``[airdock] ecr_registries`` of that installation count as ECR registries. Airflow is imported only
inside an installation (``AIRFLOW_HOME`` set, or ``~/airflow/airflow.cfg`` present), because importing
it elsewhere creates ``~/airflow``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from airdock.analyst.doctor.report import CheckResult, failed, one_line, passed
from airdock.analyst.doctor.runner import DoctorOptions, DoctorPlugin
from airdock.images import parse_registry_list

__all__ = ["CHECK_AIRFLOW", "PLUGIN", "airflow_home", "check_airflow_connection"]

CHECK_AIRFLOW = "airflow connection"
DEFAULT_AWS_CONN_ID = "aws_default"


def airflow_home(environ: Mapping[str, str]) -> Path | None:
    """The Airflow installation this process is in: ``$AIRFLOW_HOME``, or ``~/airflow`` with a config."""
    configured = environ.get("AIRFLOW_HOME")
    if configured:
        return Path(configured).expanduser()
    default = Path(environ.get("HOME") or Path.home()) / "airflow"
    return default if (default / "airflow.cfg").is_file() else None


def _airflow_importable() -> bool:
    return importlib.util.find_spec("airflow") is not None


def _airflow_lookup(conn_id: str) -> str | None:
    """The connection's type via Airflow (env vars, secrets backends, metadata DB); None when missing."""
    from airflow.models.connection import Connection

    try:
        connection = Connection.get_connection_from_secrets(conn_id)
    except Exception as exc:
        if type(exc).__name__ == "AirflowNotFoundException":
            return None
        raise
    return str(connection.conn_type or "?")


def check_airflow_connection(
    conn_id: str,
    explicit: bool,
    environ: Mapping[str, str],
    lookup: Callable[[str], str | None] | None = None,
    importable: Callable[[], bool] = _airflow_importable,
) -> CheckResult:
    """The Airflow connection ``conn_id`` exists, when run inside an Airflow installation.

    Missing fails only when ``explicit`` (``--aws-conn-id`` given): otherwise EcrDockerOperator
    uses boto3's default credential chain, which the AWS checks above already tested.
    ``AIRFLOW_CONN_<ID>`` variables count, even outside an installation.
    """
    home = airflow_home(environ)
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    create = (
        f"create it: `airflow connections add {conn_id} --conn-type aws` (or set {variable}), "
        "or leave --aws-conn-id out to use the default credential chain"
    )
    default_chain = "EcrDockerOperator uses the default credential chain"
    if home is None or not importable():
        if environ.get(variable):
            return passed(CHECK_AIRFLOW, f"{conn_id!r} is set in {variable}")
        why = (
            "Airflow is not installed"
            if not importable()
            else "not inside an Airflow installation (AIRFLOW_HOME unset)"
        )
        if explicit:
            return failed(
                CHECK_AIRFLOW,
                f"{conn_id!r} not checked: {why}",
                f"run doctor where Airflow runs (set AIRFLOW_HOME), or set {variable}",
            )
        return passed(CHECK_AIRFLOW, f"not checked: {why}")
    try:
        conn_type = (lookup or _airflow_lookup)(conn_id)
    except Exception as exc:
        detail = f"could not look up {conn_id!r} in the Airflow at {home}: {one_line(exc, 200)}"
        if explicit:
            return failed(
                CHECK_AIRFLOW,
                detail,
                f"check [database] sql_alchemy_conn and run `airflow db migrate`, or set {variable}",
            )
        return passed(CHECK_AIRFLOW, f"{detail}; {default_chain}")
    if conn_type is not None:
        return passed(CHECK_AIRFLOW, f"{conn_id!r} exists (conn_type {conn_type}) in the Airflow at {home}")
    if explicit:
        return failed(CHECK_AIRFLOW, f"{conn_id!r} does not exist in the Airflow at {home}", create)
    return passed(CHECK_AIRFLOW, f"{conn_id!r} not set in the Airflow at {home}: {default_chain}")


def _ecr_registries(environ: Mapping[str, str]) -> tuple[str, ...]:
    """``[airdock] ecr_registries`` of the Airflow installation this runs in (none outside one)."""
    if airflow_home(environ) is None or not _airflow_importable():
        return ()
    from airdock.airflow.config import option

    return parse_registry_list(option("ecr_registries"))


def _checks(options: DoctorOptions, environ: Mapping[str, str]) -> Sequence[CheckResult]:
    conn_id = options.aws_conn_id or DEFAULT_AWS_CONN_ID
    return [check_airflow_connection(conn_id, options.aws_conn_id is not None, environ)]


PLUGIN = DoctorPlugin(name="airflow", registries=_ecr_registries, checks=_checks)
