"""Kernel parameters reach real YARN: the user's queue, driver and executor memory (container sizes) and Spark conf.

YARN sizes a cluster-mode driver's AM container as Spark asks: spark.driver.memory plus its
overhead (10 %, at least 384 MiB), rounded up by the CapacityScheduler to a multiple of
yarn.scheduler.minimum-allocation-mb; executors likewise. What the RM reports is compared with
that rule, the minimum allocation read from the cluster's own yarn-site.xml.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from helpers.yarn_cluster import YarnCluster
from helpers.yarn_specs import app_of, wait_app_state
from yarn_gateway.kernels.params import memory_bytes
from yarn_gateway.yarn.hadoop_conf import load_hadoop_conf

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]

SPEC = "spark_python_yarn_cluster"
MIB = 1 << 20


@pytest.fixture
def cluster(yarn_cluster: YarnCluster) -> Iterator[YarnCluster]:
    yield yarn_cluster
    yarn_cluster.kill_live_apps()


def container_mb(cluster: YarnCluster, memory: str) -> int:
    """The YARN container size (MiB) for a Spark JVM of ``memory`` (driver or executor)."""
    heap = memory_bytes(memory) // MIB
    overhead = max(384, heap // 10)
    step = int(load_hadoop_conf(cluster.conf_dir)["yarn.scheduler.minimum-allocation-mb"])
    return -(-(heap + overhead) // step) * step


def _config(cluster: YarnCluster) -> dict[str, Any]:
    cfg = cluster.gateway_config(max_concurrent_submits=2)
    # Admin bounds tighter than the kernelspec's (512m..8g), small enough for a shared 2-core machine.
    cfg["KernelParameters"] = {"bounds": {"spark.driver.memory": {"max": "1g"},
                                          "spark.executor.memory": {"max": "512m"},
                                          "spark.executor.instances": {"max": 1}}}
    cfg["KernelRegistry"] = {"shutdown_wait_time": 20.0}
    return cfg


async def _stop(gw: Any, user: str, kid: str, app_id: str, cluster: YarnCluster) -> None:
    assert (await gw.client(user).request("DELETE", f"api/kernels/{kid}")).code == 204
    final = await wait_app_state(cluster, app_id, {"FINISHED", "FAILED", "KILLED"})
    assert (final["state"], final["finalStatus"]) == ("FINISHED", "SUCCEEDED")


async def test_queue_and_driver_memory_reach_yarn(make_gateway: Any, cluster: YarnCluster) -> None:
    gw = await make_gateway(_config(cluster))
    alice = gw.client("alice")
    # No executors (dynamic allocation, none initially): the application is its AM container alone.
    env = {"KERNEL_SPARK_DRIVER_MEMORY": "600m", "KERNEL_SPARK_YARN_QUEUE": "small",
           "KERNEL_SPARK_EXECUTOR_INSTANCES": "0", "KERNEL_SPARK_DYNAMIC_ALLOCATION_ENABLED": "true",
           "KERNEL_SPARK_DYNAMIC_ALLOCATION_MAX_EXECUTORS": "1"}
    refused = await alice.request("POST", "api/kernels", {"name": SPEC, "env": {**env, "KERNEL_SPARK_DRIVER_MEMORY":
                                                                                   "2g"}})
    assert refused.code == 400 and "from 512m to 1g" in refused.body["message"]  # the admin's bound
    assert not cluster.live_apps(tag="yarn-gateway")  # refused before any submit
    kid = await alice.start_kernel(SPEC, env)
    app_id = app_of(gw, kid)
    ws = await alice.connect(kid)
    res = await ws.execute("(spark.conf.get('spark.driver.memory'), spark.conf.get('spark.executor.instances'), "
                           "spark.conf.get('spark.dynamicAllocation.enabled'), sc.sparkUser())", timeout=120)
    assert res.status == "ok", res.error
    assert res.text == "('600m', '0', 'true', 'alice')"
    app = await asyncio.to_thread(cluster.app_json, app_id)
    assert (app["queue"], app["user"], app["state"]) == ("small", "alice", "RUNNING")
    # 600m + 384m overhead = 984m, rounded up to the minimum allocation's multiple.
    assert app["runningContainers"] == 1 and app["allocatedMB"] == container_mb(cluster, "600m") == 1024
    await _stop(gw, "alice", kid, app_id, cluster)


async def test_executor_parameters_size_the_executor_containers(make_gateway: Any, cluster: YarnCluster) -> None:
    gw = await make_gateway(_config(cluster))
    bob = gw.client("bob")
    kid = await bob.start_kernel(SPEC, {"KERNEL_SPARK_EXECUTOR_INSTANCES": "1"})  # memory: the default, capped
    app_id = app_of(gw, kid)
    ws = await bob.connect(kid)
    res = await ws.execute("(spark.range(1000).count(), spark.conf.get('spark.driver.memory'), "
                           "spark.conf.get('spark.executor.memory'), spark.conf.get('spark.executor.instances'))",
                           timeout=180)
    assert res.status == "ok", res.error
    # The kernelspec's defaults (1g driver, 1g executors) moved inside the admin's bounds.
    assert res.text == "(1000, '1g', '512m', '1')"
    app = await asyncio.to_thread(cluster.app_json, app_id)
    assert (app["queue"], app["user"]) == ("default", "bob")
    # The job ran on the one executor: its container (512m + 384m) beside the AM's (1g + 384m).
    assert app["runningContainers"] == 2
    assert app["allocatedMB"] == container_mb(cluster, "1g") + container_mb(cluster, "512m") == 1408 + 896
    await _stop(gw, "bob", kid, app_id, cluster)


async def test_a_queue_yarn_does_not_know_is_named_in_the_error(make_gateway: Any, cluster: YarnCluster) -> None:
    gw = await make_gateway(_config(cluster))
    r = await gw.client("alice").request("POST", "api/kernels", {
        "name": SPEC, "env": {"KERNEL_SPARK_YARN_QUEUE": "analytics", "KERNEL_SPARK_EXECUTOR_INSTANCES": "1"}})
    assert r.code == 400 and r.body["reason"] == "Unknown queue", r.body
    # spark-submit (--proxy-user: a doAs) wraps YARN's refusal in an UndeclaredThrowableException;
    # the user sees the cause, without the stack.
    message = r.body["message"]
    assert "submitted by user alice to unknown queue: analytics" in message, message
    assert "YARN has no queue 'analytics'" in message and "Choose one of the cluster's queues" in message
    assert "Caused by" not in message and "\tat " not in message and "... " not in message
    assert gw.registry.kernels == {} and not cluster.live_apps(tag="yarn-gateway")
