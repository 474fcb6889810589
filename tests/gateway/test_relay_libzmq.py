"""LibzmqChannel: the relay's kernel connection through libzmq, CurveZMQ or NULL, against real
libzmq ROUTER and PUB server sockets (as a kernel's are), no kernel needed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

import psutil
import pytest
import zmq

from helpers.waiting import wait_until
from helpers.zmq_peers import (
    Accepts,
    Tap,
    burst_arrives_in_order,
    dealer_round_trip,
    free_port,
    handshake,
    recv_from,
    subscribed,
    zmq_server,
)
from yarn_gateway.relay import zmq_channel, zmtp
from yarn_gateway.relay.batch import batching, defer_flush
from yarn_gateway.relay.channel import CurveKeys
from yarn_gateway.relay.zmq_channel import LibzmqChannel
from yarn_gateway.relay.zmtp import ChannelClosed, Endpoint, KernelNotTaking, ZmtpChannel

MARKER = b"secret-marker"


def _curve(keys: Optional[tuple[bytes, bytes]]) -> Optional[CurveKeys]:
    return CurveKeys(keys[0]) if keys is not None else None


ENCRYPTION = pytest.mark.parametrize("encrypted", [True, False], ids=["curve", "null"])


def test_curve_keys_are_checked_when_made(keys: tuple[bytes, bytes]) -> None:
    public = keys[0]
    assert CurveKeys(public.decode()) == CurveKeys(public)  # text or bytes
    assert "..." in repr(CurveKeys(public)) and public.decode() not in repr(CurveKeys(public))
    for bad, why in ((public[:39], "has 39"), (bytes(32), "has 32"), (b"~" * 40, "alphabet"),
                     ("é" * 40, "ASCII"), (12, "not int")):
        with pytest.raises(ValueError, match=why):
            CurveKeys(bad)  # type: ignore[arg-type]
    assert CurveKeys.from_connection_info({"curve_publickey": public.decode()}) == CurveKeys(public)
    assert CurveKeys.from_connection_info({"key": "abc"}) is None


# -- (1) and (2): round trips and bursts, over CurveZMQ and over NULL --------------------------

@ENCRYPTION
async def test_dealer_round_trip(ctx: zmq.Context[Any], keys: tuple[bytes, bytes], encrypted: bool) -> None:
    server_keys = keys if encrypted else None
    router, ep = zmq_server(ctx, zmq.ROUTER, server_keys)
    got: list[list[bytes]] = []
    chan = LibzmqChannel(ep, "DEALER", got.append, identity=b"session-1", curve=_curve(server_keys))
    await dealer_round_trip(router, chan, got, b"session-1")
    chan.close()
    assert chan.closed and not chan.connected
    router.close()


@ENCRYPTION
async def test_a_burst_of_10000_arrives_complete_in_order_and_in_bounded_batches(
    ctx: zmq.Context[Any], keys: tuple[bytes, bytes], encrypted: bool
) -> None:
    server_keys = keys if encrypted else None
    pub, ep = zmq_server(ctx, zmq.PUB, server_keys)
    got: list[list[bytes]] = []
    batches: list[int] = []  # messages per batch, when each ended
    current = 0

    def batch_ended() -> None:
        nonlocal current
        batches.append(current)
        current = 0

    def on_message(frames: list[bytes]) -> None:
        nonlocal current
        assert batching()
        if current == 0:
            defer_flush(batch_ended)
        current += 1
        got.append(frames)

    chan = LibzmqChannel(ep, "SUB", on_message, curve=_curve(server_keys))
    await subscribed(pub, got)
    batches.clear()
    n = 10_000
    await burst_arrives_in_order(pub, got, n)
    assert sum(batches) == n and all(0 < b <= zmq_channel.BURST_MESSAGES for b in batches)
    assert len(batches) < n / 10  # many messages per wake-up, not one each
    chan.close()
    pub.close()


# -- (3) the wrong key; mechanisms that do not match; a peer that never completes the handshake ---

def _curve_channel(impl: str, ep: Endpoint, on_message: Any, public: Optional[bytes], kind: str = "DEALER",
                   **kw: Any) -> Any:
    """A client channel, CurveZMQ with the kernel's ``public`` key (NULL without): pyzmq's
    (``libzmq``) or the relay's own (``zmtp``)."""
    if impl == "zmtp":
        raw = CurveKeys(public).raw() if public is not None else None
        return ZmtpChannel(ep, kind, on_message, curve_server_key=raw, **kw)
    return LibzmqChannel(ep, kind, on_message, curve=CurveKeys(public) if public is not None else None, **kw)


