"""ZmtpChannel speaking CurveZMQ (relay/curve.py): the relay's own client against real libzmq
CurveZMQ ROUTER and PUB sockets, as a kernel's are. What libzmq accepts and sends is the
reference: every test here talks to libzmq, none to a CurveZMQ written for the test.

Shown: messages both ways, whole and in order; the kernel's key is what lets it in (another
key, or NULL, gets nothing: the other key in test_relay_libzmq.py, on both implementations);
a tap on the wire sees neither the messages nor the metadata (also there);
a tampered or replayed box from the network is refused and the connection is made again;
the size bound holds; libzmq's encrypted heartbeats are answered; what is sent before the
kernel listens goes out under the keys of the connection that carries it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

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
from yarn_gateway.relay import zmtp
from yarn_gateway.relay.batch import batching
from yarn_gateway.relay.channel import CurveKeys
from yarn_gateway.relay.zmtp import ZmtpChannel

MARKER = b"secret-marker"
LOGGER = "yarn_gateway.relay.zmtp"


def _raw(public: bytes) -> bytes:
    return CurveKeys(public).raw()


async def test_dealer_round_trip(ctx: zmq.Context[Any], keys: tuple[bytes, bytes]) -> None:
    router, ep = zmq_server(ctx, zmq.ROUTER, keys)
    got: list[list[Any]] = []
    chan = ZmtpChannel(ep, "DEALER", got.append, identity=b"session-1", curve_server_key=_raw(keys[0]))
    await dealer_round_trip(router, chan, got, b"session-1")
    chan.close()
    assert chan.closed and not chan.connected
    router.close()


async def test_a_burst_of_10000_arrives_complete_and_in_order(ctx: zmq.Context[Any], keys: tuple[bytes, bytes]) -> None:
    pub, ep = zmq_server(ctx, zmq.PUB, keys)
    got: list[list[Any]] = []

    def on_message(frames: list[Any]) -> None:
        assert batching()
        got.append(frames)

    chan = ZmtpChannel(ep, "SUB", on_message, curve_server_key=_raw(keys[0]))
    await subscribed(pub, got)
    await burst_arrives_in_order(pub, got)
    chan.close()
    pub.close()


async def test_a_null_server_is_named_and_retried_slowly(
    ctx: zmq.Context[Any], keys: tuple[bytes, bytes], caplog: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(zmtp, "RECONNECT_SLOW_INTERVAL", 0.2)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    router, ep = zmq_server(ctx, zmq.ROUTER, None)
    accepted = Accepts(router)
    chan = ZmtpChannel(ep, "DEALER", lambda f: None, identity=b"me", label="Kernel k2 (shell)",
                       curve_server_key=_raw(keys[0]))
    chan.send([MARKER])
    await wait_until(lambda: accepted() >= 3, 10, "the channel connected again, twice", interval=0.05)
    assert "does not speak CurveZMQ" in caplog.text and "Kernel k2 (shell)" in caplog.text
    assert not chan.connected and not router.poll(100)
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
    chan.close()
    accepted.close()
    router.close()


async def _tapped_channel(ctx: zmq.Context[Any], keys: tuple[bytes, bytes], taps: list[Tap],
                          got: list[list[Any]]) -> tuple[Any, Tap, ZmtpChannel]:
    router, ep = zmq_server(ctx, zmq.ROUTER, keys)
    router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # as the launchers' proxies have it
    tap = Tap(ep)
    taps.append(tap)
    chan = ZmtpChannel(await tap.start(), "DEALER", got.append, identity=b"me", label="Kernel k4 (shell)",
                       curve_server_key=_raw(keys[0]))
    await handshake(router, chan)
    return router, tap, chan


async def _works_again(router: Any, chan: ZmtpChannel, got: list[list[Any]], tap: Tap) -> None:
    await wait_until(lambda: tap.connections >= 2 and chan.connected, 10, "the channel connected again",
                     interval=0.01)
    chan.send([b"after"])
    assert (await recv_from(router))[1:] == [b"after"]
    before = len(got)
    router.send_multipart([b"me", b"back"])
    await wait_until(lambda: len(got) > before, 10, "a message on the new connection arrived", interval=0.005)
    assert got[-1] == [b"back"]


def _flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes((data[-1] ^ 0x01,))


def _twice(data: bytes) -> bytes:
    return data + data  # the same MESSAGE again: the same nonce, a valid box


@pytest.mark.parametrize(("mangle", "refusal", "delivered"), [
    (_flip_last_byte, "failed to decrypt", []),  # a tampered box: never delivered
    (_twice, "reused or reordered a nonce", [[b"once " + MARKER]]),  # a replayed box: delivered once
], ids=["tampered", "replayed"])
async def test_a_box_changed_on_the_wire_is_refused_and_the_connection_made_again(
    ctx: zmq.Context[Any], keys: tuple[bytes, bytes], taps: list[Tap], caplog: Any, monkeypatch: Any,
    mangle: Callable[[bytes], bytes], refusal: str, delivered: list[list[bytes]]
) -> None:
    monkeypatch.setattr(zmtp, "RECONNECT_SLOW_INTERVAL", 0.2)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    got: list[list[Any]] = []
    router, tap, chan = await _tapped_channel(ctx, keys, taps, got)

    def once(data: bytes) -> bytes:
        tap.down_hook = None
        return mangle(data)

    tap.down_hook = once
    router.send_multipart([b"me", b"once " + MARKER])
    await wait_until(lambda: refusal in caplog.text, 10, f"the log says {refusal!r}", interval=0.005)
    assert got == delivered
    await _works_again(router, chan, got, tap)
    assert got == [*delivered, [b"back"]]
    chan.close()
    router.close()


async def test_the_size_bound_holds(ctx: zmq.Context[Any], keys: tuple[bytes, bytes]) -> None:
    router, ep = zmq_server(ctx, zmq.ROUTER, keys)
    accepted = Accepts(router)
    got: list[list[Any]] = []
    dropped: list[tuple[list[Any], int]] = []
    bound = 256 * 1024
    chan = ZmtpChannel(ep, "DEALER", got.append, identity=b"me", curve_server_key=_raw(keys[0]),
                       max_message_bytes=bound, on_oversize=lambda kept, size: dropped.append((list(kept), size)))
    await handshake(router, chan)
    # Frames each within the bound, together past it: skipped (its first frames reported), and
    # the connection stays.
    router.send_multipart([b"me", b"head", b"a" * (bound // 2), b"b" * (bound // 2)])
    router.send_multipart([b"me", b"within", b"w" * (bound - 1000)])
    await wait_until(lambda: dropped and got, 10, "the over-size message was reported, the next delivered",
                     interval=0.005)
    assert dropped == [([b"head", b"a" * (bound // 2)], 4 + bound)]
    assert got == [[b"within", b"w" * (bound - 1000)]]
    assert accepted() == 1
    # One frame past the bound: reported, and the connection made again (as libzmq does).
    router.send_multipart([b"me", b"big", b"x" * (2 * bound)])
    await wait_until(lambda: len(dropped) == 2, 10, "the over-size frame was reported", interval=0.005)
    assert dropped[1][0] == [b"big"] and dropped[1][1] > bound

    def reconnected() -> bool:
        router.poll(0)
        return accepted() >= 2 and chan.connected

    await wait_until(reconnected, 10, "the channel connected again", interval=0.01)
    chan.send([b"after"])
    assert (await recv_from(router))[1:] == [b"after"]
    router.send_multipart([b"me", b"back"])
    await wait_until(lambda: len(got) == 2, 10, "a message after the reconnection arrived", interval=0.005)
    assert got[1] == [b"back"]
    chan.close()
    accepted.close()
    router.close()


async def test_libzmq_heartbeats_inside_the_boxes_are_answered(
    ctx: zmq.Context[Any], keys: tuple[bytes, bytes]
) -> None:
    # libzmq pings every 50 ms and drops a connection that sends no PONG within 300 ms.
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.curve_server = True
    router.curve_publickey, router.curve_secretkey = keys
    router.heartbeat_ivl, router.heartbeat_timeout = 50, 300
    port = router.bind_to_random_port("tcp://127.0.0.1")
    accepted = Accepts(router)
    got: list[list[Any]] = []
    chan = ZmtpChannel(zmtp.Endpoint("tcp", "127.0.0.1", port), "DEALER", got.append, identity=b"me",
                       curve_server_key=_raw(keys[0]))
    await handshake(router, chan)
    await asyncio.sleep(1.5)  # 30 pings
    assert accepted() == 1 and chan.connected  # never dropped for a missing PONG
    router.send_multipart([b"me", b"still here"])
    await wait_until(lambda: got, 10, "a message after the pings arrived", interval=0.005)
    assert got == [[b"still here"]]
    chan.close()
    accepted.close()
    router.close()


async def test_what_is_queued_before_the_kernel_listens_is_sent_in_order(
    ctx: zmq.Context[Any], keys: tuple[bytes, bytes]
) -> None:
    port = free_port()
    chan = ZmtpChannel(zmtp.Endpoint("tcp", "127.0.0.1", port), "DEALER", lambda f: None, identity=b"me",
                       curve_server_key=_raw(keys[0]))
    for i in range(50):
        chan.send([str(i).encode(), MARKER])
    assert chan.queued == 50 and not chan.connected
    await asyncio.sleep(0.3)  # a few connection attempts fail meanwhile
    router, _ = zmq_server(ctx, zmq.ROUTER, keys, port)
    assert [int((await recv_from(router))[1]) for _ in range(50)] == list(range(50))
    assert chan.queued == 0 and chan.queued_bytes == 0 and chan.connected
    chan.close()
    router.close()


def test_a_key_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ZmtpChannel(zmtp.Endpoint("tcp", "127.0.0.1", 1), "DEALER", lambda f: None, curve_server_key=b"z" * 40)
