"""/metrics and /api/health with the gateway's keytab login (real KDC): ticket expiry gauge, kerberos check."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.kerberos


async def _samples(gw: Any) -> dict[str, float]:
    r = await gw.client("alice").request("GET", "metrics")
    assert r.code == 200
    return {s.name: s.value for f in text_string_to_metric_families(r.body) for s in f.samples if not s.labels}


async def test_ticket_expiry_gauge_and_health(krb: Any, make_gateway: Any, tmp_path: Any) -> None:
    cfg = krb.gateway_login_config()
    cfg["YarnServices"] = {"hadoop_conf_dir": str(tmp_path)}
    gw = await make_gateway(cfg)
    ticket = gw.app.kerberos_login.ticket
    assert ticket is not None
    expiry = (await _samples(gw)).get("yarn_gateway_kerberos_ticket_expiry_seconds")
    assert expiry is not None and abs(expiry - ticket.remaining()) < 30 and expiry > 3600
    r = await gw.client("alice").request("GET", "api/health")
    assert r.code == 200, r.body
    assert [c["name"] for c in r.body["checks"]] == ["kerberos", "session_store"]

    # Without a keytab login there is no ticket gauge at all.
    plain = await make_gateway({"YarnServices": {"hadoop_conf_dir": str(tmp_path)}})
    assert not [k for k in await _samples(plain) if k.startswith("yarn_gateway_kerberos")]
