"""``ContainerOperator``: one set of arguments, two places to run — the worker's Docker engine or AWS ECS."""

from __future__ import annotations

import re
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from airdock import metrics
from airdock.airflow.config import option
from airdock.airflow.operators import (
    CONTAINER_STARTED,
    IMAGE_DIGEST_XCOM_KEY,
    EcrDockerOperator,
    _lines_per_record,
)
from airdock.airflow.secret_refs import SECRET_REF, LazyClient, aws_client, secret_value
from airdock.engine.client import engine_address
from airdock.engine.logs import KeepPolicy
from airdock.errors import AccessDeniedError, AirdockError, ConfigError, ImagePullError
from airdock.targets.docker import (
    collect_container,
    deferral_blocker,
    find_container,
    follow_container,
    mark_collected,
)
from airdock.targets.ecs.settings import EcsSettings
from airdock.targets.spec import ContainerSpec, Outcome, TaskIdentity

__all__ = ["ContainerOperator"]

TARGETS = ("docker", "ecs")
FAILURE_TAIL_LINES = 20
_SETTINGS_FIELDS = tuple(f.name for f in fields(EcsSettings) if f.name != "region")
_ECS_EXTRA = ("run_task_kwargs", "container_definition")
_STATUS_CODE = re.compile(r"'StatusCode': (-?\d+)")


