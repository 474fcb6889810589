"""Every field of the app object: name, JSON type and presence by state (reference §1.5)."""

from __future__ import annotations

import asyncio

import pytest
import requests

from yarn_gateway.minicluster.rm.apps import AMSpec

ALL = {"NEW", "ACCEPTED", "ACCEPTED_AM", "RUNNING", "FINISHED"}
AM = {"ACCEPTED_AM", "RUNNING", "FINISHED"}
IN_SCHEDULER = {"ACCEPTED", "ACCEPTED_AM", "RUNNING"}

# (field, JSON type, states where it is present); any other field is a failure.
FIELDS: list[tuple[str, type, set[str]]] = [
    ("id", str, ALL), ("user", str, ALL), ("name", str, ALL), ("queue", str, ALL), ("state", str, ALL),
    ("finalStatus", str, ALL), ("progress", float, ALL), ("trackingUI", str, ALL),
    ("trackingUrl", str, {"RUNNING", "FINISHED"}), ("diagnostics", str, ALL), ("clusterId", int, ALL),
    ("applicationType", str, ALL), ("applicationTags", str, ALL), ("priority", int, ALL),
    ("startedTime", int, ALL), ("launchTime", int, ALL), ("finishedTime", int, ALL), ("elapsedTime", int, ALL),
    ("amContainerLogs", str, AM), ("amHostHttpAddress", str, AM), ("amRPCAddress", str, {"RUNNING", "FINISHED"}),
    ("masterNodeId", str, ALL), ("allocatedMB", int, ALL), ("allocatedVCores", int, ALL),
    ("reservedMB", int, ALL), ("reservedVCores", int, ALL), ("runningContainers", int, ALL),
    ("memorySeconds", int, ALL), ("vcoreSeconds", int, ALL), ("queueUsagePercentage", float, ALL),
    ("clusterUsagePercentage", float, ALL), ("resourceSecondsMap", dict, ALL), ("preemptedResourceMB", int, ALL),
    ("preemptedResourceVCores", int, ALL), ("numNonAMContainerPreempted", int, ALL),
    ("numAMContainerPreempted", int, ALL), ("preemptedMemorySeconds", int, ALL),
    ("preemptedVcoreSeconds", int, ALL), ("preemptedResourceSecondsMap", dict, ALL),
    ("resourceRequests", list, {"ACCEPTED"}), ("logAggregationStatus", str, ALL),
    ("unmanagedApplication", bool, ALL), ("appNodeLabelExpression", str, set()),
    ("amNodeLabelExpression", str, ALL), ("resourceInfo", dict, IN_SCHEDULER), ("timeouts", dict, ALL),
]

# Values that pin the state rules down (progress, trackingUI, usage, times).
EXPECTED = {
    "NEW": {"state": "NEW", "finalStatus": "UNDEFINED", "progress": 0.0, "trackingUI": "UNASSIGNED",
            "masterNodeId": "", "allocatedMB": 0, "runningContainers": 0, "launchTime": 0, "finishedTime": 0},
    "ACCEPTED": {"state": "ACCEPTED", "progress": 0.0, "trackingUI": "UNASSIGNED", "masterNodeId": "",
                 "allocatedMB": 0, "runningContainers": 0, "launchTime": 0},
    "ACCEPTED_AM": {"state": "ACCEPTED", "progress": 0.0, "trackingUI": "UNASSIGNED", "allocatedMB": 1024,
                    "allocatedVCores": 1, "runningContainers": 1},
    "RUNNING": {"state": "RUNNING", "finalStatus": "UNDEFINED", "progress": 10.0, "trackingUI": "ApplicationMaster",
                "amRPCAddress": "localhost:4242", "diagnostics": "", "runningContainers": 1, "finishedTime": 0},
    "FINISHED": {"state": "FINISHED", "finalStatus": "SUCCEEDED", "progress": 100.0, "trackingUI": "History",
                 "allocatedMB": -1, "allocatedVCores": -1, "reservedMB": -1, "reservedVCores": -1,
                 "runningContainers": -1, "queueUsagePercentage": 0.0, "diagnostics": "done SUCCEEDED"},
}


