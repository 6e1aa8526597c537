"""Plain values shared by hygiene's planning (pure) and sweeping (effects)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# Labels airdock puts on every container it starts. A container without MANAGED_LABEL is never touched.
MANAGED_LABEL = "airdock.managed"
LABEL_DAG_ID = "airdock.dag_id"
LABEL_TASK_ID = "airdock.task_id"
LABEL_RUN_ID = "airdock.run_id"
LABEL_TRY_NUMBER = "airdock.try_number"
LABEL_MAP_INDEX = "airdock.map_index"
LABEL_STARTED_AT = "airdock.started_at"  # ISO 8601, UTC
LABEL_IMAGE = "airdock.image"  # the reference the task named (the container runs the image id pulled)


@dataclass(frozen=True)
class Layer:
    """One layer of an image: its id (a chain id or diff id) and its size in bytes."""

    id: str
    size: int


@dataclass(frozen=True)
class ImageInfo:
    """An image on the engine, as the planner sees it."""

    id: str  # "sha256:..."
    tags: tuple[str, ...]  # repo:tag references; empty for a dangling image
    size: int  # total bytes (all layers)
    created: float  # epoch seconds: image build time
    layers: tuple[Layer, ...] = ()  # for counting shared layers once; empty → the image is one unit of `size`
    last_tagged: float | None = None  # epoch seconds the engine last tagged it here (a pull or a tag)
    repo_digests: tuple[str, ...] = ()  # repo@digest references (a lease on a digest-pinned ref matches them)

    @property
    def dangling(self) -> bool:
        return not self.tags


@dataclass(frozen=True)
class ContainerInfo:
    """A container on the engine (running or not)."""

    id: str
    image_id: str
    state: str  # "running", "exited", "created", "paused", "restarting", "removing", "dead"
    created: float  # epoch seconds
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def managed(self) -> bool:
        return self.labels.get(MANAGED_LABEL) == "true"

    @property
    def stopped(self) -> bool:
        """Not running and not about to: exited, created (never started) or dead.

        Any other state (running, paused, restarting, removing, or one the engine adds later)
        counts as running, so a job is never taken for finished by mistake.
        """
        return self.state in STOPPED_CONTAINER_STATES


@dataclass(frozen=True)
class ImageUsage:
    """What this host's usage record knows of an image."""

    image_id: str
    last_used: float | None = None  # last time airdock started a container from it
    leased_until: float | None = None  # a task holds it in use (about to pull or run it) until then
    brought: bool = False  # airdock pulled or started it on this engine (the default GC scope)


class GcScope(enum.StrEnum):
    """Which images the GC may remove at all."""

    AIRDOCK = "airdock"  # images airdock pulled or started here, and dangling images
    ALL = "all"  # every image on the engine (kubelet-style)

    @classmethod
    def parse(cls, value: str) -> GcScope:
        text = value.strip().lower()
        for scope in cls:
            if scope.value == text:
                return scope
        raise ValueError(f"invalid gc_scope {value!r}: use 'airdock' (what airdock brought) or 'all'")

    def describe(self) -> str:
        if self is GcScope.ALL:
            return "every image on the engine"
        return "images airdock pulled or started here, and dangling images"


@dataclass(frozen=True)
class GcPolicy:
    """When images go. Budgets: ``max_image_bytes`` and/or watermarks of the data-root filesystem."""

    max_image_bytes: int | None = None
    high_watermark_percent: float | None = 85.0  # start freeing above this use of the filesystem
    low_watermark_percent: float = 80.0  # ...and free down to this
    min_age_seconds: float = 600.0  # never remove an image used, tagged or created more recently
    max_unused_age_seconds: float | None = None  # unused longer than this → removed even under budget
    keep: tuple[str, ...] = ()  # fnmatch patterns over repo:tag references; a match is never removed
    scope: GcScope = GcScope.AIRDOCK  # what may go at all; protections apply in every scope


@dataclass(frozen=True)
class DiskUsage:
    """The filesystem under the engine's data root (for the watermarks)."""

    total_bytes: int
    used_bytes: int


class Verdict(enum.StrEnum):
    KEEP = "keep"
    REMOVE = "remove"


@dataclass(frozen=True)
class ImageDecision:
    image: ImageInfo
    verdict: Verdict
    reason: str  # e.g. "in use by 2 containers", "too young (4m)", "keep pattern 'prod/*'", "within budget",
    #              "dangling", "least recently used", "unused since 2026-11-01 (> 7d)"
    last_used: float | None
    frees_bytes: int = 0  # bytes this removal frees given the removals planned before it (shared layers once)


@dataclass(frozen=True)
class GcPlan:
    decisions: tuple[ImageDecision, ...]  # removals first, in the order to apply them; then kept images
    image_bytes: int  # bytes of all images now (shared layers once)
    target_bytes: int | None  # the budget the plan aims for (None: no budget applies)
    frees_bytes: int  # estimated bytes freed by the removals

    @property
    def removals(self) -> tuple[ImageDecision, ...]:
        return tuple(d for d in self.decisions if d.verdict is Verdict.REMOVE)


@dataclass(frozen=True)
class SweepPolicy:
    """When labelled containers count as orphans."""

    max_container_age_seconds: float = 24 * 3600.0  # used only when Airflow cannot be asked


@dataclass(frozen=True)
class ContainerDecision:
    container: ContainerInfo
    verdict: Verdict
    # e.g. "not airdock's", "task running", "task finished (success)", "older than 24h (Airflow not asked)",
    #      "running; Airflow not asked"
    reason: str


@dataclass(frozen=True)
class SweepPlan:
    decisions: tuple[ContainerDecision, ...]

    @property
    def removals(self) -> tuple[ContainerDecision, ...]:
        return tuple(d for d in self.decisions if d.verdict is Verdict.REMOVE)


@dataclass(frozen=True)
class TaskKey:
    """The Airflow task instance a labelled container belongs to (from its labels)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1


@dataclass(frozen=True)
class TaskStatus:
    """What Airflow says of a task instance now; ``state`` None when it has no state (e.g. cleared)."""

    state: str | None


# Container states in which nothing runs in it any more, nor will without someone starting it.
STOPPED_CONTAINER_STATES = frozenset({"exited", "created", "dead"})

# Task instance states in which its container may legitimately still exist: the task runs, waits,
# or will run again (a retry may reattach to the container a dead worker left running).
ACTIVE_TASK_STATES = frozenset(
    {"running", "queued", "scheduled", "restarting", "deferred", "up_for_reschedule", "up_for_retry"}
)

# Task instance states after which it will not run again without being cleared.
FINISHED_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
