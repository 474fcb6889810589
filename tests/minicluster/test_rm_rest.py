"""RM REST v1 driven by the unmodified yarn-api-client 1.0.3 and by raw requests."""

from __future__ import annotations

import asyncio
import time

import pytest
from yarn_api_client.errors import APIError
from yarn_api_client.resource_manager import ResourceManager


def _client(endpoints: list[str], statuses: list[int]) -> ResourceManager:
    rm = ResourceManager(service_endpoints=endpoints)
    rm.session.hooks["response"].append(lambda r, *a, **k: statuses.append(r.status_code))
    return rm


async def test_yarn_api_client_lists_filters_reads_and_kills(cluster, rest):
    api = rest(cluster.active_rm_url)
    t0 = int(time.time() * 1000)
    a1 = await api.submit(user="alice", name="kernel-1", tags=["Gateway", "K1"], app_type="SPARK")
    a2 = await api.submit(user="bob", name="kernel-2", tags=["gateway"], app_type="MAPREDUCE")
    await api.wait_state(a1, "ACCEPTED")
    await api.wait_state(a2, "ACCEPTED")
    statuses: list[int] = []
    rm = await asyncio.to_thread(_client, [cluster.active_rm_url], statuses)

    def ids(resp) -> list[str]:
        apps = resp.data["apps"]
        return sorted(a["id"] for a in apps["app"]) if apps else []

    call = asyncio.to_thread
    assert ids(await call(rm.cluster_applications)) == sorted([a1, a2])
    assert ids(await call(rm.cluster_applications, states=["ACCEPTED"])) == sorted([a1, a2])
    assert ids(await call(rm.cluster_applications, states=["RUNNING"])) == []
    assert (await call(rm.cluster_applications, states=["RUNNING"])).data == {"apps": None}
    assert ids(await call(rm.cluster_applications, user="bob")) == [a2]
    assert ids(await call(rm.cluster_applications, application_tags=["K1"])) == [a1]
    assert ids(await call(rm.cluster_applications, application_tags=["k1", "gateway"])) == sorted([a1, a2])
    assert ids(await call(rm.cluster_applications, application_types=["spark"])) == [a1]
    assert ids(await call(rm.cluster_applications, name="kernel-2")) == [a2]
    assert ids(await call(rm.cluster_applications, queue="default")) == sorted([a1, a2])
    assert len(ids(await call(rm.cluster_applications, limit=1))) == 1
    assert ids(await call(rm.cluster_applications, started_time_begin=str(t0))) == sorted([a1, a2])
    assert ids(await call(rm.cluster_applications, started_time_begin=str(t0 + 3600_000))) == []
    assert ids(await call(rm.cluster_applications, finished_time_begin="1")) == []

    app = (await call(rm.cluster_application, a1)).data["app"]
    assert app["id"] == a1 and app["user"] == "alice" and app["applicationTags"] == "gateway,k1"
    assert (await call(rm.cluster_application_state, a1)).data == {"state": "ACCEPTED"}
    attempts = (await call(rm.cluster_application_attempts, a1)).data["appAttempts"]["appAttempt"]
    assert attempts[0]["appAttemptId"].startswith("appattempt_") and attempts[0]["id"] == 1

    statuses.clear()
    first = await call(rm.cluster_application_kill, a1)
    assert statuses == [202] and first.data == {"state": "ACCEPTED"}
    for _ in range(100):
        statuses.clear()
        resp = await call(rm.cluster_application_kill, a1)
        if statuses == [200]:
            break
        assert statuses == [202]
        await asyncio.sleep(0.05)
    assert resp.data == {"state": "KILLED"}
    final = (await call(rm.cluster_application, a1)).data["app"]
    assert (final["state"], final["finalStatus"]) == ("KILLED", "KILLED")
    assert final["diagnostics"] == f"Application {a1} was killed by user dr.who"
    assert ids(await call(rm.cluster_applications, states=["KILLED"], final_status="KILLED")) == [a1]
    # queue= only returns apps still in the scheduler
    assert ids(await call(rm.cluster_applications, queue="default")) == [a2]

    with pytest.raises(APIError) as err:
        await call(rm.cluster_application, "application_00000_0099")
    assert "status: 404" in str(err.value)
    assert '"message":"java.lang.Exception: app with id: application_00000_0099 not found"' in str(err.value)
    with pytest.raises(APIError) as err:
        await call(rm.cluster_application_state, "application_invalid_12")
    assert "status: 400" in str(err.value)
    assert "java.lang.IllegalArgumentException: Invalid ApplicationId: application_invalid_12" in str(err.value)


