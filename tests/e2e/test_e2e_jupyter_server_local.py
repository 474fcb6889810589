"""Acceptance: a real `jupyter server --gateway-url=<gateway>` drives a local kernel end to end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helpers.gwclient import GatewayClient
from helpers.jupyter_server import JupyterServer
from helpers.waiting import wait_until

pytestmark = pytest.mark.e2e


async def test_jupyter_server_through_gateway(make_gateway: Any, tmp_path: Any) -> None:
    from helpers.gateway_fixtures import TOKENS

    gw = await make_gateway()
    js = JupyterServer(gw.url, TOKENS["alice"], str(tmp_path / "desktop"), kernel_username="alice")
    await js.start()
    try:
        desk = GatewayClient(js.url, js.token)
        specs = await desk.request("GET", "api/kernelspecs")
        assert specs.code == 200, specs.body
        assert "python_local" in specs.body["kernelspecs"]
        r = await desk.request("POST", "api/kernels", {"name": "python_local"})
        assert r.code == 201, r.body
        kid = r.body["id"]
        # The kernel really lives in the gateway, owned by alice.
        assert gw.registry.kernels[kid].owner == "alice"
        ws = await desk.connect(kid)
        assert (await ws.execute("1+1")).text == "2"
        assert (await ws.execute("x = 42")).status == "ok"

        msg = ws.message("execute_request", {"code": "import time; time.sleep(60)", "silent": False,
                                             "store_history": True, "user_expressions": {}, "allow_stdin": False})
        await ws.send(msg)
        await asyncio.sleep(1.5)
        intr = await desk.request("POST", f"api/kernels/{kid}/interrupt", {})
        assert intr.code == 204, intr.body
        res = await ws.collect(msg["header"]["msg_id"], timeout=15)
        assert res.status == "error" and res.error and res.error["ename"] == "KeyboardInterrupt"
        assert (await ws.execute("x")).text == "42"  # alive, state kept

        rs = await desk.request("POST", f"api/kernels/{kid}/restart", {})
        assert rs.code == 200, rs.body
        ws.close()
        ws = await desk.connect(kid)
        gone = await ws.execute("'x' in globals()")
        assert gone.text == "False"
        ws.close()

        d = await desk.request("DELETE", f"api/kernels/{kid}")
        assert d.code == 204, d.body
        await wait_until(lambda: kid not in gw.registry.kernels, 5, f"the gateway forgot kernel {kid}", interval=0.1)
    finally:
        await js.stop()
