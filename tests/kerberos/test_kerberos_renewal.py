"""Acceptance 1: with 30 s tickets the gateway keeps working for 3 minutes without any external kinit.

The gateway principal gets ``maxlife 30 s`` and ``maxrenewlife 60 s`` in the KDC, so the
first ticket dies after 30 s and cannot be renewed past 60 s: the gateway must renew it
and then log in again from its keytab, repeatedly. Local kernels are started all along
(the gateway's ticket is checked valid at each), and at the end a YARN kernel is launched
on the real Kerberized YARN: spark-submit and the RM's SPNEGO accept the latest ticket.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from helpers.gwclient import GatewayClient

pytestmark = [pytest.mark.kerberos, pytest.mark.e2e, pytest.mark.jvm]

DURATION = 180.0


class Negotiate(GatewayClient):
    def __init__(self, base_url: str, krb: Any, ccache: str) -> None:
        super().__init__(base_url)
        self.krb, self.ccache = krb, ccache

    def headers(self, token: Any = None) -> dict[str, str]:
        return {"Authorization": self.krb.negotiate_header(self.ccache)}


@pytest.mark.timeout(DURATION + 240)
async def test_short_tickets_for_three_minutes(make_gateway: Any, krb: Any, secure_cluster: Any,
                                               secure_config: Any) -> None:
    p = "yarngw/shortlived"
    kt = krb.keytab_for(p, "shortlived.keytab")
    krb.realm.run_kadminl(f"modprinc -maxlife 30sec -maxrenewlife 60sec {krb.princ(p)}")
    gw = await make_gateway(secure_config(secure_cluster, keytab=kt, principal=p))
    login = gw.app.kerberos_login
    first = login.ticket
    assert first is not None and first.end - first.start <= 30 and first.renew_till - first.start <= 60
    alice = Negotiate(f"http://localhost:{gw.port}/", krb, krb.user_ccache("alice"))
    t0 = time.time()
    launches = 0
    ends = {first.end}
    while time.time() - t0 < DURATION:
        assert login.valid(), f"ticket lapsed after {time.time() - t0:.0f} s: {login.health()}"
        health = await alice.request("GET", "api/health")
        assert health.code == 200 and health.body["checks"][0]["seconds_left"] > 0, health.body
        kid = await alice.start_kernel("python_local")
        ws = await alice.connect(kid)
        assert (await ws.execute("6*7")).text == "42"
        ws.close()
        assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
        launches += 1
        ends.add(login.ticket.end)
        await asyncio.sleep(8)
    assert launches >= 12
    assert login.refreshes["renew"] >= 1 and login.refreshes["login"] >= 3, login.refreshes
    assert len(ends) >= 5 and login.ticket.start > first.renew_till  # tickets from well after the first died

    # The freshest ticket does the real work: spark-submit (ticket from the cache) and SPNEGO RM calls.
    kid = await alice.start_kernel("spark_python_yarn_cluster")
    rec = gw.registry.kernels[kid]
    app_id = rec.km.provisioner.app_id
    assert (await asyncio.to_thread(secure_cluster.app_json, app_id))["user"] == "alice"
    ws = await alice.connect(kid)
    assert (await ws.execute("sc.sparkUser()", timeout=180)).text == "'alice'"
    ws.close()
    assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