class ContainerOperator(EcrDockerOperator):
    """Run a container image as a task on the worker's Docker engine or on AWS ECS.

    :param image: the image reference (ECR images get their credentials at run time).
    :param command: the command (a list, or a string split as a shell would).
    :param entrypoint: replaces the image's entry point.
    :param environment: plain environment variables.
    :param secret_environment: name → where the value lives: ``var:<key>`` (an Airflow variable),
        ``conn:<conn_id>[:<field>]`` (an Airflow connection's password, or ``login``, ``host``,
        ``schema``, ``port``, ``extra.<key>``), or a Secrets Manager / SSM parameter ARN. Values
        are masked in logs; on ECS an ARN is resolved by ECS itself (task execution role).
    :param cpu: CPU units, 1024 = one vCPU (docker: ``cpus=cpu/1024``).
    :param memory: MiB (docker: ``mem_limit``).
    :param working_dir: the container's working directory.
    :param user: the user the container runs as.
    :param run_on: ``"docker"`` or ``"ecs"``; default ``[airdock] run_on`` (``docker``), so a
        deployment moves its tasks by configuration alone.
    :param pull_policy: docker only: ``if_not_present``, ``always`` or ``never``.
    :param remove: ``always``, ``on_success`` or ``never`` (docker: the container; ECS keeps
        stopped tasks itself).
    :param reattach: when a try starts, follow the container or ECS task an earlier try of the
        same task instance started and no try collected (its worker died) instead of starting a
        second one.
    :param deferrable: start the container or ECS task, then hand the wait to Airflow's triggerer
        and free the worker slot (default ``[airdock] deferrable``, false). On docker the triggerer
        must reach the engine: a unix socket or loopback ``docker_url`` needs a triggerer on the
        worker's host — when there is none the task says so in one line and waits on the worker.
    :param aws_conn_id: the AWS connection (ECR logins; ECS and CloudWatch Logs calls).
    :param docker_kwargs: more ``DockerOperator`` arguments (``docker_url``, ``mounts``,
        ``network_mode``, ...), used when running on docker.
    :param ecs_overrides: ECS settings for this task (``cluster``, ``launch_type``, ``subnets``,
        ``security_groups``, ``assign_public_ip``, ``execution_role_arn``, ``task_role_arn``,
        ``log_group``, ``capacity_provider_strategy``, ``keep_revisions``; else ``[airdock]
        ecs_<name>``), plus ``run_task_kwargs`` (more RunTask arguments) and
        ``container_definition`` (more container-definition fields, e.g. ``ulimits``).

    Either way the task log carries the output line by line, XCom ``return_value`` is the last
    line (every line with ``xcom_all=True``), ``image_digest`` the digest that ran, a non-zero
    exit fails the task with the exit code and the last lines, and ``skip_on_exit_code`` skips.
    """

    template_fields: Sequence[str] = (*EcrDockerOperator.template_fields, "run_on", "secret_environment")

    def __init__(
        self,
        *,
        image: str,
        command: str | list[str] | None = None,
        entrypoint: str | list[str] | None = None,
        environment: dict[str, str] | None = None,
        secret_environment: dict[str, str] | None = None,
        cpu: int | None = None,
        memory: int | None = None,
        working_dir: str | None = None,
        user: str | None = None,
        run_on: str | None = None,
        pull_policy: str = "if_not_present",
        remove: str = "always",
        reattach: bool = True,
        deferrable: bool | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        docker_kwargs: dict[str, Any] | None = None,
        ecs_overrides: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        docker_kwargs = dict(docker_kwargs or {})
        if run_on is not None and "{{" not in run_on and run_on not in TARGETS:
            raise ValueError(f"invalid run_on={run_on!r}: use 'docker' or 'ecs'")
        for name, value in (("cpu", cpu), ("memory", memory)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                unit = "CPU units" if name == "cpu" else "MiB"
                raise ValueError(f"invalid {name}={value!r}: a positive integer ({unit})")
        for name, ref in (secret_environment or {}).items():
            if "{{" not in str(ref) and not SECRET_REF.fullmatch(str(ref)):
                raise ValueError(
                    f"invalid secret_environment[{name!r}]: use var:<key>, conn:<conn_id>[:<field>] or a "
                    "Secrets Manager / SSM parameter ARN"
                )
        unknown = sorted(set(ecs_overrides or {}) - set(_SETTINGS_FIELDS) - set(_ECS_EXTRA))
        if unknown:
            known = ", ".join((*_SETTINGS_FIELDS, *_ECS_EXTRA))
            raise ValueError(f"unknown ecs_overrides {', '.join(unknown)}: use {known}")
        if cpu is not None:
            docker_kwargs.setdefault("cpus", cpu / 1024)
        if memory is not None:
            docker_kwargs.setdefault("mem_limit", f"{memory}m")
        super().__init__(
            image=image,
            command=command,
            entrypoint=entrypoint,
            environment=environment or {},
            working_dir=working_dir,
            user=user,
            pull_policy=pull_policy,
            remove=remove,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            **docker_kwargs,
            **kwargs,
        )
        self.secret_environment = dict(secret_environment or {})
        self.cpu = cpu
        self.memory = memory
        self.run_on = run_on
        self.reattach = reattach
        self.deferrable = deferrable
        self.ecs_overrides = dict(ecs_overrides or {})
        self._ecs_running: tuple[Any, Any] | None = None

    # -- choosing the target ---------------------------------------------------------------------
    def _target(self) -> str:
        target = self.run_on or option("run_on") or "docker"
        if target not in TARGETS:
            raise AirflowFailException(
                f"invalid run_on {target!r} ([airdock] run_on or the task): use docker or ecs"
            )
        return target

    def execute(self, context: Any) -> Any:
        target = self._target()
        identity = _identity(context)
        self.log.info("running %s on %s (try %d%s)", self.image, target, identity.try_number, _preloaded())
        if target == "docker":
            return self._execute_docker(context, identity)
        return self._execute_ecs(context, identity)

    # -- secrets ---------------------------------------------------------------------------------
    def _resolve_secrets(self, *, arns_too: bool) -> tuple[dict[str, str], dict[str, str]]:
        """(name → value resolved here, masked; name → ARN left for ECS to resolve)."""
        from airflow.sdk.log import mask_secret

        values: dict[str, str] = {}
        arns: dict[str, str] = {}
        for name, ref in self.secret_environment.items():
            ref = str(ref)
            if ref.startswith("arn:") and not arns_too:
                arns[name] = ref
                continue
            try:
                value = self._secret_value(ref)
            except AirdockError as exc:
                raise AirflowFailException(f"secret_environment[{name!r}]: {exc}") from None
            mask_secret(value)
            values[name] = value
        return values, arns

    def _secret_value(self, ref: str) -> str:
        return secret_value(ref, self.aws_conn_id)

    def _aws_client(self, service: str, region: str | None) -> Any:
        return aws_client(service, region, self.aws_conn_id)

    # -- docker ----------------------------------------------------------------------------------
    def _execute_docker(self, context: Any, identity: TaskIdentity) -> Any:
        values, _ = self._resolve_secrets(arns_too=True)
        current: dict[str, str] = dict(getattr(self, "_private_environment", None) or {})
        self._private_environment = {**current, **values}
        defer = self._defers()
        if defer:
            blocker = deferral_blocker(engine_address(self._engine_client()), _triggerer_reaches_this_host())
            if blocker:
                self.log.info("not deferring: %s", blocker)
                defer = False
        if self.reattach:
            found = find_container(self._engine_client(), self._identity_labels(identity))
            if found is not None:
                metrics.emit(metrics.TASK_REATTACHED, target="docker")
                if defer and found.get("State") == "running":
                    self._push_container_digest(context, str(found["Id"]))
                    self._defer_docker(
                        str(found["Id"]), identity, "reattached to a container an earlier try started"
                    )
                return self._collect_docker(context, found)
            if identity.try_number > 1:
                self.log.info("no container of an earlier try to reattach to: starting a new one")
        from airflow.providers.docker.exceptions import DockerContainerFailedException

        if defer:
            self._start_only = True
            if getattr(self, "mount_tmp_dir", False):  # its host directory is removed when execute returns
                self.log.info("deferrable: the container gets no temporary host directory (mount_tmp_dir)")
                self.mount_tmp_dir = False
        try:
            result = super().execute(context)
        except DockerContainerFailedException as exc:
            code = _STATUS_CODE.search(str(exc))
            reason = f"the container exited with code {code.group(1)}" if code else str(exc)
            tail = [
                line.decode(errors="replace") if isinstance(line, bytes) else str(line)
                for line in exc.logs or []
            ]
            raise AirflowException(_failure(reason, tail)) from None
        if result is CONTAINER_STARTED:
            self._defer_docker(str(self.container["Id"]), identity, "started")
        return result

    def _defers(self) -> bool:
        if self.deferrable is not None:
            return bool(self.deferrable)
        return (option("deferrable") or "false").strip().lower() in ("true", "1", "yes", "on")

    def _defer_docker(self, container_id: str, identity: TaskIdentity, how: str) -> None:
        from airdock.airflow.triggers import DockerContainerTrigger

        url = engine_address(self._engine_client())
        tls = {
            key: value
            for key, value in {
                "ca_cert": self.tls_ca_cert,
                "client_cert": self.tls_client_cert,
                "client_key": self.tls_client_key,
                "hostname": self.tls_hostname if isinstance(self.tls_hostname, str) else None,
            }.items()
            if value
        }
        if tls and not self.tls_verify:
            tls["verify"] = False
        trigger = DockerContainerTrigger(
            container_id=container_id,
            docker_url=url,
            tls=tls or None,
            checkpoint_key=f"{identity.client_token()}-{container_id[:12]}",
            secret_refs=[str(ref) for ref in self.secret_environment.values()],
            aws_conn_id=self.aws_conn_id,
            remove=self.remove,
            stop_grace_seconds=self.stop_grace_seconds,
            deferred_at=time.time(),
        )
        metrics.emit(metrics.TASK_DEFERRED, target="docker")
        self.log.info(
            "deferring: container %s (%s) runs on %s; the triggerer follows it and this worker slot is free",
            container_id[:12],
            how,
            url,
        )
        self.defer(trigger=trigger, method_name="execute_complete", timeout=self.execution_timeout)

    def _engine_client(self) -> Any:
        from airdock.images import parse_image_ref

        try:
            return self._engine(parse_image_ref(str(self.image)))
        except ConfigError as exc:
            raise AirflowFailException(str(exc)) from None

    def _identity_labels(self, identity: TaskIdentity) -> dict[str, str]:
        from airdock.hygiene.model import (
            LABEL_DAG_ID,
            LABEL_MAP_INDEX,
            LABEL_RUN_ID,
            LABEL_TASK_ID,
            MANAGED_LABEL,
        )

        return {
            MANAGED_LABEL: "true",
            LABEL_DAG_ID: identity.dag_id,
            LABEL_TASK_ID: identity.task_id,
            LABEL_RUN_ID: identity.run_id,
            LABEL_MAP_INDEX: str(identity.map_index),
        }

    def _collect_docker(self, context: Any, found: dict[str, Any]) -> Any:
        from airdock.hygiene.model import LABEL_TRY_NUMBER

        cli = self._engine_client()
        container_id = str(found["Id"])
        try_label = (found.get("Labels") or {}).get(LABEL_TRY_NUMBER, "?")
        if found.get("State") == "running":
            self.log.info(
                "reattaching to container %s started by try %s: still running", container_id[:12], try_label
            )
        else:
            self.log.info(
                "container %s started by try %s finished while no worker watched: collecting its result",
                container_id[:12],
                try_label,
            )
        self.container = {"Id": container_id}
        self._push_container_digest(context, container_id)
        keep = KeepPolicy.for_xcom(bool(self.do_xcom_push), bool(self.xcom_all))
        per_record = _lines_per_record()
        outcome = follow_container(cli, container_id, self.log.info, keep, lines_per_record=per_record)
        self._dispose_container(outcome.succeeded)
        return self._result(outcome)

    def _push_container_digest(self, context: Any, container_id: str) -> None:
        digest = self._container_digest(self._engine_client(), container_id)
        if digest:
            context["ti"].xcom_push(key=IMAGE_DIGEST_XCOM_KEY, value=digest)

    def _container_digest(self, cli: Any, container_id: str) -> str | None:
        try:
            image_id = str(cli.inspect_container(container_id)["Image"])
            digests = cli.inspect_image(image_id).get("RepoDigests") or []
        except Exception:  # the digest is information; never fail the task for it
            return None
        return str(digests[0]).split("@", 1)[1] if digests else image_id

    def _dispose_container(self, succeeded: bool, *, exited: bool = False, look_up: bool = False) -> None:
        super()._dispose_container(succeeded, exited=exited, look_up=look_up)
        container = getattr(self, "container", None)
        if not container:
            return
        try:  # kept by the remove policy: mark it collected, so no later try reattaches to it
            mark_collected(self.cli, str(container["Id"]))
        except Exception as exc:  # removed (the usual case), or the engine is gone: nothing to mark
            if "No such container" not in str(exc) and "404" not in str(exc):
                self.log.debug("could not mark container %s collected: %s", str(container["Id"])[:12], exc)

    # -- ecs -------------------------------------------------------------------------------------
    def _ecs_settings(self, region: str) -> EcsSettings:
        def split(value: str | None) -> tuple[str, ...]:
            return tuple(part.strip() for part in (value or "").split(",") if part.strip())

        values: dict[str, Any] = {
            "cluster": option("ecs_cluster") or "default",
            "launch_type": option("ecs_launch_type") or "FARGATE",
            "subnets": split(option("ecs_subnets")),
            "security_groups": split(option("ecs_security_groups")),
            "assign_public_ip": (option("ecs_assign_public_ip") or "false").lower()
            in ("true", "1", "yes", "enabled"),
            "execution_role_arn": option("ecs_execution_role_arn"),
            "task_role_arn": option("ecs_task_role_arn"),
            "log_group": option("ecs_log_group") or "/airdock/tasks",
            "capacity_provider_strategy": split(option("ecs_capacity_provider_strategy")),
            "keep_revisions": int(option("ecs_keep_revisions") or 5),
        }
        for key in _SETTINGS_FIELDS:
            if key in self.ecs_overrides:
                value = self.ecs_overrides[key]
                values[key] = tuple(value) if isinstance(value, list | tuple) else value
        try:
            return EcsSettings(region=region, **values)
        except (ConfigError, TypeError, ValueError) as exc:
            raise AirflowFailException(str(exc)) from None

    def _spec(self, secret_values: Mapping[str, str], secret_arns: Mapping[str, str]) -> ContainerSpec:
        def argv(value: Any) -> tuple[str, ...] | None:
            if value is None or value == "" or value == []:
                return None
            return tuple(shlex.split(value)) if isinstance(value, str) else tuple(str(v) for v in value)

        return ContainerSpec(
            image=str(self.image),
            command=argv(self.command),
            entrypoint=argv(self.entrypoint),
            environment={str(k): str(v) for k, v in (self.environment or {}).items()},
            secret_environment=dict(secret_values),
            secret_arns=dict(secret_arns),
            cpu=self.cpu,
            memory=self.memory,
            working_dir=self.working_dir,
            user=self.user,
        )

    def _execute_ecs(self, context: Any, identity: TaskIdentity) -> Any:
        from airdock.airflow.credentials import configured_ecr_registries
        from airdock.images import ecr_registry_for, parse_image_ref
        from airdock.targets.ecs import inventory
        from airdock.targets.ecs.image import pin_to_digest
        from airdock.targets.ecs.target import EcsRunError, EcsTarget
        from airdock.targets.ecs.task_definition import desired_definition, family_for
        from airdock.targets.ecs.task_definitions import TaskDefinitions

        ecs = self._aws_client("ecs", self.region_name)
        region = str(ecs.meta.region_name or "")
        if not region:
            raise AirflowFailException(
                f"no AWS region for ECS: set region_name on the connection '{self.aws_conn_id}' or the task"
            )
        settings = self._ecs_settings(region)
        target = EcsTarget(
            ecs,
            LazyClient("logs", region, self.aws_conn_id),
            settings,
            log=self.log,
            lines_per_record=_lines_per_record(),
        )
        keep = KeepPolicy.for_xcom(bool(self.do_xcom_push), bool(self.xcom_all))
        # Resolved (and masked) before anything is followed: a reattached task prints them too.
        secret_values, secret_arns = self._resolve_secrets(arns_too=False)
        handle = None
        found = None
        started = None  # this try's new ECS task, as the Container hosts page lists it
        if self.reattach:
            found = target.find(identity)
            if found is not None:
                handle, running = found
                metrics.emit(metrics.TASK_REATTACHED, target="ecs")
                self.log.info(
                    "reattaching to ECS task %s started by an earlier try: %s",
                    handle.task_id,
                    "still running"
                    if running
                    else "it finished while no worker watched; collecting its result",
                )
            elif identity.try_number > 1:
                self.log.info("no ECS task of an earlier try to reattach to: starting a new one")
        if handle is None:
            try:
                ref = parse_image_ref(str(self.image))
            except ConfigError as exc:
                raise AirflowFailException(str(exc)) from None
            spec = self._spec(secret_values, secret_arns)
            image, digest = str(ref), None
            registry = ecr_registry_for(ref, configured_ecr_registries())
            try:
                if registry is not None:
                    image, digest = pin_to_digest(
                        self._aws_client("ecr", registry.region or region), ref, registry
                    )
                desired = desired_definition(
                    spec, image, family_for(identity.dag_id, identity.task_id), settings
                )
                desired["containerDefinitions"][0].update(
                    self.ecs_overrides.get("container_definition") or {}
                )
                definitions = TaskDefinitions(ecs, _lock_dir(), keep=settings.keep_revisions, log=self.log)
                definition = definitions.ensure(desired)
                handle = target.start(
                    spec, identity, definition, image, self.ecs_overrides.get("run_task_kwargs")
                )
            except (ConfigError, AccessDeniedError, EcsRunError) as exc:
                raise AirflowFailException(str(exc)) from None
            except (ImagePullError, AirdockError) as exc:
                raise AirflowException(str(exc)) from None
            tags = identity.tags()
            started = inventory.task_entry(handle.task_arn, definition, tags, "PROVISIONING", time.time())
            self.log.info(
                "started ECS task %s on cluster %s (task definition %s, image %s)",
                handle.task_id,
                settings.cluster,
                definition.rsplit("/", 1)[-1],
                image,
            )
        digest = handle.image.split("@", 1)[1] if "@" in handle.image else None
        if digest:
            context["ti"].xcom_push(key=IMAGE_DIGEST_XCOM_KEY, value=digest)
        self._note_ecs(ecs, handle, started=started)
        if self._defers() and (found is None or found[1]):
            self._defer_ecs(handle, identity, region, target.poll_seconds)
        self._ecs_running = (target, handle)
        try:
            outcome = target.follow(handle, self.log.info, keep)
        finally:
            self._ecs_running = None
        self._note_ecs(ecs, handle, ended=True)
        return self._result(outcome)

    def _note_ecs(
        self, ecs: Any, handle: Any, *, started: dict[str, Any] | None = None, ended: bool = False
    ) -> None:
        """The cluster's snapshot for the Container hosts page (``host_status.note_ecs``)."""
        from airdock.airflow import host_status

        ended_task = handle.task_id if ended else None
        host_status.note_ecs(
            ecs, handle.cluster, self._host_engine, self.log, started=started, ended_task=ended_task
        )

    def _host_engine(self) -> Any:
        """This host's engine as a ``DockerClient`` for its status record; None when it has none."""
        from airdock.engine.client import client_over

        try:
            return client_over(self.cli)
        except Exception:  # an ECS-only worker: its record says so
            return None

    def _defer_ecs(self, handle: Any, identity: TaskIdentity, region: str, poll_seconds: float) -> None:
        from airdock.airflow.triggers import EcsTaskTrigger

        trigger = EcsTaskTrigger.for_handle(
            handle,
            region,
            f"{identity.client_token()}-{handle.task_id}",
            aws_conn_id=self.aws_conn_id,
            secret_refs=[
                str(ref) for ref in self.secret_environment.values() if not str(ref).startswith("arn:")
            ],
            poll_seconds=poll_seconds,
            deferred_at=time.time(),
        )
        metrics.emit(metrics.TASK_DEFERRED, target="ecs")
        self.log.info(
            "deferring: ECS task %s runs on cluster %s; the triggerer follows it, this worker slot is free",
            handle.task_id,
            handle.cluster,
        )
        self.defer(trigger=trigger, method_name="execute_complete", timeout=self.execution_timeout)

    # -- resuming after deferral -----------------------------------------------------------------
    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """A deferral that ended in the triggerer's failure rather than an event: on a timeout
        (``execution_timeout``) the container or ECS task is stopped as a blocking task's would be;
        on a trigger error it keeps running, so that a retry reattaches to it."""
        from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason

        if next_method == TRIGGER_FAIL_REPR:
            error = (next_kwargs or {}).get("error")
            if error == TriggerFailureReason.TRIGGER_TIMEOUT:
                self._stop_after_timeout(context)
            else:
                self.log.warning(
                    "the trigger failed; the container keeps running and a retry of this task reattaches"
                )
        return super().resume_execution(next_method, next_kwargs, context)

    def _stop_after_timeout(self, context: Any) -> None:
        identity = _identity(context)
        try:
            if self._target() == "docker":
                found = find_container(self._engine_client(), self._identity_labels(identity))
                if found is not None:
                    self.container = {"Id": str(found["Id"])}
                    self._dispose_container(False)
                return
            ecs = self._aws_client("ecs", self.region_name)
            region = str(ecs.meta.region_name or "")
            target = _ecs_target(ecs, self._aws_client("logs", region), self._ecs_settings(region))
            running = target.find(identity)
            if running is not None and running[1]:
                self.log.info("stopping ECS task %s (execution_timeout)", running[0].task_id)
                target.stop(running[0], "execution_timeout of the Airflow task (airdock)")
        except Exception as exc:  # the timeout is the task's error; never hide it behind this one
            self.log.warning("could not stop the job after the timeout: %s", exc)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        """The triggerer saw the container or ECS task end: collect its result as ``execute`` would."""
        event = dict(event or {})
        deferred_at = float(event.get("deferred_at") or 0)
        waited = f" after {time.time() - deferred_at:.1f} s deferred" if deferred_at else ""
        status = event.get("status")
        forwarded = event.get("lines")
        self.log.info(
            "resumed%s: the %s %s%s",
            waited,
            "ECS task" if event.get("target") == "ecs" else "container",
            {"ended": "ended", "gone": "is gone", "unreachable": "could not be followed"}.get(
                str(status), status
            ),
            f" ({forwarded} line(s) forwarded by the last trigger)" if forwarded is not None else "",
        )
        keep = KeepPolicy.for_xcom(bool(self.do_xcom_push), bool(self.xcom_all))
        if event.get("target") == "ecs":
            return self._complete_ecs(event, keep)
        container_id = str(event.get("container_id") or "")
        if status == "gone":
            raise AirflowException(
                f"container {container_id[:12]} was removed while the task was deferred (by someone else): "
                "its result is lost"
            )
        if status == "unreachable":
            self.log.warning(
                "the triggerer could not follow the container: %s; following it from this worker",
                event.get("reason"),
            )
            found = {"Id": container_id, "State": "running"}
            return self._collect_docker(context, found)
        outcome = collect_container(self._engine_client(), container_id, keep)
        self.container = {"Id": container_id}
        self._dispose_container(outcome.succeeded)
        if self.auto_gc:
            self._auto_gc()
        return self._result(outcome)

    def _complete_ecs(self, event: Mapping[str, Any], keep: KeepPolicy) -> Any:
        from airdock.targets.ecs.target import EcsTarget

        if event.get("status") == "gone":
            raise AirflowException(str(event.get("reason") or "the ECS task is gone"))
        ecs = self._aws_client("ecs", self.region_name)
        region = str(ecs.meta.region_name or "")
        target = EcsTarget(ecs, self._aws_client("logs", region), self._ecs_settings(region), log=self.log)
        handle = _ecs_handle(event)
        try:
            outcome = target.collect(handle, keep)
        except AirdockError as exc:
            raise AirflowException(str(exc)) from None
        self._note_ecs(ecs, handle, ended=True)
        return self._result(outcome)

    def on_kill(self) -> None:
        running = self._ecs_running
        if running is None:
            super().on_kill()
            return
        target, handle = running
        self.log.info("stopping ECS task %s", handle.task_id)
        try:
            target.stop(handle, "the Airflow task was stopped (airdock on_kill)")
        except Exception as exc:  # on_kill must not raise; the task is ending anyway
            self.log.warning("could not stop ECS task %s: %s", handle.task_id, exc)

    # -- both ------------------------------------------------------------------------------------
    def _result(self, outcome: Outcome) -> Any:
        skip = self.skip_on_exit_code or ()
        if outcome.exit_code is not None and outcome.exit_code in skip:
            raise AirflowSkipException(f"the container exited with code {outcome.exit_code}: skipping")
        if not outcome.succeeded:
            raise AirflowException(_failure(outcome.reason or "the container failed", outcome.tail))
        if not self.do_xcom_push:
            return None
        if self.xcom_all:
            return outcome.kept
        return outcome.kept[-1] if outcome.kept else None


def _preloaded() -> str:
    """A note for the first line of a run when its process inherited ``airdock.airflow.preload``."""
    preload = sys.modules.get("airdock.airflow.preload")
    return "; airdock preloaded" if preload is not None and preload.inherited() else ""


def _failure(reason: str, tail: Sequence[str]) -> str:
    lines = list(tail)[-FAILURE_TAIL_LINES:]
    if not lines:
        return f"{reason}; it printed nothing"
    return f"{reason}; its last {len(lines)} line(s):\n" + "\n".join(lines)


def _ecs_target(ecs: Any, logs: Any, settings: EcsSettings) -> Any:
    from airdock.targets.ecs.target import EcsTarget

    return EcsTarget(ecs, logs, settings)


def _identity(context: Any) -> TaskIdentity:
    ti = context["ti"]
    map_index = getattr(ti, "map_index", None)
    return TaskIdentity(
        dag_id=str(ti.dag_id),
        task_id=str(ti.task_id),
        run_id=str(ti.run_id),
        map_index=int(map_index) if map_index is not None else -1,
        try_number=int(getattr(ti, "try_number", 1) or 1),
    )


def _ecs_handle(event: Mapping[str, Any]) -> Any:
    from airdock.targets.ecs.target import EcsHandle

    return EcsHandle(
        task_arn=str(event["task_arn"]),
        cluster=str(event["cluster"]),
        log_group=str(event["log_group"]),
        log_stream=str(event["log_stream"]),
        image=str(event.get("image") or ""),
    )


def _triggerer_reaches_this_host() -> bool:
    """Whether a triggerer can follow a container on this host's engine.

    ``[airdock] triggerer_on_host``: ``true`` / ``false`` say so; ``auto`` (default) looks for an
    ``airflow triggerer`` process here, and counts ``airflow dags test`` (which runs triggers in its
    own process) as one.
    """
    setting = (option("triggerer_on_host") or "auto").strip().lower()
    if setting in ("true", "yes", "1"):
        return True
    if setting in ("false", "no", "0"):
        return False
    from airflow.sdk.execution_time import task_runner

    if type(getattr(task_runner, "SUPERVISOR_COMMS", None)).__name__ == "InProcessSupervisorComms":
        return True
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if "triggerer" in cmdline and any("airflow" in part for part in cmdline[:3]):
            return True
    return False


def _lock_dir() -> Any:
    from airdock.hygiene.state import resolve_state_dir

    return resolve_state_dir(option("state_dir")) / "locks"
