"""Issue 7: orphan sweeping (and what it must never touch) and idle culling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests

from yarn_gateway.kernels.housekeeping import sweep

pytestmark = [pytest.mark.e2e]
SPEC = "spark_python_yarn_cluster"


def _submit(cluster: Any, tags: list[str], user: str = "alice") -> str:
    """A live application (ACCEPTED, AM running `sleep`) submitted straight to the RM."""
    rm = cluster.mc.active_rm_url
    q = {"user.name": user}
    app_id = requests.post(f"{rm}/ws/v1/cluster/apps/new-application", params=q, timeout=10).json()["application-id"]
    body = {"application-id": app_id, "application-name": "sweep-test",
            "am-container-spec": {"commands": {"command": "/bin/sleep 600 1><LOG_DIR>/stdout 2><LOG_DIR>/stderr"}},
            "max-app-attempts": 1, "resource": {"memory": 512, "vCores": 1}, "application-type": "SPARK",
            "application-tags": {"tag": tags}}
    r = requests.post(f"{rm}/ws/v1/cluster/apps", params=q, json=body, timeout=10)
    assert r.status_code == 202, r.text
    return str(app_id)


async def _state(cluster: Any, app_id: str) -> str:
    return str((await asyncio.to_thread(cluster.app_json, app_id))["state"])


async def test_sweep_kills_only_this_clusters_orphans(make_gateway: Any, cluster: Any,
                                                      yarn_config: dict[str, Any]) -> None:
    cfg = dict(yarn_config, SessionKeeper={"sweep_grace": 0.0, "sweep_interval": 0.0})
    gw = await make_gateway(cfg)
    orphan = await asyncio.to_thread(_submit, cluster, ["yarn-gateway", "yarn-gateway-default", "kernel-gone"])
    other_gw = await asyncio.to_thread(_submit, cluster, ["yarn-gateway", "yarn-gateway-other", "kernel-x"])
    untagged = await asyncio.to_thread(_submit, cluster, [])
    # A kernel with a record must be kept.
    kid = await gw.client("alice").start_kernel(SPEC)
    kept_app = gw.registry.kernels[kid].km.provisioner.app_id
    killed, removed = await sweep(gw.registry.sessions)
    assert killed == [orphan] and removed == []
    assert await _state(cluster, orphan) == "KILLED"
    for app in (other_gw, untagged, kept_app):
        assert await _state(cluster, app) in ("ACCEPTED", "RUNNING")
    # A record whose application ended is removed by the next sweep.
    await asyncio.to_thread(requests.put, f"{cluster.mc.active_rm_url}/ws/v1/cluster/apps/{kept_app}/state",
                            json={"state": "KILLED"}, params={"user.name": "alice"}, timeout=10)
    for _ in range(50):
        if await _state(cluster, kept_app) == "KILLED":
            break
        await asyncio.sleep(0.2)
    killed, removed = await sweep(gw.registry.sessions)
    assert killed == [] and removed == [kid]
    assert kid not in gw.registry.kernels and await gw.registry.sessions.find(kid) is None
    for app in (other_gw, untagged):
        await asyncio.to_thread(requests.put, f"{cluster.mc.active_rm_url}/ws/v1/cluster/apps/{app}/state",
                                json={"state": "KILLED"}, params={"user.name": "alice"}, timeout=10)


async def test_idle_kernel_is_culled_and_its_application_ends(make_gateway: Any, cluster: Any,
                                                              yarn_config: dict[str, Any]) -> None:
    cfg = dict(yarn_config, SessionKeeper={"cull_idle_timeout": 8.0, "cull_interval": 1.0, "sweep_interval": 0.0})
    gw = await make_gateway(cfg)
    idle_kid = await gw.client("alice").start_kernel(SPEC)
    app_id = gw.registry.kernels[idle_kid].km.provisioner.app_id
    busy_kid = await gw.client("bob").start_kernel(SPEC)
    ws = await gw.client("bob").connect(busy_kid)  # at once: bob's kernel is never idle for long
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while idle_kid in gw.registry.kernels:
        assert loop.time() < deadline, "the idle kernel was not culled"
        await ws.execute("1")  # bob keeps his kernel active
        await asyncio.sleep(1)
    assert busy_kid in gw.registry.kernels
    for _ in range(60):
        if await _state(cluster, app_id) in ("FINISHED", "KILLED"):
            break
        await asyncio.sleep(0.5)
    assert await _state(cluster, app_id) in ("FINISHED", "KILLED")
    # The record is forgotten once the shutdown has finished, which may be just after YARN
    # reports the application ended.
    for _ in range(60):
        if await gw.registry.sessions.find(idle_kid) is None:
            break
        await asyncio.sleep(0.5)
    assert await gw.registry.sessions.find(idle_kid) is None
    ws.close()
