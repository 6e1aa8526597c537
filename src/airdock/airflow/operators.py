"""``EcrDockerOperator``: the docker provider's DockerOperator with ECR logins that maintain themselves."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airdock.airflow.credentials import AirflowEcrCredentials, configured_ecr_registries, token_cache
from airdock.auth.credentials import RegistryCredentials
from airdock.engine import api_version as engine_api
from airdock.engine.client import describe_engine_error, engine_address
from airdock.engine.logs import DEFAULT_TAIL_LINES, KeepPolicy, stream_lines
from airdock.engine.pull import PulledImage, PullPolicy, ensure_image
from airdock.engine.registry_errors import first_line
from airdock.errors import AccessDeniedError, AirdockError, ConfigError, ImagePullError, RegistryAuthError
from airdock.hygiene.model import (
    LABEL_DAG_ID,
    LABEL_IMAGE,
    LABEL_MAP_INDEX,
    LABEL_RUN_ID,
    LABEL_STARTED_AT,
    LABEL_TASK_ID,
    LABEL_TRY_NUMBER,
    MANAGED_LABEL,
)
from airdock.hygiene.state import engine_mark
from airdock.images import ImageRef, ecr_registry_for, parse_image_ref

IMAGE_DIGEST_XCOM_KEY = "image_digest"
_LOGIN_STATUS = re.compile(r"failed with status: ([^\"')]+)")


def _engine_gone_errors() -> tuple[type[BaseException], ...]:
    """What the docker SDK raises when the engine's socket goes away mid-call (not an API answer)."""
    import requests
    import urllib3

    return (
        requests.exceptions.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.ProtocolError,
    )


_ENGINE_GONE = _engine_gone_errors()
REMOVE_POLICIES = ("always", "on_success", "never")
_AUTO_REMOVE_TO_REMOVE = {"never": "never", "success": "on_success", "force": "always"}


