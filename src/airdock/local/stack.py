"""Start, stop and inspect the local stack's processes.

Two processes make a stack: the Distribution registry (Debian's ``docker-registry``) and
airdock's server (the ECR API and the gateway, ``airdock.local.server``). Their pids live in
``<data_dir>/pids.json``; their logs in ``<data_dir>/logs/``. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import yaml

from airdock.errors import ConfigError, PrerequisiteError, StackError
from airdock.local.settings import HOST, SETTINGS_FILE, StackSettings

PIDS_FILE = "pids.json"
REGISTRY_BIN_ENV = "AIRDOCK_REGISTRY_BIN"
_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 20.0  # the server first stops the ECS tasks it runs
_PORT_SETTLE_S = 10.0

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class ProcessState:
    name: str
    pid: int | None
    alive: bool


@dataclass(frozen=True)
class StackStatus:
    settings: StackSettings | None
    registry: ProcessState
    server: ProcessState
    counters: dict[str, int]
    ecs_tasks: dict[str, int] = field(default_factory=dict)  # last status → count
    log_events: int = 0
    rehearsal: dict[str, Any] = field(default_factory=dict)  # faults armed on request (api/rehearsal.py)

    @property
    def running(self) -> bool:
        return self.registry.alive and self.server.alive

    def to_dict(self) -> dict[str, Any]:
        """The shape ``airdock local status --json`` prints."""
        s = self.settings
        return {
            "running": self.running,
            "data_dir": None if s is None else str(s.data_dir),
            "account_id": None if s is None else s.account_id,
            "region": None if s is None else s.region,
            "token_ttl_seconds": None if s is None else s.token_ttl_seconds,
            "gateway": {
                "url": None if s is None else s.gateway_url,
                "registry_host": None if s is None else s.registry_host,
                "pid": self.server.pid,
                "alive": self.server.alive,
            },
            "api": {
                "url": None if s is None else s.api_url,
                "pid": self.server.pid,
                "alive": self.server.alive,
            },
            "registry": {
                "url": None if s is None else s.registry_url,
                "storage": None if s is None else str(s.registry_root),
                "pid": self.registry.pid,
                "alive": self.registry.alive,
            },
            "get_authorization_token_calls": self.counters.get("GetAuthorizationToken", 0),
            "ecs": {
                "tasks": dict(sorted(self.ecs_tasks.items())),
                "run_task_calls": self.counters.get("RunTask", 0),
                "register_task_definition_calls": self.counters.get("RegisterTaskDefinition", 0),
            },
            "logs": {"events": self.log_events},
            "counters": self.counters,
            "rehearsal": self.rehearsal,
        }


def registry_binary() -> str:
    """Path of the Distribution registry binary; PrerequisiteError when it is not installed."""
    wanted = os.environ.get(REGISTRY_BIN_ENV, "docker-registry")
    found = shutil.which(wanted)
    if found is None:
        raise PrerequisiteError(
            f"registry binary {wanted!r} not found: install Debian's registry "
            f"(apt-get install docker-registry) or set {REGISTRY_BIN_ENV}"
        )
    return found


def _pid_alive(pid: int | None, marker: str) -> bool:
    """True when ``pid`` runs and its command line contains ``marker`` (guards against pid reuse)."""
    if pid is None:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return marker in cmdline and not zombie


def _port_in_use(port: int, settle: float = 0.0) -> bool:
    """True when ``port`` cannot be bound on HOST, after retrying for up to ``settle`` seconds."""
    deadline = time.monotonic() + settle
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError:
                pass
            else:
                return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.1)


class LocalStack:
    """The stack rooted at one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()

    # -- files ----------------------------------------------------------------------------
    @property
    def _pids_path(self) -> Path:
        return self.data_dir / PIDS_FILE

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def saved_settings(self) -> StackSettings | None:
        if not (self.data_dir / SETTINGS_FILE).exists():
            return None
        return StackSettings.load(self.data_dir)

    def _pids(self) -> dict[str, int]:
        try:
            data = json.loads(self._pids_path.read_text())
            return {str(k): int(v) for k, v in data.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    # -- inspection -----------------------------------------------------------------------
    def status(self) -> StackStatus:
        settings = self.saved_settings()
        pids = self._pids()
        registry = ProcessState("registry", pids.get("registry"), _pid_alive(pids.get("registry"), "serve"))
        server = ProcessState(
            "server", pids.get("server"), _pid_alive(pids.get("server"), "airdock.local.server")
        )
        counters: dict[str, int] = {}
        ecs_tasks: dict[str, int] = {}
        log_events = 0
        rehearsal: dict[str, Any] = {}
        if settings is not None and server.alive:
            with contextlib.suppress(httpx.HTTPError, ValueError, AttributeError, TypeError):
                body = httpx.get(f"{settings.api_url}/_airdock/status", timeout=5).json()
                counters = {str(k): int(v) for k, v in body.get("counters", {}).items()}
                ecs_tasks = {str(k): int(v) for k, v in body.get("ecs_tasks", {}).items()}
                log_events = int(body.get("log_events", 0))
                rehearsal = dict(body.get("rehearsal", {}))
        return StackStatus(settings, registry, server, counters, ecs_tasks, log_events, rehearsal)

    # -- lifecycle ------------------------------------------------------------------------
    def up(self, overrides: dict[str, Any], progress: Progress = _quiet) -> StackStatus:
        """Start the stack, or confirm it runs; ``overrides`` are settings the caller gave explicitly.

        Idempotent: when the stack already runs with the same settings nothing happens. Changing a
        setting of a running stack is refused (run ``down`` first); bad input starts nothing.
        """
        saved = self.saved_settings()
        base = saved if saved is not None else StackSettings(data_dir=self.data_dir)
        try:
            settings = replace(base, data_dir=self.data_dir, **overrides)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None

        current = self.status()
        if current.running and saved is not None:
            if settings != saved:
                changed = ", ".join(
                    f"{key} {getattr(saved, key)} → {getattr(settings, key)}"
                    for key in overrides
                    if getattr(saved, key) != getattr(settings, key)
                )
                raise ConfigError(
                    f"the stack in {self.data_dir} already runs with other settings ({changed}); "
                    "run `airdock local down` first"
                )
            progress(f"already running: gateway {settings.gateway_url}, API {settings.api_url}")
            return current
        settle = 0.0
        if current.registry.alive or current.server.alive:
            progress("a previous start left a process behind; stopping it first")
            self.down()
            settle = _PORT_SETTLE_S  # a process that just exited may hold its port a moment longer

        binary = registry_binary()
        for label, port in (
            ("gateway", settings.gateway_port),
            ("API", settings.api_port),
            ("registry", settings.registry_port),
        ):
            if _port_in_use(port, settle):
                flag = {"gateway": "--gateway-port", "API": "--api-port", "registry": "--registry-port"}[
                    label
                ]
                raise PrerequisiteError(
                    f"port {port} on {HOST} (for the {label}) is in use: stop what holds it or pass {flag}"
                )

        settings.save()
        settings.registry_root.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.data_dir / "registry.yml"
        config_path.write_text(yaml.safe_dump(_registry_config(settings), sort_keys=False))

        progress(f"starting registry on {settings.registry_url} (storage {settings.registry_root})")
        registry = self._spawn([binary, "serve", str(config_path)], "registry")
        progress(f"starting ECR API on {settings.api_url} and gateway on {settings.gateway_url}")
        server = self._spawn(
            [sys.executable, "-m", "airdock.local.server", "--data-dir", str(self.data_dir)], "server"
        )
        self._pids_path.write_text(json.dumps({"registry": registry.pid, "server": server.pid}) + "\n")

        try:
            self._wait_ready(settings, {"registry": registry, "server": server})
        except StackError:
            self.down()
            raise
        progress(f"ready: push and pull through {settings.registry_host}")
        return self.status()

    def down(self, progress: Progress = _quiet) -> list[str]:
        """Stop the stack's processes (idempotent); return the names of those that were stopped."""
        stopped = []
        pids = self._pids()
        markers = {"server": "airdock.local.server", "registry": "serve"}
        for name in ("server", "registry"):
            pid = pids.get(name)
            if pid is None or not _pid_alive(pid, markers[name]):
                continue
            progress(f"stopping {name} (pid {pid})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + _STOP_TIMEOUT_S
            while _pid_alive(pid, markers[name]) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)
            if _pid_alive(pid, markers[name]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _reap(pid)
            stopped.append(name)
        with contextlib.suppress(FileNotFoundError):
            self._pids_path.unlink()
        return stopped

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        finally:
            log.close()

    def _wait_ready(self, settings: StackSettings, procs: dict[str, subprocess.Popen[bytes]]) -> None:
        checks = {
            "registry": (f"{settings.registry_url}/v2/", 200),
            "server": (f"{settings.api_url}/_airdock/status", 200),
            "gateway": (f"{settings.gateway_url}/v2/", 401),
        }
        deadline = time.monotonic() + _READY_TIMEOUT_S
        pending = dict(checks)
        while pending:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise StackError(
                        f"the {name} exited at start (code {proc.returncode}): {self._last_log_line(name)}"
                    )
            for name, (url, expected) in list(pending.items()):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=2).status_code == expected:
                        del pending[name]
            if pending and time.monotonic() > deadline:
                raise StackError(
                    f"{', '.join(pending)} did not answer within {_READY_TIMEOUT_S:.0f} s; see {self.log_dir}"
                )
            if pending:
                time.sleep(0.1)

    def _last_log_line(self, name: str) -> str:
        try:
            lines = (self.log_dir / f"{name}.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1][:300] if lines else f"no output (see {self.log_dir})"


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our child (it is when this process started it)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _registry_config(settings: StackSettings) -> dict[str, Any]:
    return {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(settings.registry_root)},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"{HOST}:{settings.registry_port}", "relativeurls": True},
    }
