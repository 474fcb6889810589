"""A gateway stopped while YARN kernels are starting leaves nothing behind: the client gets a 503,
spark-submit is gone, the YARN application is killed and no session record remains."""

from __future__ import annotations

import asyncio
from typing import Any

import psutil
import pytest

from helpers.waiting import wait_until
from helpers.yarn_specs import wait_app_state

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]

SPEC = "spark_python_yarn_cluster"


def _spark_submits() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if any("SparkSubmit" in part for part in child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


async def test_stop_during_spark_submit_and_during_launcher_wait(make_gateway: Any, cluster: Any,
                                                                 yarn_gateway_config: dict[str, Any]) -> None:
    gw = await make_gateway(yarn_gateway_config)
    alice = gw.client("alice")
    before = {a["id"] for a in await asyncio.to_thread(cluster.apps_of)}
    # One launch is stopped while spark-submit runs (no application id yet), the other once YARN
    # has accepted its application and the gateway waits for the launcher.
    early = asyncio.create_task(alice.request("POST", "api/kernels", {"name": SPEC}, timeout=240))
    kid_early = await wait_until(lambda: next(iter(gw.registry.kernels), None), 30, "no launch began")
    late = asyncio.create_task(alice.request("POST", "api/kernels", {"name": SPEC}, timeout=240))
    await wait_until(lambda: len(gw.registry.kernels) == 2, 30, "second launch did not begin")
    kid_late = next(k for k in gw.registry.kernels if k != kid_early)
    recs = gw.registry.kernels
    await wait_until(lambda: _spark_submits(), 30, "spark-submit never ran")
    late_prov = recs[kid_late].km.provisioner
    early_prov = recs[kid_early].km.provisioner
    await wait_until(lambda: late_prov.app_id or early_prov.app_id, 120, "no application submitted")
    # Whichever was submitted first plays "late"; the other is still in spark-submit or just past it.
    waiting = late_prov if late_prov.app_id else early_prov
    assert waiting.app_id
    await gw.app.stop_server()
    replies = [await early, await late]
    for r in replies:
        assert r.code == 503, (r.code, r.body)
        assert r.body["reason"] == "Gateway stopping"
        assert "the gateway is stopping" in r.body["message"] and "Try again" in r.body["message"]
    assert {kid_early, kid_late} == {r.body["message"].split()[1] for r in replies}
    assert not gw.registry.kernels
    assert _spark_submits() == []
    # Every application these launches created is ended (none runs on without a gateway).
    created = [a for a in await asyncio.to_thread(cluster.apps_of) if a["id"] not in before]
    assert waiting.app_id in {a["id"] for a in created}
    for app in created:
        final = await wait_app_state(cluster, app["id"], {"KILLED", "FAILED", "FINISHED"}, timeout=60)
        assert final["state"] == "KILLED", final
    for kid in (kid_early, kid_late):
        assert await gw.registry.sessions.find(kid) is None
