"""ResourceManager failover under running kernels, on two real RMs with ZooKeeper's elector.

kill -9 of the active RM: the standby takes over (the embedded elector, ZKRMStateStore,
work-preserving recovery), the kernels' drivers re-register with it, and the gateway's
RM client follows without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import requests

from helpers.waiting import wait_until
from helpers.yarn_cluster import YarnCluster
from helpers.yarn_specs import NO_EXECUTORS, app_of, yarn_gateway_config

pytestmark = [pytest.mark.e2e, pytest.mark.jvm, pytest.mark.zookeeper]

SPEC = "spark_python_yarn_cluster"


async def test_standby_redirects_rest_to_the_active(ha_cluster: YarnCluster) -> None:
    cluster = ha_cluster.cluster
    active = cluster.wait_active()
    standby = next(r for r in cluster.rm_ids if r != active)
    r = await asyncio.to_thread(requests.get, cluster.rm_url_of(standby) + "/ws/v1/cluster/apps",
                                params={"user.name": "root"}, allow_redirects=False, timeout=10)
    assert r.status_code == 307, r.status_code
    assert r.headers["Location"].startswith(cluster.rm_url_of(active))


async def test_kernels_survive_active_rm_kill_and_a_new_kernel_starts_through_the_other(
        make_gateway: Any, ha_cluster: YarnCluster) -> None:
    cluster = ha_cluster.cluster
    gw = await make_gateway(yarn_gateway_config(ha_cluster))
    rm_client = gw.registry.yarn_services.rm()
    assert len(rm_client.endpoints) == 2  # both RMs, from yarn-site.xml's HA ids
    alice, bob = gw.client("alice"), gw.client("bob")
    kids = {"alice": await alice.start_kernel(SPEC), "bob": await bob.start_kernel(SPEC)}
    wss = {"alice": await alice.connect(kids["alice"]), "bob": await bob.connect(kids["bob"])}
    for user, ws in wss.items():
        assert (await ws.execute(f"owner = {user!r}; sc.parallelize(range(10)).sum()", timeout=180)).text == "45"
    apps = {user: app_of(gw, kid) for user, kid in kids.items()}

    old = cluster.wait_active()
    await asyncio.to_thread(cluster.kill_rm, old)
    try:
        new = await asyncio.to_thread(cluster.wait_active, 90, old)
        assert new != old

        # The drivers keep executing, Spark jobs included (executors are scheduled by the new active RM).
        for user, ws in wss.items():
            res = await ws.execute("owner, sc.parallelize(range(100)).sum()", timeout=180)
            assert res.status == "ok", res.error
            assert res.text == f"({user!r}, 4950)"

        async def running_again(app_id: str) -> dict[str, Any]:
            last: dict[str, Any] = {}

            async def running() -> Any:
                nonlocal last
                last = await rm_client.app(app_id)
                return last if last["state"] == "RUNNING" else None

            app: dict[str, Any] = await wait_until(running, 60, interval=0.5, what=lambda: (
                f"{app_id} is RUNNING again, seen through the gateway's RM client; last seen: {last}"))
            return app

        # The gateway's RM client (built before the kill) follows: the same object answers from the new RM
        # (a recovered application is RUNNING again once its AM has re-registered there).
        for user, app_id in apps.items():
            app = await running_again(app_id)
            assert app["user"] == user, app
        # A new kernel starts through the other RM.
        kid3 = await alice.start_kernel(SPEC, env=NO_EXECUTORS)
        app3 = app_of(gw, kid3)
        assert (await asyncio.to_thread(ha_cluster.app_json, app3))["user"] == "alice"
        ws3 = await alice.connect(kid3)
        assert (await ws3.execute("1+1")).text == "2"
        listed = {k["id"] for k in (await alice.request("GET", "api/kernels")).body}
        assert {kids["alice"], kid3} <= listed
        for user, kid in [*kids.items(), ("alice", kid3)]:
            assert (await gw.client(user).request("DELETE", f"api/kernels/{kid}")).code == 204
        for app_id in [*apps.values(), app3]:
            final = await asyncio.to_thread(ha_cluster.wait_app, app_id, {"FINISHED", "FAILED", "KILLED"})
            assert final["state"] in ("FINISHED", "KILLED")
    finally:
        # The killed RM comes back as the standby (the HA cluster is shared with other tests).
        await asyncio.to_thread(cluster.start_rm, old)

        async def standby_again() -> bool:
            return await asyncio.to_thread(cluster.rm_state, old) == "STANDBY"

        with contextlib.suppress(AssertionError):  # asserted below, once the apps are killed
            await wait_until(standby_again, 120, f"RM {old} is STANDBY again", interval=0.5)
        await asyncio.to_thread(ha_cluster.kill_live_apps)
    assert cluster.rm_state(old) == "STANDBY", f"RM {old} is {cluster.rm_state(old)}, not STANDBY again after 120 s"
