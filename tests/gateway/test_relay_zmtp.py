"""ZmtpChannel: ZMTP 3.0 on the event loop, against real libzmq ROUTER and PUB sockets."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import zmq

from helpers.waiting import wait_until
from helpers.zmq_peers import dealer_round_trip, free_port, handshake, recv_from, subscribed, zmq_server
from yarn_gateway.relay import zmtp
from yarn_gateway.relay.batch import batching, defer_flush
from yarn_gateway.relay.zmtp import ChannelClosed, Endpoint, KernelNotTaking, ZmtpChannel


async def _greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ready: bytes) -> None:
    """A scripted peer's side of the greeting, in libzmq's steps; then its READY (as given)."""
    signature = await reader.readexactly(10)
    assert signature[0] == 0xFF and signature[9] == 0x7F
    writer.write(zmtp.GREETING)
    assert await reader.readexactly(1) == b"\x03"  # major version
    rest = await reader.readexactly(53)
    assert rest[1:5] == b"NULL"
    writer.write(ready)


async def test_dealer_talks_to_a_router_with_its_identity(ctx: zmq.Context) -> None:
    router, ep = zmq_server(ctx, zmq.ROUTER, None)
    got: list[list[bytes]] = []
    chan = ZmtpChannel(ep, "DEALER", got.append, identity=b"session-1")
    await dealer_round_trip(router, chan, got, b"session-1")
    chan.close()
    router.close()


async def test_sub_receives_everything_published(ctx: zmq.Context) -> None:
    pub, ep = zmq_server(ctx, zmq.PUB, None)
    got: list[list[bytes]] = []
    chan = ZmtpChannel(ep, "SUB", got.append)
    await subscribed(pub, got)
    for i in range(5000):
        pub.send_multipart([b"topic", str(i).encode()])
    await wait_until(lambda: len(got) == 5000, 10, "all 5000 published messages arrived", interval=0.005)
    assert [int(f[1]) for f in got] == list(range(5000))
    chan.close()
    pub.close()


async def test_sends_wait_until_the_kernel_listens_and_the_queue_is_bounded(
    ctx: zmq.Context, monkeypatch: Any
) -> None:
    monkeypatch.setattr(zmtp, "MAX_QUEUED", 50)
    port = free_port()
    chan = ZmtpChannel(Endpoint("tcp", "127.0.0.1", port), "DEALER", lambda f: None, identity=b"me")
    for i in range(50):
        chan.send([str(i).encode()])
    assert chan.queued == 50 and not chan.connected
    with pytest.raises(KernelNotTaking):
        chan.send([b"one too many"])
    # The kernel starts listening: the channel connects on its own and the queue drains in order.
    router, _ = zmq_server(ctx, zmq.ROUTER, None, port)
    received = [int((await recv_from(router))[1]) for _ in range(50)]
    assert received == list(range(50))
    assert chan.queued == 0
    chan.close()
    router.close()


async def test_reconnects_to_a_restarted_kernel_on_the_same_port(ctx: zmq.Context) -> None:
    router, ep = zmq_server(ctx, zmq.ROUTER, None)
    got: list[list[bytes]] = []
    chan = ZmtpChannel(ep, "DEALER", got.append, identity=b"me")
    chan.send([b"before"])
    assert (await recv_from(router))[1:] == [b"before"]
    router.close()
    await wait_until(lambda: not chan.connected, 10, "the channel saw the kernel go", interval=0.005)
    chan.send([b"while away"])  # kept until the kernel is back
    router, _ = zmq_server(ctx, zmq.ROUTER, None, ep.port)
    assert (await recv_from(router))[1:] == [b"while away"]
    router.send_multipart([b"me", b"after"])
    await wait_until(lambda: got == [[b"after"]], 10, "the restarted kernel's message arrived", interval=0.005)
    chan.close()
    router.close()


async def test_pacing_batches_a_flood_and_bounds_the_delay(ctx: zmq.Context) -> None:
    router, ep = zmq_server(ctx, zmq.ROUTER, None)
    arrivals: list[tuple[float, int]] = []
    chan = ZmtpChannel(ep, "DEALER", lambda f: arrivals.append((time.monotonic(), int(f[0]))), identity=b"me")
    await handshake(router, chan)
    chan.pace = 0.05
    router.send_multipart([b"me", b"0"])
    await wait_until(lambda: len(arrivals) == 1, 10, "the first message arrived", interval=0.005)
    sent_at = time.monotonic()
    for i in range(1, 21):  # right after a read: these wait for the next paced one
        router.send_multipart([b"me", str(i).encode()])
    await wait_until(lambda: len(arrivals) == 21, 10, "the 20 paced messages arrived", interval=0.005)
    times = [t for t, _ in arrivals[1:]]
    assert [i for _, i in arrivals] == list(range(21))
    assert max(times) - min(times) < 0.02  # one batch (allowing for a split at a TCP boundary)
    assert max(times) - sent_at >= 0.03  # they were held back ...
    assert max(times) - sent_at < 1.0  # ... not lost or stuck
    # With pacing off, a message is handled as soon as it arrives, however recent the last read.
    chan.pace = 0.0
    await asyncio.sleep(0.1)
    router.send_multipart([b"me", b"21"])
    await wait_until(lambda: len(arrivals) == 22, 0.5, "the unpaced message arrived", interval=0.005)
    chan.close()
    router.close()


async def test_writes_deferred_during_a_batch_are_flushed_when_it_ends(ctx: zmq.Context) -> None:
    router, ep = zmq_server(ctx, zmq.ROUTER, None)
    log: list[str] = []

    def on_message(frames: list[bytes]) -> None:
        assert batching()
        if not log:
            defer_flush(lambda: log.append("flush"))
        log.append(frames[0].decode())

    chan = ZmtpChannel(ep, "DEALER", on_message, identity=b"me")
    await handshake(router, chan)
    for i in range(3):
        router.send_multipart([b"me", str(i).encode()])
    await wait_until(lambda: "flush" in log, 10, "the deferred write was flushed", interval=0.005)
    assert not batching()
    assert log.index("flush") > log.index("0")  # after the messages of its batch
    chan.close()
    router.close()


async def test_close_stops_everything(ctx: zmq.Context) -> None:
    router, ep = zmq_server(ctx, zmq.ROUTER, None)
    got: list[list[bytes]] = []
    chan = ZmtpChannel(ep, "DEALER", got.append, identity=b"me")
    await handshake(router, chan)
    chan.close()
    chan.close()  # idempotent
    with pytest.raises(ChannelClosed):
        chan.send([b"after close"])
    router.send_multipart([b"me", b"late"])
    await asyncio.sleep(0.2)
    assert got == []
    router.close()


async def test_a_peer_that_is_not_a_matching_zmq_socket_is_refused(ctx: zmq.Context, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="yarn_gateway.relay.zmtp")
    # A PUB socket where a ROUTER belongs: its READY names it (and libzmq drops us too).
    pub, ep = zmq_server(ctx, zmq.PUB, None)
    chan = ZmtpChannel(ep, "DEALER", lambda f: None, identity=b"me", label="Kernel k1 (shell)")
    await wait_until(lambda: "does not speak ZMTP 3" in caplog.text, 10, "the log says the peer does not speak ZMTP 3",
                     interval=0.005)
    assert "its socket type is PUB" in caplog.text or "closed the connection during the handshake" in caplog.text
    await asyncio.sleep(0.3)  # retries follow
    assert "Kernel k1 (shell)" in caplog.text and not chan.connected
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1  # said once, not per retry
    chan.close()
    pub.close()

    # A peer that completes the handshake as the wrong socket type: we check it ourselves.
    async def wrong_type(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _greet(reader, writer, zmtp.encode_command(b"READY", zmtp.encode_properties({b"Socket-Type": b"PUB"})))
        await reader.read()

    # And something that is not ZMQ at all (here: an HTTP server's answer).
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 100)
        await writer.drain()
        await reader.read()

    for handler, expected in ((wrong_type, "its socket type is PUB"), (http, "no ZMTP greeting")):
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        caplog.clear()
        chan = ZmtpChannel(Endpoint("tcp", "127.0.0.1", port), "DEALER", lambda f: None, identity=b"me")
        await wait_until(lambda expected=expected: expected in caplog.text, 10, f"the log says {expected!r}",
                         interval=0.005)
        assert not chan.connected
        chan.close()
        server.close()
        await server.wait_closed()


async def test_ping_is_answered_with_pong() -> None:
    # A scripted ZMTP 3.1 peer (libzmq sends PING only when heartbeats are configured).
    pong = asyncio.get_running_loop().create_future()
    ours: list[bytes] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ready = zmtp.encode_command(b"READY", zmtp.encode_properties({b"Socket-Type": b"ROUTER"}))
        await _greet(reader, writer, ready + zmtp.encode_command(b"PING", b"\x00\x0actx"))
        flags, size = await reader.readexactly(2)
        assert flags & 0x04  # the client's READY (a command)
        ours.append(await reader.readexactly(size))
        flags, size = await reader.readexactly(2)
        pong.set_result(await reader.readexactly(size))

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    chan = ZmtpChannel(Endpoint("tcp", "127.0.0.1", port), "DEALER", lambda f: None)
    assert await asyncio.wait_for(pong, 10) == b"\x04PONGctx"
    # READY names our socket type, and carries an Identity even when it is empty, as libzmq's
    # does (the JeroMQ in Apache Toree never answers a DEALER whose READY has none).
    assert ours == [b"\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER\x08Identity\x00\x00\x00\x00"]
    chan.close()
    server.close()
    await server.wait_closed()


async def test_ready_without_the_command_flag_is_accepted() -> None:
    # libzmq 4.0 and the JeroMQ in Apache Toree send READY as an ordinary frame.
    got: list[list[bytes]] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = b"\x05READY" + zmtp.encode_properties({b"Socket-Type": b"ROUTER"})
        await _greet(reader, writer, bytes((0, len(body))) + body + zmtp.encode_message([b"a", b"b"]))
        await reader.read()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    chan = ZmtpChannel(Endpoint("tcp", "127.0.0.1", port), "DEALER", got.append, identity=b"me")
    await wait_until(lambda: got == [[b"a", b"b"]], 10, "the message after the flagless READY arrived", interval=0.005)
    assert chan.connected
    chan.close()
    server.close()
    await server.wait_closed()


# -- bounds on what a peer can make the channel hold (issue 15) ---------------------------------------

async def _scripted_peer(handler: Any) -> tuple[asyncio.Server, Endpoint]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, Endpoint("tcp", "127.0.0.1", server.sockets[0].getsockname()[1])


_READY_ROUTER = zmtp.encode_command(b"READY", zmtp.encode_properties({b"Socket-Type": b"ROUTER"}))


async def test_a_peer_that_never_completes_the_handshake_is_dropped_and_retried(caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="yarn_gateway.relay.zmtp")
    connections: list[bytes] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(await reader.read())  # says nothing; waits for us to give up (EOF)
        writer.close()

    async def greets_but_no_ready(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _greet(reader, writer, b"")  # the greeting, then never READY
        connections.append(await reader.read())
        writer.close()

    for handler in (silent, greets_but_no_ready):
        connections.clear()
        caplog.clear()
        server, ep = await _scripted_peer(handler)
        chan = ZmtpChannel(ep, "DEALER", lambda f: None, identity=b"me", label="Kernel k1 (shell)",
                           handshake_timeout=0.3)
        await wait_until(lambda: len(connections) >= 2, 10,  # dropped, then tried again (slowly)
                         "the peer that did not complete the handshake was dropped and connected to again",
                         interval=0.005)
        assert "did not complete the ZMTP handshake within 0.3 s" in caplog.text and "Kernel k1" in caplog.text
        assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
        assert not chan.connected
        chan.close()
        server.close()
        await server.wait_closed()


async def test_ping_is_not_answered_while_the_peer_leaves_our_pongs_unread() -> None:
    # A peer that pings as fast as it can and never reads: the PONGs must not pile up in the gateway.
    done = asyncio.get_running_loop().create_future()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _greet(reader, writer, _READY_ROUTER)
        ping = zmtp.encode_command(b"PING", b"\x00\x00" + b"c" * 16) * 4096  # ~100 KiB a write
        for _ in range(400):  # ~40 MB of PINGs, ~20 bytes of PONG each unless we stop answering
            writer.write(ping)
            await writer.drain()
        done.set_result(None)
        await reader.read()

    server, ep = await _scripted_peer(peer)
    chan = ZmtpChannel(ep, "DEALER", lambda f: None)
    await asyncio.wait_for(done, 60)
    transport = chan._transport
    assert transport is not None and chan.connected
    assert transport.get_write_buffer_size() < 256 * 1024  # about the transport's high-water mark
    chan.close()
    server.close()
    await server.wait_closed()


async def test_a_message_past_the_bound_is_skipped_and_reported_and_the_stream_stays_in_step(
    ctx: zmq.Context,
) -> None:
    router, ep = zmq_server(ctx, zmq.ROUTER, None)
    got: list[list[bytes]] = []
    dropped: list[tuple[list[bytes], int]] = []
    chan = ZmtpChannel(ep, "DEALER", got.append, identity=b"me", max_message_bytes=1024 * 1024,
                       on_oversize=lambda kept, size: dropped.append((list(kept), size)))
    await handshake(router, chan)
    part = b"p" * (400 * 1024)
    router.send_multipart([b"me", b"head", b"x" * (2 * 1024 * 1024)])  # one frame past the bound
    router.send_multipart([b"me", b"one"])
    router.send_multipart([b"me", b"a", part, part, part, b"tail"])  # each frame fits, the total does not
    router.send_multipart([b"me", b"two", part])  # within the bound: delivered whole
    await wait_until(lambda: len(got) == 2 and len(dropped) == 2, 10, "2 messages delivered and 2 reported oversize",
                     interval=0.005)
    assert got == [[b"one"], [b"two", part]]
    assert dropped[0] == ([b"head"], 4 + 2 * 1024 * 1024)
    assert dropped[1] == ([b"a", part, part], 1 + 3 * len(part) + 4)
    assert chan.connected
    chan.close()
    router.close()


async def test_the_send_queue_is_bounded_in_bytes() -> None:
    port = free_port()
    chan = ZmtpChannel(Endpoint("tcp", "127.0.0.1", port), "DEALER", lambda f: None, max_queued_bytes=1000)
    chan.send([b"x" * 5000])  # an empty queue takes one message of any size
    with pytest.raises(KernelNotTaking):
        chan.send([b"y"])
    assert chan.queued == 1 and chan.queued_bytes == 9 + 5000  # long frame header + body
    chan.close()
    chan2 = ZmtpChannel(Endpoint("tcp", "127.0.0.1", port), "DEALER", lambda f: None, max_queued_bytes=1000)
    for _ in range(9):
        chan2.send([b"z" * 98])  # 100 bytes each on the wire
    chan2.send([b"z" * 98])
    with pytest.raises(KernelNotTaking):
        chan2.send([b"z" * 98])
    assert chan2.queued_bytes == 1000
    chan2.close()
