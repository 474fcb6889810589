"""Fixtures for YARN kernels end to end: the session's real YARN, gateways per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from helpers.yarn_cluster import YarnCluster
from helpers.yarn_specs import yarn_gateway_config as _gateway_config


@pytest.fixture
def cluster(yarn_cluster: YarnCluster) -> Iterator[YarnCluster]:
    yield yarn_cluster
    yarn_cluster.kill_live_apps()  # what a failed test left behind must not hold the shared cluster


@pytest.fixture
def yarn_gateway_config(cluster: YarnCluster) -> dict[str, Any]:
    return _gateway_config(cluster)
