"""Capacity queues, AM limits, unknown queues, attempt failures, kills of whole process trees."""

from __future__ import annotations

import asyncio
import re

import psutil
import requests

DATE = r"\[\w{3} \w{3} \d{2} \d{2}:\d{2}:\d{2} [+-]\d{4} \d{4}\] "


async def test_full_am_limit_keeps_app_accepted_until_a_kill(make_cluster, rest, fake_am, wait):
    # 50% of 16 GB, AM percent 0.1 -> AM limit 819.2 MB normalized up to 1024 MB
    mc = await make_cluster(queues=[{"name": "default", "capacity": 50},
                                    {"name": "analytics", "capacity": 50, "maximum-am-resource-percent": 0.1}])
    api = rest(mc.active_rm_url)
    first = fake_am(api, mc, mode="none", spawn=True)
    first.allow_register()
    a1 = await first.submit(queue="analytics")
    await api.wait_state(a1, "RUNNING")
    a2 = await api.submit("/bin/sleep 30", queue="analytics", memory=800)  # normalized to 1024
    await asyncio.sleep(0.3)  # a few heartbeats
    app = await api.app(a2)
    assert app["state"] == "ACCEPTED" and "amHostHttpAddress" not in app
    assert re.fullmatch(
        DATE + re.escape(
            "Application is added to the scheduler and is not yet activated. Queue's AM resource limit exceeded.  "
            "Details : AM Partition = <DEFAULT_PARTITION>; AM Resource Request = <memory:1024, vCores:1>; "
            "Queue Resource Limit for AM = <memory:1024, vCores:1>; User AM Resource Limit of the queue = "
            "<memory:1024, vCores:1>; Queue AM Resource Usage = <memory:1024, vCores:1>; "),
        app["diagnostics"]), app["diagnostics"]
    sched = (await api.request("GET", "/ws/v1/cluster/scheduler")).json()["scheduler"]["schedulerInfo"]
    leaf = next(q for q in sched["queues"]["queue"] if q["queueName"] == "analytics")
    assert (leaf["numActiveApplications"], leaf["numPendingApplications"]) == (1, 1)
    assert leaf["users"]["user"][0]["username"] == "alice"
    metrics = (await api.request("GET", "/ws/v1/cluster/metrics")).json()["clusterMetrics"]
    assert (metrics["appsRunning"], metrics["appsPending"], metrics["allocatedMB"]) == (1, 1, 1024)

    log_url = (await api.app(a1))["amContainerLogs"] + "/stdout"
    out = (await asyncio.to_thread(requests.get, log_url, timeout=10)).text
    child_pid = int(re.search(r"child-pid (\d+)", out).group(1))
    container_pid = mc.nodemanager.containers[mc.apps[a1].attempts[-1].container_id].proc.pid
    assert psutil.pid_exists(child_pid)

    r = await api.request("PUT", f"/ws/v1/cluster/apps/{a1}/state", json={"state": "KILLED"})
    assert r.status_code == 202 and r.json() == {"state": "RUNNING"}
    assert r.headers["Location"] == f"{mc.active_rm_url}/ws/v1/cluster/apps/{a1}/state"
    r = await api.request("GET", f"/ws/v1/cluster/apps/{a1}/state")
    assert r.json() == {"state": "KILLING"}
    await api.wait_state(a1, "KILLED")
    # the whole tree is gone: the AM ignored SIGTERM (SIGKILL after 250 ms), its child did not
    for pid in (container_pid, child_pid):
        await wait(lambda pid=pid: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie",
                   timeout=3, what=f"pid {pid} gone")
    app = await api.app(a2)
    await wait(lambda: mc.apps[a2].attempts[-1].launched, what="second AM launched")
    app = await api.app(a2)
    assert app["state"] == "ACCEPTED" and app["amHostHttpAddress"] == mc.node.http_address


async def test_unknown_queue_fails_with_yarn_text(cluster, rest):
    api = rest(cluster.active_rm_url)
    app_id = await api.submit(queue="nope", user="bob")
    app = await api.wait_state(app_id, "FAILED")
    assert app["diagnostics"] == f"Application {app_id} submitted by user bob to unknown queue: nope"
    assert (app["finalStatus"], app["trackingUI"]) == ("FAILED", "UNASSIGNED")
    assert "trackingUrl" not in app and app["finishedTime"] > 0


async def test_am_exit_without_register_retries_then_fails(cluster, rest):
    api = rest(cluster.active_rm_url)
    cmd = "/usr/bin/python3 -c 'import sys; sys.stderr.write(\"boom on stderr\\n\"); sys.exit(3)'"
    app_id = await api.submit(cmd, max_attempts=2)
    app = await api.wait_state(app_id, "FAILED")
    assert app["finalStatus"] == "FAILED"
    diag = app["diagnostics"]
    assert diag.startswith(f"Application {app_id} failed 2 times due to AM Container for "
                           f"appattempt_{app_id[len('application_'):]}_000002 exited with  exitCode: 3\n")
    assert "Failing this attempt.Diagnostics: [" in diag and "boom on stderr" in diag
    assert diag.endswith(". Failing the application.")
    attempts = (await api.request("GET", f"/ws/v1/cluster/apps/{app_id}/appattempts")).json()
    assert [a["id"] for a in attempts["appAttempts"]["appAttempt"]] == [1, 2]
    # a local limit below the global one is spelled out
    app_id = await api.submit("/bin/false", max_attempts=1)
    app = await api.wait_state(app_id, "FAILED")
    assert app["diagnostics"].startswith(f"Application {app_id} failed 1 times (global limit =2; local limit is =1)")


async def test_kill_before_allocation_and_am_token_checks(make_cluster, rest, fake_am):
    mc = await make_cluster(heartbeat_interval=3600)
    api = rest(mc.active_rm_url)
    app_id = await api.submit()
    await api.wait_state(app_id, "ACCEPTED")
    r = await api.am_call(mc, app_id, "register", {"host": "h", "rpcPort": 1}, token="wrong")
    assert r.status_code == 403 and r.json()["RemoteException"]["exception"] == "InvalidToken"
    r = await api.am_call(mc, app_id, "register", {"host": "h", "rpcPort": 1})
    assert r.status_code == 409  # no AM container yet
    r = await api.request("PUT", f"/ws/v1/cluster/apps/{app_id}/state", json={"state": "KILLED"})
    assert r.status_code == 202
    app = await api.wait_state(app_id, "KILLED")
    assert app["trackingUI"] == "History" and app["allocatedMB"] == -1
    r = await api.request("PUT", f"/ws/v1/cluster/apps/{app_id}/state", json={"state": "KILLED"})
    assert (r.status_code, r.json()) == (200, {"state": "KILLED"})