@pytest.mark.parametrize("impl", ["libzmq", "zmtp"])
async def test_a_server_with_another_key_gets_nothing_and_is_named_once(
    ctx: zmq.Context[Any], keys: tuple[bytes, bytes], caplog: Any, monkeypatch: Any, impl: str
) -> None:
    monkeypatch.setattr(zmtp, "RECONNECT_SLOW_INTERVAL", 0.2)  # retries after a refusal (1 s)
    caplog.set_level(logging.DEBUG, logger="yarn_gateway.relay")
    router, ep = zmq_server(ctx, zmq.ROUTER, keys)
    accepted = Accepts(router)
    other_public, _ = zmq.curve_keypair()
    got: list[list[bytes]] = []
    chan = _curve_channel(impl, ep, got.append, other_public, identity=b"me", label="Kernel k1 (shell)")
    chan.send([b"never " + MARKER])
    await wait_until(lambda: "CurveZMQ key does not match" in caplog.text, 10, "the log says the key does not match",
                     interval=0.005)
    await wait_until(lambda: accepted() >= 2, 10, "the channel connected again after the failed handshake",
                     interval=0.01)
    assert not router.poll(200)  # nothing got through
    router.send_multipart([b"me", b"to nobody"])  # unroutable: dropped by the ROUTER
    await asyncio.sleep(0.1)
    assert got == [] and not chan.connected
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Kernel k1 (shell)" in warnings[0].getMessage()  # said once, not per retry
    assert other_public.decode() not in caplog.text and keys[0].decode() not in caplog.text
    chan.close()
    with pytest.raises(ChannelClosed):
        chan.send([b"after close"])
    # The control: the same server, with its key, answers.
    right = _curve_channel(impl, ep, got.append, keys[0], identity=b"me2")
    await handshake(router, right)
    right.close()
    accepted.close()
    router.close()


@pytest.mark.parametrize("client_curve", [True, False], ids=["curve-client-null-server", "null-client-curve-server"])
async def test_a_mechanism_mismatch_is_named_and_retried(
    ctx: zmq.Context[Any], keys: tuple[bytes, bytes], caplog: Any, client_curve: bool, monkeypatch: Any
) -> None:
    monkeypatch.setattr(zmtp, "RECONNECT_SLOW_INTERVAL", 0.2)
    caplog.set_level(logging.DEBUG, logger="yarn_gateway.relay.zmq_channel")
    router, ep = zmq_server(ctx, zmq.ROUTER, None if client_curve else keys)
    accepted = Accepts(router)
    chan = LibzmqChannel(ep, "DEALER", lambda f: None, identity=b"me", label="Kernel k2 (shell)",
                         curve=CurveKeys(keys[0]) if client_curve else None)
    expected = "does not speak CurveZMQ" if client_curve else "CurveZMQ"
    await wait_until(lambda: "cannot talk to" in caplog.text, 10, "the log says the peer cannot be talked to",
                     interval=0.005)
    # (Either side may see the mismatch first: when the kernel's side does, it just closes.)
    assert expected in caplog.text and "Kernel k2 (shell)" in caplog.text
    # libzmq never reconnects after a protocol error in the handshake: the channel does, slowly.
    await wait_until(lambda: accepted() >= 3, 10, "the channel connected again, twice", interval=0.05)
    assert not chan.connected
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
    chan.close()
    accepted.close()
    router.close()


