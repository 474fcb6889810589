"""The relay's guarantees, as steps any end-to-end test of a Python kernel can run: the same
checks on the plaintext and the CurveZMQ path, on local and on YARN kernels."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from helpers.gwclient import GatewayClient, KernelWS

RECONNECT_CELL = "import time\nfor i in range(30):\n    print('line', i, flush=True)\n    time.sleep(0.05)\n"


async def burst_arrives_in_order(ws: KernelWS, lines: int = 10_000) -> None:
    """A cell printing ``lines`` numbers: every one arrives, in order."""
    res = await ws.execute(f"for i in range({lines}): print(i)", timeout=120)
    assert res.status == "ok" and res.stdout.split() == [str(i) for i in range(lines)]


async def reconnect_replays(client: GatewayClient, ws: KernelWS, kid: str) -> KernelWS:
    """Close the websocket while a cell prints, reconnect with the same session: the lines missed
    meanwhile are replayed, none twice. Returns the new websocket."""
    msg = await ws.send_execute(RECONNECT_CELL)
    got = await ws.stream_until("line 3")
    ws.close()
    await asyncio.sleep(1.0)
    ws = await client.connect(kid, session_id=ws.session_id)
    res = await ws.collect(msg["header"]["msg_id"], timeout=60)
    assert (got + res.stdout).splitlines() == [f"line {i}" for i in range(30)] and res.status == "ok"
    return ws


async def burst_survives_a_stalled_loop(client: GatewayClient, kid: str, stall: float) -> None:
    """While the gateway's event loop (this test's loop) is blocked for ``stall`` seconds, the
    kernel keeps printing into its socket buffers and ZMQ queues; none of that output is lost."""
    ws = await client.connect(kid)
    msg = await ws.send_execute("for i in range(20000): print(i, flush=True)")
    asyncio.get_running_loop().call_later(0.3, time.sleep, stall)
    res = await ws.collect(msg["header"]["msg_id"], timeout=120)
    assert res.status == "ok"
    assert res.stdout.split() == [str(i) for i in range(20000)]
    ws.close()


async def interrupt_stops_a_sleeping_cell(client: GatewayClient, ws: KernelWS, kid: str) -> Any:
    msg = await ws.send_execute("import time; time.sleep(60)")
    await asyncio.sleep(1.0)
    assert (await client.request("POST", f"api/kernels/{kid}/interrupt", {})).code == 204
    res = await ws.collect(msg["header"]["msg_id"], timeout=20)
    assert res.status == "error" and res.error and res.error["ename"] == "KeyboardInterrupt"
    return res


def relay_speaks_curve(rec: Any, relay: str = "zmtp") -> bool:
    """Whether every connection of the gateway to the kernel of ``rec`` speaks CurveZMQ, through
    ``relay``'s implementation ("zmtp": the relay's own, the default; "libzmq": pyzmq's)."""
    from yarn_gateway.relay.zmq_channel import LibzmqChannel
    from yarn_gateway.relay.zmtp import ZmtpChannel

    chans = list(rec.hub.kernel_channels())
    if relay == "zmtp":
        return bool(chans) and all(isinstance(ch, ZmtpChannel) and ch.curve_server_key is not None for ch in chans)
    return bool(chans) and all(isinstance(ch, LibzmqChannel) and ch.curve is not None for ch in chans)