def check(app: dict, state: str) -> None:
    expected_names = {name for name, _, states in FIELDS if state in states}
    assert set(app) == expected_names, (state, set(app) ^ expected_names)
    for name, typ, _ in FIELDS:
        if name in app:
            assert type(app[name]) is typ, (state, name, app[name])
    for name, value in EXPECTED[state].items():
        assert app[name] == value, (state, name, app[name])


async def test_app_object_fields_by_state(make_cluster, rest, fake_am, wait):
    # Hour-long heartbeat: AM allocation only when the test calls heartbeat().
    mc = await make_cluster(heartbeat_interval=3600)
    api = rest(mc.active_rm_url)
    core = mc.core
    assert core is not None

    new_id = (await api.request("POST", "/ws/v1/cluster/apps/new-application")).json()["application-id"]
    core.submit(new_id, user="carol", name="n", queue="default", app_type="SPARK", tags=[], priority=0,
                max_attempts=1, memory=1024, vcores=1, spec=AMSpec(command="/bin/true"), dispatch=False)
    check(await api.app(new_id), "NEW")

    am = fake_am(api, mc)
    app_id = await am.submit(tags=["T1"])
    app = await api.wait_state(app_id, "ACCEPTED")
    check(app, "ACCEPTED")
    assert app["resourceRequests"][0]["capability"] == {"memory": 1024, "virtualCores": 1}
    assert app["applicationTags"] == "t1" and app["clusterId"] == int(app_id.split("_")[1])
    assert "Application is Activated, waiting for resources to be assigned for AM." in app["diagnostics"]

    core.heartbeat()
    await wait(lambda: mc.apps[app_id].attempts[-1].launched, what="AM container launch")
    app = await api.app(app_id)
    check(app, "ACCEPTED_AM")
    node = mc.node.http_address
    assert app["amHostHttpAddress"] == node
    cid = mc.apps[app_id].attempts[-1].container_id
    assert app["amContainerLogs"] == f"http://{node}/node/containerlogs/{cid}/alice"
    assert app["diagnostics"].endswith("AM container is launched, waiting for AM container to Register with RM")
    assert app["launchTime"] > 0

    am.allow_register()
    app = await api.wait_state(app_id, "RUNNING")
    check(app, "RUNNING")
    assert app["trackingUrl"] == f"{mc.active_rm_url}/proxy/{app_id}/"

    am.allow_unregister()
    await wait(lambda: mc.apps[app_id].state == "FINISHED", what="FINISHED")
    app = await api.app(app_id)
    check(app, "FINISHED")
    assert app["finishedTime"] >= app["startedTime"] > 0
    assert app["elapsedTime"] == app["finishedTime"] - app["startedTime"]
    assert app["trackingUrl"] == f"{mc.active_rm_url}/proxy/{app_id}/"
    r = await api.request("GET", f"/ws/v1/cluster/apps/{app_id}/state")
    assert r.json() == {"state": "FINISHED"}
    # killing a finished app: 200 with its own final state, not KILLED
    r = await api.request("PUT", f"/ws/v1/cluster/apps/{app_id}/state", json={"state": "KILLED"})
    assert (r.status_code, r.json()) == (200, {"state": "FINISHED"})


@pytest.mark.parametrize("mode,final", [("SUCCEEDED", "SUCCEEDED"), ("FAILED", "FAILED")])
async def test_am_unregister_sets_final_status(cluster, rest, fake_am, wait, mode, final):
    api = rest(cluster.active_rm_url)
    am = fake_am(api, cluster, mode=mode)
    am.allow_register()
    am.allow_unregister()
    app_id = await am.submit()
    # the app object says FINISHED from FINISHING on; the raw state waits for the container exit
    await wait(lambda: cluster.apps.get(app_id) is not None and cluster.apps[app_id].state == "FINISHED")
    app = await api.app(app_id)
    assert (app["state"], app["finalStatus"], app["diagnostics"]) == ("FINISHED", final, f"done {mode}")
    r = await asyncio.to_thread(requests.get, app["amContainerLogs"] + "/stdout", timeout=10)
    assert r.status_code == 200 and "registered RUNNING" in r.text and "unregistered FINAL_SAVING" in r.text
    r = await asyncio.to_thread(requests.get, app["amContainerLogs"] + "/stderr", params={"start": "-4"}, timeout=10)
    assert r.text == "bye\n"
