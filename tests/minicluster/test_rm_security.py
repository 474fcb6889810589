"""Pseudo auth + hadoop.auth cookie, doAs/proxyuser rules, kill ACLs, containers as the app user, SPNEGO."""

from __future__ import annotations

import asyncio
import os
import pwd
import re

import pytest
import requests
from yarn_api_client.auth import SimpleAuth
from yarn_api_client.errors import APIError
from yarn_api_client.resource_manager import ResourceManager


async def test_user_name_sets_signed_cookie_that_identifies(cluster, rest):
    api = rest(cluster.active_rm_url)
    r = await api.request("GET", "/ws/v1/cluster/info", params={"user.name": "alice"})
    cookie = r.headers["Set-Cookie"]
    assert re.fullmatch(r'hadoop\.auth="u=alice&p=alice&t=simple-dt&e=\d+&s=[A-Za-z0-9+/=]+"; Path=/; HttpOnly',
                        cookie), cookie
    value = r.cookies["hadoop.auth"]
    r = await api.request("GET", "/ws/v1/cluster/info")
    assert "Set-Cookie" not in r.headers  # anonymous (dr.who) gets no cookie
    # the cookie alone identifies alice: submit without user.name
    app_id = await api.submit(user=None)
    assert (await api.app(app_id))["user"] == "dr.who"
    new = await api.request("POST", "/ws/v1/cluster/apps/new-application", cookies={"hadoop.auth": value})
    body = {"application-id": new.json()["application-id"], "am-container-spec": {"commands": {"command": "/bin/true"}}}
    r = await api.request("POST", "/ws/v1/cluster/apps", json=body, cookies={"hadoop.auth": value})
    assert r.status_code == 202
    assert (await api.app(body["application-id"]))["user"] == "alice"
    forged = value.replace("u=alice", "u=root")
    new = await api.request("POST", "/ws/v1/cluster/apps/new-application")
    body["application-id"] = new.json()["application-id"]
    r = await api.request("POST", "/ws/v1/cluster/apps", json=body, cookies={"hadoop.auth": forged})
    assert (await api.app(body["application-id"]))["user"] == "dr.who"
    # yarn-api-client's SimpleAuth needs the cookie and then works
    rm = await asyncio.to_thread(ResourceManager, service_endpoints=[cluster.active_rm_url], auth=SimpleAuth("alice"))
    assert (await asyncio.to_thread(rm.cluster_application, app_id)).data["app"]["id"] == app_id


async def test_do_as_allowed_and_refused(make_cluster, rest):
    mc = await make_cluster(proxyusers={
        "svc": {"hosts": "*", "users": "alice"},
        "svcg": {"hosts": "127.0.0.1", "groups": "root"},
        "svch": {"hosts": "10.1.2.3,192.168.0.0/16", "users": "*"},
        "svcn": {"hosts": "localhost", "users": "*"},
    })
    api = rest(mc.active_rm_url)
    app_id = await api.submit(user="svc", params={"doAs": "alice"})
    assert (await api.app(app_id))["user"] == "alice"
    app_id = await api.submit(user="svcg", params={"doas": "root"})  # root's group is root
    assert (await api.app(app_id))["user"] == "root"
    app_id = await api.submit(user="svcn", params={"doAs": "bob"})  # "localhost" resolves to 127.0.0.1
    assert (await api.app(app_id))["user"] == "bob"
    for caller, target, msg in [
        ("svc", "bob", "User: svc is not allowed to impersonate bob"),
        ("svcg", "alice", "User: svcg is not allowed to impersonate alice"),
        ("nobody-rule", "alice", "User: nobody-rule is not allowed to impersonate alice"),
        ("svch", "alice", "Unauthorized connection for super-user: svch from IP 127.0.0.1"),
    ]:
        r = await api.request("POST", "/ws/v1/cluster/apps/new-application",
                              params={"user.name": caller, "doAs": target})
        assert r.status_code == 403, (caller, r.text)
        assert r.json() == {"RemoteException": {
            "exception": "AuthorizationException", "message": msg,
            "javaClassName": "org.apache.hadoop.security.authorize.AuthorizationException"}}


async def test_kill_acl(make_cluster, rest):
    mc = await make_cluster(acl_enable=True, admin_acl="yarnadm")
    api = rest(mc.active_rm_url)
    a1 = await api.submit(user="alice")
    a2 = await api.submit(user="alice")
    for who in ("bob", None):
        params = {"user.name": who} if who else {}
        r = await api.request("PUT", f"/ws/v1/cluster/apps/{a1}/state", params=params, json={"state": "KILLED"})
        assert r.status_code == 403
        assert r.text == f"Unauthorized attempt to kill appid {a1} by remote user {who or 'dr.who'}"
    rm_bob = await asyncio.to_thread(ResourceManager, service_endpoints=[mc.active_rm_url], auth=SimpleAuth("bob"))
    with pytest.raises(APIError, match="status: 403"):
        await asyncio.to_thread(rm_bob.cluster_application_kill, a1)
    r = await api.request("PUT", f"/ws/v1/cluster/apps/{a1}/state", params={"user.name": "alice"},
                          json={"state": "KILLED"})
    assert r.status_code == 202
    r = await api.request("PUT", f"/ws/v1/cluster/apps/{a2}/state", params={"user.name": "yarnadm"},
                          json={"state": "KILLED", "diagnostics": "cleanup"})
    assert r.status_code == 202
    app = await api.wait_state(a2, "KILLED")
    assert app["diagnostics"] == f"Application {a2} was killed by user yarnadm with diagnostic message: cleanup"


