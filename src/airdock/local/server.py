"""One process serving the stack's ECR API and its registry gateway, on two loopback ports.

Started by ``airdock local up`` as ``python -m airdock.local.server --data-dir DIR``; it reads
``DIR/stack.json`` for its settings. SIGTERM or SIGINT stops both servers gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Generator
from pathlib import Path

import uvicorn

from airdock.local.api.ecr import create_api_app
from airdock.local.gateway import create_gateway_app
from airdock.local.registry import RegistryStorage
from airdock.local.settings import HOST, StackSettings
from airdock.local.store import Store


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to ``serve_forever``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_forever(settings: StackSettings) -> None:
    """Serve the API and the gateway until SIGTERM/SIGINT."""
    store = Store(settings.store_path)
    storage = RegistryStorage(settings.registry_root)
    servers = [
        _Server(
            uvicorn.Config(
                create_api_app(settings, store, storage),
                host=HOST,
                port=settings.api_port,
                log_config=None,
                access_log=False,
            )
        ),
        _Server(
            uvicorn.Config(
                create_gateway_app(settings, store, storage),
                host=HOST,
                port=settings.gateway_port,
                log_config=None,
                access_log=False,
                # Big layer uploads: no need to cap request bodies here, the registry streams them.
                timeout_keep_alive=30,
            )
        ),
    ]

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(*(server.serve() for server in servers))
    finally:
        store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m airdock.local.server", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = StackSettings.load(args.data_dir)
    asyncio.run(serve_forever(settings))


if __name__ == "__main__":
    main()
