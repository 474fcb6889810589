"""Issue 7: kernels outlive the gateway (kill -9 and SIGTERM), corrupt records are skipped."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from helpers.gateway_fixtures import TOKENS
from helpers.gateway_process import GatewayProcess
from helpers.gwclient import GatewayClient
from helpers.jupyter_server import JupyterServer

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]
SPEC = "spark_python_yarn_cluster"


async def _ids(gw: GatewayProcess, user: str) -> set[str]:
    r = await GatewayClient(gw.url, TOKENS[user]).request("GET", "api/kernels")
    assert r.code == 200, r.body
    return {k["id"] for k in r.body}


async def _wait_reconnected(gw: GatewayProcess, kid: str, timeout: float = 60) -> None:
    """jupyter_server re-opens its websocket to the gateway by itself (with backoff); messages a
    desktop sends before that are dropped by jupyter_server, so wait for the reconnection."""
    client = GatewayClient(gw.url, TOKENS["alice"])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await client.request("GET", f"api/kernels/{kid}")).body.get("connections", 0) < 1:
        assert loop.time() < deadline, "jupyter_server did not reconnect"
        await asyncio.sleep(0.2)


async def test_five_kernels_survive_kill9_and_sigterm(cluster: Any, yarn_config: dict[str, Any], tmp_path: Any,
                                                      token_file: str) -> None:
    gw = GatewayProcess(str(tmp_path / "gw"), yarn_config, token_file)
    await gw.start()
    js = JupyterServer(gw.url, TOKENS["alice"], str(tmp_path / "desktop"), kernel_username="alice")
    try:
        alice, bob = GatewayClient(gw.url, TOKENS["alice"]), GatewayClient(gw.url, TOKENS["bob"])
        # One of alice's kernels is started through a real jupyter_server, as a desktop would.
        await js.start()
        desk = GatewayClient(js.url, js.token)
        r = await desk.request("POST", "api/kernels", {"name": SPEC})
        assert r.code == 201, r.body
        desk_kid = r.body["id"]
        others = await asyncio.gather(alice.start_kernel(SPEC), alice.start_kernel(SPEC),
                                      bob.start_kernel(SPEC), bob.start_kernel(SPEC))
        alice_ids = {desk_kid, others[0], others[1]}
        bob_ids = {others[2], others[3]}
        desk_ws = await desk.connect(desk_kid)
        assert (await desk_ws.execute("x = 42")).status == "ok"
        ws = await alice.connect(others[0])
        assert (await ws.execute("y = 'kept'")).status == "ok"
        ws.close()

        # kill -9: nothing is cleaned up, nothing may be lost.
        await gw.kill9()
        await gw.start()
        assert await _ids(gw, "alice") == alice_ids and await _ids(gw, "bob") == bob_ids
        ws = await alice.connect(others[0])
        assert (await ws.execute("y")).text == "'kept'"
        ws.close()
        # The desktop's own websocket (jupyter_server -> gateway) reconnects by itself.
        await _wait_reconnected(gw, desk_kid)
        res = await desk_ws.execute("x", timeout=90)
        assert res.text == "42", (res, js.read_log()[-2000:])

        # A clean stop leaves the kernels running too; a corrupt record does not stop recovery.
        assert await gw.terminate() == 0
        sessions = yarn_config["DirectoryStore"]["directory"]
        with open(os.path.join(sessions, "11111111-2222-3333-4444-555555555555.json"), "w") as f:
            f.write('{"version": 1, "kernel_id": "11111111-2222-3333-4444-5555')  # truncated
        with open(os.path.join(sessions, "garbage.json"), "wb") as f:
            f.write(b"\x00\xffnot json at all")
        await gw.start()
        assert await _ids(gw, "alice") == alice_ids and await _ids(gw, "bob") == bob_ids
        log = gw.read_log()
        assert "Skipping unreadable session record" in log and "garbage.json" in log
        assert "11111111-2222-3333-4444-555555555555.json" in log
        await _wait_reconnected(gw, desk_kid)
        res = await desk_ws.execute("x + 1", timeout=90)
        assert res.text == "43"
        for kid in bob_ids:
            ws = await bob.connect(kid)
            assert (await ws.execute("sc.sparkUser()", timeout=120)).text == "'bob'"
            ws.close()
        desk_ws.close()
        # The records hold secrets: owner-only files.
        planted = {"11111111-2222-3333-4444-555555555555.json", "garbage.json"}
        for name in set(os.listdir(sessions)) - planted:
            if name.endswith(".json"):
                assert os.stat(os.path.join(sessions, name)).st_mode & 0o077 == 0
                with open(os.path.join(sessions, name)) as f:
                    json.load(f)
        for kid in alice_ids:
            assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
        for kid in bob_ids:
            assert (await bob.request("DELETE", f"api/kernels/{kid}")).code == 204
        assert not [n for n in set(os.listdir(sessions)) - planted if n.endswith(".json")]
    finally:
        await js.stop()
        await gw.close()
