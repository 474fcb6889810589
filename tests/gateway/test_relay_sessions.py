"""Client sessions: capped per kernel and per user; a detached one gives its kernel connections back
(issue 15, item 6) and still gets what it missed."""

from __future__ import annotations

from typing import Any

import psutil
import pytest
from tornado.httpclient import HTTPClientError

from helpers.waiting import wait_until


def _kernel_connections(gw: Any, kid: str) -> int:
    """This process's (the gateway's) TCP connections to the kernel's shell and stdin ports (not control:
    jupyter_client's kernel manager connects to it too, for shutdown requests, when it likes)."""
    info = gw.registry.kernels[kid].km.get_connection_info()
    ports = {info["shell_port"], info["stdin_port"]}
    return sum(1 for c in psutil.Process().net_connections(kind="tcp")
               if c.raddr and c.raddr.port in ports and c.status == psutil.CONN_ESTABLISHED)


async def test_100_websockets_with_distinct_sessions_leave_no_kernel_connections_behind(gateway: Any) -> None:
    alice, bob = gateway.client("alice"), gateway.client("bob")
    kid, bob_kid = await alice.start_kernel(), await bob.start_kernel()
    hub = gateway.registry.kernels[kid].hub
    bob_ws = await bob.connect(bob_kid)
    assert (await bob_ws.execute("1+1")).text == "2"
    proc = psutil.Process()
    before, conns = proc.num_fds(), _kernel_connections(gateway, kid)
    for i in range(100):
        ws = await alice.connect(kid)  # a new session_id each time
        if i % 10 == 0:
            assert (await ws.execute(f"{i}+1")).text == str(i + 1)
            assert (await bob_ws.execute("6*7")).text == "42"  # the other user, meanwhile
        ws.close()
        await wait_until(lambda: hub.connections == 0, 10, "the websocket closed")
    await wait_until(lambda: proc.num_fds() - before < 10, 5, interval=0.1, what=lambda: (
        f"fewer than 10 more file descriptors after 100 closed client sessions: {proc.num_fds() - before} more"))
    assert _kernel_connections(gateway, kid) == conns
    assert len(hub.sessions) <= gateway.registry.max_sessions_per_kernel
    assert (await bob_ws.execute("6*7")).text == "42"
    bob_ws.close()
    ws = await alice.connect(kid)
    assert (await ws.execute("40+2")).text == "42"
    ws.close()
    for c, k in ((alice, kid), (bob, bob_kid)):
        await c.request("DELETE", f"api/kernels/{k}")


async def test_sessions_per_kernel_are_capped_and_detached_ones_make_room(make_gateway: Any) -> None:
    gw = await make_gateway({"KernelRegistry": {"max_sessions_per_kernel": 3}})
    c = gw.client()
    kid = await c.start_kernel()
    hub = gw.registry.kernels[kid].hub
    attached = [await c.connect(kid) for _ in range(3)]
    with pytest.raises(HTTPClientError) as refused:
        await c.connect(kid)
    assert refused.value.code == 429
    body = refused.value.response.body.decode() if refused.value.response else ""
    assert f"Kernel {kid} already has 3 client connections" in body and "max_sessions_per_kernel" in body
    # One client leaves: its detached session gives way to a new one.
    gone = attached.pop()
    gone.close()
    await wait_until(lambda: hub.connections == 2, 10, "the websocket closed (2 of 3 left)")
    ws = await c.connect(kid)
    assert (await ws.execute("1+1")).text == "2"
    assert len(hub.sessions) == 3 and gone.session_id not in hub.sessions
    # A client coming back to its own session is always admitted.
    again = await c.connect(kid, session_id=attached[0].session_id)
    assert (await again.execute("2+2")).text == "4"
    for w in (*attached, ws, again):
        w.close()
    await c.request("DELETE", f"api/kernels/{kid}")


async def test_sessions_per_user_are_capped_over_all_kernels(make_gateway: Any) -> None:
    gw = await make_gateway({"KernelRegistry": {"max_sessions_per_user": 2}})
    alice, bob = gw.client("alice"), gw.client("bob")
    k1, k2, bob_kid = await alice.start_kernel(), await alice.start_kernel(), await bob.start_kernel()
    a1, a2 = await alice.connect(k1), await alice.connect(k2)
    with pytest.raises(HTTPClientError) as refused:
        await alice.connect(k1)
    assert refused.value.code == 429
    body = refused.value.response.body.decode() if refused.value.response else ""
    assert "alice already has 2 client connections to kernels" in body and "max_sessions_per_user" in body
    b1, b2 = await bob.connect(bob_kid), await bob.connect(bob_kid)  # bob has his own allowance
    assert (await b1.execute("1+1")).text == "2"
    assert (await a2.execute("6*7")).text == "42"
    for w in (a1, a2, b1, b2):
        w.close()
    for cl, k in ((alice, k1), (alice, k2), (bob, bob_kid)):
        await cl.request("DELETE", f"api/kernels/{k}")


async def test_a_detached_session_keeps_its_connections_until_its_reply_and_then_replays(gateway: Any) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    hub = gateway.registry.kernels[kid].hub
    conns = _kernel_connections(gateway, kid)
    a = await c.connect(kid)
    assert (await a.execute("import time")).status == "ok"
    msg = await a.send_execute("time.sleep(1.5); print('done')")
    a.close()  # gone while its request runs
    await wait_until(lambda: hub.connections == 0, 10, "the websocket closed")
    assert _kernel_connections(gateway, kid) == conns + 2  # a reply is owed to it: its connections stay
    await wait_until(lambda: hub.execution_state == "idle", 30, "the cell finished (kernel idle)")
    await wait_until(lambda: _kernel_connections(gateway, kid) == conns, 5, "its kernel connections were released")
    # Another client's output while the first is away (and holds no kernel connection) ...
    b = await c.connect(kid)
    other = await b.execute("print('from b')")
    assert other.stdout == "from b\n"
    # ... is replayed with everything else when it comes back, and its new connections work.
    a2 = await c.connect(kid, session_id=a.session_id)
    res = await a2.collect(msg["header"]["msg_id"], timeout=30)
    assert res.status == "ok" and res.stdout == "done\n"
    seen_b = ""
    while "from b" not in seen_b:
        m = await a2.recv(10)
        assert m is not None
        if m["msg_type"] == "stream":
            seen_b += m["content"]["text"]
    assert (await a2.execute("40+2")).text == "42"
    for w in (a2, b):
        w.close()
    await c.request("DELETE", f"api/kernels/{kid}")


async def test_a_detached_session_stops_waiting_for_a_reply_that_never_comes(gateway: Any, monkeypatch: Any) -> None:
    from yarn_gateway.relay import session as relay_session

    monkeypatch.setattr(relay_session, "OWED_CHECK_INTERVAL", 0.2)
    c = gateway.client()
    kid = await c.start_kernel()
    hub = gateway.registry.kernels[kid].hub
    conns = _kernel_connections(gateway, kid)
    a = await c.connect(kid)
    assert (await a.execute("1+1")).text == "2"
    for _ in range(5):
        await a.send(a.message("no_such_request", {}))  # the kernel answers none of these
    a.close()
    await wait_until(lambda: hub.connections == 0, 10, "the websocket closed")
    await wait_until(lambda: _kernel_connections(gateway, kid) == conns, 10, "its kernel connections were released")
    a2 = await c.connect(kid, session_id=a.session_id)
    assert (await a2.execute("40+2")).text == "42"
    a2.close()
    await c.request("DELETE", f"api/kernels/{kid}")
