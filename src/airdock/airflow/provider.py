"""Provider metadata, found by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

import airdock


def get_provider_info() -> dict[str, Any]:
    """Return airdock's provider description, in the shape of Airflow's provider_info schema."""
    return {
        "package-name": "airdock",
        "name": "airdock",
        "description": "Run private-registry (Amazon ECR first) container images as Airflow tasks, "
        "with no credential upkeep.",
        "versions": [airdock.__version__],
        "integrations": [
            {
                "integration-name": "airdock",
                "external-doc-url": "https://pypi.org/project/airdock/",
                "tags": ["software"],
            }
        ],
        "config": {
            "airdock": {
                "description": "Settings of the airdock provider.",
                "options": {
                    "ecr_registries": {
                        "description": "Comma-separated registry hosts (host or host:port) to treat as "
                        "Amazon ECR besides the standard *.dkr.ecr.*.amazonaws.com hosts: VPC "
                        "endpoints, custom DNS names, or the local stack's gateway.\n",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "127.0.0.1:5780",
                        "default": "",
                    },
                    "token_cache_dir": {
                        "description": "Directory of the host-wide registry token cache shared by all task "
                        "processes on a worker (files mode 0600, directory 0700). Empty: "
                        "$XDG_CACHE_HOME/airdock/registry-tokens or ~/.cache/airdock/registry-tokens.\n",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/var/cache/airdock/registry-tokens",
                        "default": "",
                    },
                    "token_refresh_margin": {
                        "description": "Refresh a cached registry token when less than this remains "
                        "(a duration: 30m, 1h; at most half the token's lifetime is used).\n",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "30m",
                        "default": "1h",
                    },
                },
            }
        },
    }
