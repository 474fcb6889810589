"""Fixtures for persistence, recovery and HA tests: the session's real YARN, ZooKeeper per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from persist_support import FINAL

from helpers.yarn_cluster import YarnCluster
from helpers.zookeeper import ZooKeeperServer


@pytest.fixture
def cluster(yarn_cluster: YarnCluster) -> Iterator[YarnCluster]:
    yield yarn_cluster
    # What a test left running must neither hold the shared cluster nor look like the next test's orphan.
    for app_id in yarn_cluster.kill_live_apps(tag="yarn-gateway"):
        yarn_cluster.wait_app(app_id, FINAL, timeout=60)


@pytest.fixture
def zookeeper() -> Iterator[ZooKeeperServer]:
    zk = ZooKeeperServer()
    yield zk
    zk.stop()
    shutil.rmtree(zk.dir, ignore_errors=True)


@pytest.fixture
def yarn_config(cluster: YarnCluster, tmp_path: Any) -> dict[str, dict[str, Any]]:
    cfg: dict[str, dict[str, Any]] = cluster.gateway_config()
    cfg["KernelRegistry"] = {"shutdown_wait_time": 20.0}
    cfg["DirectoryStore"] = {"directory": str(tmp_path / "sessions")}
    return cfg