async def test_acl_disabled_lets_anyone_kill(cluster, rest):
    api = rest(cluster.active_rm_url)
    app_id = await api.submit(user="alice")
    r = await api.request("PUT", f"/ws/v1/cluster/apps/{app_id}/state", json={"state": "KILLED"})
    assert r.status_code == 202
    await api.wait_state(app_id, "KILLED")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
async def test_container_runs_as_app_user(cluster, rest, fake_am, wait):
    api = rest(cluster.active_rm_url)
    am = fake_am(api, cluster, mode="SUCCEEDED")
    am.allow_register()
    am.allow_unregister()
    app_id = await am.submit(user="mcuser1", env={"FOO": "bar baz"})
    await wait(lambda: cluster.apps[app_id].state == "FINISHED", what="FINISHED")
    app = await api.app(app_id)
    out = (await asyncio.to_thread(requests.get, app["amContainerLogs"] + "/stdout", timeout=10)).text
    assert "unix-user mcuser1 env-user mcuser1" in out
    cid = cluster.apps[app_id].attempts[-1].container_id
    work = os.path.join(cluster.base_dir, "nm-local-dir", "usercache", "mcuser1", "appcache", app_id, cid)
    assert f"cwd {work}" in out
    uid = pwd.getpwnam("mcuser1").pw_uid
    assert os.stat(work).st_uid == uid and os.stat(os.path.join(work, "am.py")).st_uid == uid
    assert os.stat(os.path.join(cluster.base_dir, "nm-logs", app_id, cid, "stdout")).st_uid == uid


@pytest.mark.kerberos
async def test_spnego_secure_rm(make_cluster, monkeypatch):
    k5test = pytest.importorskip("k5test")
    from requests_kerberos import REQUIRED, HTTPKerberosAuth

    realm = await asyncio.to_thread(
        k5test.K5Realm, portbase=61350,
        krb5_conf={"libdefaults": {"rdns": "false", "dns_canonicalize_hostname": "false"}})
    try:
        for key, value in realm.env.items():
            monkeypatch.setenv(key, value)
        keytab = os.path.join(realm.tmpdir, "http.keytab")
        await asyncio.to_thread(realm.addprinc, "HTTP/localhost@KRBTEST.COM")
        await asyncio.to_thread(realm.extract_keytab, "HTTP/localhost@KRBTEST.COM", keytab)
        mc = await make_cluster(secure=True, http_keytab=keytab, http_principal="HTTP/localhost@KRBTEST.COM")
        url = mc.active_rm_url + "/ws/v1/cluster/info"
        assert url.startswith("http://localhost:")

        r = await asyncio.to_thread(requests.get, url, timeout=10)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == "Negotiate"
        assert r.headers["Set-Cookie"] == "hadoop.auth=; Path=/; HttpOnly"
        assert r.headers["Content-Type"].startswith("text/html") and "Authentication required" in r.text
        r = await asyncio.to_thread(requests.get, url, params={"user.name": "alice"}, timeout=10)
        assert r.status_code == 401  # pseudo auth means nothing on a secure RM

        session = requests.Session()
        session.auth = HTTPKerberosAuth(mutual_authentication=REQUIRED)
        r = await asyncio.to_thread(session.get, url, timeout=10)
        assert r.status_code == 200 and r.json()["clusterInfo"]["haState"] == "ACTIVE"
        assert r.headers["WWW-Authenticate"].startswith("Negotiate ")
        assert re.match(r'hadoop\.auth="u=user&p=user@KRBTEST\.COM&t=kerberos-dt&', r.headers["Set-Cookie"])
        cookie = session.cookies["hadoop.auth"]

        # the cookie skips negotiation: a plain request with it gets 200 and no challenge
        r = await asyncio.to_thread(requests.get, url, cookies={"hadoop.auth": cookie}, timeout=10)
        assert r.status_code == 200 and "WWW-Authenticate" not in r.headers
        r = await asyncio.to_thread(requests.get, url, cookies={"hadoop.auth": cookie.replace("u=user", "u=root")},
                                    timeout=10)
        assert r.status_code == 401

        rm = await asyncio.to_thread(ResourceManager, service_endpoints=[mc.active_rm_url],
                                     auth=HTTPKerberosAuth(mutual_authentication=REQUIRED))
        info = (await asyncio.to_thread(rm.cluster_information)).data["clusterInfo"]
        assert info["state"] == "STARTED"
    finally:
        await asyncio.to_thread(realm.stop)
