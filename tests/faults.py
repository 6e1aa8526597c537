"""Fault injection for the tests: a TCP proxy in front of the registry gateway that stalls downloads.

Real bytes, a real engine: the proxy forwards every connection to the upstream port and, on a
connection that asked for a blob, passes ``stall_after`` bytes of the answer, holds the rest for
``stall_for`` seconds (forever when None), then passes it on. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class StallingProxy:
    def __init__(self, upstream_port: int, stall_after: int, stall_for: float | None) -> None:
        self.upstream_port = upstream_port
        self.stall_after = stall_after
        self.stall_for = stall_for
        self.port = 0
        self.stalls = 0  # blob answers held so far
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._run, name="stalling-proxy", daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._server.serve_forever()

        self._loop.run_until_complete(main())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        blob = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                if data.startswith(b"GET ") and b"/blobs/sha256:" in data.split(b"\r\n", 1)[0]:
                    blob.set()
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def downstream() -> None:
            sent = 0
            held = False
            while data := await up_reader.read(65536):
                if blob.is_set() and not held and sent + len(data) > self.stall_after:
                    cut = max(0, self.stall_after - sent)
                    writer.write(data[:cut])
                    await writer.drain()
                    held = True
                    self.stalls += 1
                    await asyncio.sleep(self.stall_for if self.stall_for is not None else 10**9)
                    data = data[cut:]
                sent += len(data)
                writer.write(data)
                await writer.drain()
            writer.close()

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)
        for stream in (writer, up_writer):
            with contextlib.suppress(Exception):
                stream.close()

    def start(self) -> StallingProxy:
        self._thread.start()
        assert self._ready.wait(10), "the stalling proxy did not start"
        return self

    def stop(self) -> None:
        def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()

        self._loop.call_soon_threadsafe(shutdown)
        self._thread.join(10)


@contextlib.contextmanager
def stalling_proxy(upstream_port: int, stall_after: int, stall_for: float | None) -> Iterator[StallingProxy]:
    proxy = StallingProxy(upstream_port, stall_after, stall_for).start()
    try:
        yield proxy
    finally:
        proxy.stop()
