"""HA pair: the standby redirects (307) except the exempt pages; failover keeps apps and ids."""

from __future__ import annotations

import asyncio

import requests
from yarn_api_client.resource_manager import ResourceManager

from yarn_gateway.minicluster.hadoop_conf import load_hadoop_conf, rm_webapp_urls


async def test_standby_redirects_and_info(make_cluster, rest):
    mc = await make_cluster(ha=True)
    active, standby = mc.active_rm_url, mc.standby_rm_url
    assert mc.rm_urls == [active, standby]
    assert rm_webapp_urls(load_hadoop_conf(mc.conf_dir)) == mc.rm_urls
    sb = rest(standby)
    r = await sb.request("GET", "/ws/v1/cluster/apps?states=RUNNING&x=<a>", allow_redirects=False)
    assert r.status_code == 307
    assert r.headers["Location"] == active + "/ws/v1/cluster/apps?states=RUNNING&x=%3Ca%3E"
    assert r.text == "This is standby RM. The redirect url is: /ws/v1/cluster/apps?states=RUNNING&amp;x=%3Ca%3E"
    r = await sb.request("GET", "/ws/v1/cluster/info", allow_redirects=False)
    assert r.status_code == 200 and r.json()["clusterInfo"]["haState"] == "STANDBY"
    assert r.json()["clusterInfo"]["haZooKeeperConnectionState"] == "CONNECTED"
    r = await sb.request("GET", "/isActive")
    assert (r.status_code, r.text) == (405, "I am not Active!")
    r = await sb.request("GET", "/ws/v1/cluster/cluster", allow_redirects=False)
    assert r.status_code == 307
    r = await sb.request("PUT", "/ws/v1/cluster/apps/application_1_0001/state", json={"state": "KILLED"},
                         allow_redirects=False)
    assert r.status_code == 307 and r.headers["Location"] == active + "/ws/v1/cluster/apps/application_1_0001/state"


async def test_yarn_api_client_through_standby_and_failover(make_cluster, rest):
    mc = await make_cluster(ha=True)
    active, standby = mc.active_rm_url, mc.standby_rm_url
    rm = await asyncio.to_thread(ResourceManager, service_endpoints=[standby, active])
    # the standby's 307 is followed to the active during the probe, so the standby is picked
    assert rm.get_active_endpoint() == standby
    app_id = await rest(standby).submit()  # POSTs followed through 307 too
    data = (await asyncio.to_thread(rm.cluster_application, app_id)).data["app"]
    assert data["id"] == app_id

    assert mc.failover() == "rm2"
    assert (mc.active_rm_url, mc.standby_rm_url) == (standby, active)
    r = await asyncio.to_thread(requests.get, active + "/isActive", timeout=5)
    assert r.status_code == 405
    info = (await asyncio.to_thread(rm.cluster_information)).data["clusterInfo"]
    assert info["haState"] == "ACTIVE"
    apps = (await asyncio.to_thread(rm.cluster_applications)).data["apps"]["app"]
    assert [a["id"] for a in apps] == [app_id]
    state = (await asyncio.to_thread(rm.cluster_application_state, app_id)).data["state"]
    assert state == "ACCEPTED"
    new_id = await rest(active).submit()  # via the new standby, redirected to rm2
    assert new_id.split("_")[1] == str(info["id"]) and new_id != app_id
    await asyncio.to_thread(rm.cluster_application_kill, app_id)
    await rest(mc.active_rm_url).wait_state(app_id, "KILLED")


async def test_failover_endpoint_needs_admin(make_cluster, rest):
    mc = await make_cluster(ha=True)
    api = rest(mc.standby_rm_url)
    r = await api.request("POST", "/ws/v1/minicluster/failover", params={"user.name": "bob"})
    assert r.status_code == 403
    with open(mc.admin_token_file) as f:
        token = f.read()
    r = await api.request("POST", "/ws/v1/minicluster/failover", headers={"X-Minicluster-Admin-Token": token})
    assert (r.status_code, r.json()) == (200, {"active": "rm2"})
    assert mc.active_rm_url == mc.rm_urls[1]
