"""Issue 7: two gateways share a ZooKeeper store (active/active); one dies, the other carries on."""

from __future__ import annotations

from typing import Any

import pytest

from helpers.gateway_fixtures import TOKENS
from helpers.gateway_process import GatewayProcess
from helpers.gwclient import GatewayClient

pytestmark = [pytest.mark.e2e, pytest.mark.jvm, pytest.mark.zookeeper]
SPEC = "spark_python_yarn_cluster"


async def test_two_gateways_share_kernels_through_zookeeper(cluster: Any, yarn_config: dict[str, Any],
                                                            zookeeper: Any, tmp_path: Any, token_file: str) -> None:
    cfg = dict(yarn_config)
    cfg.pop("DirectoryStore")
    cfg["SessionKeeper"] = {"store": "zookeeper"}
    cfg["ZooKeeperStore"] = {"hosts": zookeeper.hosts, "root": "/yarn-gateway/test"}
    a = GatewayProcess(str(tmp_path / "a"), cfg, token_file)
    b = GatewayProcess(str(tmp_path / "b"), cfg, token_file)
    await a.start()
    await b.start()
    try:
        alice_a, alice_b = GatewayClient(a.url, TOKENS["alice"]), GatewayClient(b.url, TOKENS["alice"])
        kid = await alice_a.start_kernel(SPEC)
        ws_a = await alice_a.connect(kid)
        assert (await ws_a.execute("z = 5")).status == "ok"
        # B never saw the start request, yet it lists and serves the kernel.
        listed = (await alice_b.request("GET", "api/kernels")).body
        assert [k["id"] for k in listed] == [kid]
        ws_b = await alice_b.connect(kid)
        assert (await ws_b.execute("z * 2")).text == "10"
        # Bob sees nothing of it through either gateway.
        bob_b = GatewayClient(b.url, TOKENS["bob"])
        assert (await bob_b.request("GET", f"api/kernels/{kid}")).code == 404
        assert (await bob_b.request("GET", "api/kernels")).body == []
        kid2 = await alice_b.start_kernel(SPEC)
        await a.kill9()
        ws_a.close()
        assert (await ws_b.execute("z * 3")).text == "15"
        ws2 = await alice_b.connect(kid2)
        assert (await ws2.execute("sc.sparkUser()", timeout=120)).text == "'alice'"
        assert {k["id"] for k in (await alice_b.request("GET", "api/kernels")).body} == {kid, kid2}
        ws_b.close()
        ws2.close()
        for k in (kid, kid2):
            assert (await alice_b.request("DELETE", f"api/kernels/{k}")).code == 204
        assert (await alice_b.request("GET", "api/kernels")).body == []
    finally:
        await a.close()
        await b.close()
