"""Fixtures for persistence, recovery and HA tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from helpers.minicluster import ClusterThread
from helpers.zookeeper import ZooKeeperServer


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterThread]:
    mc = ClusterThread(
        proxyusers={"root": {"users": "alice,bob", "hosts": "*"}},
        queues=[{"name": "default", "capacity": 100, "maximum-am-resource-percent": 1.0}],
        node_memory_mb=65536,
    )
    yield mc
    mc.close()


@pytest.fixture
def zookeeper() -> Iterator[ZooKeeperServer]:
    zk = ZooKeeperServer()
    yield zk
    zk.stop()


@pytest.fixture
def yarn_config(cluster: ClusterThread, tmp_path: Any) -> dict[str, dict[str, Any]]:
    cfg: dict[str, dict[str, Any]] = cluster.gateway_config()
    cfg["KernelRegistry"] = {"launch_timeout": 180.0, "shutdown_wait_time": 20.0}
    cfg["DirectoryStore"] = {"directory": str(tmp_path / "sessions")}
    return cfg
