"""``[core] hostname_callable`` for several Airflow "hosts" on one machine (the local cluster).

Airflow records the hostname of the worker that ran each try; the local cluster's Celery workers
share one machine, so each is started with ``AIRDOCK_HOSTNAME`` (``worker-1``, ``worker-2``) and
``AIRFLOW__CORE__HOSTNAME_CALLABLE=airdock.airflow.hostname.from_environment``.
"""

from __future__ import annotations

import os
import socket


def from_environment() -> str:
    """``$AIRDOCK_HOSTNAME``, else the machine's FQDN (what Airflow's default callable returns)."""
    return os.environ.get("AIRDOCK_HOSTNAME") or socket.getfqdn()
