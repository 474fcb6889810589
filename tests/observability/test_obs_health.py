"""/api/health readiness: only configured checks appear; an unreachable RM or store answers 503."""

from __future__ import annotations

import shutil
import socket
from typing import Any

from obs_support import scrape

from helpers.gwclient import GatewayClient


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


async def test_only_configured_checks(make_gateway: Any, tmp_path: Any) -> None:
    gw = await make_gateway({"YarnServices": {"hadoop_conf_dir": str(tmp_path)}})
    r = await gw.client("alice").request("GET", "api/health")
    assert r.code == 200, r.body
    assert [c["name"] for c in r.body["checks"]] == ["session_store"]  # no RM, no keytab configured
    assert r.body["checks"][0] == {"name": "session_store", "ok": True, "store": "directory"}
    assert (await GatewayClient(gw.url).request("GET", "api/health")).code == 401

    none = await make_gateway({"YarnServices": {"hadoop_conf_dir": str(tmp_path)},
                               "SessionKeeper": {"store": "none"}})
    r = await none.client("alice").request("GET", "api/health")
    assert r.code == 200 and r.body == {"status": "ok", "checks": []}


async def test_unreachable_rm_is_503_and_cached(make_gateway: Any, tmp_path: Any) -> None:
    port = _closed_port()
    gw = await make_gateway({"YarnServices": {"rm_endpoints": [f"http://127.0.0.1:{port}"], "rm_timeout": 5.0},
                             "YarnGatewayApp": {"health_cache_seconds": 60.0}})
    r = await gw.client("alice").request("GET", "api/health")
    assert r.code == 503, r.body
    checks = {c["name"]: c for c in r.body["checks"]}
    assert set(checks) == {"resourcemanager", "session_store"}
    assert checks["resourcemanager"]["ok"] is False and f"127.0.0.1:{port}" in checks["resourcemanager"]["error"]
    assert checks["session_store"]["ok"] is True
    probe = await GatewayClient(gw.url).request("GET", "healthz")  # public: the status only
    assert probe.code == 503 and probe.body == {"status": "failing"}
    # The failed probe was counted as an RM error once, then reused from the cache.
    m = await scrape(gw)
    errors = [v for (name, labels), v in m.items()
              if name == "yarn_gateway_rm_request_errors_total" and ("method", "cluster_information") in labels]
    assert sum(errors) == 1, m


async def test_unreadable_store_is_503(make_gateway: Any, tmp_path: Any) -> None:
    store_dir = tmp_path / "sessions"
    gw = await make_gateway({"YarnServices": {"hadoop_conf_dir": str(tmp_path)},
                             "DirectoryStore": {"directory": str(store_dir)}})
    r = await gw.client("alice").request("GET", "api/health")
    assert r.code == 200, r.body
    # The store breaks while the gateway runs: its directory is replaced by a file.
    shutil.rmtree(store_dir)
    store_dir.write_text("not a directory")
    r = await gw.client("alice").request("GET", "api/health")
    assert r.code == 503, r.body
    (check,) = [c for c in r.body["checks"] if c["name"] == "session_store"]
    assert check["ok"] is False and "StoreUnusable" in check["error"]
    assert f"{store_dir} is not a directory" in check["error"]
    # Repaired, it is healthy again.
    store_dir.unlink()
    store_dir.mkdir(mode=0o700)
    r = await gw.client("alice").request("GET", "api/health")
    assert r.code == 200, r.body
