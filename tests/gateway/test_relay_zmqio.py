"""ZmqChannel: FD-driven reads in batches, non-blocking sends with a bounded queue, pacing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import zmq

from yarn_gateway.relay import zmqio
from yarn_gateway.relay.zmqio import KernelNotTaking, ZmqChannel, batching, defer_flush


@pytest.fixture
def ctx() -> Any:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def _pair(ctx: zmq.Context) -> tuple[zmq.Socket, zmq.Socket]:
    peer = ctx.socket(zmq.DEALER)
    peer.linger = 0
    port = peer.bind_to_random_port("tcp://127.0.0.1")
    ours = ctx.socket(zmq.DEALER)
    ours.linger = 0
    ours.connect(f"tcp://127.0.0.1:{port}")
    return peer, ours


async def _until(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_every_message_arrives_in_order_across_batches(ctx: zmq.Context) -> None:
    peer, ours = _pair(ctx)
    got: list[list[bytes]] = []
    chan = ZmqChannel(ours, got.append)
    n = zmqio.BATCH * 3 + 7  # more than one batch: the rest must follow without a new FD edge
    for i in range(n):
        peer.send_multipart([b"m", str(i).encode()])
    await _until(lambda: len(got) == n)
    assert [int(f[1]) for f in got] == list(range(n))
    assert all(len(f) == 2 for f in got)  # multipart messages stay whole
    chan.close()
    peer.close()


async def test_a_send_does_not_swallow_waiting_messages(ctx: zmq.Context) -> None:
    # ZMQ's FD is edge-triggered: a send can consume the edge that announces a reply which has
    # already arrived. The channel must notice anyway (it checks ZMQ_EVENTS after sends).
    peer, ours = _pair(ctx)
    got: list[list[bytes]] = []
    chan = ZmqChannel(ours, got.append)
    for i in range(200):
        chan.send([b"ping", str(i).encode()])
        frames = peer.recv_multipart()
        peer.send_multipart([b"pong", frames[1]])
        await _until(lambda i=i: len(got) == i + 1, timeout=5)
    assert [int(f[1]) for f in got] == list(range(200))
    chan.close()
    peer.close()


async def test_sends_wait_in_a_bounded_queue_when_the_peer_takes_nothing(ctx: zmq.Context, monkeypatch: Any) -> None:
    monkeypatch.setattr(zmqio, "MAX_QUEUED", 50)
    ours = ctx.socket(zmq.DEALER)
    ours.linger = 0
    ours.setsockopt(zmq.SNDHWM, 10)
    port = ours.bind_to_random_port("tcp://127.0.0.1")  # no peer yet: ZMQ itself queues nothing
    chan = ZmqChannel(ours, lambda f: None)
    for i in range(50):
        chan.send([str(i).encode()])
    assert chan.queued == 50
    with pytest.raises(KernelNotTaking):
        chan.send([b"one too many"])
    # A peer turns up: the queue drains, in order, without any further send.
    peer = ctx.socket(zmq.DEALER)
    peer.linger = 0
    peer.connect(f"tcp://127.0.0.1:{port}")
    received = []
    deadline = time.monotonic() + 10
    while len(received) < 50 and time.monotonic() < deadline:
        if peer.poll(10):
            received.append(int(peer.recv()))
        await asyncio.sleep(0)
    assert received == list(range(50))
    assert chan.queued == 0
    chan.close()
    peer.close()


async def test_pacing_batches_a_flood_and_bounds_the_delay(ctx: zmq.Context) -> None:
    peer, ours = _pair(ctx)
    arrivals: list[tuple[float, int]] = []
    chan = ZmqChannel(ours, lambda f: arrivals.append((time.monotonic(), int(f[0]))))
    chan.pace = 0.05
    peer.send(b"0")
    await _until(lambda: len(arrivals) == 1)
    sent_at = time.monotonic()
    for i in range(1, 21):  # right after a drain: these wait for the next paced one
        peer.send(str(i).encode())
    await _until(lambda: len(arrivals) == 21)
    times = [t for t, _ in arrivals[1:]]
    assert [i for _, i in arrivals] == list(range(21))
    assert max(times) - min(times) < 0.02  # one batch (allowing for a split at the TCP boundary)
    assert max(times) - sent_at < 1.0  # held, not lost or stuck
    # With pacing off, a message is handled as soon as it arrives, however recent the last drain.
    chan.pace = 0.0
    peer.send(b"21")
    await _until(lambda: len(arrivals) == 22, timeout=0.5)
    chan.close()
    peer.close()


async def test_writes_deferred_during_a_batch_are_flushed_when_it_ends(ctx: zmq.Context) -> None:
    peer, ours = _pair(ctx)
    log: list[str] = []

    def on_message(frames: list[bytes]) -> None:
        assert batching()
        if not log:
            defer_flush(lambda: log.append("flush"))
        log.append(frames[0].decode())

    chan = ZmqChannel(ours, on_message)
    for i in range(3):
        peer.send(str(i).encode())
    await _until(lambda: "flush" in log)
    assert not batching()
    # The flush comes after the messages of its batch (however the three were split).
    assert log.index("flush") > log.index("0")
    chan.close()
    peer.close()


async def test_close_stops_reading(ctx: zmq.Context) -> None:
    peer, ours = _pair(ctx)
    got: list[list[bytes]] = []
    chan = ZmqChannel(ours, got.append)
    chan.close()
    chan.close()  # idempotent
    assert chan.sock.closed
    with pytest.raises(zmq.ZMQError):
        chan.send([b"after close"])
    try:
        peer.send(b"late", zmq.NOBLOCK)
    except zmq.Again:
        pass
    await asyncio.sleep(0.1)
    assert got == []
    peer.close()
