"""One process serving the stack's control plane (ECR, ECS, CloudWatch Logs) and its registry
gateway, on two loopback ports, and running the local ECS's tasks.

Started by ``airdock local up`` as ``python -m airdock.local.server --data-dir DIR``; it reads
``DIR/stack.json`` for its settings and takes up the ECS tasks a previous run left unfinished.
SIGTERM or SIGINT stops the running tasks, then both servers, gracefully.
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

from airdock.local.api.app import create_stack_api
from airdock.local.api.rehearsal import Rehearsal
from airdock.local.ecs_runner import EcsRunner
from airdock.local.ecs_store import EcsStore
from airdock.local.gateway import create_gateway_app
from airdock.local.logstore import LogStore
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
    ecs_store = EcsStore(settings.ecs_store_path)
    log_store = LogStore(settings.log_store_path)
    runner = EcsRunner(settings, ecs_store, store, log_store)
    rehearsal = Rehearsal()  # one set of rehearsed faults for the API and the gateway
    servers = [
        _Server(
            uvicorn.Config(
                create_stack_api(settings, store, storage, ecs_store, log_store, runner, rehearsal),
                host=HOST,
                port=settings.api_port,
                log_config=None,
                access_log=False,
            )
        ),
        _Server(
            uvicorn.Config(
                create_gateway_app(settings, store, storage, rehearsal=rehearsal),
                host=HOST,
                port=settings.gateway_port,
                log_config=None,
                access_log=False,
                # Big layer uploads: no need to cap request bodies here, the registry streams them.
                timeout_keep_alive=30,
            )
        ),
    ]

    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def stop() -> None:
        async def stop_tasks_then_servers() -> None:
            await asyncio.to_thread(runner.shutdown)  # the API still answers while tasks stop
            for server in servers:
                server.should_exit = True

        stopping.append(loop.create_task(stop_tasks_then_servers()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    runner.resume()
    try:
        await asyncio.gather(*(server.serve() for server in servers))
    finally:
        store.close()
        ecs_store.close()
        log_store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m airdock.local.server", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = StackSettings.load(args.data_dir)
    asyncio.run(serve_forever(settings))


if __name__ == "__main__":
    main()
