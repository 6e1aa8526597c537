"""airdock's metrics (``airdock.metrics``) through Airflow's own: StatsD or OpenTelemetry.

Whatever the deployment configured under ``[metrics]`` (``statsd_on``, ``otel_on``) carries
them, named and tagged as ``airdock.metrics`` declares them; with neither, Airflow's backend drops
them. Installed when ``airdock.airflow`` is imported (a DAG file, the plugin, a trigger).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import timedelta

from airdock import metrics

__all__ = ["AirflowStatsSink", "install"]

_STATS_MODULE = (
    "airflow.sdk._shared.observability.metrics.stats"  # what airflow.sdk.observability.stats re-exports
)
_STATSD_SEPARATORS = str.maketrans({char: "_" for char in ":,=|#@"})


class AirflowStatsSink:
    """A ``metrics.Sink`` writing to ``airflow.sdk.observability.stats`` (Airflow's backend of the
    process: the task runner, the triggerer and the scheduler each initialise theirs)."""

    def emit(self, metric: metrics.Metric, value: float, tags: Mapping[str, str]) -> None:
        # Only where Airflow's metrics are set up (the task runner, triggerer and scheduler import
        # them): importing them here would cost a process that never sends any ~10 s (a CLI, a test).
        stats = sys.modules.get(_STATS_MODULE)
        if stats is None:
            return
        # StatsD's separators may not appear in a tag's value (a registry host's port, `127.0.0.1:5780`).
        given = {key: tag.translate(_STATSD_SEPARATORS) for key, tag in tags.items()} or None
        if metric.kind is metrics.Kind.COUNTER:
            stats.incr(metric.name, count=int(value), tags=given)
        elif metric.kind is metrics.Kind.GAUGE:
            stats.gauge(metric.name, float(value), tags=given)
        else:
            stats.timing(metric.name, timedelta(seconds=value), tags=given)


def install() -> None:
    """Route airdock's metrics to Airflow's (once per process; a sink a test installed stays)."""
    if metrics.installed() is None:
        metrics.install(AirflowStatsSink())
