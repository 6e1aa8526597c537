"""The docker provider's internals airdock builds on, pinned: a provider release that changes them fails here.

``EcrDockerOperator`` subclasses ``DockerOperator`` (pyproject pins the provider to the tested major
version, ``<5``). It overrides ``_run_image_with_mounts`` and ``on_kill``, calls ``_run_image``,
``_normalize_mounts`` and ``cli``, routes the module-level ``fetch_logs`` to its bounded reader,
and relies on ``_run_image_with_mounts`` creating the container from ``self.image`` with
``self.labels`` and keeping it in ``self.container``. Each of those is checked here.
"""

from __future__ import annotations

import inspect
import sys

from airflow.providers.docker.hooks.docker import DockerHook
from airflow.providers.docker.operators.docker import DockerOperator


def params(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_the_methods_airdock_overrides_or_calls_keep_their_signatures() -> None:
    assert params(DockerOperator._run_image_with_mounts) == ["self", "target_mounts", "add_tmp_variable"]
    assert params(DockerOperator._run_image) == ["self"]
    assert params(DockerOperator._normalize_mounts) == ["self"]
    assert params(DockerOperator.on_kill) == ["self"]
    assert params(DockerOperator.execute) == ["self", "context"]
    assert isinstance(inspect.getattr_static(DockerOperator, "cli"), property)
    assert isinstance(inspect.getattr_static(DockerHook, "client_created"), property)


def test_the_constructor_still_takes_what_airdock_passes() -> None:
    accepted = params(DockerOperator.__init__)
    for name in ("image", "force_pull", "auto_remove", "docker_conn_id", "docker_url", "labels", "xcom_all"):
        assert name in accepted, name
    assert "image" in DockerOperator.template_fields


def test_the_container_is_made_from_self_image_and_its_output_read_by_fetch_logs() -> None:
    module = sys.modules[DockerOperator.__module__]
    assert params(module.fetch_logs) == ["log_stream", "log"]
    source = inspect.getsource(DockerOperator._run_image_with_mounts)
    assert "image=self.image" in source, "airdock swaps self.image for the pulled image id"
    assert "labels=self.labels" in source, "airdock's labels reach the container"
    assert "self.container = self.cli.create_container(" in source, "airdock's clean-up reads self.container"
    assert "fetch_logs(" in source, "airdock's bounded reader replaces fetch_logs"
