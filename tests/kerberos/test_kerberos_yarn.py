"""Kerberos end to end on a real Kerberized YARN (SPNEGO on the RM, tickets on RPC, Hadoop's proxyuser rules).

Acceptance 2 (real jupyter_server + shipped renewer → YARN kernel as alice), 4 (proxyuser
refusal → 403, no application left) and 5 (every RM call with SPNEGO, kill included;
a wrong gateway keytab → named errors).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helpers.gwclient import GatewayClient
from helpers.jupyter_server import JupyterServer
from helpers.yarn_cluster import YarnCluster
from helpers.yarn_specs import NO_EXECUTORS
from yarn_gateway.kerberos import KerberosTicketError
from yarn_gateway.yarn.rm_client import RMError

pytestmark = [pytest.mark.kerberos, pytest.mark.e2e, pytest.mark.jvm]

SPEC = "spark_python_yarn_cluster"


class Negotiate(GatewayClient):
    def __init__(self, base_url: str, krb: Any, ccache: str) -> None:
        super().__init__(base_url)
        self.krb, self.ccache = krb, ccache

    def headers(self, token: Any = None) -> dict[str, str]:
        return {"Authorization": self.krb.negotiate_header(self.ccache)}


async def test_jupyter_server_with_renewer_runs_yarn_kernel_as_alice(make_gateway: Any, krb: Any, secure_config: Any,
                                                                     secure_cluster: YarnCluster,
                                                                     tmp_path: Any) -> None:
    mc = secure_cluster
    gw = await make_gateway(secure_config(mc))
    alice_cc = krb.user_ccache("alice")
    js = JupyterServer(f"http://localhost:{gw.port}", "", str(tmp_path / "desktop"), extra_args=[
        "--GatewayClient.gateway_token_renewer_class=yarn_gateway_client.KerberosTokenRenewer",
        "--GatewayClient.auth_scheme=Negotiate"],
        extra_env={"KRB5CCNAME": f"FILE:{alice_cc}", "KRB5_CONFIG": krb.krb5_conf})
    await js.start()
    try:
        desk = GatewayClient(js.url, js.token)
        specs = await desk.request("GET", "api/kernelspecs")
        assert specs.code == 200 and SPEC in specs.body["kernelspecs"], (specs.code, js.read_log()[-2000:])
        r = await desk.request("POST", "api/kernels", {"name": SPEC}, timeout=240)
        assert r.code == 201, (r.body, js.read_log()[-3000:])
        kid = r.body["id"]
        rec = gw.registry.kernels[kid]
        assert rec.owner == "alice"
        app_id = rec.km.provisioner.app_id
        app = await asyncio.to_thread(mc.app_json, app_id)
        assert app["user"] == "alice"
        ws = await desk.connect(kid)
        res = await ws.execute("sc.sparkUser()", timeout=180)
        assert res.status == "ok", res.error
        assert res.text == "'alice'"
        ws.close()
        # Kill (DELETE) goes through the gateway's SPNEGO RM client too.
        assert (await desk.request("DELETE", f"api/kernels/{kid}")).code == 204
        final = await asyncio.to_thread(mc.wait_app, app_id, {"FINISHED", "FAILED", "KILLED"})
        assert final["state"] in ("FINISHED", "KILLED")
        # The RM client authenticated with the gateway's ticket (the process default cache does not exist).
        rm = gw.registry.yarn_services.rm()
        assert (await rm.app(app_id))["id"] == app_id
        killed = await rm.kill(app_id)  # a kill call through SPNEGO on a final app is accepted
        assert killed in ("FINISHED", "KILLED")
    finally:
        await js.stop()


async def test_proxyuser_refused_is_403_without_leftovers(make_gateway: Any, krb: Any, secure_config: Any,
                                                          secure_cluster: YarnCluster) -> None:
    mc = secure_cluster
    gw = await make_gateway(secure_config(mc))
    before = {a["id"] for a in await asyncio.to_thread(mc.apps_of)}
    carol = Negotiate(f"http://localhost:{gw.port}/", krb, krb.user_ccache("carol"))
    r = await carol.request("POST", "api/kernels", {"name": SPEC}, timeout=240)
    assert r.code == 403, r.body
    assert "is not allowed to impersonate carol" in r.body["message"]
    assert "yarngw" in r.body["message"]
    after = {a["id"] for a in await asyncio.to_thread(mc.apps_of)}
    assert after == before  # no YARN application left (none was even created)
    assert not gw.registry.kernels


async def test_wrong_gateway_keytab_is_a_named_error(make_gateway: Any, krb: Any, secure_config: Any,
                                                     secure_cluster: YarnCluster) -> None:
    mc = secure_cluster
    p = "yarngw/wrongkt"
    stale = krb.keytab_for(p, "wrongkt.keytab")
    krb.realm.run_kadminl(f"cpw -randkey {krb.princ(p)}")
    gw = await make_gateway(secure_config(mc, keytab=stale, principal=p))
    alice = Negotiate(f"http://localhost:{gw.port}/", krb, krb.user_ccache("alice"))
    health = await alice.request("GET", "api/health")
    assert health.code == 503 and health.body["status"] == "failing"
    check = health.body["checks"][0]
    assert check["name"] == "kerberos" and check["ok"] is False and "kinit" in check["error"]
    before = {a["id"] for a in await asyncio.to_thread(mc.apps_of)}
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    r = await alice.request("POST", "api/kernels", {"name": SPEC})
    assert r.code == 503, r.body
    assert loop.time() - t0 < 10  # at once, not a launch timeout
    assert r.body["reason"] == "Kerberos ticket unavailable"
    assert krb.princ(p) in r.body["message"] and stale in r.body["message"]
    assert {a["id"] for a in await asyncio.to_thread(mc.apps_of)} == before
    # Direct RM calls (state, kill) fail with the same named error, not a hang or a bare 401.
    named = f"no valid Kerberos ticket for principal '{krb.princ(p)}'"
    with pytest.raises((RMError, KerberosTicketError), match=named):
        await gw.registry.yarn_services.rm().kill("application_1_0001", wait=0)


async def test_health_reports_the_ticket(make_gateway: Any, krb: Any, secure_config: Any,
                                         secure_cluster: YarnCluster) -> None:
    gw = await make_gateway(secure_config(secure_cluster))
    alice = Negotiate(f"http://localhost:{gw.port}/", krb, krb.user_ccache("alice"))
    r = await alice.request("GET", "api/health")
    assert r.code == 200 and r.body["status"] == "ok"
    checks = {c["name"]: c for c in r.body["checks"]}
    assert set(checks) == {"kerberos", "resourcemanager", "session_store"}, r.body
    assert checks["resourcemanager"]["ok"]  # probed with SPNEGO from the gateway's ticket
    check = checks["kerberos"]
    assert check["principal"] == krb.princ("yarngw/localhost") and check["expires"].endswith("Z")
    assert check["seconds_left"] > 60


async def test_rm_rest_refuses_the_unauthenticated_and_the_gateway_uses_spnego(make_gateway: Any, krb: Any,
                                                                              secure_config: Any,
                                                                              secure_cluster: YarnCluster) -> None:
    import requests

    # The RM's own SPNEGO filter (Hadoop's AuthenticationFilter), not anything of ours, answers 401.
    r = await asyncio.to_thread(requests.get, secure_cluster.rm_url + "/ws/v1/cluster/apps", timeout=10)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Negotiate", (r.status_code, r.headers)
    assert not r.cookies.get("hadoop.auth")  # Hadoop clears it (an empty hadoop.auth=) on a 401
    r = await asyncio.to_thread(requests.get, secure_cluster.rm_url + "/ws/v1/cluster/apps",
                                params={"user.name": "yarngw"}, timeout=10)
    assert r.status_code == 401  # simple auth's ?user.name= is not accepted on a Kerberized RM
    gw = await make_gateway(secure_config(secure_cluster))
    alice = Negotiate(f"http://localhost:{gw.port}/", krb, krb.user_ccache("alice"))
    kid = await alice.start_kernel(SPEC, env=NO_EXECUTORS)
    app_id = gw.registry.kernels[kid].km.provisioner.app_id
    # The gateway read the app's state through SPNEGO with its own keytab ticket (yarngw), and YARN
    # ran it as the proxy user; the real Hadoop CLI, with the gateway's ticket, agrees.
    assert (await gw.registry.yarn_services.rm().app(app_id))["user"] == "alice"
    env = secure_cluster.cluster.client_env()
    env.update(KRB5CCNAME=f"FILE:{gw.app.kerberos_login.ccache_path}")
    report = await asyncio.to_thread(secure_cluster.application_status, app_id, env)
    # (lazy Spark: ACCEPTED until the driver's SparkContext registers)
    assert report["User"] == "alice" and report["State"] in ("ACCEPTED", "RUNNING"), report
    assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204


async def test_rm_without_spnego_is_rm_refused(secure_cluster: YarnCluster) -> None:
    """A Kerberized RM reached without SPNEGO: a typed refusal naming the setting, not 'unavailable'."""
    from yarn_gateway.yarn.rm_client import RMClient, RMRefused

    rm = RMClient([secure_cluster.rm_url], timeout=10)
    with pytest.raises(RMRefused) as info:
        await rm.app("application_1000000000000_0001")
    assert info.value.status == 401
    assert "rm_auth" in str(info.value) and secure_cluster.rm_url in str(info.value)
