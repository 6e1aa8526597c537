"""A client of the Docker engine that ``DOCKER_HOST`` (or the default socket) names."""

from __future__ import annotations

from typing import Any

from airdock.errors import PrerequisiteError


def docker_client(timeout: int = 300) -> Any:
    """A ``docker.DockerClient`` that answered a ping; PrerequisiteError (one line) when none answers.

    ``timeout`` bounds each API call: long for builds that print nothing for minutes.
    """
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        raise PrerequisiteError(
            f"cannot reach the Docker engine ({exc}); start it or point DOCKER_HOST at it"
        ) from None
    return client
