"""The Docker target's reattach half: find the container an earlier try left, follow it to its end
or collect the result of one that a deferral trigger followed.

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

from airdock.engine.follow import follow_output
from airdock.engine.logs import DEFAULT_TAIL_LINES, KeepPolicy, LogLines, stream_lines
from airdock.targets.spec import Outcome

__all__ = [
    "COLLECTED_SUFFIX",
    "collect_container",
    "deferral_blocker",
    "find_container",
    "follow_container",
    "mark_collected",
]

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
    lines_per_record: int = 1,
) -> Outcome:
    """Emit the container's whole output (following it while it runs), in records of up to
    ``lines_per_record`` lines that arrived together; its exit code once it ends."""
    stream = follow_output(cli, container_id)
    return _outcome(cli, container_id, stream_lines(stream, emit, keep, tail, lines_per_record))


def collect_container(
    cli: Any, container_id: str, keep: KeepPolicy = KeepPolicy.LAST, tail: int = DEFAULT_TAIL_LINES
) -> Outcome:
    """The outcome of a container whose output someone else forwarded (a deferral trigger): its
    exit code and the lines ``keep`` and ``tail`` need, read back from the engine, emitting nothing."""
    if keep is KeepPolicy.ALL:
        chunks: Any = cli.logs(container_id, stdout=True, stderr=True, stream=True, follow=False)
    else:
        chunks = [cli.logs(container_id, stdout=True, stderr=True, tail=max(tail, 1))]
    return _outcome(cli, container_id, stream_lines(chunks, _ignore, keep, tail))


def _ignore(line: str) -> None:
    return None


def _outcome(cli: Any, container_id: str, lines: LogLines) -> Outcome:
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


def deferral_blocker(engine_url: str, triggerer_on_host: bool) -> str | None:
    """Why a triggerer could not follow a container on the engine at ``engine_url``; None if it can.

    A unix socket or a loopback TCP address is reachable only from this host: deferring needs a
    triggerer here. Another TCP address is assumed reachable from the triggerers (the trigger
    says so in one line, and the worker follows the container itself, if it is not).
    """
    from urllib.parse import urlsplit

    parts = urlsplit(engine_url)
    local = parts.scheme in ("unix", "http+unix", "http+docker", "npipe") or (parts.hostname or "") in (
        "localhost",
        "127.0.0.1",
        "::1",
        "",
    )
    if local and not triggerer_on_host:
        return (
            f"no Airflow triggerer runs on this host, and the engine at {engine_url} is reachable only "
            "from here: run a triggerer on this host, or give the task a tcp:// docker_url the "
            "triggerers can reach"
        )
    return None
