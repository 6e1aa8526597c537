"""The Docker engine without blocking an event loop: follow a container's log and wait for its end.

docker-py is synchronous; a triggerer runs many triggers on one asyncio loop, so a trigger must
not hold a thread per container. ``AsyncEngine`` speaks the engine's HTTP API with httpx (a unix
socket, ``tcp://`` or ``tcp://`` + TLS, as docker-py does) for the four calls a follower needs:
inspect, logs (``follow=1&timestamps=1``), wait and stop/remove.

Every log record carries the engine's nanosecond timestamp; a :class:`LogPosition` (timestamp of
the last record taken, and how many records carried exactly that timestamp) lets a new follower
ask the engine for ``since=<timestamp>`` (inclusive) and skip what was taken: no line lost, none
repeated.
"""

from __future__ import annotations

import re
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = [
    "AsyncEngine",
    "EngineUnreachable",
    "LogPosition",
    "LogRecord",
    "RecordParser",
    "Resume",
    "TlsFiles",
    "parse_timestamp",
]

_TS = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z ")


class EngineUnreachable(Exception):
    """The engine did not answer (no socket, refused, TLS failure, engine restarting)."""


@dataclass(frozen=True)
class TlsFiles:
    """docker-py's TLS settings (paths on the host that runs the follower)."""

    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify: bool = True
    hostname: str | None = None


@dataclass(frozen=True)
class LogPosition:
    """After the ``count``-th record stamped ``timestamp_ns`` (0, 0: the beginning)."""

    timestamp_ns: int = 0
    count: int = 0

    def since(self) -> str:
        """The engine's ``since`` parameter (seconds.nanoseconds; inclusive)."""
        seconds, nanos = divmod(self.timestamp_ns, 1_000_000_000)
        return f"{seconds}.{nanos:09d}"

    def after(self, timestamp_ns: int) -> LogPosition:
        if timestamp_ns == 0:  # a record without a timestamp (never seen from a real engine)
            return self
        if timestamp_ns == self.timestamp_ns:
            return LogPosition(timestamp_ns, self.count + 1)
        return LogPosition(timestamp_ns, 1)


_SECONDS_CACHE: dict[bytes, int] = {}


