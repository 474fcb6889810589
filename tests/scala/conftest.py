"""Fixtures for the Scala (Toree) kernel tests: the launcher jar (built on demand), the session's real YARN."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster.spark_env import DEFAULT_CLUSTER_ENV
from helpers.yarn_cluster import YarnCluster
from helpers.yarn_specs import yarn_gateway_config as _gateway_config

REPO = Path(__file__).resolve().parents[2]
LAUNCHER_JAR = REPO / "launchers" / "scala" / "build" / "yarn-gateway-toree-launcher.jar"
INSTALLED = [REPO / "launchers" / "python" / n for n in ("yarn-gateway-toree-launcher.jar", "toree-assembly.jar")]


def _cluster_env() -> str:
    return os.environ.get("YARN_GATEWAY_CLUSTER_ENV", DEFAULT_CLUSTER_ENV)


@pytest.fixture(scope="session")
def launcher_jar() -> Path:
    """The launcher jar, built with `make scala-launcher` when missing (make is a no-op when up to date)."""
    if not all(p.is_file() for p in [LAUNCHER_JAR, *INSTALLED]):
        r = subprocess.run(["make", "-C", str(REPO), "scala-launcher", f"CLUSTER_ENV={_cluster_env()}"],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0 or not all(p.is_file() for p in [LAUNCHER_JAR, *INSTALLED]):
            pytest.fail(f"the Scala launcher jar is missing and `make scala-launcher` failed:\n{r.stdout}\n{r.stderr}")
    return LAUNCHER_JAR


@pytest.fixture
def cluster(launcher_jar: Path, yarn_cluster: YarnCluster) -> Iterator[YarnCluster]:
    yield yarn_cluster
    yarn_cluster.kill_live_apps()  # what a failed test left behind must not hold the shared cluster


@pytest.fixture
def yarn_gateway_config(cluster: YarnCluster) -> dict[str, Any]:
    return _gateway_config(cluster)