async def test_a_peer_that_never_completes_the_handshake_is_dropped_and_retried(
    keys: tuple[bytes, bytes], caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="yarn_gateway.relay.zmq_channel")
    connections: list[bytes] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(await reader.read())  # says nothing; waits for the client to give up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    ep = Endpoint("tcp", "127.0.0.1", server.sockets[0].getsockname()[1])
    chan = LibzmqChannel(ep, "DEALER", lambda f: None, label="Kernel k3 (shell)", curve=CurveKeys(keys[0]),
                         handshake_timeout=0.3)
    await wait_until(lambda: len(connections) >= 2, 10, "the silent peer was dropped and connected to again",
                     interval=0.01)
    assert "did not complete the CurveZMQ handshake within 0.3 s" in caplog.text and "Kernel k3" in caplog.text
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
    assert not chan.connected
    chan.close()
    server.close()
    await server.wait_closed()


# -- (4) a tap between the channel and the kernel: what the network sees -----------------------

@ENCRYPTION
@pytest.mark.parametrize("impl", ["libzmq", "zmtp"])
async def test_a_tap_on_the_wire_sees_the_marker_only_without_curve(
    ctx: zmq.Context[Any], keys: tuple[bytes, bytes], encrypted: bool, taps: list[Tap], impl: str
) -> None:
    server_keys = keys if encrypted else None
    router, router_ep = zmq_server(ctx, zmq.ROUTER, server_keys)
    pub, pub_ep = zmq_server(ctx, zmq.PUB, server_keys)
    shell_tap, iopub_tap = Tap(router_ep), Tap(pub_ep)
    taps += [shell_tap, iopub_tap]
    got: list[list[bytes]] = []
    output: list[list[bytes]] = []
    public = keys[0] if encrypted else None
    shell = _curve_channel(impl, await shell_tap.start(), got.append, public, identity=b"me-identity")
    iopub = _curve_channel(impl, await iopub_tap.start(), output.append, public, kind="SUB")
    request = [b"<IDS|MSG>", b"sig", b'{"code": "print(\\"' + MARKER + b'\\")"}']
    shell.send(request)
    assert await recv_from(router) == [b"me-identity", *request]  # arrives intact
    router.send_multipart([b"me-identity", b"reply with " + MARKER])
    await wait_until(lambda: got, 10, "the reply arrived", interval=0.005)
    assert got == [[b"reply with " + MARKER]]
    await subscribed(pub, output)
    pub.send_multipart([b"stream", b"output: " + MARKER])
    await wait_until(lambda: output, 10, "the output arrived", interval=0.005)
    assert output == [[b"stream", b"output: " + MARKER]]
    assert len(shell_tap.up) > 100 and len(shell_tap.down) > 100 and len(iopub_tap.down) > 100  # the tap saw traffic
    seen = [MARKER in shell_tap.up, MARKER in shell_tap.down, MARKER in iopub_tap.down]
    if encrypted:
        assert seen == [False, False, False]
        for wire in (shell_tap.up, shell_tap.down, iopub_tap.up, iopub_tap.down):  # even the metadata
            assert b"me-identity" not in wire and b"Socket-Type" not in wire and b"DEALER" not in wire
        assert b"CURVE" in shell_tap.up and b"HELLO" in shell_tap.up  # the control: it is CurveZMQ on the wire
    else:  # the control: the same tap does see plaintext
        assert seen == [True, True, True]
    shell.close()
    iopub.close()
    router.close()
    pub.close()


# -- (5) send bounds ------------------------------------------------------------------------------

