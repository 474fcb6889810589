"""Fixtures for persistence, recovery and HA tests: the session's real YARN, ZooKeeper per test,
and the stand-in YARN (helpers.stub_yarn, helpers.fake_rm) for the fast session-store tests."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from persist_support import FINAL

from helpers.fake_rm import FakeRM
from helpers.stub_yarn import StubYarn
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


@pytest.fixture
async def fake_rm() -> AsyncIterator[FakeRM]:
    rm = FakeRM()
    rm.start()
    yield rm
    await rm.stop()  # kills the launchers it ran as containers, by PID


@pytest.fixture
def stub(tmp_path: Any, fake_rm: FakeRM) -> StubYarn:
    """YARN kernels without YARN: the real launcher run locally by a stand-in spark-submit."""
    return StubYarn(tmp_path / "yarn", fake_rm)
