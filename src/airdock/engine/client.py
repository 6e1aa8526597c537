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


def client_over(api: Any) -> Any:
    """A ``docker.DockerClient`` over an existing ``APIClient`` connection (a task's), for the
    high-level calls a helper needs; no second connection is opened."""
    import docker

    client = docker.DockerClient.__new__(docker.DockerClient)
    client.api = api
    return client


def engine_address(api: Any) -> str:
    """Where a docker ``APIClient`` talks to its engine: ``unix:///path``, ``tcp://host:port``, ...

    docker-py rewrites a unix socket URL to ``http+docker://localhost``; the socket path is kept
    on its transport adapter.
    """
    base_url = str(getattr(api, "base_url", "") or "")
    socket_path = getattr(getattr(api, "_custom_adapter", None), "socket_path", None)
    if base_url.startswith("http+docker://") and socket_path:
        return f"unix://{socket_path}"
    if base_url.startswith(("http://", "https://")):
        scheme = "tcp" if base_url.startswith("http://") else "tcp+tls"
        return f"{scheme}://{base_url.split('://', 1)[1]}"
    return base_url or "the Docker engine"


_ENGINE_ERROR_WORDS = (
    ("FileNotFoundError", "no socket there"),
    ("No such file or directory", "no socket there"),
    ("ConnectionRefusedError", "connection refused (nothing listens)"),
    ("Connection refused", "connection refused (nothing listens)"),
    ("RemoteDisconnected", "it closed the connection"),
    ("Connection reset", "it reset the connection"),
    ("PermissionError", "permission denied on the socket"),
    ("Permission denied", "permission denied on the socket"),
    ("timed out", "timed out"),
)


def describe_engine_error(exc: BaseException) -> str:
    """Why the engine did not answer, in words: docker-py wraps the socket error in several layers."""
    text = str(exc)
    for marker, words in _ENGINE_ERROR_WORDS:
        if marker in text:
            return words
    return " ".join(text.split()) or type(exc).__name__