async def test_the_send_queue_is_bounded_while_the_kernel_is_absent(
    ctx: zmq.Context[Any], keys: tuple[bytes, bytes], monkeypatch: Any
) -> None:
    port = free_port()
    ep = Endpoint("tcp", "127.0.0.1", port)
    chan = LibzmqChannel(ep, "DEALER", lambda f: None, curve=CurveKeys(keys[0]), max_queued_bytes=1000)
    chan.send([b"x" * 5000])  # an empty queue takes one message of any size
    with pytest.raises(KernelNotTaking):
        chan.send([b"y"])
    assert chan.queued == 1 and chan.queued_bytes == 5000
    chan.close()
    chan = LibzmqChannel(ep, "DEALER", lambda f: None, curve=CurveKeys(keys[0]), max_queued_bytes=1000)
    for _ in range(10):
        chan.send([b"z" * 50, b"z" * 50])  # 100 bytes of frames each
    with pytest.raises(KernelNotTaking):
        chan.send([b"z"])
    assert chan.queued_bytes == 1000 and chan.queued == 10
    chan.close()
    with pytest.raises(ChannelClosed):
        chan.send([b"after close"])
    assert chan.queued == 0
    # In messages: MAX_QUEUED; then the kernel starts listening and the queue drains in order.
    monkeypatch.setattr(zmtp, "MAX_QUEUED", 50)
    chan = LibzmqChannel(ep, "DEALER", lambda f: None, identity=b"me", curve=CurveKeys(keys[0]))
    for i in range(50):
        chan.send([str(i).encode()])
    with pytest.raises(KernelNotTaking):
        chan.send([b"one too many"])
    assert chan.queued == 50 and not chan.connected
    router, _ = zmq_server(ctx, zmq.ROUTER, keys, port)
    assert [int((await recv_from(router))[1]) for _ in range(50)] == list(range(50))
    assert chan.queued == 0 and chan.queued_bytes == 0 and chan.connected
    chan.close()
    router.close()


async def test_the_send_queue_is_bounded_while_the_kernel_does_not_read(
    ctx: zmq.Context[Any], keys: tuple[bytes, bytes]
) -> None:
    router, ep = zmq_server(ctx, zmq.ROUTER, keys)
    router.rcvhwm = 10
    chan = LibzmqChannel(ep, "DEALER", lambda f: None, identity=b"me", curve=CurveKeys(keys[0]),
                         max_queued_bytes=64 * 1024)
    await handshake(router, chan)
    payload = b"p" * 1024
    sent = 0
    with pytest.raises(KernelNotTaking):
        for sent in range(200_000):  # ~200 MB unless the bound holds
            chan.send([b"%d" % sent, payload])
            if sent % 1000 == 0:
                await asyncio.sleep(0.001)  # libzmq's I/O thread fills the kernel's buffers meanwhile
    assert chan.queued_bytes <= 64 * 1024 and chan.queued == chan.queued_bytes // (len(payload) + len(b"%d" % sent))
    # Not a dead end: once the kernel reads, everything queued arrives, in order, the last one too.
    last = sent - 1
    received = -1
    while received != last:
        frames = await recv_from(router)
        assert int(frames[1]) == received + 1
        received += 1
    assert chan.queued == 0 and chan.queued_bytes == 0
    chan.close()
    router.close()


# -- (6) max_message_bytes --------------------------------------------------------------------------

