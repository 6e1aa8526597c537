"""Shared fixtures for the benchmarks that need the Docker engine, the local stack or Airflow.

- :func:`local_stack` starts a private local ECR stack on free ports in a temporary directory and
  always stops it and removes the directory;
- :func:`docker_client` and :func:`owned_images` give an engine client and a set of image ids
  that are removed (only they) however the benchmark ends;
- :func:`airflow_env` and :func:`run_child` run a function in a fresh Python process with a
  throw-away ``AIRFLOW_HOME``, token cache and usage record, and an Airflow AWS connection to the
  stack, so nothing reaches the user's ``~/airflow``, ``~/.docker`` or ``~/.cache``;
- :func:`stub_context` is enough of an Airflow context to call ``operator.execute(context)``
  outside the task runner (see :func:`call_execute`).

Run as ``python -m benchmarks._support MODULE:FUNCTION PAYLOAD_JSON RESULT_PATH`` it is the child
side of :func:`run_child`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airdock.images import EcrRegistry, ecr_registry_for, parse_image_ref
from airdock.local import settings as local_settings
from airdock.local.settings import StackSettings
from airdock.local.stack import LocalStack

REPO_ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT_S = 600.0


class BenchmarkError(RuntimeError):
    """A benchmark could not measure what it promises (its environment is missing or misbehaves)."""


# ---------------------------------------------------------------------------------------------
# Numbers


def ms(samples: Sequence[float]) -> tuple[float, ...]:
    """Seconds → milliseconds."""
    return tuple(s * 1000.0 for s in samples)


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


# ---------------------------------------------------------------------------------------------
# The local stack


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (all held open while choosing)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((local_settings.HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


@dataclass
class Stack:
    """A running local stack: its settings and the few calls the benchmarks make on it."""

    local: LocalStack
    settings: StackSettings

    @property
    def registry_host(self) -> str:
        return self.settings.registry_host

    @property
    def registry(self) -> EcrRegistry:
        registry = ecr_registry_for(parse_image_ref(f"{self.registry_host}/x"), [self.registry_host])
        if registry is None:  # pragma: no cover - a listed host is always recognised
            raise BenchmarkError(f"{self.registry_host} is not recognised as an ECR registry")
        return registry

    def ecr(self) -> Any:
        """A boto3 ECR client for the stack (explicit endpoint and keys: no environment needed)."""
        return self.client("ecr")

    def client(self, service: str) -> Any:
        """A boto3 client of ``service`` (``ecr``, ``ecs``, ``logs``) for the stack's API server."""
        import boto3

        return boto3.session.Session().client(
            service,
            endpoint_url=self.settings.api_url,
            region_name=self.settings.region,
            aws_access_key_id=local_settings.LOCAL_ACCESS_KEY_ID,
            aws_secret_access_key=local_settings.LOCAL_SECRET_ACCESS_KEY,
        )

    def token_calls(self) -> int:
        """GetAuthorizationToken calls the stack has served so far."""
        return int(self.local.status().counters.get("GetAuthorizationToken", 0))

    def ensure_repository(self, name: str) -> None:
        ecr = self.ecr()
        with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
            ecr.create_repository(repositoryName=name)

    def password(self) -> str:
        """A fresh registry password from GetAuthorizationToken."""
        import base64

        data = self.ecr().get_authorization_token()["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        if user != "AWS":
            raise BenchmarkError(f"unexpected registry user {user!r} from the local stack")
        return password

    def auth_config(self) -> dict[str, str]:
        return {"username": "AWS", "password": self.password()}

    def connection_json(self) -> str:
        """``AIRFLOW_CONN_AWS_DEFAULT`` for an Airflow AWS connection to the stack."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": local_settings.LOCAL_ACCESS_KEY_ID,
                "password": local_settings.LOCAL_SECRET_ACCESS_KEY,
                "extra": {"region_name": self.settings.region, "endpoint_url": self.settings.api_url},
            }
        )


@contextlib.contextmanager
def local_stack(**settings: Any) -> Iterator[Stack]:
    """A fresh local stack on free ports in a temporary directory; stopped and removed on exit."""
    with tempfile.TemporaryDirectory(prefix="airdock-bench-stack-") as tmp:
        local = LocalStack(Path(tmp) / "stack")
        gateway, api, registry = free_ports(3)
        try:
            status = local.up(
                {"gateway_port": gateway, "api_port": api, "registry_port": registry, **settings}
            )
            if status.settings is None:
                raise BenchmarkError(f"the local stack in {local.data_dir} started without settings")
            yield Stack(local, status.settings)
        finally:
            local.down()


# ---------------------------------------------------------------------------------------------
# The Docker engine


def docker_client() -> Any:
    """A client of the engine ``DOCKER_HOST`` names; BenchmarkError when none answers."""
    import docker

    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as exc:
        raise BenchmarkError(
            f"no Docker engine answers ({exc}); run `make bench`, which starts one"
        ) from None
    return client


def docker_cli(*args: str, env: Mapping[str, str] | None = None, stdin: str | None = None) -> str:
    """Run the ``docker`` command line; BenchmarkError with its stderr when it fails."""
    done = subprocess.run(
        ["docker", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        check=False,
        timeout=CHILD_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise BenchmarkError(f"docker {args[0]} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


@contextlib.contextmanager
def owned_images(client: Any) -> Iterator[set[str]]:
    """A set the benchmark adds the ids (or references) of images it made to; all removed on exit."""
    import docker.errors

    mine: set[str] = set()
    try:
        yield mine
    finally:
        for image in sorted(mine):
            # Containers a failed run left on these images first (the images are unique to us).
            with contextlib.suppress(docker.errors.APIError):
                for container in client.api.containers(all=True, quiet=True, filters={"ancestor": image}):
                    with contextlib.suppress(docker.errors.NotFound):
                        client.api.remove_container(container["Id"], force=True)
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_image(image, force=True)  # only images this benchmark created


def tiny_layer(payload: bytes, name: str = "payload.bin") -> bytes:
    """An in-memory tar of one file: the root filesystem of a tiny, distinct image."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def import_tiny_images(client: Any, repository: str, count: int, mine: set[str]) -> list[str]:
    """``count`` distinct one-file images ``repository:v<i>`` (not runnable); their ids, added to ``mine``."""
    from concurrent.futures import ThreadPoolExecutor

    def one(index: int) -> str:
        client.api.import_image_from_data(
            tiny_layer(os.urandom(512) + index.to_bytes(4, "big")), repository=repository, tag=f"v{index}"
        )
        image_id = str(client.api.inspect_image(f"{repository}:v{index}")["Id"])
        mine.add(image_id)
        return image_id

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, range(count)))


