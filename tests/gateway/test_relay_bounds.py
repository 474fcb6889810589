"""What a kernel, a peer on the kernel's ports or a client can make the relay hold (issue 15).

The gateway runs in this test process, so its memory is this process's RSS, sampled by a
thread every few milliseconds (the peak counts, not the level after the fact).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import threading
import time
from typing import Any

import psutil
import pytest
from tornado.websocket import WebSocketClosedError

from helpers.gwclient import GatewayClient
from helpers.waiting import wait_until
from yarn_gateway.relay import zmtp
from yarn_gateway.relay.zmtp import Endpoint, ZmtpChannel

MiB = 1024 * 1024


class RssPeak:
    """The peak RSS of this process above its level at the start, sampled in a thread."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.base = 0
        self.peak = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self) -> RssPeak:
        gc.collect()
        self.base = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base


async def _legit_round_trip(c: GatewayClient, kid: str, code: str = "6*7", want: str = "42") -> None:
    ws = await c.connect(kid)
    try:
        assert (await ws.execute(code, timeout=60)).text == want
    finally:
        ws.close()


# -- acceptance 3: 300 MiB of output with no client attached ------------------------------------------

#: The bound asserted on the gateway's RSS growth while a kernel publishes 300 MiB with nobody attached
#: (before the fix: about 900 MiB).
OUTPUT_RSS_BOUND = 64 * MiB


async def test_300_mib_of_output_with_no_client_attached_leaves_the_gateway_rss_bounded(gateway: Any) -> None:
    alice, bob = gateway.client("alice"), gateway.client("bob")
    kid, bob_kid = await alice.start_kernel(), await bob.start_kernel()
    ws = await alice.connect(kid)
    assert (await ws.execute("from IPython.display import publish_display_data")).status == "ok"
    hub = gateway.registry.kernels[kid].hub
    with RssPeak() as rss:
        msg = await ws.send_execute("publish_display_data({'text/plain': 'x' * (300 * 2**20)})\nprint('after')")
        while (m := await ws.recv(30)) is not None and m["msg_type"] != "execute_input":
            pass  # the cell runs
        ws.close()  # nobody attached while the kernel builds and publishes its 300 MiB
        await _legit_round_trip(bob, bob_kid)  # another user meanwhile
        await wait_until(lambda: hub.execution_state == "idle", 120, "the cell ended (kernel idle)")
    print(f"RSS growth, 300 MiB published with no client: {rss.growth / MiB:.1f} MiB")
    assert rss.growth < OUTPUT_RSS_BOUND, f"the gateway's RSS grew by {rss.growth / MiB:.0f} MiB"
    # The client comes back: it is told what was dropped, in order, and gets the rest.
    ws2 = await alice.connect(kid, session_id=ws.session_id)
    res = await ws2.collect(msg["header"]["msg_id"], timeout=60)
    assert res.status == "ok" and res.stdout == "after\n"
    assert f"Kernel {kid}: the kernel sent a display_data message of 300.0 MiB" in res.stderr
    assert "max_kernel_message_bytes" in res.stderr and not res.results
    assert (await ws2.execute("40+2")).text == "42"
    ws2.close()
    await _legit_round_trip(bob, bob_kid)
    for c, k in ((alice, kid), (bob, bob_kid)):
        await c.request("DELETE", f"api/kernels/{k}")


# -- acceptance 3: a peer announcing a 2^63-byte frame -----------------------------------------------

#: The bound asserted while a peer streams 400 MiB of a frame announced as 2^63 bytes (before: +400 MiB).
ANNOUNCE_RSS_BOUND = 32 * MiB


class _HostilePub(threading.Thread):
    """A peer on a kernel's iopub port: a PUB greeting, then a 2^63-byte frame, streamed."""

    def __init__(self, stream_bytes: int) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stream_bytes = stream_bytes
        self.sent = 0
        self.error: BaseException | None = None
        self.streamed = threading.Event()  # set once all of stream_bytes is sent (or on error)
        self.release = threading.Event()  # the test sets it; only then does the peer hang up

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(30)
                assert len(conn.recv(10)) == 10  # their signature
                conn.sendall(zmtp.GREETING)
                conn.sendall(zmtp.encode_command(b"READY", zmtp.encode_properties({b"Socket-Type": b"PUB"})))
                conn.sendall(bytes((0x02,)) + (2**63).to_bytes(8, "big"))
                chunk = memoryview(b"\0" * MiB)
                while self.sent < self.stream_bytes:  # only as fast as the gateway reads it
                    conn.sendall(chunk)
                    self.sent += len(chunk)
                self.streamed.set()
                self.release.wait(30)  # connected until the test has looked
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.streamed.set()
            self.listener.close()


async def test_a_2_63_byte_frame_announcement_leaves_the_gateway_rss_bounded(gateway: Any) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid)
    assert (await ws.execute("1+1")).text == "2"
    peer = _HostilePub(400 * MiB)
    got: list[Any] = []
    with RssPeak() as rss:
        peer.start()
        chan = ZmtpChannel(Endpoint("tcp", "127.0.0.1", peer.port), "SUB", got.append)
        while not peer.streamed.is_set():  # a legitimate kernel's round trips go on meanwhile, on the same loop
            assert (await ws.execute("40+2")).text == "42"
    assert peer.error is None and peer.sent == 400 * MiB  # the gateway read all of it ...
    print(f"RSS growth, 400 MiB of a 2^63-byte frame: {rss.growth / MiB:.1f} MiB")
    assert rss.growth < ANNOUNCE_RSS_BOUND, f"the gateway's RSS grew by {rss.growth / MiB:.0f} MiB"  # ... kept none
    assert not got and chan.connected  # (the message never ended; the peer is still connected)
    peer.release.set()
    peer.join()
    chan.close()
    assert (await ws.execute("6*7")).text == "42"
    ws.close()
    await c.request("DELETE", f"api/kernels/{kid}")


