"""Issue 7: orphan sweeping (and what it must never touch) and idle culling, on real YARN applications."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests
from persist_support import NO_EXECUTORS, states, wait_final

from helpers.waiting import wait_until
from yarn_gateway.kernels.housekeeping import sweep

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]
SPEC = "spark_python_yarn_cluster"


def _submit(cluster: Any, tags: list[str], user: str = "alice") -> str:
    """A live application (its AM container runs `sleep`: no JVM) submitted straight to the RM's REST API."""
    rm = cluster.rm_url
    q = {"user.name": user}
    app_id = requests.post(f"{rm}/ws/v1/cluster/apps/new-application", params=q, timeout=10).json()["application-id"]
    body = {"application-id": app_id, "application-name": "sweep-test",
            "am-container-spec": {"commands": {"command": "/bin/sleep 600 1><LOG_DIR>/stdout 2><LOG_DIR>/stderr"}},
            "max-app-attempts": 1, "resource": {"memory": 256, "vCores": 1}, "application-type": "SPARK",
            "application-tags": {"tag": tags}}
    r = requests.post(f"{rm}/ws/v1/cluster/apps", params=q, json=body, timeout=10)
    assert r.status_code == 202, r.text
    return str(app_id)


def _kill(cluster: Any, app_id: str, user: str = "alice") -> None:
    r = requests.put(f"{cluster.rm_url}/ws/v1/cluster/apps/{app_id}/state", json={"state": "KILLED"},
                     params={"user.name": user}, timeout=10)
    assert r.status_code in (200, 202), r.text


async def _state(cluster: Any, app_id: str) -> str:
    return (await states(cluster, app_id))[0]


async def test_sweep_kills_only_this_clusters_orphans(make_gateway: Any, cluster: Any,
                                                      yarn_config: dict[str, Any]) -> None:
    cfg = dict(yarn_config, SessionKeeper={"sweep_grace": 0.0, "sweep_interval": 0.0})
    gw = await make_gateway(cfg)
    orphan = await asyncio.to_thread(_submit, cluster, ["yarn-gateway", "yarn-gateway-default", "kernel-gone"])
    other_gw = await asyncio.to_thread(_submit, cluster, ["yarn-gateway", "yarn-gateway-other", "kernel-x"])
    untagged = await asyncio.to_thread(_submit, cluster, [])
    try:
        # A kernel with a record must be kept.
        kid = await gw.client("alice").start_kernel(SPEC, NO_EXECUTORS)
        kept_app = gw.registry.kernels[kid].km.provisioner.app_id
        for app in (orphan, other_gw, untagged):  # what the sweep sees: live applications
            assert await _state(cluster, app) in ("ACCEPTED", "RUNNING")
        killed, removed = await sweep(gw.registry.sessions)
        assert killed == [orphan] and removed == []
        assert await _state(cluster, orphan) == "KILLED"
        for app in (other_gw, untagged, kept_app):
            assert await _state(cluster, app) in ("ACCEPTED", "RUNNING")
        # A record whose application ended (killed behind the gateway's back) is removed by the next sweep.
        await asyncio.to_thread(_kill, cluster, kept_app)
        assert (await wait_final(cluster, kept_app))["state"] == "KILLED"
        killed, removed = await sweep(gw.registry.sessions)
        assert killed == [] and removed == [kid]
        assert kid not in gw.registry.kernels and await gw.registry.sessions.find(kid) is None
        for app in (other_gw, untagged):
            assert await _state(cluster, app) in ("ACCEPTED", "RUNNING")
    finally:
        for app in (orphan, other_gw, untagged):
            if await _state(cluster, app) not in ("FINISHED", "FAILED", "KILLED"):
                await asyncio.to_thread(_kill, cluster, app)


@pytest.mark.timeout(600)  # two JVM kernels on a shared 2-core machine
async def test_idle_kernel_is_culled_and_its_application_ends(make_gateway: Any, cluster: Any,
                                                              yarn_config: dict[str, Any]) -> None:
    cfg = dict(yarn_config, SessionKeeper={"cull_idle_timeout": 8.0, "cull_interval": 1.0, "sweep_interval": 0.0})
    gw = await make_gateway(cfg)
    idle_kid = await gw.client("alice").start_kernel(SPEC, NO_EXECUTORS)
    app_id = gw.registry.kernels[idle_kid].km.provisioner.app_id
    # Used once, then left alone. (Its SparkContext is up then: a driver stopped before that ends
    # FAILED in YARN, a started one FINISHED.)
    ws_alice = await gw.client("alice").connect(idle_kid)
    assert (await ws_alice.execute("sc.sparkUser()", timeout=120)).text == "'alice'"
    ws_alice.close()
    busy_kid = await gw.client("bob").start_kernel(SPEC, NO_EXECUTORS)
    ws = await gw.client("bob").connect(busy_kid)  # at once: bob's kernel is never idle for long

    async def culled() -> bool:
        if idle_kid not in gw.registry.kernels:
            return True
        await ws.execute("1")  # bob keeps his kernel active
        return False

    await wait_until(culled, 60, "the idle kernel was culled (while bob's stayed busy)", interval=1)
    assert busy_kid in gw.registry.kernels
    # Culling is a shutdown like any other: the launcher ends its application itself.
    final = await wait_final(cluster, app_id, timeout=60)
    assert (final["state"], final["finalStatus"]) == ("FINISHED", "SUCCEEDED"), final
    busy_app = gw.registry.kernels[busy_kid].km.provisioner.app_id
    assert await _state(cluster, busy_app) in ("ACCEPTED", "RUNNING")  # lazy Spark: RUNNING once it registered
    # The record is forgotten once the shutdown has finished, which may be just after YARN
    # reports the application ended.
    async def forgotten() -> bool:
        return await gw.registry.sessions.find(idle_kid) is None

    await wait_until(forgotten, 30, "the culled kernel's session record was removed", interval=0.5)
    assert (await ws.execute("sc.sparkUser()", timeout=120)).text == "'bob'"
    ws.close()
    assert (await gw.client("bob").request("DELETE", f"api/kernels/{busy_kid}")).code == 204
