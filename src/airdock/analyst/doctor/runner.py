"""``airdock doctor``: is this machine ready to run private ECR images? One check, one verdict each.

Every check is a plain function over plain inputs — a docker client factory, a boto3 session, an
httpx client, a clock, the environment — and returns a :class:`CheckResult`. A failed check always
carries a fix a person can act on; a check that cannot run because an earlier one failed is failed
as *skipped*, with the reason, so the report never hides a check and never crashes.

The checks, in order (later ones use what earlier ones found):

1. ``docker engine``   — the engine answers; its version.
2. ``disk space``      — free space under the engine's data root is at least ``--min-free``.
3. ``aws credentials`` — boto3's credential chain resolves; whose they are (STS GetCallerIdentity).
4. ``ecr token``       — ECR GetAuthorizationToken works for the registry.
5. ``registry login``  — the registry accepts that token (``GET /v2/`` with Basic ``AWS:<token>``).
6. ``repository``, ``image tag`` — with ``--image``: the repository exists and the tag (or digest)
   resolves, asked of the registry itself (``HEAD /v2/<repo>/manifests/<ref>``), i.e. with the
   permissions a pull uses (``ecr:BatchGetImage``), not ``ecr:DescribeRepositories``.
7. Checks of plugins (``airdock.doctor`` entry points): the Airflow layer adds ``airflow
   connection`` — the Airflow connection ``--aws-conn-id`` exists, when run inside an Airflow
   installation (:mod:`airdock.airflow.doctor`).

The checks live beside this module: :mod:`.engine_checks`, :mod:`.aws_checks`,
:mod:`.registry_checks`; their verdicts in :mod:`.report`. Nothing here imports Airflow. The
registry password is never put in a result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from airdock.analyst.doctor.aws_checks import check_credentials, check_token
from airdock.analyst.doctor.engine_checks import (
    DEFAULT_MIN_FREE_BYTES,
    FreeSpaceThreshold,
    check_disk,
    check_engine,
)
from airdock.analyst.doctor.registry_checks import check_image, check_registry_login
from airdock.analyst.doctor.report import CheckResult, DoctorReport
from airdock.errors import ConfigError
from airdock.images import EcrRegistry, ImageRef, ecr_registry_at, ecr_registry_for, parse_registry_list

__all__ = [
    "PLUGIN_GROUP",
    "REGISTRIES_ENV",
    "DoctorOptions",
    "DoctorPlugin",
    "configured_registries",
    "load_plugins",
    "resolve_registry",
    "run_doctor",
]

REGISTRIES_ENV = "AIRFLOW__AIRDOCK__ECR_REGISTRIES"
PLUGIN_GROUP = "airdock.doctor"  # entry points that add checks (the Airflow layer registers one)


@dataclass(frozen=True)
class DoctorOptions:
    """What ``airdock doctor`` was asked; ``aws_conn_id`` None means the default, not given explicitly."""

    image: str | None = None
    registry: str | None = None
    region: str | None = None
    aws_conn_id: str | None = None
    min_free: FreeSpaceThreshold = FreeSpaceThreshold(min_bytes=DEFAULT_MIN_FREE_BYTES)  # noqa: RUF009 (frozen)
    ask_identity: bool = True


@dataclass(frozen=True)
class DoctorPlugin:
    """What another layer adds to the doctor, registered as an ``airdock.doctor`` entry point:
    the ECR registries it knows of, and checks run after the built-in ones."""

    name: str
    registries: Callable[[Mapping[str, str]], tuple[str, ...]] | None = None
    checks: Callable[[DoctorOptions, Mapping[str, str]], Sequence[CheckResult]] | None = None


def load_plugins() -> list[DoctorPlugin]:
    """Every installed ``airdock.doctor`` plugin (one that cannot load is left out)."""
    plugins: list[DoctorPlugin] = []
    for point in entry_points(group=PLUGIN_GROUP):
        try:
            plugin = point.load()
        except ImportError:
            continue
        if isinstance(plugin, DoctorPlugin):
            plugins.append(plugin)
    return plugins


def configured_registries(
    environ: Mapping[str, str], plugins: Sequence[DoctorPlugin] = ()
) -> tuple[str, ...]:
    """``[airdock] ecr_registries``: from the environment variable, else what a plugin knows (the
    Airflow installation's config), else none."""
    if REGISTRIES_ENV in environ:
        return parse_registry_list(environ[REGISTRIES_ENV])
    for plugin in plugins:
        if plugin.registries is not None:
            found = plugin.registries(environ)
            if found:
                return found
    return ()


def resolve_registry(
    image: ImageRef | None, registry: str | None, configured: tuple[str, ...]
) -> EcrRegistry | None:
    """The registry to check: the image's, else ``--registry``, else None (the caller's default).

    An image must live in an ECR registry: a standard ECR host, a configured one, or the host
    given with ``--registry``. A host given with ``--registry`` alone is taken as ECR (the user says so).
    """
    host = None
    if registry is not None:
        hosts = parse_registry_list(registry)
        if len(hosts) != 1:
            raise ConfigError(f"invalid --registry {registry!r}: give one host or host:port")
        host = hosts[0]
    if image is not None:
        if host is not None and host != image.registry:
            raise ConfigError(
                f"--registry {host} differs from the registry of --image ({image.registry}): give one of them"
            )
        found = ecr_registry_for(image, (*configured, *((host,) if host else ())))
        if found is None:
            raise ConfigError(
                f"image {image} is not in an Amazon ECR registry ({image.registry}); if that host is an ECR "
                f"endpoint under another name, list it in [airdock] ecr_registries ({REGISTRIES_ENV})"
            )
        return found
    if host is None:
        return None
    return ecr_registry_at(host)


def run_doctor(
    options: DoctorOptions,
    *,
    docker_factory: Callable[[], Any],
    session: Any,
    http: Any,
    environ: Mapping[str, str],
    clock: Callable[[], float] = time.time,
    plugins: Sequence[DoctorPlugin] | None = None,
) -> DoctorReport:
    """Run every check; raise ConfigError only for bad input (before any check runs).

    ``session`` is a boto3 Session (credentials, profile, region), ``http`` an ``httpx.Client``
    with a short timeout, ``docker_factory`` returns a docker client (may raise when the engine is down).
    ``plugins`` (default: the installed ``airdock.doctor`` entry points) add registries and checks.
    """
    from airdock.auth.session import ECR_CLIENT_CONFIG
    from airdock.images import parse_image_ref

    ref = parse_image_ref(options.image) if options.image is not None else None
    extensions = load_plugins() if plugins is None else plugins
    registry = resolve_registry(ref, options.registry, configured_registries(environ, extensions))
    region = (registry.region if registry is not None else None) or options.region

    def ecr_factory() -> Any:
        return session.client("ecr", region_name=region, config=ECR_CLIENT_CONFIG)

    def sts_factory() -> Any:
        from botocore.config import Config

        config = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1})
        return session.client("sts", region_name=region or session.region_name or "us-east-1", config=config)

    ecr_endpoint: str | None = None
    try:
        ecr_endpoint = str(ecr_factory().meta.endpoint_url)
    except Exception:  # the token check reports why there is no client
        ecr_endpoint = None

    where = environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
    engine, client = check_engine(docker_factory, where)
    checks: list[CheckResult] = [engine, check_disk(client, options.min_free)]
    checks.append(check_credentials(session, sts_factory if options.ask_identity else None, ecr_endpoint))
    token = check_token(ecr_factory, registry, clock)
    checks += [token.result, check_registry_login(http, token)]
    if ref is not None:
        checks += check_image(http, token, ref)
    for plugin in extensions:
        if plugin.checks is not None:
            checks += plugin.checks(options, environ)
    host = (
        registry.host if registry is not None else (token.credentials.registry if token.credentials else None)
    )
    return DoctorReport(tuple(checks), registry=host, image=str(ref) if ref is not None else None)