@ENCRYPTION
async def test_a_message_past_the_bound_is_not_delivered_and_the_channel_reconnects(
    ctx: zmq.Context[Any], keys: tuple[bytes, bytes], encrypted: bool
) -> None:
    # libzmq does not skip such a message: it drops the connection (and never reconnects after
    # this protocol error). The channel reports it and opens a new socket.
    server_keys = keys if encrypted else None
    router, ep = zmq_server(ctx, zmq.ROUTER, server_keys)
    got: list[list[bytes]] = []
    dropped: list[tuple[list[bytes], int]] = []
    bound = 1024 * 1024
    chan = LibzmqChannel(ep, "DEALER", got.append, identity=b"me", curve=_curve(server_keys),
                         max_message_bytes=bound, on_oversize=lambda kept, size: dropped.append((list(kept), size)))
    await handshake(router, chan)
    router.send_multipart([b"me", b"within", b"w" * (bound - 100)])  # delivered whole
    router.send_multipart([b"me", b"head", b"x" * (2 * bound)])  # past the bound
    await wait_until(lambda: dropped, 10, "the over-size message was reported", interval=0.005)
    assert dropped == [([], bound + 1)]
    assert got == [[b"within", b"w" * (bound - 100)]]

    def reconnected() -> bool:
        router.poll(0)  # as a kernel does, the ROUTER keeps reading (it lets the old connection go)
        return chan.connected

    await wait_until(reconnected, 10, "the channel connected again", interval=0.01)
    chan.send([b"after"])
    assert (await recv_from(router))[1:] == [b"after"]
    router.send_multipart([b"me", b"back"])
    await wait_until(lambda: len(got) == 2, 10, "a message after the reconnection arrived", interval=0.005)
    assert got[1] == [b"back"] and len(dropped) == 1
    chan.close()
    router.close()


# -- pacing, as the hub uses it while a kernel floods output -------------------------------------

async def test_pacing_holds_reading_back(ctx: zmq.Context[Any]) -> None:
    router, ep = zmq_server(ctx, zmq.ROUTER, None)
    got: list[list[bytes]] = []
    chan = LibzmqChannel(ep, "DEALER", got.append, identity=b"me")
    await handshake(router, chan)
    chan.pace = 1.0
    router.send_multipart([b"me", b"0"])
    await wait_until(lambda: len(got) == 1, 10, "the first message arrived", interval=0.005)
    for i in range(1, 21):
        router.send_multipart([b"me", str(i).encode()])
    await asyncio.sleep(0.1)
    assert len(got) == 1  # held back until the pause ends ...
    await wait_until(lambda: len(got) == 21, 10, "the paced messages arrived", interval=0.01)  # ... not lost
    assert [int(f[0]) for f in got] == list(range(21))
    chan.close()
    router.close()


# -- (7) no file descriptor or task left behind ------------------------------------------------------

async def test_no_fd_or_task_is_left_after_close(ctx: zmq.Context[Any], keys: tuple[bytes, bytes]) -> None:
    proc = psutil.Process()
    loop = asyncio.get_running_loop()
    router, ep = zmq_server(ctx, zmq.ROUTER, keys)

    async def cycle(n: int, close: bool) -> list[LibzmqChannel]:
        chans = []
        for i in range(n):
            chan = LibzmqChannel(ep, "DEALER", lambda f: None, identity=b"c%d" % i, curve=CurveKeys(keys[0]))
            await wait_until(lambda chan=chan: chan.connected, 10, "the channel connected", interval=0.002)
            if close:
                chan.close()
            chans.append(chan)
        return chans

    await cycle(1, close=True)  # the shared libzmq context exists from now on
    await asyncio.sleep(0.2)
    fds, tasks, readers = proc.num_fds(), len(asyncio.all_tasks()), len(loop._selector.get_map())  # type: ignore[attr-defined]
    # The measure works: five open channels show.
    open_chans = await cycle(5, close=False)
    assert proc.num_fds() >= fds + 10 and len(loop._selector.get_map()) >= readers + 10  # type: ignore[attr-defined]
    for chan in open_chans:
        chan.close()
    await cycle(50, close=True)
    await wait_until(lambda: proc.num_fds() <= fds + 2, 10,  # libzmq's reaper closes them shortly after
                     lambda: f"the fds went back to {fds} (now {proc.num_fds()})", interval=0.05)
    assert len(asyncio.all_tasks()) == tasks
    assert len(loop._selector.get_map()) == readers  # type: ignore[attr-defined]
    router.close()
