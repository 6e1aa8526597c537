"""airdock's metrics: their names, kinds and meanings, and the one place they are emitted through.

The core (pulls, tokens, GC, sweeps, ECS) calls :func:`emit`; nothing is sent until a sink is
installed. ``airdock.airflow.metrics`` installs one that hands every metric to Airflow's own
metrics (StatsD or OpenTelemetry, whichever the deployment configured; nothing when neither), so
the core imports no Airflow.

Names are ``airdock.<area>.<what>``; variable parts are tags, and only the tags a metric declares
(a registry host, a failure kind, an ECS stop code, a target): low cardinality by construction —
never a run id, a container id or a secret. A metric emitted with an undeclared tag is a
programming error (``ValueError``); a sink that fails is logged at debug level and never fails the
task.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ALL", "Kind", "Metric", "Sink", "emit", "install", "installed"]

log = logging.getLogger(__name__)


class Kind(enum.StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    TIMER = "timer"  # a value in seconds


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    meaning: str
    tags: tuple[str, ...] = ()


PULL_DURATION = Metric(
    "airdock.pull.duration",
    Kind.TIMER,
    "how long an image pull took, the engine's retries included",
    ("registry",),
)
PULL_BYTES = Metric(
    "airdock.pull.bytes", Kind.COUNTER, "bytes the engine downloaded for a pull", ("registry",)
)
PULL_FAILURES = Metric(
    "airdock.pull.failures",
    Kind.COUNTER,
    "pulls that failed, by kind (unreachable, auth_refused, repository_missing, tag_missing, denied, ...)",
    ("registry", "reason"),
)
TOKEN_FETCH = Metric(
    "airdock.token.fetch",
    Kind.COUNTER,
    "GetAuthorizationToken calls made (the host cache had none valid)",
    ("registry",),
)
TOKEN_CACHE_HIT = Metric(
    "airdock.token.cache_hit",
    Kind.COUNTER,
    "registry logins served from the host's token cache",
    ("registry",),
)
TOKEN_REFRESH_ON_REFUSAL = Metric(
    "airdock.token.refresh_on_refusal",
    Kind.COUNTER,
    "tokens the registry refused (expired early, revoked), replaced by a fresh one",
    ("registry",),
)
TOKEN_SECONDS_LEFT = Metric(
    "airdock.token.seconds_left", Kind.GAUGE, "seconds the token just handed out stays valid", ("registry",)
)
GC_BYTES_RECLAIMED = Metric("airdock.gc.bytes_reclaimed", Kind.COUNTER, "bytes an image GC freed")
GC_IMAGES_REMOVED = Metric("airdock.gc.images_removed", Kind.COUNTER, "images an image GC removed")
GC_DURATION = Metric(
    "airdock.gc.duration", Kind.TIMER, "how long an image GC took to remove what it planned to"
)
IMAGE_STORE_BYTES = Metric(
    "airdock.image_store.bytes",
    Kind.GAUGE,
    "bytes of images on the engine after the last GC (shared layers once)",
)
SWEEP_CONTAINERS_REMOVED = Metric(
    "airdock.sweep.containers_removed", Kind.COUNTER, "orphaned containers of airdock's the sweep removed"
)
ECS_REGISTER_TASK_DEFINITION = Metric(
    "airdock.ecs.register_task_definition",
    Kind.COUNTER,
    "task definition revisions registered (a run reuses the current one unless its spec changed)",
)
ECS_TASK_START_DURATION = Metric(
    "airdock.ecs.task_start_duration", Kind.TIMER, "from RunTask to the ECS task RUNNING", ("cluster",)
)
ECS_STOP_REASON = Metric(
    "airdock.ecs.stop_reason",
    Kind.COUNTER,
    "ECS tasks that ended, by stop code (EssentialContainerExited, TaskFailedToStart, UserInitiated, ...)",
    ("stop_code",),
)
TASK_REATTACHED = Metric(
    "airdock.task.reattached",
    Kind.COUNTER,
    "tries that found an earlier try's job running and followed it",
    ("target",),
)
TASK_DEFERRED = Metric(
    "airdock.task.deferred",
    Kind.COUNTER,
    "tasks that handed the wait for their job to the triggerer",
    ("target",),
)

ALL: tuple[Metric, ...] = (
    PULL_DURATION,
    PULL_BYTES,
    PULL_FAILURES,
    TOKEN_FETCH,
    TOKEN_CACHE_HIT,
    TOKEN_REFRESH_ON_REFUSAL,
    TOKEN_SECONDS_LEFT,
    GC_BYTES_RECLAIMED,
    GC_IMAGES_REMOVED,
    GC_DURATION,
    IMAGE_STORE_BYTES,
    SWEEP_CONTAINERS_REMOVED,
    ECS_REGISTER_TASK_DEFINITION,
    ECS_TASK_START_DURATION,
    ECS_STOP_REASON,
    TASK_REATTACHED,
    TASK_DEFERRED,
)


class Sink(Protocol):
    def emit(self, metric: Metric, value: float, tags: Mapping[str, str]) -> None: ...


_sink: Sink | None = None


def install(sink: Sink | None) -> Sink | None:
    """Send metrics to ``sink`` from now on (``None``: nowhere); the sink installed before."""
    global _sink
    before, _sink = _sink, sink
    return before


def installed() -> Sink | None:
    return _sink


def emit(metric: Metric, value: float = 1, **tags: object) -> None:
    """``metric`` with ``value`` (a count, a gauge's level, or seconds) and its declared ``tags``."""
    undeclared = set(tags) - set(metric.tags)
    if undeclared:
        raise ValueError(f"{metric.name} declares no tag {sorted(undeclared)}")
    sink = _sink
    if sink is None:
        return
    try:
        sink.emit(metric, value, {key: str(tag) for key, tag in tags.items()})
    except Exception as exc:  # metrics are information: they never fail the work they describe
        log.debug("metric %s not sent: %s", metric.name, exc)