def parse_timestamp(stamp: bytes, fraction: bytes | None) -> int:
    """RFC 3339 (``2026-12-01T15:03:29``, fraction digits apart) as nanoseconds since the epoch."""
    seconds = _SECONDS_CACHE.get(stamp)
    if seconds is None:
        seconds = int(datetime.strptime(stamp.decode(), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
        if len(_SECONDS_CACHE) > 4096:
            _SECONDS_CACHE.clear()
        _SECONDS_CACHE[stamp] = seconds
    nanos = int((fraction or b"0").ljust(9, b"0")) if fraction else 0
    return seconds * 1_000_000_000 + nanos


@dataclass(frozen=True)
class LogRecord:
    """One record of the engine's log: its timestamp and its bytes (with the ``\\n`` if complete)."""

    timestamp_ns: int
    data: bytes


class RecordParser:
    """Turn the bytes of a ``logs?timestamps=1`` response into records.

    Without a TTY the engine multiplexes stdout and stderr in frames (8-byte header: stream,
    three zero bytes, big-endian length); with one, the response is the raw text. Either way each
    record starts with its timestamp and a space; a record without ``\\n`` is a part of a long line
    the engine split (its next part carries its own timestamp).
    """

    def __init__(self, multiplexed: bool) -> None:
        self.multiplexed = multiplexed
        self._buffer = bytearray()
        self._text: dict[int, bytearray] = {}

    def feed(self, chunk: bytes) -> list[LogRecord]:
        self._buffer += chunk
        records: list[LogRecord] = []
        if not self.multiplexed:
            self._records(0, self._take_all(), records)
            return records
        while len(self._buffer) >= 8:
            stream = self._buffer[0]
            (size,) = struct.unpack(">I", bytes(self._buffer[4:8]))
            if len(self._buffer) < 8 + size:
                break
            payload = bytes(self._buffer[8 : 8 + size])
            del self._buffer[: 8 + size]
            self._records(stream, payload, records)
        return records

    def _take_all(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def _records(self, stream: int, payload: bytes, out: list[LogRecord]) -> None:
        text = self._text.setdefault(stream, bytearray())
        text += payload
        start = 0
        while True:
            end = text.find(b"\n", start)
            if end < 0:
                break
            self._record(bytes(text[start : end + 1]), out)
            start = end + 1
        del text[:start]
        # A record that ends without a newline is complete when the next one starts; the engine
        # writes one record per frame, so what remains at the end of a frame is one whole part.
        if text and self.multiplexed:
            self._record(bytes(text), out)
            text.clear()

    @staticmethod
    def _record(raw: bytes, out: list[LogRecord]) -> None:
        match = _TS.match(raw)
        if match is None:
            out.append(LogRecord(0, raw))
            return
        out.append(LogRecord(parse_timestamp(match.group(1), match.group(2)), raw[match.end() :]))


def _split_url(url: str) -> tuple[str, str | None, bool]:
    """(base URL for httpx, unix socket path or None, whether TLS)."""
    parts = urlsplit(url)
    if parts.scheme in ("unix", "http+unix", "http+docker"):
        path = parts.path or "/var/run/docker.sock"
        if parts.netloc and parts.scheme == "unix":  # unix://var/run/docker.sock (two slashes)
            path = "/" + parts.netloc + parts.path
        return "http://docker", path, False
    if parts.scheme in ("tcp", "http", "https", "tcp+tls"):
        tls = parts.scheme in ("https", "tcp+tls")
        return f"{'https' if tls else 'http'}://{parts.netloc}", None, tls
    raise EngineUnreachable(f"unsupported engine URL {url!r}: use unix:///path or tcp://host:port")


def _ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.ca_cert) if tls.ca_cert else ssl.create_default_context()
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert:
        context.load_cert_chain(tls.client_cert, tls.client_key)
    return context


class AsyncEngine:
    """The engine's HTTP API over httpx (see the module docstring). Use as an async context manager."""

    def __init__(self, url: str, tls: TlsFiles | None = None, timeout_s: float = 30.0) -> None:
        import httpx

        self.url = url
        base, socket_path, use_tls = _split_url(url)
        if tls is not None and not use_tls:
            base, use_tls = base.replace("http://", "https://", 1), True
        verify: Any = _ssl_context(tls or TlsFiles()) if use_tls else False
        transport = httpx.AsyncHTTPTransport(uds=socket_path, verify=verify) if socket_path else None
        self._client = httpx.AsyncClient(
            base_url=base,
            transport=transport,
            verify=verify,
            timeout=httpx.Timeout(timeout_s),
            # One client serves every follower of a triggerer: each holds a streaming connection.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
            headers={"Host": tls.hostname} if tls and tls.hostname else None,
        )

    async def __aenter__(self) -> AsyncEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise EngineUnreachable(f"the Docker engine at {self.url} did not answer: {exc!r}") from None
        return response

    async def inspect(self, container_id: str) -> dict[str, Any] | None:
        """``GET /containers/{id}/json``; None when the container does not exist."""
        response = await self._request("GET", f"/containers/{quote(container_id)}/json")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        value: dict[str, Any] = response.json()
        return value

    async def logs(
        self, container_id: str, since: LogPosition, multiplexed: bool
    ) -> AsyncIterator[list[LogRecord]]:
        """The container's records from ``since`` on, following until it stops (batches per read)."""
        import httpx

        params = {"follow": "1", "stdout": "1", "stderr": "1", "timestamps": "1"}
        if since.timestamp_ns:
            params["since"] = since.since()
        parser = RecordParser(multiplexed)
        try:
            async with self._client.stream(
                "GET",
                f"/containers/{quote(container_id)}/logs",
                params=params,
                timeout=httpx.Timeout(30.0, read=None),
            ) as response:
                if response.status_code == 404:
                    return
                if response.status_code >= 400:
                    await response.aread()
                    response.raise_for_status()
                async for chunk in response.aiter_raw():
                    records = parser.feed(chunk)
                    if records:
                        yield records
        except httpx.TransportError as exc:
            raise EngineUnreachable(f"the Docker engine at {self.url} stopped answering: {exc!r}") from None

    async def wait(self, container_id: str) -> dict[str, Any]:
        """``POST /containers/{id}/wait`` (immediate for a stopped container): StatusCode, Error."""
        import httpx

        response = await self._request(
            "POST", f"/containers/{quote(container_id)}/wait", timeout=httpx.Timeout(30.0, read=None)
        )
        response.raise_for_status()
        value: dict[str, Any] = response.json()
        return value

    async def stop(self, container_id: str, grace_s: int) -> None:
        import httpx

        response = await self._request(
            "POST",
            f"/containers/{quote(container_id)}/stop",
            params={"t": str(grace_s)},
            timeout=httpx.Timeout(grace_s + 30.0),
        )
        if response.status_code not in (204, 304, 404):
            response.raise_for_status()

    async def remove(self, container_id: str) -> None:
        response = await self._request(
            "DELETE", f"/containers/{quote(container_id)}", params={"v": "1", "force": "1"}
        )
        if response.status_code not in (204, 404, 409):
            response.raise_for_status()


class Resume:
    """Which records of a stream requested with ``since=position.since()`` were taken before."""

    def __init__(self, position: LogPosition) -> None:
        self.position = position
        self._at_timestamp = 0
        self._done = position.timestamp_ns == 0

    def fresh(self, record: LogRecord) -> bool:
        if self._done or record.timestamp_ns == 0:
            return True
        if record.timestamp_ns < self.position.timestamp_ns:
            return False
        if record.timestamp_ns == self.position.timestamp_ns:
            self._at_timestamp += 1
            if self._at_timestamp <= self.position.count:
                return False
        self._done = True
        return True
