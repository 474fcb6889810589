"""Issue 7: two gateways share a ZooKeeper store (active/active); one dies, the other carries on (real YARN)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from persist_support import NO_EXECUTORS, app_of_kernel, states, wait_final

from helpers.gateway_fixtures import TOKENS
from helpers.gateway_process import GatewayProcess
from helpers.gwclient import GatewayClient

pytestmark = [pytest.mark.e2e, pytest.mark.jvm, pytest.mark.zookeeper]
SPEC = "spark_python_yarn_cluster"


@pytest.mark.timeout(600)  # two JVM kernels on a shared 2-core machine
async def test_two_gateways_share_kernels_through_zookeeper(cluster: Any, yarn_config: dict[str, Any],
                                                            zookeeper: Any, tmp_path: Any, token_file: str) -> None:
    cfg = dict(yarn_config)
    cfg.pop("DirectoryStore")
    cfg["SessionKeeper"] = {"store": "zookeeper"}
    creds = tmp_path / "zk-credentials"  # the nodes (every kernel's key) are the gateways' only
    creds.write_text("yarngw:ha-test-secret-0123\n")
    os.chmod(creds, 0o600)
    # Both gateways authenticate records with one key: the first to start generates it.
    cfg["ZooKeeperStore"] = {"hosts": zookeeper.hosts, "root": "/yarn-gateway/test", "acl_scheme": "digest",
                             "digest_credentials_file": str(creds), "record_key_file": str(tmp_path / "record.key")}
    a = GatewayProcess(str(tmp_path / "a"), cfg, token_file)
    b = GatewayProcess(str(tmp_path / "b"), cfg, token_file)
    await a.start()
    await b.start()
    try:
        alice_a, alice_b = GatewayClient(a.url, TOKENS["alice"]), GatewayClient(b.url, TOKENS["alice"])
        kid = await alice_a.start_kernel(SPEC, NO_EXECUTORS)
        ws_a = await alice_a.connect(kid)
        assert (await ws_a.execute("z = 5; sc.sparkUser()", timeout=120)).text == "'alice'"  # Spark up: RUNNING
        # B never saw the start request, yet it lists and serves the kernel.
        listed = (await alice_b.request("GET", "api/kernels")).body
        assert [k["id"] for k in listed] == [kid]
        ws_b = await alice_b.connect(kid)
        assert (await ws_b.execute("z * 2")).text == "10"
        # Bob sees nothing of it through either gateway.
        bob_b = GatewayClient(b.url, TOKENS["bob"])
        assert (await bob_b.request("GET", f"api/kernels/{kid}")).code == 404
        assert (await bob_b.request("GET", "api/kernels")).body == []
        kid2 = await alice_b.start_kernel(SPEC, NO_EXECUTORS)
        app_ids = [str(app_of_kernel(cluster, k)["id"]) for k in (kid, kid2)]
        await a.kill9()
        ws_a.close()
        assert (await ws_b.execute("z * 3")).text == "15"
        ws2 = await alice_b.connect(kid2)
        assert (await ws2.execute("sc.sparkUser()", timeout=120)).text == "'alice'"
        assert {k["id"] for k in (await alice_b.request("GET", "api/kernels")).body} == {kid, kid2}
        ws_b.close()
        ws2.close()
        assert await states(cluster, *app_ids) == ["RUNNING", "RUNNING"]
        for k in (kid, kid2):
            assert (await alice_b.request("DELETE", f"api/kernels/{k}")).code == 204
        assert (await alice_b.request("GET", "api/kernels")).body == []
        for app_id in app_ids:  # B stopped A's kernel too, through its launcher: a clean end
            final = await wait_final(cluster, app_id)
            assert (final["state"], final["finalStatus"]) == ("FINISHED", "SUCCEEDED")
    finally:
        await a.close()
        await b.close()
