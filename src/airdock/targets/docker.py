"""The Docker target's reattach half: find the container an earlier try left, follow it to its end.

Starting a container on the worker's engine is the docker provider's ``DockerOperator`` (through
``EcrDockerOperator``: ECR logins, labels, hygiene, bounded log streaming); what it cannot do is
pick up a container after the worker that started it died. A container is found by the identity
labels every airdock container carries; one whose result was already taken and that was kept
(``remove="never"`` or ``"on_success"``) is renamed with ``COLLECTED_SUFFIX``, so a later try
never collects it twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from airdock.engine.logs import DEFAULT_TAIL_LINES, KeepPolicy, stream_lines
from airdock.targets.spec import Outcome

__all__ = ["COLLECTED_SUFFIX", "find_container", "follow_container", "mark_collected"]

COLLECTED_SUFFIX = ".collected"


def find_container(cli: Any, labels: Mapping[str, str]) -> dict[str, Any] | None:
    """The newest container carrying every label in ``labels`` and not yet collected, or None.

    ``cli`` is a docker-py ``APIClient``; the answer is its ``containers()`` entry (``Id``,
    ``State``, ``Names``, ...).
    """
    found: list[dict[str, Any]] = cli.containers(
        all=True, filters={"label": [f"{k}={v}" for k, v in labels.items()]}
    )
    fresh = [
        c for c in found if not any(str(name).endswith(COLLECTED_SUFFIX) for name in c.get("Names") or [])
    ]
    if not fresh:
        return None
    newest: dict[str, Any] = max(fresh, key=lambda c: int(c.get("Created") or 0))
    return newest


def follow_container(
    cli: Any,
    container_id: str,
    emit: Callable[[str], Any],
    keep: KeepPolicy = KeepPolicy.LAST,
    tail: int = DEFAULT_TAIL_LINES,
) -> Outcome:
    """Emit the container's whole output (following it while it runs); its exit code once it ends."""
    stream = cli.logs(container_id, stdout=True, stderr=True, stream=True, follow=True)
    lines = stream_lines(stream, emit, keep, tail)
    status = cli.wait(container_id)
    exit_code = int(status.get("StatusCode", -1))
    error = (status.get("Error") or {}).get("Message")
    reason = None if exit_code == 0 else f"the container exited with code {exit_code}"
    if error:
        reason = f"the container ended with an engine error: {error}"
    return Outcome(
        exit_code=exit_code, reason=reason, kept=lines.kept, tail=lines.tail, reference=container_id
    )


def mark_collected(cli: Any, container_id: str) -> None:
    """Rename a kept container so that reattach passes it by (its result has been taken)."""
    name = str(cli.inspect_container(container_id).get("Name") or container_id[:12]).lstrip("/")
    if not name.endswith(COLLECTED_SUFFIX):
        cli.rename(container_id, name + COLLECTED_SUFFIX)
