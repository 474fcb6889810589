"""Fixtures for the R kernel end to end: one minicluster per module, gateways per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from helpers.minicluster import ClusterThread
from helpers.yarn_specs import yarn_gateway_config as _gateway_config


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterThread]:
    env = os.environ.get("YARN_GATEWAY_CLUSTER_ENV", "/opt/yarn-gateway-dev/cluster-venv")
    if not os.access(os.path.join(env, "bin", "python"), os.X_OK):
        pytest.fail("the cluster-side environment is missing: run `make cluster-env` (make test does)")
    mc = ClusterThread(proxyusers={"root": {"users": "alice,bob", "hosts": "*"}},
                       queues=[{"name": "default", "capacity": 100, "maximum-am-resource-percent": 1.0}],
                       node_memory_mb=32768)
    yield mc
    mc.close()


@pytest.fixture
def yarn_gateway_config(cluster: ClusterThread) -> dict[str, Any]:
    return _gateway_config(cluster)