async def test_errors_and_validation_texts(cluster, rest):
    api = rest(cluster.active_rm_url)
    r = await api.request("GET", "/ws/v1/cluster/apps/app_foo_0000")
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.json() == {"RemoteException": {
        "exception": "BadRequestException",
        "message": "java.lang.IllegalArgumentException: Invalid ApplicationId prefix: app_foo_0000. "
                   "The valid ApplicationId should start with prefix application",
        "javaClassName": "org.apache.hadoop.yarn.webapp.BadRequestException"}}
    r = await api.request("GET", "/ws/v1/cluster/apps/application_1_0001/appattempts")
    assert r.status_code == 404 and r.json()["RemoteException"]["exception"] == "NotFoundException"
    r = await api.request("GET", "/ws/v1/cluster/apps", params={"states": "running,bogus"})
    assert r.status_code == 400
    assert r.json()["RemoteException"]["message"] == (
        "java.lang.Exception: Invalid application-state bogus specified. It should be one of "
        "[NEW, NEW_SAVING, SUBMITTED, ACCEPTED, RUNNING, FINISHED, FAILED, KILLED]")
    for params, msg in [
        ({"limit": "0"}, "limit value must be greater then 0"),
        ({"limit": "x"}, "limit value must be a number!"),
        ({"startedTimeBegin": "-1"}, "startedTimeBegin must be greater than 0"),
        ({"startedTimeBegin": "5", "startedTimeEnd": "4"}, "startedTimeEnd must be greater than startTimeBegin"),
        ({"queue": "nope"}, "Unknown queue: nope"),
        ({"deSelects": "bogus"}, "Invalid deSelects string bogus specified. It should be one of "
                                 "[RESOURCE_REQUESTS, TIMEOUTS, APP_NODE_LABEL_EXPRESSION, "
                                 "AM_NODE_LABEL_EXPRESSION, RESOURCE_INFO]"),
    ]:
        r = await api.request("GET", "/ws/v1/cluster/apps", params=params)
        assert r.status_code == 400, params
        assert r.json()["RemoteException"]["message"] == "java.lang.Exception: " + msg
    # case-insensitive states, unknown parameters ignored, {"apps":null} when empty
    r = await api.request("GET", "/ws/v1/cluster/apps", params={"states": "running", "whatever": "1"})
    assert r.status_code == 200 and r.json() == {"apps": None}

    app_id = await api.submit()
    await api.wait_state(app_id, "ACCEPTED")
    r = await api.request("PUT", f"/ws/v1/cluster/apps/{app_id}/state", json={"state": "RUNNING"})
    assert r.status_code == 400
    assert r.json()["RemoteException"]["message"] == "java.lang.Exception: Only 'KILLED' is allowed as a target state."
    # lower-case finalStatus is Enum.valueOf's IllegalArgumentException (only once an app exists)
    r = await api.request("GET", "/ws/v1/cluster/apps", params={"finalStatus": "undefined"})
    assert r.status_code == 400 and r.json()["RemoteException"]["exception"] == "IllegalArgumentException"
    r = await api.request("GET", "/ws/v1/cluster/apps", params={"deSelects": "resourceRequests,timeouts"})
    app = r.json()["apps"]["app"][0]
    assert "resourceRequests" not in app and "timeouts" not in app and "resourceInfo" in app


async def test_cluster_endpoints(cluster, rest):
    api = rest(cluster.active_rm_url)
    info = (await api.request("GET", "/ws/v1/cluster/info")).json()["clusterInfo"]
    assert info["haState"] == "ACTIVE" and info["state"] == "STARTED" and info["id"] == info["startedOn"]
    assert (await api.request("GET", "/ws/v1/cluster")).json()["clusterInfo"]["id"] == info["id"]
    assert (await api.request("GET", "/ws/v1/cluster/cluster")).status_code == 200
    assert (await api.request("GET", "/cluster")).status_code == 200
    r = await api.request("GET", "/isActive")
    assert (r.status_code, r.text) == (200, "I am Active!")
    m = (await api.request("GET", "/ws/v1/cluster/metrics")).json()["clusterMetrics"]
    assert m["totalMB"] == 16384 and m["totalVirtualCores"] == 8 and m["activeNodes"] == 1
    sched = (await api.request("GET", "/ws/v1/cluster/scheduler")).json()["scheduler"]["schedulerInfo"]
    assert sched["type"] == "capacityScheduler" and sched["queueName"] == "root"
    leaf = sched["queues"]["queue"][0]
    assert leaf["queueName"] == "default" and leaf["users"] is None
    part = leaf["capacities"]["queueCapacitiesByPartition"][0]
    assert part["partitionName"] == "" and part["maxAMLimitPercentage"] == 10.0
    assert leaf["AMResourceLimit"] == {"memory": 2048, "vCores": 1}
    rm = await asyncio.to_thread(ResourceManager, service_endpoints=[cluster.active_rm_url])
    queue = await asyncio.to_thread(rm.cluster_scheduler_queue, "default")
    assert rm.cluster_queue_partition(queue, "")["absoluteUsedCapacity"] == 0.0
    new = (await api.request("POST", "/ws/v1/cluster/apps/new-application")).json()
    assert new["application-id"] == f"application_{info['id']}_0001"
    assert new["maximum-resource-capability"] == {"memory": 16384, "vCores": 8}
