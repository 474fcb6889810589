"""Fixtures for YARN kernels end to end: one minicluster per module, gateways per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from helpers.minicluster import ClusterThread
from helpers.yarn_specs import yarn_gateway_config as _gateway_config


def _cluster_env_ready() -> bool:
    env = os.environ.get("YARN_GATEWAY_CLUSTER_ENV", "/opt/yarn-gateway-dev/cluster-venv")
    return os.access(os.path.join(env, "bin", "python"), os.X_OK)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterThread]:
    if not _cluster_env_ready():
        pytest.fail("the cluster-side environment is missing: run `make cluster-env` (make test does)")
    mc = ClusterThread(
        proxyusers={"root": {"users": "alice,bob", "hosts": "*"}},
        queues=[{"name": "default", "capacity": 90, "maximum-am-resource-percent": 1.0},
                {"name": "small", "capacity": 10, "maximum-am-resource-percent": 0.1}],
        node_memory_mb=32768,
    )
    yield mc
    mc.close()


@pytest.fixture
def yarn_gateway_config(cluster: ClusterThread) -> dict[str, Any]:
    return _gateway_config(cluster)
