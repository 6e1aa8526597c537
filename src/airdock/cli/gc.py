"""``airdock gc``: sweep orphaned airdock containers, then remove images down to a budget.

Thin: parse the flags into policies, call the hygiene modules (plan, then apply), render the plan.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from airdock.durations import parse_duration
from airdock.engine.client import docker_client
from airdock.errors import ConfigError
from airdock.hygiene.model import (
    ContainerDecision,
    GcPlan,
    GcPolicy,
    GcScope,
    ImageDecision,
    SweepPlan,
    SweepPolicy,
    Verdict,
)

if TYPE_CHECKING:
    from airdock.hygiene.gc_apply import GcResult

out = Console()


GC_HELP = (
    "Remove orphaned airdock containers, then images least recently used first, down to a budget.\n\n"
    "First the containers: stopped ones (exited, created, dead) labelled airdock.managed=true and older "
    "than --max-container-age are removed. A running container is never removed here, whatever its age: "
    "only Airflow can say its task is over, and the CLI does not ask it (DockerHygieneOperator does). A "
    "container without that label is never touched.\n\n"
    "Then the images airdock pulled or started on this engine, and dangling images (--all-images, or "
    "\\[airdock] gc_scope = all, for every image): dangling ones first, then those unused longer than "
    "--max-unused-age, then the least "
    "recently used (the last time airdock started a container from them, from this host's usage record) "
    "until image storage is within --max-image-bytes and, once the data-root filesystem is above --high "
    "percent full, down to --low. Never removed: images of any container, images a starting task holds, "
    "images younger than --min-age, images with a tag matching a --keep pattern. Removals are without "
    "force; nothing is pruned.\n\n"
    "--dry-run only plans: it reads the engine and the usage record, changes nothing, and shows what a run "
    "would do (counting the containers it would sweep as gone).\n\n"
    "The usage record is the engine's usage.sqlite in AIRDOCK_STATE_DIR, else \\[airdock] state_dir, else "
    "~/.local/state/airdock — the directory the engine's tasks use. A record that belongs to another Docker "
    "engine is refused.\n\n"
    "Examples:\n\n"
    "  airdock gc --dry-run --max-image-bytes 20GB\n\n"
    "  airdock gc --max-image-bytes 2GiB --min-age 1h --keep 'prod/*' --keep '*:stable'\n\n"
    "  airdock gc --high 85 --low 70 --max-unused-age 7d"
)


def _percent(text: str | None, flag: str, default: float | None) -> float | None:
    if text is None:
        return default
    if text.strip().lower() == "off":
        return None
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise ConfigError(f"invalid {flag} {text!r}: use a percentage from 0 to 100, e.g. 85") from None
    if not 0.0 < value <= 100.0:
        raise ConfigError(f"invalid {flag} {text!r}: use a percentage from 0 to 100, e.g. 85")
    return value


def _policies(
    max_image_bytes: str | None,
    high: str | None,
    low: str | None,
    min_age: str,
    max_unused_age: str | None,
    keep: list[str] | None,
    max_container_age: str,
) -> tuple[GcPolicy, SweepPolicy]:
    from airdock.hygiene.units import parse_size

    defaults = GcPolicy()
    high_value = _percent(high, "--high", defaults.high_watermark_percent)
    low_value = _percent(low, "--low", defaults.low_watermark_percent)
    if low_value is None:
        raise ConfigError("invalid --low 'off': turn the watermarks off with --high off")
    if high_value is not None and low_value > high_value:
        raise ConfigError(
            f"--low {low_value:g} is above --high {high_value:g}: the low watermark must be lower"
        )
    for pattern in keep or ():
        if not pattern.strip():
            raise ConfigError("invalid --keep '': give a pattern such as 'prod/*' or '*:stable'")
    gc_policy = GcPolicy(
        max_image_bytes=None if max_image_bytes is None else parse_size(max_image_bytes),
        high_watermark_percent=high_value,
        low_watermark_percent=low_value,
        min_age_seconds=parse_duration(min_age),
        max_unused_age_seconds=None if max_unused_age is None else parse_duration(max_unused_age),
        keep=tuple(keep or ()),
    )
    return gc_policy, SweepPolicy(max_container_age_seconds=parse_duration(max_container_age))


def _docker_client() -> Any:
    return docker_client(timeout=300)


def _scope(all_images: bool) -> GcScope:
    """``--all-images``, else ``[airdock] gc_scope``, else ``airdock``."""
    if all_images:
        return GcScope.ALL
    from airdock.airflow.config import cli_option

    configured = cli_option("gc_scope")
    if configured is None:
        return GcScope.AIRDOCK
    try:
        return GcScope.parse(configured)
    except ValueError as exc:
        raise ConfigError(f"{exc} ([airdock] gc_scope)") from None


def gc_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan only: change nothing, show what would go.")
    ] = False,
    max_image_bytes: Annotated[
        str | None,
        typer.Option(
            "--max-image-bytes", help="Image storage budget: bytes or a unit (500MB, 2GiB).", metavar="N"
        ),
    ] = None,
    high: Annotated[
        str | None,
        typer.Option(
            "--high",
            help="Free images once the data-root filesystem is this % full ('off': never).",
            metavar="P",
        ),
    ] = None,
    low: Annotated[
        str | None,
        typer.Option("--low", help="...down to this % full. Defaults: --high 85 --low 80.", metavar="P"),
    ] = None,
    min_age: Annotated[
        str,
        typer.Option(
            "--min-age",
            help="Never remove an image used, pulled, tagged or built more recently.",
            metavar="DURATION",
        ),
    ] = "10m",
    max_unused_age: Annotated[
        str | None,
        typer.Option(
            "--max-unused-age", help="Remove images unused this long even within budget.", metavar="DURATION"
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(
            "--keep",
            help="Never remove images with a tag matching this pattern (fnmatch); repeatable.",
            metavar="PATTERN",
        ),
    ] = None,
    max_container_age: Annotated[
        str,
        typer.Option(
            "--max-container-age",
            help="Remove airdock's stopped labelled containers older than this (running ones stay).",
            metavar="DURATION",
        ),
    ] = "24h",
    all_images: Annotated[
        bool,
        typer.Option(
            "--all-images",
            help="Consider every image on the engine, not only those airdock pulled or started "
            "(default: \\[airdock] gc_scope, else 'airdock').",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the plan and outcome as JSON (for scripts).")
    ] = False,
) -> None:
    # Everything the user typed is checked before the engine is touched.
    gc_policy, sweep_policy = _policies(
        max_image_bytes, high, low, min_age, max_unused_age, keep, max_container_age
    )
    gc_policy = replace(gc_policy, scope=_scope(all_images))

    from airdock.airflow.config import cli_option
    from airdock.hygiene.gc_apply import apply_gc, check_store, collect_gc
    from airdock.hygiene.inventory import read_inventory
    from airdock.hygiene.state import STATE_DIR_ENV
    from airdock.hygiene.sweep_apply import apply_sweep
    from airdock.hygiene.sweep_plan import plan_sweep
    from airdock.hygiene.usage import UsageStore

    store = UsageStore.for_host(None if os.environ.get(STATE_DIR_ENV) else cli_option("state_dir"))
    client = _docker_client()
    check_store(client, store)  # another engine's store: one line, before anything is touched
    now = time.time()

    inventory = read_inventory(client)
    sweep_plan = plan_sweep(inventory.containers, None, sweep_policy, now)
    gone: set[str] = {d.container.id for d in sweep_plan.removals}
    sweep_result: list[ContainerDecision] | None = None
    if not dry_run:
        sweep_result = apply_sweep(client, sweep_plan) if sweep_plan.removals else []
        gone = {d.container.id for d in sweep_result}
    remaining = replace(inventory, containers=[c for c in inventory.containers if c.id not in gone])
    plan = collect_gc(client, store, gc_policy, now, inventory=remaining)
    result = None if dry_run else apply_gc(client, plan, store)

    if as_json:
        document = _as_json(plan, result, sweep_plan, sweep_result, dry_run)
        document.update(scope=gc_policy.scope.value, usage_store=str(store.path))
        print(json.dumps(document, indent=2))
    else:
        _render(plan, result, sweep_plan, sweep_result, dry_run, now)
        out.print(
            f"scope: {gc_policy.scope.describe()} (gc_scope={gc_policy.scope.value}"
            f"{'' if gc_policy.scope is GcScope.ALL else '; --all-images for every image'}); "
            f"usage store: {escape(str(store.path))}"
        )
    if result is not None and result.failed:
        raise typer.Exit(1)


def _outcomes(plan: GcPlan, result: GcResult | None, dry_run: bool) -> list[tuple[ImageDecision, str, str]]:
    """(decision, verdict text, reason) per image, in plan order."""
    skipped = {} if result is None else {d.image.id: why for d, why in result.skipped}
    failed = {} if result is None else {d.image.id: why for d, why in result.failed}
    rows: list[tuple[ImageDecision, str, str]] = []
    for decision in plan.decisions:
        image_id = decision.image.id
        if decision.verdict is Verdict.KEEP:
            rows.append((decision, "kept", decision.reason))
        elif dry_run:
            rows.append((decision, "would remove", decision.reason))
        elif image_id in failed:
            rows.append((decision, "failed", failed[image_id]))
        elif image_id in skipped:
            rows.append((decision, "kept", skipped[image_id]))
        else:
            rows.append((decision, "removed", decision.reason))
    return rows


def _container_verdict(decision: ContainerDecision, swept: set[str] | None) -> str:
    """kept / would remove (dry run) / removed / not removed (gone meanwhile, refused: see the log)."""
    if decision.verdict is Verdict.KEEP:
        return "kept"
    if swept is None:
        return "would remove"
    return "removed" if decision.container.id in swept else "not removed"


def _as_json(
    plan: GcPlan,
    result: GcResult | None,
    sweep_plan: SweepPlan,
    sweep_result: list[ContainerDecision] | None,
    dry_run: bool,
) -> dict[str, Any]:
    swept = None if sweep_result is None else {d.container.id for d in sweep_result}
    return {
        "dry_run": dry_run,
        "image_bytes": plan.image_bytes,
        "target_bytes": plan.target_bytes,
        "planned_bytes": plan.frees_bytes,
        "reclaimed_bytes": None if result is None else result.freed_bytes,
        "images": [
            {
                "id": d.image.id,
                "tags": list(d.image.tags),
                "size": d.image.size,
                "last_used": d.last_used,
                "verdict": verdict,
                "reason": reason,
                "frees_bytes": d.frees_bytes,
            }
            for d, verdict, reason in _outcomes(plan, result, dry_run)
        ],
        "containers": [
            {
                "id": d.container.id,
                "image_id": d.container.image_id,
                "managed": d.container.managed,
                "verdict": _container_verdict(d, swept),
                "reason": d.reason,
            }
            for d in sweep_plan.decisions
        ],
    }


def _render(
    plan: GcPlan,
    result: GcResult | None,
    sweep_plan: SweepPlan,
    sweep_result: list[ContainerDecision] | None,
    dry_run: bool,
    now: float,
) -> None:
    from airdock.hygiene.units import format_age, format_bytes

    if sweep_plan.decisions:
        swept = None if sweep_result is None else {d.container.id for d in sweep_result}
        table = Table(title="containers", show_header=True)
        for column in ("container", "image", "labelled", "verdict", "reason"):
            table.add_column(column)
        for d in sweep_plan.decisions:
            table.add_row(
                d.container.id[:12],
                d.container.image_id[:19],
                "yes" if d.container.managed else "no",
                _container_verdict(d, swept),
                escape(d.reason),
            )
        out.print(table)

    table = Table(title="images", show_header=True)
    for column in ("image", "size", "last used", "verdict", "reason"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for image_decision, verdict, reason in _outcomes(plan, result, dry_run):
        image, last_used = image_decision.image, image_decision.last_used
        name = image.tags[0] if image.tags else image.id[7:19]
        more = f" (+{len(image.tags) - 1})" if len(image.tags) > 1 else ""
        last = "-" if last_used is None else f"{format_age(now - last_used)} ago"
        style = {"removed": "red", "would remove": "yellow", "failed": "bold red"}.get(verdict, "")
        table.add_row(
            escape(name + more),
            format_bytes(image.size),
            last,
            f"[{style}]{verdict}[/{style}]" if style else verdict,
            escape(reason),
        )
    out.print(table)
    budget = "no budget applies" if plan.target_bytes is None else f"target {format_bytes(plan.target_bytes)}"
    if result is None:
        out.print(
            f"would reclaim {format_bytes(plan.frees_bytes)} ({len(plan.removals)} images would be removed; "
            f"images hold {format_bytes(plan.image_bytes)}, {budget})"
        )
    else:
        extra = f", {len(result.failed)} failed" if result.failed else ""
        skipped = f", {len(result.skipped)} skipped" if result.skipped else ""
        removed = f"{len(result.removed)} images removed{skipped}{extra}"
        out.print(
            f"reclaimed {format_bytes(result.freed_bytes)} ({removed}; "
            f"images held {format_bytes(plan.image_bytes)}, {budget}) in {result.seconds:.1f} s"
        )
