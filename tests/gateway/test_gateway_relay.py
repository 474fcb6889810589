"""The websocket relay: protocols, several clients, reconnect replay, bursts, bad messages."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

import pytest
from tornado.websocket import WebSocketClosedError

from helpers.gwclient import V1
from helpers.relay_checks import burst_survives_a_stalled_loop
from helpers.waiting import wait_until


@pytest.mark.parametrize("protocol", ["", V1])
async def test_execute_both_protocols(gateway: Any, protocol: str) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid, protocol=protocol)
    assert (ws.conn.selected_subprotocol or "") == protocol
    res = await ws.execute("1+1")
    assert res.status == "ok" and res.text == "2"
    model = (await c.request("GET", f"api/kernels/{kid}")).body
    assert model["connections"] == 1 and model["execution_state"] == "idle"
    ws.close()
    await c.request("DELETE", f"api/kernels/{kid}")


@pytest.mark.parametrize("protocol", ["", V1])
async def test_binary_buffers_reach_the_client(gateway: Any, protocol: str) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid, protocol=protocol)
    # A comm message with a binary buffer: the kernel sends it on iopub with buffers.
    code = (
        "from ipykernel.comm import Comm\n"
        "comm = Comm(target_name='t', data={})\n"
        "comm.send({'x': 1}, buffers=[b'\\x00\\x01binary'])\n"
    )
    msg = await ws.send_execute(code)
    res = await ws.collect(msg["header"]["msg_id"])
    assert res.status == "ok", res.error
    with_buffers = [m for m in res.messages if m["msg_type"] == "comm_msg"]
    assert with_buffers and with_buffers[0]["buffers"] == [b"\x00\x01binary"]
    ws.close()
    await c.request("DELETE", f"api/kernels/{kid}")


async def test_several_clients_share_iopub_but_not_replies(gateway: Any) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    a, b = await c.connect(kid), await c.connect(kid, protocol=V1)
    assert (await c.request("GET", f"api/kernels/{kid}")).body["connections"] == 2
    msg = await a.send_execute("print('shared')")
    ra = await a.collect(msg["header"]["msg_id"])
    assert ra.status == "ok" and ra.stdout == "shared\n"
    # b sees the iopub output of a's request, but not a's execute_reply.
    seen: list[str] = []
    while "status" not in seen or len(seen) < 3:
        m = await b.recv(10)
        assert m is not None
        if m["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            seen.append(m["msg_type"])
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                break
    assert "stream" in seen and "execute_reply" not in seen
    a.close()
    b.close()
    await c.request("DELETE", f"api/kernels/{kid}")


async def test_reconnect_with_same_session_replays_missed_output(gateway: Any) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid)
    code = "import time\nfor i in range(30):\n    print('line', i, flush=True)\n    time.sleep(0.05)\n"
    msg = await ws.send_execute(code)
    got = await ws.stream_until("line 3")
    ws.close()  # drop while the cell still prints
    await asyncio.sleep(1.0)
    ws2 = await c.connect(kid, session_id=ws.session_id)
    res = await ws2.collect(msg["header"]["msg_id"], timeout=60)
    lines = (got + res.stdout).splitlines()
    assert lines == [f"line {i}" for i in range(30)]
    assert res.status == "ok"  # the execute_reply missed while away was replayed too
    ws2.close()
    await c.request("DELETE", f"api/kernels/{kid}")


async def test_replay_overflow_is_reported_and_status_delivered(make_gateway: Any) -> None:
    gw = await make_gateway({"KernelRegistry": {"replay_buffer_bytes": 20_000}})
    c = gw.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid)
    # 200 KB of output: past the 20 KB bound however ipykernel batches the flushed lines.
    code = "import time; time.sleep(0.5)\nfor i in range(2000): print(str(i).rjust(100), flush=True)"
    msg = await ws.send_execute(code)
    ws.close()  # gone before the kernel (sleeping 0.5 s first) prints anything
    hub = gw.registry.kernels[kid].hub
    await wait_until(lambda: hub.execution_state == "idle" and hub.sessions[ws.session_id].dropped, 60,
                     "the cell finished while the client was away, its session having dropped output", interval=0.1)
    ws2 = await c.connect(kid, session_id=ws.session_id)
    res = await ws2.collect(msg["header"]["msg_id"], timeout=60)
    assert res.status == "ok"
    assert "output message(s) from this kernel were lost" in res.stderr, (
        len(res.stdout.split()), [m["msg_type"] for m in res.messages][:5], [m["msg_type"] for m in res.messages][-5:])
    got = [int(x) for x in res.stdout.split()]
    assert got == list(range(len(got))) and 0 < len(got) < 2000  # a prefix, in order
    ws2.close()
    await c.request("DELETE", f"api/kernels/{kid}")


@pytest.mark.parametrize("protocol", ["", V1])
async def test_burst_of_10000_lines_arrives_complete_and_in_order(gateway: Any, protocol: str) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid, protocol=protocol)
    res = await ws.execute("for i in range(10000): print(i, flush=True)", timeout=120)
    assert res.status == "ok"
    assert [int(x) for x in res.stdout.split()] == list(range(10000))
    assert "lost" not in res.stderr
    ws.close()
    await c.request("DELETE", f"api/kernels/{kid}")


async def test_burst_without_output_batching(make_gateway: Any) -> None:
    # output_batch_interval = 0 relays message by message: still complete, in order, then idle.
    gw = await make_gateway({"KernelRegistry": {"output_batch_interval": 0.0}})
    c = gw.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid)
    res = await ws.execute("for i in range(3000): print(i, flush=True)", timeout=120)
    assert res.status == "ok"
    assert [int(x) for x in res.stdout.split()] == list(range(3000))
    ws.close()
    await c.request("DELETE", f"api/kernels/{kid}")


async def test_busy_status_is_not_held_back_while_the_kernel_stays_busy(gateway: Any) -> None:
    # "busy" and the execute_input echo may wait briefly to share a write with what follows;
    # when nothing follows (a long cell), they must still arrive at once, not with the reply.
    c = gateway.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid)
    msg = await ws.send_execute("import time; time.sleep(6)")
    seen: list[str] = []
    while "execute_input" not in seen:
        m = await ws.recv(timeout=3)  # well before the cell ends
        assert m is not None, f"only {seen} arrived while the cell ran"
        if m["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            seen.append(m["msg_type"] if m["msg_type"] != "status" else m["content"]["execution_state"])
    assert seen == ["busy", "execute_input"]
    res = await ws.collect(msg["header"]["msg_id"])
    assert res.status == "ok"
    ws.close()
    await c.request("DELETE", f"api/kernels/{kid}")


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        json.dumps([1, 2]),
        json.dumps({"channel": "shell", "content": {}}),
        json.dumps({"channel": "iopub", "header": {"msg_id": "1", "msg_type": "x"}}),
        json.dumps({"channel": "shell", "header": {"msg_id": "", "msg_type": "x"}}),
        json.dumps({"channel": "shell", "header": {"msg_id": "1", "msg_type": "x"}, "content": [1]}),
    ],
)
async def test_invalid_ws_message_closes_client_and_spares_kernel(gateway: Any, payload: str) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid)
    await ws.conn.write_message(payload)
    while (m := await ws.recv(10)) is not None:
        assert m["msg_type"] == "status"  # only late status messages of the readiness probe
    assert ws.conn.close_code == 4400 and "invalid Jupyter message" in (ws.conn.close_reason or "")
    ws2 = await c.connect(kid)
    assert (await ws2.execute("40+2")).text == "42"
    ws2.close()
    await c.request("DELETE", f"api/kernels/{kid}")


async def test_interrupt_and_restart_through_rest(gateway: Any) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid)
    assert (await ws.execute("x = 41")).status == "ok"
    msg = await ws.send_execute("import time; time.sleep(60)")
    await asyncio.sleep(1.0)
    assert (await c.request("GET", f"api/kernels/{kid}")).body["execution_state"] == "busy"
    assert (await c.request("POST", f"api/kernels/{kid}/interrupt", {})).code == 204
    res = await ws.collect(msg["header"]["msg_id"], timeout=10)
    assert res.status == "error" and res.error and res.error["ename"] == "KeyboardInterrupt"
    assert (await ws.execute("x + 1")).text == "42"
    r = await c.request("POST", f"api/kernels/{kid}/restart", {})
    assert r.code == 200
    after = await ws.execute("'x' in dir()")  # the same websocket keeps working after a restart
    assert after.text == "False"
    ws.close()
    await c.request("DELETE", f"api/kernels/{kid}")


async def test_shutdown_closes_clients(gateway: Any) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid)
    await c.request("DELETE", f"api/kernels/{kid}")
    while await ws.recv(10) is not None:
        pass  # whatever the kernel said on its way out
    assert ws.conn.close_code == 1001


async def test_slow_client_is_told_what_it_missed_and_gets_the_final_status(make_gateway: Any) -> None:
    # A client that stops reading: the socket fills, the gateway's backlog passes its bound, output
    # is dropped (never the replies), and once the client reads again it is told how much it missed.
    gw = await make_gateway({"KernelRegistry": {"client_backlog_bytes": 256 * 1024}})
    c = gw.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid)
    msg = await ws.send_execute("for i in range(3000): print('x' * 8000, flush=True)")
    hub = gw.registry.kernels[kid].hub
    await asyncio.sleep(5)  # not reading for >= 5 s
    await wait_until(lambda: hub.execution_state == "idle", 55, "the cell finished while the client read nothing",
                     interval=0.2)
    res = await ws.collect(msg["header"]["msg_id"], timeout=60)
    assert res.status == "ok"  # the execute_reply was not dropped, and the final idle arrived
    assert "output message(s) from this kernel were lost" in res.stderr
    assert 0 < res.stdout.count("x" * 8000) < 3000
    ws.close()
    await c.request("DELETE", f"api/kernels/{kid}")


async def test_a_kernel_that_takes_nothing_closes_the_client_with_1013(make_gateway: Any, monkeypatch: Any) -> None:
    # A stopped kernel reads nothing: its socket buffers fill, then the gateway's bounded queue,
    # and the client is closed with 1013 (try again later) instead of the gateway buffering forever.
    from yarn_gateway.relay import zmtp

    monkeypatch.setattr(zmtp, "MAX_QUEUED", 100)
    gw = await make_gateway()
    c = gw.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid)
    assert (await ws.execute("1+1")).text == "2"
    pid = gw.registry.kernels[kid].km.provisioner.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        pad = "x" * 16384
        for _ in range(5000):  # ~80 MB: far more than TCP buffers and the queue hold
            msg = ws.message("kernel_info_request", {})
            msg["metadata"] = {"pad": pad}
            try:
                await ws.send(msg)
            except WebSocketClosedError:
                break
            if ws.conn.close_code is not None:
                break
        while await ws.recv(10) is not None:
            pass
        assert ws.conn.close_code == 1013
        assert "the kernel is not taking messages" in (ws.conn.close_reason or "")
        assert (await c.request("GET", f"api/kernels/{kid}")).code == 200  # the gateway is fine
    finally:
        os.kill(pid, signal.SIGCONT)
    # Once the kernel runs again, a client reconnects and works (after the kernel has answered
    # whatever reached it).
    ws2 = await c.connect(kid)
    assert (await ws2.execute("40+2", timeout=120)).text == "42"
    ws2.close()
    await c.request("DELETE", f"api/kernels/{kid}")


@pytest.mark.parametrize("stall", [0.2, 1.0])
async def test_a_burst_survives_a_stalled_event_loop(gateway: Any, stall: float) -> None:
    # The gateway reads kernel sockets on its event loop. While the loop is blocked, the kernel
    # keeps printing into its socket buffers and ZMQ queue; none of that output may be lost.
    c = gateway.client()
    kid = await c.start_kernel()
    await burst_survives_a_stalled_loop(c, kid, stall)
    await c.request("DELETE", f"api/kernels/{kid}")
