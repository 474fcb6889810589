"""Kernel parameters reach YARN: the user's queue, driver memory (AM size) and Spark conf, on the minicluster."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

from helpers.minicluster import ClusterThread
from yarn_gateway.minicluster.spark_submit_job import am_resources

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]

SPEC = "spark_python_yarn_cluster"
MIN_ALLOCATION_MB = 1024  # the minicluster's yarn.scheduler.minimum-allocation-mb


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterThread]:
    env = os.environ.get("YARN_GATEWAY_CLUSTER_ENV", "/opt/yarn-gateway-dev/cluster-venv")
    if not os.access(os.path.join(env, "bin", "python"), os.X_OK):
        pytest.fail("the cluster-side environment is missing: run `make cluster-env` (make test does)")
    mc = ClusterThread(proxyusers={"root": {"users": "alice,bob", "hosts": "*"}},
                       queues=[{"name": "default", "capacity": 50, "maximum-am-resource-percent": 1.0},
                               {"name": "analytics", "capacity": 50, "maximum-am-resource-percent": 1.0}],
                       node_memory_mb=16384)
    yield mc
    mc.close()


async def test_chosen_parameters_reach_spark_submit_and_yarn(make_gateway: Any, cluster: Any) -> None:
    cfg = cluster.gateway_config(max_concurrent_submits=2)
    cfg["KernelRegistry"] = {"launch_timeout": 180.0, "shutdown_wait_time": 20.0}
    gw = await make_gateway(cfg)
    alice = gw.client("alice")
    env = {"KERNEL_SPARK_DRIVER_MEMORY": "2g", "KERNEL_SPARK_YARN_QUEUE": "analytics",
           "KERNEL_SPARK_EXECUTOR_INSTANCES": "3"}
    refused = await alice.request("POST", "api/kernels", {"name": SPEC, "env": {**env, "KERNEL_SPARK_DRIVER_MEMORY":
                                                                                   "9g"}})
    assert refused.code == 400 and "from 512m to 8g" in refused.body["message"]
    kid = await alice.start_kernel(SPEC, env)
    app_id = gw.registry.kernels[kid].km.provisioner.app_id
    ws = await alice.connect(kid)
    res = await ws.execute("(spark.conf.get('spark.driver.memory'), spark.conf.get('spark.executor.instances'), "
                           "spark.conf.get('spark.executor.memory'))", timeout=120)
    assert res.status == "ok", res.error
    assert res.text == "('2g', '3', '1g')"  # the user's choices, and the kernelspec's default
    app = await asyncio.to_thread(cluster.app_json, app_id)
    assert (app["queue"], app["user"], app["state"]) == ("analytics", "alice", "RUNNING")
    mem, overhead, _cores = am_resources({"spark.driver.memory": "2g"})
    expected = -(-(mem + overhead) // MIN_ALLOCATION_MB) * MIN_ALLOCATION_MB
    assert app["allocatedMB"] == expected == 3072  # 2g + 384m overhead, rounded up: the default 1g gives 2048
    assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
