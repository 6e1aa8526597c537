"""airdock's metrics: the catalogue, the emit contract, the token path's emissions, and the Airflow
sink through Airflow's own OpenTelemetry backend read with OpenTelemetry's in-memory reader.

(The StatsD path, over a real UDP socket from a real DAG run, is tests/e2e/test_metrics.py.)
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from airdock import metrics
from airdock.auth.cache import CachedCredentials, TokenCache
from airdock.auth.credentials import RegistryCredentials

SECRET = "s3cret-token-value"
# The tags a metric may carry: each has few values on a deployment (no run, task or container ids).
LOW_CARDINALITY = {"registry", "reason", "cluster", "stop_code", "target"}


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float, dict[str, str]]] = []

    def emit(self, metric: metrics.Metric, value: float, tags: Mapping[str, str]) -> None:
        self.seen.append((metric.name, value, dict(tags)))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.seen]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    sink = Recorder()
    before = metrics.install(sink)
    yield sink
    metrics.install(before)


def test_the_catalogue_is_airflow_style_unique_and_low_cardinality() -> None:
    names = [metric.name for metric in metrics.ALL]
    assert len(names) == len(set(names)) == 17
    for metric in metrics.ALL:
        assert re.fullmatch(r"airdock\.[a-z_]+\.[a-z_]+", metric.name), metric.name
        assert len("airflow." + metric.name) <= 63, "OpenTelemetry's name limit, with Airflow's prefix"
        assert set(metric.tags) <= LOW_CARDINALITY, metric
        assert metric.meaning
    exported = {value.name for key, value in vars(metrics).items() if isinstance(value, metrics.Metric)}
    assert exported == set(names), "every metric defined is in ALL"


def test_an_undeclared_tag_is_refused_and_a_failing_sink_fails_nothing(recorder: Recorder) -> None:
    with pytest.raises(ValueError, match=r"airdock.gc.duration declares no tag \['run_id'\]"):
        metrics.emit(metrics.GC_DURATION, 1.0, run_id="manual__1")
    assert recorder.seen == []

    class Broken:
        def emit(self, metric: metrics.Metric, value: float, tags: Mapping[str, str]) -> None:
            raise OSError("statsd host unreachable")

    metrics.install(Broken())
    metrics.emit(metrics.GC_DURATION, 1.0)  # no exception
    metrics.install(None)
    metrics.emit(metrics.GC_DURATION, 1.0)  # nowhere to go: nothing happens


def test_the_token_path_counts_fetches_hits_and_refusals_and_never_tags_a_secret(
    recorder: Recorder, tmp_path: Path
) -> None:
    calls = []

    def fetch() -> RegistryCredentials:
        calls.append(1)
        return RegistryCredentials("r.example:5000", "AWS", f"{SECRET}-{len(calls)}", time.time() + 3600)

    provider = CachedCredentials(TokenCache(tmp_path / "cache"), "r.example:5000|id", fetch)
    first = provider.get()
    provider.get()
    provider.refresh(first)
    assert recorder.names() == [
        "airdock.token.fetch",
        "airdock.token.seconds_left",
        "airdock.token.cache_hit",
        "airdock.token.seconds_left",
        "airdock.token.refresh_on_refusal",
        "airdock.token.fetch",
        "airdock.token.seconds_left",
    ]
    assert all(tags == {"registry": "r.example:5000"} for _, _, tags in recorder.seen)
    left = [value for name, value, _ in recorder.seen if name == "airdock.token.seconds_left"]
    assert all(3590 < value <= 3600 for value in left)
    assert SECRET not in repr(recorder.seen)


def test_the_airflow_sink_reaches_airflows_opentelemetry_backend() -> None:
    """Every metric, through ``airflow.sdk.observability.stats`` with Airflow's OTel logger over an
    in-memory reader: a counter, a gauge or a histogram each, named with Airflow's prefix, tagged."""
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger
    from airflow.sdk._shared.observability.metrics.otel_logger import SafeOtelLogger
    from airflow.sdk.observability import stats
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import Gauge, Histogram, InMemoryMetricReader, Sum

    from airdock.airflow.metrics import AirflowStatsSink

    reader = InMemoryMetricReader()
    logger = SafeOtelLogger(MeterProvider(metric_readers=[reader]))
    stats.initialize(factory=lambda: logger, export_legacy_names=False)
    before = metrics.install(AirflowStatsSink())
    try:
        tag_values = {"registry": "r.example:5000", "reason": "unreachable", "cluster": "default"}
        tag_values.update(stop_code="EssentialContainerExited", target="docker")
        for metric in metrics.ALL:
            metrics.emit(metric, 2.5 if metric.kind is not metrics.Kind.COUNTER else 3,
                         **{tag: tag_values[tag] for tag in metric.tags})  # fmt: skip
        data = reader.get_metrics_data()
    finally:
        metrics.install(before)
        stats.initialize(factory=NoStatsLogger, export_legacy_names=True)
    assert data is not None
    found = {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    kinds = {metrics.Kind.COUNTER: Sum, metrics.Kind.GAUGE: Gauge, metrics.Kind.TIMER: Histogram}
    for metric in metrics.ALL:
        otel = found.get(f"airflow.{metric.name}")
        assert otel is not None, f"airflow.{metric.name} not exported; got {sorted(found)}"
        assert isinstance(otel.data, kinds[metric.kind]), (metric.name, type(otel.data))
        point = otel.data.data_points[0]
        assert {key: str(value) for key, value in point.attributes.items()} == {
            tag: tag_values[tag].replace(":", "_")
            for tag in metric.tags  # StatsD's separator
        }
        if metric.kind is metrics.Kind.COUNTER:
            assert point.value == 3
        elif metric.kind is metrics.Kind.GAUGE:
            assert point.value == 2.5
        else:
            assert point.count == 1 and point.sum == pytest.approx(2500, rel=0.01)  # milliseconds