# -- item 1: over-size replies and output, with the bound configured small ---------------------------

async def test_an_over_size_reply_is_answered_with_an_error_and_over_size_output_is_reported(
    make_gateway: Any,
) -> None:
    gw = await make_gateway({"KernelRegistry": {"max_kernel_message_bytes": MiB}})
    c = gw.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid)
    # A reply past the bound: an execute_reply carrying a 2 MB user expression.
    msg = ws.message("execute_request", {"code": "y = 1", "silent": False, "store_history": True,
                                         "user_expressions": {"big": "'y' * 2_000_000"}, "allow_stdin": False})
    await ws.send(msg)
    res = await ws.collect(msg["header"]["msg_id"])
    replies = [m for m in res.messages if m["msg_type"] == "execute_reply"]
    assert res.status == "error" and replies[0]["content"]["ename"] == "MessageTooLarge"
    assert f"Kernel {kid}" in replies[0]["content"]["evalue"] and "1.0 MiB" in replies[0]["content"]["evalue"]
    assert "the kernel sent an execute_reply message of" in res.stderr
    # Output past the bound while the client is attached: dropped, the client told, the cell ends normally.
    res = await ws.execute("import time\nprint('x' * 2_000_000, flush=True)\ntime.sleep(0.3)\nprint('small')")
    assert res.status == "ok" and res.stdout == "small\n"
    assert "the kernel sent a stream message of" in res.stderr
    assert (await ws.execute("y + 41")).text == "42"
    ws.close()
    await c.request("DELETE", f"api/kernels/{kid}")


# -- item 7: the send queue to a kernel is bounded in bytes ---------------------------------------------

#: The bound asserted while 40 x 8 MiB requests go to a kernel that reads nothing (before: +356 MiB).
QUEUE_RSS_BOUND = 160 * MiB


async def test_a_kernel_that_reads_nothing_costs_a_bounded_send_queue_then_1013(gateway: Any) -> None:
    alice, bob = gateway.client("alice"), gateway.client("bob")
    kid, bob_kid = await alice.start_kernel(), await bob.start_kernel()
    ws = await alice.connect(kid)
    assert (await ws.execute("1+1")).text == "2"
    pid = gateway.registry.kernels[kid].km.provisioner.pid
    pad = "x" * (8 * MiB - 1024)
    os.kill(pid, signal.SIGSTOP)
    try:
        with RssPeak() as rss:
            sent = 0
            for _ in range(40):
                msg = ws.message("kernel_info_request", {})
                msg["metadata"] = {"pad": pad}
                try:
                    await ws.send(msg)
                except WebSocketClosedError:
                    break
                sent += 1
                if ws.conn.close_code is not None:
                    break
            try:
                while await ws.recv(5) is not None:
                    pass
            except asyncio.TimeoutError:
                pass  # still open: asserted below
            await _legit_round_trip(bob, bob_kid)  # another user's kernel works meanwhile
        print(f"RSS growth, {sent} x 8 MiB to a stopped kernel: {rss.growth / MiB:.1f} MiB")
        assert rss.growth < QUEUE_RSS_BOUND, f"the gateway's RSS grew by {rss.growth / MiB:.0f} MiB"
        assert ws.conn.close_code == 1013 and "not taking messages" in (ws.conn.close_reason or "")
        assert sent < 40
    finally:
        os.kill(pid, signal.SIGCONT)
    ws2 = await alice.connect(kid)
    assert (await ws2.execute("40+2", timeout=120)).text == "42"
    ws2.close()
    for c, k in ((alice, kid), (bob, bob_kid)):
        await c.request("DELETE", f"api/kernels/{k}")


# -- item 8: the default websocket message limit ---------------------------------------------------------

async def test_the_default_websocket_limit_refuses_a_20_mib_message(gateway: Any) -> None:
    alice, bob = gateway.client("alice"), gateway.client("bob")
    kid, bob_kid = await alice.start_kernel(), await bob.start_kernel()
    ws = await alice.connect(kid)
    msg = ws.message("execute_request", {"code": "#" + "x" * (20 * MiB), "silent": False, "store_history": False,
                                         "user_expressions": {}, "allow_stdin": False})
    try:
        await ws.send(msg)
    except WebSocketClosedError:
        pass
    while (m := await ws.recv(30)) is not None:
        assert m["msg_type"] == "status"  # nothing but the readiness probe's late status
    assert ws.conn.close_code == 1009  # message too big
    await _legit_round_trip(alice, kid)
    await _legit_round_trip(bob, bob_kid)
    for c, k in ((alice, kid), (bob, bob_kid)):
        await c.request("DELETE", f"api/kernels/{k}")


@pytest.mark.parametrize("size", [15 * MiB])
async def test_a_message_within_the_default_limit_still_reaches_the_kernel(gateway: Any, size: int) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid)
    res = await ws.execute(f"s = '{'y' * size}'\nlen(s)", timeout=120)
    assert res.text == str(size)
    ws.close()
    await c.request("DELETE", f"api/kernels/{kid}")