def push(client: Any, ref: str, auth: Mapping[str, str]) -> str:
    """Push ``ref`` (``host/repo:tag``) and return its digest."""
    repository, _, tag = ref.rpartition(":")
    digest = ""
    for event in client.api.push(repository, tag=tag, auth_config=dict(auth), stream=True, decode=True):
        if "error" in event:
            raise BenchmarkError(f"push of {ref} failed: {event['error']}")
        digest = event.get("aux", {}).get("Digest", digest)
    return digest


# ---------------------------------------------------------------------------------------------
# Airflow, in a child process


@dataclass
class StubTaskInstance:
    """What operators use of a task instance outside the task runner."""

    dag_id: str = "airdock_bench"
    task_id: str = "bench"
    run_id: str = "manual__bench"
    try_number: int = 1
    map_index: int = -1
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def stub_context(**ti: Any) -> dict[str, Any]:
    """A minimal Airflow context: ``ti`` / ``task_instance`` as a :class:`StubTaskInstance`."""
    instance = StubTaskInstance(**ti)
    return {"ti": instance, "task_instance": instance}


def call_execute(operator: Any, context: Mapping[str, Any]) -> Any:
    """``operator.execute(context)`` the way the task runner calls it (no outside-the-runner warning)."""
    from airflow.sdk.bases.operator import ExecutorSafeguard

    sentinel = {f"{type(operator).__name__}__sentinel": ExecutorSafeguard.sentinel_value}
    return operator.execute(context, **sentinel)


def airflow_env(stack: Stack, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker process: a throw-away Airflow home and an AWS connection to ``stack``.

    Only the Airflow connection supplies AWS credentials (no ``AWS_*`` identity variables), as on
    a worker whose tasks name ``aws_conn_id``; tokens, usage record and caches live under ``home``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIRFLOW_", "AIRDOCK_"))}
    env.update(
        AIRFLOW_HOME=str(home / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW_CONN_AWS_DEFAULT=stack.connection_json(),
        AIRFLOW__AIRDOCK__ECR_REGISTRIES=stack.registry_host,
        AIRFLOW__AIRDOCK__TOKEN_CACHE_DIR=str(home / "tokens"),
        AIRDOCK_STATE_DIR=str(home / "state"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_STATE_HOME=str(home / "state"),
        DOCKER_CONFIG=str(home / "docker-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
        AWS_CONFIG_FILE=str(home / "no-aws-config"),
        AWS_EC2_METADATA_DISABLED="true",
        **extra,
    )
    return env


def run_child(target: str, payload: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    """Call ``target`` (``module:function``) with ``payload`` in a fresh Python; return its JSON result."""
    with tempfile.TemporaryDirectory(prefix="airdock-bench-child-") as tmp:
        result = Path(tmp) / "result.json"
        argv = [sys.executable, "-m", "benchmarks._support", target, json.dumps(payload), str(result)]
        try:
            done = subprocess.run(
                argv,
                cwd=REPO_ROOT,
                env=dict(env),
                capture_output=True,
                text=True,
                check=False,
                timeout=CHILD_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"{target} did not finish within {CHILD_TIMEOUT_S:.0f} s") from None
        if done.returncode != 0 or not result.exists():
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise BenchmarkError(f"{target} failed in its child process ({done.returncode}):\n{tail}")
        return json.loads(result.read_text())


@contextlib.contextmanager
def state_dir(path: Path) -> Iterator[Path]:
    """``AIRDOCK_STATE_DIR`` set to ``path`` for this process while the block runs."""
    before = os.environ.get("AIRDOCK_STATE_DIR")
    os.environ["AIRDOCK_STATE_DIR"] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop("AIRDOCK_STATE_DIR", None)
        else:
            os.environ["AIRDOCK_STATE_DIR"] = before


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory removed on exit, even when a container left root-owned files in it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _child_main(argv: Sequence[str]) -> int:
    import importlib

    target, payload, out = argv
    module, _, function = target.partition(":")
    value = getattr(importlib.import_module(module), function)(json.loads(payload))
    Path(out).write_text(json.dumps(value))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
