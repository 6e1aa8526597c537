"""``EcrDockerOperator``: the docker provider's DockerOperator with ECR logins that maintain themselves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airdock.airflow.credentials import AirflowEcrCredentials, configured_ecr_registries, token_cache
from airdock.engine.pull import PullPolicy, ensure_image
from airdock.errors import AccessDeniedError, AirdockError, ConfigError, ImagePullError, RegistryAuthError
from airdock.images import ecr_registry_for, parse_image_ref

IMAGE_DIGEST_XCOM_KEY = "image_digest"


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

    ECR hosts are ``<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`` and any host listed in
    ``[airdock] ecr_registries``; other registries use ``docker_conn_id`` as DockerOperator does.
    Tokens live in a host-wide cache shared by all task processes; a token the registry refuses is
    replaced and the pull retried once. The digest of the image that runs is logged and pushed to
    XCom as ``image_digest``.
    """

    template_fields: Sequence[str] = (*DockerOperator.template_fields, "aws_conn_id", "pull_policy")

    def __init__(
        self,
        *,
        image: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        pull_policy: str = PullPolicy.IF_NOT_PRESENT.value,
        token_refresh_margin: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.pop("force_pull", False):
            pull_policy = PullPolicy.ALWAYS.value
        super().__init__(image=image, force_pull=False, **kwargs)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.pull_policy = pull_policy
        self.token_refresh_margin = token_refresh_margin
        if "{{" not in pull_policy:
            PullPolicy.parse(pull_policy)  # bad input fails at DAG parse time, not at run time

    def execute(self, context: Any) -> Any:
        try:
            pulled = self._ensure_image()
        except (ConfigError, AccessDeniedError) as exc:
            raise AirflowFailException(str(exc)) from None  # retrying cannot help
        except ImagePullError as exc:
            if "does not exist" in str(exc):
                raise AirflowFailException(str(exc)) from None
            raise AirflowException(str(exc)) from None
        except RegistryAuthError as exc:
            raise AirflowException(str(exc)) from None
        except AirdockError as exc:
            raise AirflowException(str(exc)) from None
        digest = pulled.digest or pulled.image_id
        self.log.info("running %s, digest %s", pulled.reference, digest)
        context["ti"].xcom_push(key=IMAGE_DIGEST_XCOM_KEY, value=digest)
        # The image is present now: run it the way DockerOperator does, minus its own pull.
        self._normalize_mounts()
        return self._run_image()

    def _ensure_image(self) -> Any:
        ref = parse_image_ref(self.image)
        policy = PullPolicy.parse(self.pull_policy)
        registry = ecr_registry_for(ref, configured_ecr_registries())
        credentials = None
        if registry is not None:
            credentials = AirflowEcrCredentials(
                registry,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                cache=token_cache(self.token_refresh_margin),
                log=self.log,
            )
        return ensure_image(self.cli, ref, policy, credentials, logger=self.log)