class EcrDockerOperator(DockerOperator):  # type: ignore[misc]  # the provider is untyped
    """Run a container from a private ECR image, fetching registry credentials at run time.

    Takes every argument of ``DockerOperator`` plus:

    :param aws_conn_id: Airflow AWS connection whose identity calls ``ecr:GetAuthorizationToken``
        (default ``aws_default``; a missing connection means the default AWS credential chain —
        instance role, environment, profile).
    :param region_name: region for registries not named by an ECR host (the ``[airdock]
        ecr_registries`` hosts); ECR hosts carry their own region.
    :param pull_policy: ``if_not_present`` (default), ``always`` or ``never``. ``force_pull=True``
        means ``always``.
    :param token_refresh_margin: refresh a cached token when less than this remains (seconds or a
        duration such as ``"1h"``; default ``[airdock] token_refresh_margin`` or 1 h).
    :param remove: ``always`` (default), ``on_success`` or ``never``: what happens to the container
        after success, failure, an execution timeout or ``on_kill`` (which first stops it with
        ``stop_grace_seconds`` of grace). Replaces DockerOperator's ``auto_remove``.
    :param stop_grace_seconds: seconds between SIGTERM and SIGKILL when airdock stops a container.
    :param auto_gc: after the task, run a cheap image-budget check and, when over budget, the image
        GC with the ``[airdock]`` GC settings (see ``DockerHygieneOperator``).

    ECR hosts are ``<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`` and any host listed in
    ``[airdock] ecr_registries``; other registries use ``docker_conn_id`` as DockerOperator does.
    Tokens live in a host-wide cache shared by all task processes; a token the registry refuses is
    replaced and the pull retried once. The digest of the image that runs is logged and pushed to
    XCom as ``image_digest``. Every container carries ``airdock.managed=true`` and the task's
    identity as labels; the image is marked in use before its pull, so a concurrent GC skips it.

    The container's output is streamed: every line goes to the task log, but only what the XCom
    needs is kept in memory — the last line (default), nothing with ``do_xcom_push=False``, every
    line with ``xcom_all=True`` (unbounded by nature: it grows with the output). A failed
    container's ``DockerContainerFailedException.logs`` holds its last 100 lines.
    """

    template_fields: Sequence[str] = (*DockerOperator.template_fields, "aws_conn_id", "pull_policy")
    api_version: str | None  # DockerOperator's argument (the provider is untyped)

    def __init__(
        self,
        *,
        image: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        pull_policy: str = PullPolicy.IF_NOT_PRESENT.value,
        token_refresh_margin: float | str | None = None,
        remove: str | None = None,
        stop_grace_seconds: int = 10,
        auto_gc: bool = False,
        **kwargs: Any,
    ) -> None:
        if kwargs.pop("force_pull", False):
            pull_policy = PullPolicy.ALWAYS.value
        auto_remove = kwargs.pop("auto_remove", None)
        if remove is None:
            remove = _AUTO_REMOVE_TO_REMOVE.get(str(auto_remove), "always") if auto_remove else "always"
        if remove not in REMOVE_POLICIES:
            raise ValueError(f"invalid remove={remove!r}: use one of {', '.join(REMOVE_POLICIES)}")
        # airdock removes containers itself, on every path; the stock operator must not.
        super().__init__(image=image, force_pull=False, auto_remove="never", **kwargs)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.pull_policy = pull_policy
        self.token_refresh_margin = token_refresh_margin
        self.remove = remove
        self.stop_grace_seconds = stop_grace_seconds
        self.auto_gc = auto_gc
        self._start_only = False  # set by a subclass that follows the container elsewhere
        self._credentials: _OnFirstUse | None = None  # the last pull's, for the host status
        self._api_version_remembered = False  # the hook was given this host's remembered API version
        self._client_ready = False  # the engine client was made and tuned (see ``cli``)
        self._api_version_forgotten = False  # the engine refused the remembered one: ``auto`` now
        if "{{" not in pull_policy:
            PullPolicy.parse(pull_policy)  # bad input fails at DAG parse time, not at run time
        if "{{" not in image:
            parse_image_ref(image)  # likewise a literal image reference (a templated one: at run time)

    def execute(self, context: Any) -> Any:
        from airdock.airflow.hygiene import usage_store

        reference: str = str(getattr(self, "image"))  # noqa: B009  # the provider is untyped
        try:
            ref = parse_image_ref(reference)  # a templated reference is checked here, once rendered
        except ConfigError as exc:
            raise AirflowFailException(str(exc)) from None  # retrying cannot fix a reference
        usage = usage_store()
        user_labels: Any = getattr(self, "labels", None)
        self.labels = {**_as_dict(user_labels), **self._task_labels(context), LABEL_IMAGE: str(ref)}
        # Mark the image in use before the pull: a GC running now must not remove it under us.
        with usage.lease([str(ref)]) as lease:
            try:
                pulled = self._ensure_image(ref)
            except (ConfigError, AccessDeniedError) as exc:
                raise AirflowFailException(str(exc)) from None  # retrying cannot help
            except ImagePullError as exc:
                if "does not exist" in str(exc):
                    raise AirflowFailException(str(exc)) from None
                raise AirflowException(str(exc)) from None
            except (RegistryAuthError, AirdockError) as exc:
                raise AirflowException(str(exc)) from None
            lease.add(pulled.image_id, used_at=time.time())  # held, and its use recorded: one write
            if pulled.pulled:
                self._note_pull(pulled)
            usage.mark_if_new(lambda: engine_mark(self.cli))  # a new store learns whose engine it is
            digest = pulled.digest or pulled.image_id
            self.log.info("running %s, digest %s", pulled.reference, digest)
            context["ti"].xcom_push(key=IMAGE_DIGEST_XCOM_KEY, value=digest)
            self.image = pulled.image_id  # create the container from what was pulled, even if the tag moves
            succeeded = False
            result = None
            try:
                # The image is present now: run it the way DockerOperator does, minus its own pull.
                self._normalize_mounts()
                result = self._run_image()
                succeeded = True
            except _ENGINE_GONE as exc:
                raise AirflowException(self._engine_gone(exc)) from None
            finally:
                self.image = reference
                # Success, failure, execution timeout or termination: the remove policy holds. A
                # failing clean-up is logged, never raised: it must not hide the task's own error.
                # A container started to be followed elsewhere (deferral) is left running.
                if result is not CONTAINER_STARTED:
                    self._dispose_container(succeeded, exited=succeeded, look_up=True)
        if result is CONTAINER_STARTED:
            self._publish_host_status()
            return result
        if self.auto_gc:
            self._auto_gc()
        self._publish_host_status()
        return result

    @cached_property
    def hook(self) -> Any:
        """The provider's hook; with ``api_version`` unset (auto), given the engine's API version
        when this host remembers it (``airdock.engine.api_version``): the client then skips
        docker-py's ``GET /version`` and only pings."""
        version: str | None = None
        requested: str | None = self.api_version
        if requested in (None, "auto") and not self._api_version_forgotten:
            version = engine_api.remembered(self._state_dir, self._engine_key)
        self._api_version_remembered = version is not None
        if version is None:
            return DockerOperator.hook.func(self)
        self.api_version = version
        try:
            return DockerOperator.hook.func(self)
        finally:
            self.api_version = requested

    @property
    def cli(self) -> Any:
        """The engine's API client (made by the provider's hook on first use).

        A remembered API version the engine refuses ("client version … is too new") is forgotten
        and the client made again with ``auto``; a version learnt by ``auto`` is remembered. Over a
        unix socket the client skips requests' per-call proxy and ``.netrc`` lookups (``trust_env``:
        neither can apply to a socket, and they cost a scan of the environment per call).
        """
        if self._client_ready:
            return self.hook.api_client
        import docker.errors

        try:
            client = self.hook.api_client
        except docker.errors.APIError as exc:
            if not (self._api_version_remembered and engine_api.is_version_refusal(exc)):
                raise
            self.log.info(
                "the Docker engine refused the API version this host remembered (%s): asking it again",
                engine_api.refusal(exc),
            )
            engine_api.forget(self._state_dir, self._engine_key)
            self._api_version_forgotten = True
            self.__dict__.pop("hook", None)
            client = self.hook.api_client
        if not self._api_version_remembered and self.api_version in (None, "auto"):
            engine_api.remember(self._state_dir, self._engine_key, str(client.api_version))
        if str(getattr(client, "base_url", "")).startswith("http+docker://"):
            client.trust_env = False
        self._client_ready = True
        return client

    @cached_property
    def _state_dir(self) -> Path:
        from airdock.airflow.hygiene import state_dir

        return state_dir()

    @property
    def _engine_key(self) -> str:
        url = self.docker_url
        return ",".join(url) if isinstance(url, list | tuple) else str(url)

    def _note_pull(self, pulled: PulledImage) -> None:
        from airdock.airflow import host_status

        entry: dict[str, Any] = {"image": pulled.reference, "digest": pulled.digest or pulled.image_id}
        entry.update(seconds=round(pulled.seconds, 2), bytes=pulled.downloaded_bytes)
        host_status.note("pulls", entry)

    def _publish_host_status(self) -> None:
        """This host's record for the Container hosts page (``airdock.airflow.host_status``): when
        due, or now if this task fetched a registry token (the host's tokens changed)."""
        from airdock.airflow import host_status
        from airdock.engine.client import client_over

        fetched = self._credentials is not None and self._credentials.fetched
        host_status.publish(client_over(self.cli), self.log, force=fetched)

    def on_kill(self) -> None:
        """The task is being terminated: stop the container with a grace period, then apply ``remove``."""
        self._dispose_container(succeeded=False)

    def _run_image_with_mounts(self, target_mounts: Any, add_tmp_variable: bool) -> Any:
        # The provider's method creates, attaches, starts and waits, then maps exit codes and the
        # XCom; airdock delegates all of it (so every DockerOperator argument, present or future,
        # keeps working) and replaces only the provider's log reader, which keeps every line. The
        # provider calls its module-level ``fetch_logs(log_stream, self.log)``; for the duration
        # of this call that name resolves, in this thread/context only, to airdock's bounded
        # reader (see ``_provider_fetch_logs``). If a provider release stops calling it, the stock
        # reader runs and a warning says so — the task still works, with the stock memory use.
        if self._start_only:  # the provider creates and starts it; the reader stops there
            try:
                with _provider_fetch_logs(_stop_after_start):
                    super()._run_image_with_mounts(target_mounts, add_tmp_variable)
            except _ContainerStarted:
                return CONTAINER_STARTED
            raise AirflowException("the docker provider did not start the container through fetch_logs")
        keep = KeepPolicy.for_xcom(bool(self.do_xcom_push), bool(self.xcom_all))
        reader = _BoundedLogReader(
            keep,
            lines_per_record=_lines_per_record(),
            base_url=str(getattr(self.cli, "base_url", "")),
            tty=bool(self.tty),
        )
        with _provider_fetch_logs(reader), _known_tty(self.cli, bool(self.tty)):
            result = super()._run_image_with_mounts(target_mounts, add_tmp_variable)
        if not reader.used:
            self.log.warning(
                "the docker provider did not read the container's output through fetch_logs: "
                "airdock's bounded log streaming was not used (the output was kept in memory)"
            )
        return result

    def _ensure_image(self, ref: ImageRef) -> PulledImage:
        policy = PullPolicy.parse(self.pull_policy)
        registry = ecr_registry_for(ref, configured_ecr_registries())
        credentials = None
        if registry is not None:
            ecr = registry

            def make() -> AirflowEcrCredentials:
                return AirflowEcrCredentials(
                    ecr,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    cache=token_cache(self.token_refresh_margin),
                    log=self.log,
                )

            credentials = _OnFirstUse(make)  # an image already present needs no AWS connection
        self._credentials = credentials
        return ensure_image(self._engine(ref), ref, policy, credentials, logger=self.log)

    def _engine(self, ref: ImageRef) -> Any:
        """The engine's API client (``self.cli``), with the hook's failures as one line each.

        The docker provider's hook pings the engine and, with ``docker_conn_id``, logs in to that
        connection's registry when the client is first made: a wrong password surfaces here.
        """
        import docker.errors

        try:
            return self.cli
        except docker.errors.APIError as exc:
            if not self.docker_conn_id:
                raise
            registry = self._connection_registry() or ref.registry
            status = _LOGIN_STATUS.search(str(exc))
            why = status.group(1).strip() if status else first_line(str(exc.explanation or exc))
            raise AirflowFailException(
                f"registry {registry} refused the login of the Airflow connection '{self.docker_conn_id}' "
                f"({why}): fix that connection's login and password"
            ) from None
        except AirflowException as exc:
            if "Failed to establish connection" not in str(exc) and "Failed to ping" not in str(exc):
                raise
            raise AirflowException(
                f"cannot reach the Docker engine at {self.docker_url}: start it, or point docker_url at it"
            ) from None

    def _connection_registry(self) -> str | None:
        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(self.docker_conn_id)
        except Exception:  # only to name the registry in a message: never fail for it
            return None
        if not conn.host:
            return None
        return f"{conn.host}:{conn.port}" if conn.port else str(conn.host)

    def _engine_gone(self, exc: BaseException) -> str:
        """The one line for an engine that stopped answering while the container ran."""
        container = getattr(self, "container", None) or {}
        container_id = str(container.get("Id", ""))[:12] or "(not created yet)"
        address = engine_address(self.cli) if self.hook.client_created else str(self.docker_url)
        return (
            f"the Docker engine at {address} stopped answering while container {container_id} ran: "
            f"{describe_engine_error(exc)}; the container, if the engine kept it, is an orphan the next "
            "hygiene sweep removes"
        )

    def _task_labels(self, context: Any) -> dict[str, str]:
        ti = context["ti"]
        return {
            MANAGED_LABEL: "true",
            LABEL_DAG_ID: str(ti.dag_id),
            LABEL_TASK_ID: str(ti.task_id),
            LABEL_RUN_ID: str(ti.run_id),
            LABEL_TRY_NUMBER: str(ti.try_number),
            LABEL_MAP_INDEX: str(getattr(ti, "map_index", -1)),
            LABEL_STARTED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def _dispose_container(self, succeeded: bool, *, exited: bool = False, look_up: bool = False) -> None:
        """Stop the container if it still runs; remove it unless ``remove`` says keep. Idempotent.
        ``exited``: the engine said it exited (its wait returned), so it is not asked again.
        ``look_up``: when the task never learnt its container's id — stopped (execution timeout,
        termination) while the engine was creating it — find it by this try's labels.

        Never raises: on every path it runs after the task's own outcome, which must stay visible.
        """
        import docker.errors

        container = getattr(self, "container", None)
        if not container and look_up and not succeeded:
            container = self.container = self._container_of_this_try()
        if not container:
            return
        container_id = container["Id"]
        keep = self.remove == "never" or (self.remove == "on_success" and not succeeded)
        try:
            state = {} if exited else self.cli.inspect_container(container_id)["State"]
            if state.get("Running"):
                self.log.info(
                    "stopping container %s (grace %d s)", container_id[:12], self.stop_grace_seconds
                )
                self.cli.stop(container_id, timeout=self.stop_grace_seconds)
            if keep:
                self.log.info("keeping container %s (remove=%s)", container_id[:12], self.remove)
                return
            self.cli.remove_container(container_id, v=True, force=True)
            self.log.info("removed container %s", container_id[:12])
        except docker.errors.NotFound:
            return  # already gone (on_kill and the finally block both got here)
        except docker.errors.APIError as exc:
            if getattr(exc, "status_code", None) == 409:  # removal already in progress
                return
            self.log.warning("could not clean up container %s: %s", container_id[:12], first_line(str(exc)))
        except _ENGINE_GONE as exc:
            self.log.warning(
                "could not clean up container %s: the Docker engine does not answer (%s); the next hygiene "
                "sweep removes it",
                container_id[:12],
                describe_engine_error(exc),
            )

    def _container_of_this_try(self) -> Any:
        """The container labelled with this try's labels (``execute`` set them), if the engine has
        one; ``None`` when it has none or does not answer (the hygiene sweep then removes it)."""
        keys = (LABEL_DAG_ID, LABEL_TASK_ID, LABEL_RUN_ID, LABEL_TRY_NUMBER, LABEL_MAP_INDEX)
        this_try = [f"{key}={self.labels[key]}" for key in keys]
        try:
            found = self.cli.containers(all=True, filters={"label": this_try})
        except Exception:  # best effort, on a path that must not raise
            return None
        if not found:
            return None
        self.log.info("container %s was created as the task stopped", found[0]["Id"][:12])
        return {"Id": found[0]["Id"]}

    def _auto_gc(self) -> None:
        from airdock.airflow.hygiene import run_auto_gc

        try:
            run_auto_gc(self.cli, self.log)
        except AirdockError as exc:  # the task itself succeeded; a failed clean-up must not fail it
            self.log.warning("auto_gc failed: %s", exc)


CONTAINER_STARTED: Any = object()  # what the run returns when ``_start_only``: it runs on, unwatched here


class _ContainerStarted(Exception):
    pass


def _stop_after_start(log_stream: Any, log: Any) -> list[str]:
    """The provider calls ``fetch_logs`` right after starting the container: close the attach
    stream (an unread attachment could stall the container's output) and leave."""
    close = getattr(log_stream, "close", None)
    if callable(close):
        close()
    raise _ContainerStarted


class _OnFirstUse:
    """The registry credentials of a pull, made when the pull first asks for them: a task whose
    image is present reads no AWS connection and computes no cache key."""

    def __init__(self, make: Callable[[], AirflowEcrCredentials]) -> None:
        self._make = make
        self._made: AirflowEcrCredentials | None = None

    def _credentials(self) -> AirflowEcrCredentials:
        if self._made is None:
            self._made = self._make()
        return self._made

    def get(self) -> RegistryCredentials:
        return self._credentials().get()

    def refresh(self, stale: RegistryCredentials) -> RegistryCredentials:
        return self._credentials().refresh(stale)

    @property
    def fetched(self) -> bool:
        """Whether a token was fetched (not taken from the host cache) for this pull."""
        return self._made is not None and self._made.fetched


def _lines_per_record() -> int:
    """``[airdock] log_lines_per_record``; a bad value fails the task in one line (no retry helps)."""
    from airdock.airflow.config import log_lines_per_record

    try:
        return log_lines_per_record()
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None


class _BoundedLogReader:
    """Stands in for the provider's ``fetch_logs``: streams lines, returns only what is needed.

    The provider uses the returned list for both the XCom (``[-1]``, or all with ``xcom_all``)
    and ``DockerContainerFailedException.logs``: so it gets every line under ``KeepPolicy.ALL``,
    else the bounded tail (whose last element is the last line).
    """

    def __init__(
        self,
        keep: KeepPolicy,
        tail: int = DEFAULT_TAIL_LINES,
        lines_per_record: int = 1,
        *,
        base_url: str = "",
        tty: bool = False,
    ) -> None:
        self.keep = keep
        self.tail = tail
        self.lines_per_record = lines_per_record
        self.base_url = base_url  # the engine's address as docker-py names it, and whether the
        self.tty = tty  # container has a TTY: what reading its attach socket directly needs
        self.used = False

    def __call__(self, log_stream: Iterable[bytes | str], log: Any) -> list[str]:
        from airdock.engine.attach import socket_chunks

        self.used = True
        # Bound once: Airflow's ``self.log`` is a lazy structlog proxy that re-resolves on every
        # attribute access. The record (the lines that arrived together, or one line) is the event
        # itself, not a "%s" argument: no %-formatting, and "%" is logged verbatim either way.
        emit, keep, tail, per_record = log.info, self.keep, self.tail, self.lines_per_record
        chunks = socket_chunks(log_stream, self.base_url, self.tty) if per_record > 1 else None
        if chunks is not None:  # big reads of the socket: what arrived together, without a thread
            lines = stream_lines(chunks, emit, keep, tail, per_record, read_ahead=False)
        else:
            lines = stream_lines(log_stream, emit, keep, tail, per_record)
        return lines.kept if keep is KeepPolicy.ALL else lines.tail


_docker_module = sys.modules[DockerOperator.__module__]
_active_reader: ContextVar[Callable[[Any, Any], list[str]] | None] = ContextVar(
    "airdock_fetch_logs", default=None
)
_patch_lock = threading.Lock()
_patch_users = 0
_stock_fetch_logs: Callable[[Any, Any], list[str]] | None = None


def _dispatch_fetch_logs(log_stream: Any, log: Any) -> list[str]:
    """The provider's ``fetch_logs`` while airdock runs a container: airdock's reader in its own
    context, the stock one everywhere else (a stock DockerOperator in another thread, say)."""
    reader = _active_reader.get()
    if reader is not None:
        return reader(log_stream, log)
    assert _stock_fetch_logs is not None
    return _stock_fetch_logs(log_stream, log)


@contextmanager
def _provider_fetch_logs(reader: Callable[[Any, Any], list[str]]) -> Iterator[None]:
    """Route the provider's ``fetch_logs`` calls made in this context to ``reader``.

    Robust by construction: the module attribute is swapped for a dispatcher only while at least
    one airdock operator is inside this block (reference-counted under a lock) and restored by the
    last one out, unless someone else replaced it meanwhile; the dispatcher chooses by a
    ContextVar, so concurrent threads and stock operators are unaffected; an exception anywhere
    still restores both.
    """
    global _patch_users, _stock_fetch_logs
    if not callable(getattr(_docker_module, "fetch_logs", None)):
        yield  # a provider without it: nothing to route (the caller warns that it went unused)
        return
    with _patch_lock:
        current = getattr(_docker_module, "fetch_logs")  # noqa: B009  # the provider is untyped
        if _patch_users == 0 and current is not _dispatch_fetch_logs:
            _stock_fetch_logs = current
            setattr(_docker_module, "fetch_logs", _dispatch_fetch_logs)  # noqa: B010
        _patch_users += 1
    token = _active_reader.set(reader)
    try:
        yield
    finally:
        _active_reader.reset(token)
        with _patch_lock:
            _patch_users -= 1
            if _patch_users == 0 and getattr(_docker_module, "fetch_logs") is _dispatch_fetch_logs:  # noqa: B009
                setattr(_docker_module, "fetch_logs", _stock_fetch_logs)  # noqa: B010


@contextmanager
def _known_tty(client: Any, tty: bool) -> Iterator[None]:
    """docker-py's ``attach`` inspects the container to learn whether it has a TTY (one more round
    trip before the start); the provider created it with ``tty``, so the answer is known. Tells
    this client so while the block runs (an instance attribute over docker-py's private method,
    removed after; if docker-py stops having that method, nothing is changed)."""
    if not callable(getattr(type(client), "_check_is_tty", None)):
        yield
        return
    client._check_is_tty = lambda container: tty
    try:
        yield
    finally:
        client.__dict__.pop("_check_is_tty", None)


def _as_dict(labels: Any) -> dict[str, str]:
    if not labels:
        return {}
    if isinstance(labels, dict):
        return {str(k): str(v) for k, v in labels.items()}
    return {str(label): "" for label in labels}
