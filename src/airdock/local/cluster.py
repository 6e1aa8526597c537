"""The local cluster: airdock "as deployed", on this machine, from Debian's and PyPI's packages only.

    scripts/cluster.sh up|down|status|env      (make cluster, make cluster-down)
    python -m airdock.local.cluster up|down|status|env    (what the script runs, in the venv)

What `up` starts (every server on 127.0.0.1; state under .airdock/cluster/, or $AIRDOCK_CLUSTER_DIR):

- PostgreSQL (the metadata DB) and Redis (the Celery broker);
- Airflow 3 with the CeleryExecutor: api-server, scheduler, dag-processor, triggerer;
- two Celery workers, each a separate "host": its own private dockerd (no bridge), its own HOME,
  airdock state and token-cache directories, its own hostname for task instances
  (``airdock.airflow.hostname``) and its own queue (``worker-1``/``worker-2``) plus ``default``;
- the local ECR/ECS stack, the example job image pushed to it, and the connections ``aws_default``
  (the stack's endpoint) and ``airflow_api`` (the api-server, for the connection-sync operator).

Task logs go to one folder all components share (as the official docker-compose mounts ./logs into
every container): Airflow's own log servers would listen on every interface, so they are not started.
Each step says what it does; a missing package or a taken port is one line, not a stack trace.
`down` stops what `up` started, by pid; the data stays (`up` again reuses it; delete the folder
for a fresh cluster).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
AIRFLOW = str(BIN / "airflow")
AIRDOCK = str(BIN / "airdock")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
EXAMPLE_DAGS = Path(__file__).resolve().parents[1] / "airflow" / "example_dags"  # read as files
WORKERS = ("worker-1", "worker-2")
EXAMPLE_REPOSITORY = "airdock-demo/scraper"
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"  # any well-formed ARN locally
USER = "admin"


class ClusterError(Exception):
    """One line a person can act on."""


def say(message: str) -> None:
    print(f"cluster: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Settings:
    """What a cluster keeps between `up`s (cluster.json, mode 0600: it holds its secrets)."""

    api_port: int
    postgres_port: int
    redis_port: int
    gateway_port: int
    ecr_api_port: int
    registry_port: int
    password: str
    jwt_secret: str
    api_secret_key: str
    fernet_key: str
    token_ttl: str = "12h"  # noqa: S105 - a lifetime, not a secret

    @classmethod
    def new(cls) -> Settings:
        return cls(
            api_port=free_port(),
            postgres_port=free_port(),
            redis_port=free_port(),
            gateway_port=free_port(),
            ecr_api_port=free_port(),
            registry_port=free_port(),
            password=secrets.token_urlsafe(12),
            jwt_secret=secrets.token_urlsafe(32),
            api_secret_key=secrets.token_urlsafe(32),
            fernet_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        )


@dataclass
class Cluster:
    root: Path
    settings: Settings = field(init=False)
    _token: str | None = field(default=None, init=False, repr=False)  # the admin JWT, reused until refused

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        path = self.root / "cluster.json"
        if path.exists():
            self.settings = Settings(**json.loads(path.read_text()))
        else:
            self.settings = Settings.new()

    # -- places --------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    @property
    def registry_host(self) -> str:
        return f"127.0.0.1:{self.settings.gateway_port}"

    @property
    def ecr_api_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.ecr_api_port}"

    @property
    def dags(self) -> Path:
        return self.root / "dags"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    def worker_dir(self, worker: str) -> Path:
        return self.root / "workers" / worker

    def engine_socket(self, worker: str) -> Path:
        """Short (a unix socket path must stay under ~100 characters): under /run, named by the root."""
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:8]
        return Path("/run") / f"airdock-cluster-{digest}-{worker}" / "docker.sock"

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "cluster.json"
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(json.dumps(asdict(self.settings), indent=2))

    # -- environments --------------------------------------------------------------------------

    def airflow_env(self) -> dict[str, str]:
        """What makes a process part of this Airflow deployment (every component and worker)."""
        s = self.settings
        database = f"postgresql+psycopg2://airflow@127.0.0.1:{s.postgres_port}/airflow"
        return {
            "AIRFLOW_HOME": str(self.root / "airflow"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{s.redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(s.api_port),
            "AIRFLOW__API__SECRET_KEY": s.api_secret_key,
            "AIRFLOW__API_AUTH__JWT_SECRET": s.jwt_secret,
            "AIRFLOW__CORE__FERNET_KEY": s.fernet_key,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airdock.airflow.hostname.from_environment",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs / "airflow"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # A dead worker's tasks are noticed in ~15 s (Airflow's default: 300 s) so that a retry
            # reattaches to the still-running container soon; a real deployment keeps the default.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            # Each Celery worker imports airdock before it forks its pool (as the scheduler does
            # through airdock's plugin): task processes start without re-importing it.
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "airdock.airflow.celery_config.CELERY_CONFIG",
            # Redis redelivers a task not acknowledged within this time — a second run of a job that
            # outlives it. A week: longer than any job (a 25-hour job must never run twice).
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "604800",
            "AIRFLOW__AIRDOCK__ECR_REGISTRIES": self.registry_host,
            "AIRFLOW__AIRDOCK__WORKER_QUEUES": ",".join(WORKERS),
            "AIRFLOW__AIRDOCK__ECS_SUBNETS": "subnet-0cluster",
            "AIRFLOW__AIRDOCK__ECS_EXECUTION_ROLE_ARN": EXECUTION_ROLE,
            "AIRDOCK_LOCAL_REGISTRY": self.registry_host,
            "AIRDOCK_REGISTRY": self.registry_host,
            # Only the aws_default connection names AWS: nothing else may supply credentials.
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
            "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        }

    def worker_env(self, worker: str) -> dict[str, str]:
        """A worker "host": its own engine, HOME, airdock state and token cache, and hostname."""
        home = self.worker_dir(worker)
        return {
            **self.airflow_env(),
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRDOCK_HOSTNAME": worker,
            "DOCKER_HOST": f"unix://{self.engine_socket(worker)}",
            "HOME": str(home / "home"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "AIRDOCK_STATE_DIR": str(home / "state"),
        }

    def base_env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TZ", "DOCKER_HOST", "TMPDIR", "HOME", "USER", "LOGNAME", "TERM")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.setdefault("HOME", "/root")
        return env

    # -- processes -----------------------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        try:
            pid = int((self.pids / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return None if stat.rpartition(")")[2].split()[0] in ("Z", "X") else pid  # a zombie has ended

    def spawn(self, name: str, argv: list[str], env: dict[str, str], *, user: str | None = None) -> int:
        """Start ``argv`` in its own session, output to logs/<name>.log, pid to pids/<name>.pid."""
        self.pids.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.root,
            )  # fmt: skip
        (self.pids / f"{name}.pid").write_text(str(process.pid))
        return process.pid

    def wait_for(self, name: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.pid(name) is None:
                raise ClusterError(f"{name} exited while starting: {self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} did not become ready in {timeout:.0f} s (log: {self.log(name)})")
            time.sleep(0.5)

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def log_tail(self, name: str) -> str:
        try:
            lines = [line for line in self.log(name).read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "(no log)"
        return f"{lines[-1][:300] if lines else '(empty log)'} (log: {self.log(name)})"

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> bool:
        return bool(self.stop_together([name], sig, timeout))

    def stop_together(
        self, names: list[str], sig: signal.Signals = signal.SIGTERM, timeout: float = 30
    ) -> list[str]:
        """Signal every running one of ``names`` at once, wait for all (SIGKILL after ``timeout``);
        the names that were running."""
        running: dict[str, int] = {}
        for name in names:
            pid = self.pid(name)
            if pid is None:
                (self.pids / f"{name}.pid").unlink(missing_ok=True)
                continue
            say(f"stopping {name} (pid {pid})")
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                os.kill(pid, sig)
            running[name] = pid
        deadline = time.monotonic() + timeout
        while any(self.pid(name) is not None for name in running) and time.monotonic() < deadline:
            time.sleep(0.2)
        for name, pid in running.items():
            if self.pid(name) is not None:
                say(f"{name} did not stop in {timeout:.0f} s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            (self.pids / f"{name}.pid").unlink(missing_ok=True)
        return list(running)

    # -- up ------------------------------------------------------------------------------------

    def up(self) -> None:
        check_packages()
        self.root.mkdir(parents=True, exist_ok=True)
        first = not (self.root / "cluster.json").exists()
        self.save()
        if first:
            say(f"new cluster in {self.root}")
        self.start_postgres()
        self.seed_dags()
        # A running api-server means a migrated DB: a restart skips it. The migration (tens of
        # seconds) runs while the rest of the hosts come up.
        migration = None if self.pid("api-server") else self.start_migration()
        self.start_redis()
        self.start_stack()
        for worker in WORKERS:
            self.start_engine(worker)
        if migration is not None:
            self.finish_migration(migration)
        self.start_airflow()
        self.create_connections()
        self.publish_example_image()
        say(f"up: the UI is {self.api_url}  (login {USER} / {self.settings.password})")

    def check_port(self, port: int, what: str) -> None:
        if port_taken(port):
            raise ClusterError(
                f"port {port} on 127.0.0.1 (for {what}) is taken by another program: stop it, or delete "
                f"{self.root / 'cluster.json'} so `up` picks new ports"
            )

    def start_postgres(self) -> None:
        name, port = "postgres", self.settings.postgres_port
        if self.pid(name):
            say(f"postgres runs (pid {self.pid(name)}, 127.0.0.1:{port})")
            return
        self.check_port(port, "PostgreSQL")
        data, run = self.root / "postgres" / "data", self.root / "postgres" / "run"
        if not (data / "PG_VERSION").exists():
            say(f"initialising PostgreSQL in {data}")
            for path in (data, run):
                path.mkdir(parents=True, exist_ok=True)
                shutil.chown(path, "postgres", "postgres")
            self.require_reachable_by("postgres", data)
            done = subprocess.run(
                ["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                 "--auth=trust", "--no-sync", "-E", "UTF8"],
                capture_output=True, text=True, check=False, cwd="/",
            )  # fmt: skip
            if done.returncode:
                raise ClusterError(f"initdb failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        say(f"starting PostgreSQL on 127.0.0.1:{port}")
        self.spawn(
            name,
            [str(PG_BIN / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(run),
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            self.base_env(), user="postgres",
        )  # fmt: skip
        self.wait_for(name, lambda: self.postgres_answers(), 60)
        self.create_database()

    def require_reachable_by(self, user: str, path: Path) -> None:
        done = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(path)], check=False, cwd="/")
        if done.returncode:
            raise ClusterError(
                f"user {user} cannot reach {path}: a folder above it is closed to other users "
                f"(chmod o+x it, or set AIRDOCK_CLUSTER_DIR to a folder under an open path)"
            )

    def postgres_answers(self) -> bool:
        import psycopg2

        try:
            psycopg2.connect(
                host="127.0.0.1", port=self.settings.postgres_port, user="postgres", dbname="postgres",
                connect_timeout=2,
            ).close()  # fmt: skip
        except psycopg2.OperationalError:
            return False
        return True

    def create_database(self) -> None:
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1", port=self.settings.postgres_port, user="postgres", dbname="postgres"
        )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = 'airflow'")
            if cursor.fetchone() is None:
                say("creating database airflow (owner airflow)")
                cursor.execute("CREATE ROLE airflow LOGIN")
                cursor.execute("CREATE DATABASE airflow OWNER airflow")
        connection.close()

    def start_redis(self) -> None:
        name, port = "redis", self.settings.redis_port
        if self.pid(name):
            say(f"redis runs (pid {self.pid(name)}, 127.0.0.1:{port})")
            return
        self.check_port(port, "Redis")
        directory = self.root / "redis"
        directory.mkdir(parents=True, exist_ok=True)
        say(f"starting Redis on 127.0.0.1:{port}")
        self.spawn(
            name,
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            self.base_env(),
        )  # fmt: skip
        self.wait_for(name, lambda: port_taken(port), 30)

    def start_stack(self) -> None:
        s = self.settings
        data = self.root / "local"
        say(f"starting the local ECR/ECS stack (registry {self.registry_host}, API {self.ecr_api_url})")
        done = subprocess.run(
            [AIRDOCK, "local", "up", "--data-dir", str(data), "--gateway-port", str(s.gateway_port),
             "--api-port", str(s.ecr_api_port), "--registry-port", str(s.registry_port),
             "--token-ttl", s.token_ttl],
            env=self.base_env(), capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode:
            raise ClusterError(f"the local stack did not start: {last_line(done)}")

    def start_engine(self, worker: str) -> None:
        name = f"dockerd-{worker}"
        sock = self.engine_socket(worker)
        if self.pid(name) and engine_answers(sock):
            say(f"{worker}'s dockerd runs (pid {self.pid(name)}, unix://{sock})")
            return
        self.stop(name)
        directory = self.worker_dir(worker)
        for sub in ("docker/data", "home", "cache", "state", "airflow"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        sock.parent.mkdir(parents=True, exist_ok=True)
        sock.unlink(missing_ok=True)
        config = directory / "docker" / "daemon.json"
        config.write_text(json.dumps({"deprecated-key-path": str(directory / "docker" / "key.json")}))
        say(f"starting {worker}'s dockerd (no bridge) on unix://{sock}")
        self.spawn(
            name,
            ["dockerd", "--config-file", str(config),
             "--bridge=none", "--iptables=false", "--ip6tables=false",
             "--data-root", str(directory / "docker" / "data"), "--exec-root", str(sock.parent / "exec"),
             "--pidfile", str(sock.parent / "dockerd.pid"), "-H", f"unix://{sock}"],
            self.base_env(),
        )  # fmt: skip
        self.wait_for(name, lambda: engine_answers(sock), 60)

    def seed_dags(self) -> None:
        """The example DAGs, copied in (refreshed when airdock's change); other files are the user's."""
        self.dags.mkdir(parents=True, exist_ok=True)
        for path in sorted(EXAMPLE_DAGS.glob("example_*.py")):
            target = self.dags / path.name
            if not target.exists() or target.read_bytes() != path.read_bytes():
                shutil.copyfile(path, target)

    def start_migration(self) -> subprocess.Popen[str]:
        say("migrating Airflow's metadata DB on PostgreSQL (first run takes ~30 s)")
        (self.root / "airflow").mkdir(parents=True, exist_ok=True)
        env = {**self.base_env(), **self.airflow_env()}
        return subprocess.Popen(
            [AIRFLOW, "db", "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def finish_migration(self, migration: subprocess.Popen[str]) -> None:
        stdout, stderr = migration.communicate(timeout=600)
        if migration.returncode:
            done = subprocess.CompletedProcess(migration.args, migration.returncode, stdout, stderr)
            raise ClusterError(f"airflow db migrate failed: {last_line(done)}")
        passwords = self.root / "airflow" / "simple_auth_manager_passwords.json.generated"
        passwords.touch(mode=0o600)
        passwords.chmod(0o600)
        passwords.write_text(json.dumps({USER: self.settings.password}))

    def components(self) -> list[tuple[str, list[str], dict[str, str]]]:
        env = {**self.base_env(), **self.airflow_env()}
        port = str(self.settings.api_port)
        parts = [
            (
                "api-server",
                [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", port, "--workers", "1"],
                env,
            ),
            ("scheduler", [AIRFLOW, "scheduler"], env),
            ("dag-processor", [AIRFLOW, "dag-processor"], env),
            ("triggerer", [AIRFLOW, "triggerer", "--skip-serve-logs"], env),
        ]
        for worker in WORKERS:
            argv = [AIRFLOW, "celery", "worker", "--queues", f"{worker},default", "--celery-hostname",
                    f"{worker}@airdock", "--concurrency", "8", "--skip-serve-logs"]  # fmt: skip
            parts.append((worker, argv, {**self.base_env(), **self.worker_env(worker)}))
        return parts

    def start_airflow(self) -> None:
        started = []
        for name, argv, env in self.components():
            if self.pid(name):
                say(f"{name} runs (pid {self.pid(name)})")
                continue
            if name == "api-server":
                self.check_port(self.settings.api_port, "the api-server")
            say(f"starting {name}")
            self.spawn(name, argv, env)
            started.append(name)
        if "api-server" in started or not self.api_answers():
            self.wait_for("api-server", self.api_answers, 180)
        for worker in WORKERS:
            if worker in started:
                self.wait_for(worker, lambda w=worker: self.worker_ready(w), 180)  # type: ignore[misc]
        self.wait_for("scheduler", lambda: self.health().get("scheduler") == "healthy", 180)
        self.wait_for("triggerer", lambda: self.health().get("triggerer") == "healthy", 180)
        self.wait_for("dag-processor", lambda: self.health().get("dag_processor") == "healthy", 180)
        say("Airflow is up: api-server, scheduler, dag-processor, triggerer and " + ", ".join(WORKERS))

    def worker_ready(self, worker: str) -> bool:
        return f"{worker}@airdock ready" in self.log(worker).read_text(errors="replace")

    def api_answers(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def health(self) -> dict[str, str | None]:
        try:
            body = httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return {}
        parts = ("scheduler", "triggerer", "dag_processor")
        return {part: (body.get(part) or {}).get("status") for part in parts}

    def token(self) -> str:
        login = {"username": USER, "password": self.settings.password}
        response = httpx.post(f"{self.api_url}/auth/token", json=login, timeout=30)
        if response.status_code >= 300:
            raise ClusterError(f"the api-server refused the admin login ({response.status_code})")
        return str(response.json()["access_token"])

    def create_connections(self) -> None:
        from airdock.local import settings as local_settings

        connections = [
            {
                "connection_id": "aws_default",
                "conn_type": "aws",
                "login": local_settings.LOCAL_ACCESS_KEY_ID,
                "password": local_settings.LOCAL_SECRET_ACCESS_KEY,
                "extra": json.dumps({"region_name": "us-east-1", "endpoint_url": self.ecr_api_url}),
            },
            {
                "connection_id": "airflow_api",
                "conn_type": "http",
                "host": self.api_url,
                "login": USER,
                "password": self.settings.password,
            },
        ]
        headers = {"Authorization": f"Bearer {self.token()}"}
        for connection in connections:
            conn_id = connection["connection_id"]
            url = f"{self.api_url}/api/v2/connections"
            response = httpx.post(url, json=connection, headers=headers, timeout=30)
            if response.status_code == 409:
                response = httpx.patch(f"{url}/{conn_id}", json=connection, headers=headers, timeout=30)
            if response.status_code >= 300:
                raise ClusterError(f"creating connection {conn_id} failed ({response.status_code})")
            say(f"connection {conn_id} set ({connection['conn_type']})")

    def ecr_client(self) -> Any:
        """A boto3 ECR client of the cluster's local stack (its fixed local credentials)."""
        import boto3

        from airdock.local import settings as local_settings

        return boto3.client(
            "ecr", endpoint_url=self.ecr_api_url, region_name="us-east-1",
            aws_access_key_id=local_settings.LOCAL_ACCESS_KEY_ID,
            aws_secret_access_key=local_settings.LOCAL_SECRET_ACCESS_KEY,
        )  # fmt: skip

    def push_image(self, client: Any, image: Any, repository: str, tag: str) -> str:
        """Push ``image`` (of the engine behind ``client``) to the cluster's registry as
        ``repository:tag``, creating the repository if need be; the remote reference."""
        from botocore.exceptions import ClientError

        ecr = self.ecr_client()
        try:
            ecr.create_repository(repositoryName=repository)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "RepositoryAlreadyExistsException":
                raise ClusterError(f"CreateRepository failed: {exc}") from exc
        remote = f"{self.registry_host}/{repository}"
        image.tag(remote, tag)
        auth = ecr.get_authorization_token()["authorizationData"][0]
        user, _, password = base64.b64decode(auth["authorizationToken"]).decode().partition(":")
        login = {"username": user, "password": password}
        try:
            for event in client.api.push(remote, tag=tag, auth_config=login, stream=True, decode=True):
                if "error" in event:
                    raise ClusterError(f"pushing {remote}:{tag} failed: {event['error']}")
        finally:
            client.images.remove(f"{remote}:{tag}")
        return f"{remote}:{tag}"

    def publish_example_image(self) -> None:
        """The demo job image, built offline and pushed once, so the example DAGs run as shipped."""
        import docker
        from botocore.exceptions import ClientError

        from airdock.local.offline_images import build_image

        try:
            self.ecr_client().describe_images(
                repositoryName=EXAMPLE_REPOSITORY, imageIds=[{"imageTag": "latest"}]
            )
            return
        except ClientError:
            pass
        context = Path.cwd() / "examples" / "scraper"  # airdock's source tree, where scripts/cluster.sh runs
        if not context.is_dir():
            say(f"no {context}: the example job image is not published (run from airdock's source tree)")
            return
        say(f"publishing the example job image {self.registry_host}/{EXAMPLE_REPOSITORY}:latest")
        client = docker.from_env(timeout=300)  # the engine scripts/cluster.sh found (the stack's ECS uses it)
        try:
            image = build_image(client, f"{EXAMPLE_REPOSITORY}:latest", context=context)
            self.push_image(client, image, EXAMPLE_REPOSITORY, "latest")
        finally:
            client.close()

    # -- a client of the running cluster (the tests and benchmarks drive it as a user would) -----

    def headers(self, *, renew: bool = False) -> dict[str, str]:
        """The admin's bearer header: one login, reused until the api-server refuses it."""
        if renew or self._token is None:
            self._token = self.token()
        return {"Authorization": f"Bearer {self._token}"}

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """``method`` on the public REST API (``/api/v2`` + ``path``), as admin; the JSON answer."""
        url = f"{self.api_url}/api/v2{path}"
        response = httpx.request(method, url, headers=self.headers(), timeout=60, **kwargs)
        if response.status_code == 401:  # expired, or the api-server restarted with a new key
            response = httpx.request(method, url, headers=self.headers(renew=True), timeout=60, **kwargs)
        if response.status_code >= 300:
            raise ClusterError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        """Until the dag-processor has parsed ``dag_id`` (new files are found within ~5 s)."""
        url = f"{self.api_url}/api/v2/dags/{dag_id}"
        deadline = time.monotonic() + timeout
        while (status := httpx.get(url, headers=self.headers(), timeout=30).status_code) != 200:
            if status == 401:
                self.headers(renew=True)
            if time.monotonic() > deadline:
                raise ClusterError(f"the dag-processor did not parse {dag_id} in {timeout:.0f} s")
            time.sleep(1)

    def write_dag(self, dag_id: str, body: str, timeout: float = 120) -> None:
        """``body`` as ``<dags>/<dag_id>.py``; returns once the DAG is parsed."""
        (self.dags / f"{dag_id}.py").write_text(body)
        self.wait_for_dag(dag_id, timeout)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """A manual run of ``dag_id`` (unpaused first: DAGs are paused when they appear, so the
        examples' schedules do not start runs on their own); its run id."""
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        body = {"logical_date": None, "conf": conf or {}}
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def wait(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """The run's final state (success or failed)."""
        deadline = time.monotonic() + timeout
        while True:
            state = str(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])
            if state in ("success", "failed"):
                return state
            if time.monotonic() > deadline:
                raise ClusterError(f"{dag_id} {run_id} still {state} after {timeout:.0f} s")
            time.sleep(1)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        found = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        return list(found["task_instances"])

    def task_logs(self, dag_id: str, run_id: str) -> str:
        """Every task log of the run (the shared log folder) as text (``task_log_text``)."""
        return task_log_text(self.logs / "airflow" / f"dag_id={dag_id}" / f"run_id={run_id}")

    def token_calls(self) -> int:
        """GetAuthorizationToken calls the cluster's ECR has served."""
        body = httpx.get(f"{self.ecr_api_url}/_airdock/status", timeout=10).json()
        return int(body["counters"].get("GetAuthorizationToken", 0))

    # -- down, status, env ---------------------------------------------------------------------

    def down(self) -> None:
        if not (self.root / "cluster.json").exists():
            say(f"no cluster in {self.root}")
            return
        # Airflow's components together (a Celery worker waits for its running tasks: up to 60 s),
        # then the worker hosts' engines (each stops its containers first).
        self.stop_together([name for name, _, _ in self.components()], timeout=60)
        self.stop_together([f"dockerd-{worker}" for worker in WORKERS], timeout=60)
        subprocess.run(
            [AIRDOCK, "local", "down", "--data-dir", str(self.root / "local")],
            env=self.base_env(), capture_output=True, check=False,
        )  # fmt: skip
        say("stopped the local stack")
        self.stop("redis")
        self.stop("postgres", signal.SIGINT)  # fast shutdown: roll back open transactions, then stop
        say(f"down (the data stays in {self.root})")

    def rows(self) -> list[tuple[str, str, str]]:
        s = self.settings
        rows = [
            ("postgres", self.state("postgres"), f"127.0.0.1:{s.postgres_port} (metadata DB)"),
            ("redis", self.state("redis"), f"127.0.0.1:{s.redis_port} (Celery broker)"),
            ("local stack", "", f"registry {self.registry_host}, ECR/ECS API {self.ecr_api_url}"),
            ("api-server", self.state("api-server"), self.api_url),
            ("scheduler", self.state("scheduler"), ""),
            ("dag-processor", self.state("dag-processor"), f"DAGs in {self.dags}"),
            ("triggerer", self.state("triggerer"), ""),
        ]
        for worker in WORKERS:
            where = f"queues {worker},default; engine unix://{self.engine_socket(worker)}"
            rows.append((worker, self.state(worker), where))
            engine = f"dockerd-{worker}"
            rows.append((engine, self.state(engine), f"data {self.worker_dir(worker)}"))
        return rows

    def state(self, name: str) -> str:
        pid = self.pid(name)
        return f"running (pid {pid})" if pid else "stopped"

    def status(self) -> int:
        if not (self.root / "cluster.json").exists():
            say(f"no cluster in {self.root}; `scripts/cluster.sh up` starts one")
            return 1
        width = max(len(name) for name, _, _ in self.rows())
        running = 0
        for name, state, where in self.rows():
            running += state.startswith("running")
            print(f"  {name:<{width}}  {state:<22}  {where}")
        print(f"UI: {self.api_url}  login {USER} / {self.settings.password}")
        print(f'task logs: {self.logs / "airflow"}   Airflow CLI: eval "$(scripts/cluster.sh env)"')
        return 0 if running == len([r for r in self.rows() if r[1]]) else 3

    def env_lines(self) -> str:
        """``export`` lines that point the Airflow CLI (and airdock's) at this cluster."""
        env = self.airflow_env()
        env.pop("PATH")
        return "\n".join(f"export {key}={shell_quote(value)}" for key, value in sorted(env.items()))


def task_log_text(folder: Path) -> str:
    """Airflow's task log files under ``folder`` (JSON lines) as text: one line per record, its
    message, and each exception as ``Type: message`` — what the UI shows."""
    lines: list[str] = []
    for path in sorted(folder.rglob("*.log")):
        for raw in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                lines.append(raw)
                continue
            lines.append(str(record.get("event")))
            errors = record.get("error_detail") or []
            lines.extend(f"{error.get('exc_type')}: {error.get('exc_value')}" for error in errors)
    return "\n".join(lines)


def shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else f"exit code {done.returncode}"


def engine_answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    done = subprocess.run(
        ["docker", "-H", f"unix://{sock}", "version", "--format", "{{.Server.Version}}"],
        capture_output=True, check=False, timeout=20,
    )  # fmt: skip
    return done.returncode == 0


def check_packages() -> None:
    missing = [
        package
        for package, path in (
            ("postgresql", PG_BIN / "postgres"),
            ("redis-server", Path(shutil.which("redis-server") or "/nonexistent")),
            ("docker.io", Path(shutil.which("dockerd") or "/nonexistent")),
        )
        if not path.exists()
    ]
    if missing:
        names = " ".join(missing)
        raise ClusterError(f"missing Debian packages: {names} (apt-get install {names})")
    for module in ("airflow.providers.celery", "psycopg2", "asyncpg"):  # found, not imported
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise ClusterError(f"missing Python package ({module}): run `make install`")


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    root = Path(os.environ.get("AIRDOCK_CLUSTER_DIR") or Path.cwd() / ".airdock" / "cluster")
    if command not in ("up", "down", "status", "env"):
        print("usage: scripts/cluster.sh up|down|status|env", file=sys.stderr)
        return 2
    cluster = Cluster(root)
    try:
        if command == "up":
            cluster.up()
            return cluster.status()
        if command == "down":
            cluster.down()
            return 0
        if command == "status":
            return cluster.status()
        print(cluster.env_lines())
        return 0
    except ClusterError as exc:
        print(f"cluster: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
