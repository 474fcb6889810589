"""Kernel-like libzmq server sockets and a recording TCP tap, for the relay's channel tests
(tests/gateway/test_relay_libzmq.py, test_relay_curve_zmtp.py): the peers a
:class:`~yarn_gateway.relay.channel.KernelChannel` talks to, without a kernel."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable, Optional

import zmq

from helpers.waiting import wait_until
from yarn_gateway.relay.zmtp import Endpoint


def zmq_server(ctx: zmq.Context[Any], kind: int, keys: Optional[tuple[bytes, bytes]],
               port: int = 0) -> tuple[Any, Endpoint]:
    """A kernel-like server socket: a CurveZMQ server with ``keys`` (public, secret; Z85), NULL
    without."""
    sock = ctx.socket(kind)
    sock.linger = 0
    sock.sndhwm = 0  # ROUTER and PUB drop past their high-water mark: the tests send in bursts
    if keys is not None:
        sock.curve_server = True
        sock.curve_publickey, sock.curve_secretkey = keys
    if port:
        sock.bind(f"tcp://127.0.0.1:{port}")
    else:
        port = sock.bind_to_random_port("tcp://127.0.0.1")
    return sock, Endpoint("tcp", "127.0.0.1", port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def recv_from(sock: Any, timeout: float = 10.0) -> list[bytes]:
    """The next message on a libzmq server socket, waited for without blocking the loop."""
    await wait_until(lambda: sock.poll(0), timeout, "a message arrived on the libzmq server socket", interval=0.002)
    return list(sock.recv_multipart())


async def handshake(router: Any, chan: Any) -> None:
    """Until the ROUTER knows the channel's identity (it drops messages to identities it has
    not seen) and the channel says it is connected."""
    chan.send([b"hello"])
    assert (await recv_from(router))[1:] == [b"hello"]
    await wait_until(lambda: chan.connected, 10, "the channel saw its handshake succeed", interval=0.002)


async def subscribed(pub: Any, got: list[list[bytes]]) -> None:
    """Until the PUB socket has the channel's subscription (a probe arrived); ``got`` is emptied."""
    def probe() -> bool:
        if got:
            return True
        pub.send_multipart([b"topic", b"probe"])  # checked before sending: the last probe had time to arrive
        return False

    await wait_until(probe, 10, "the subscription reached the publisher (a probe arrived)", interval=0.01)
    got.clear()


class Accepts:
    """Counts the connections a server socket accepted (from its monitor)."""

    def __init__(self, sock: Any) -> None:
        self.monitor = sock.get_monitor_socket(zmq.EVENT_ACCEPTED)
        self.count = 0

    def __call__(self) -> int:
        while self.monitor.poll(0):
            self.monitor.recv_multipart()
            self.count += 1
        return self.count

    def close(self) -> None:
        self.monitor.close(linger=0)


class Tap:
    """A TCP forwarder on 127.0.0.1 that records every byte each way. ``down_hook``, when set,
    rewrites each chunk read from the kernel before it is forwarded (a man in the middle)."""

    def __init__(self, target: Endpoint) -> None:
        self.target = target
        self.up = bytearray()  # channel -> kernel
        self.down = bytearray()  # kernel -> channel
        self.down_hook: Optional[Callable[[bytes], bytes]] = None
        self.connections = 0
        self.server: Optional[asyncio.Server] = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Endpoint:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return Endpoint("tcp", "127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(self.target.host, self.target.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bytearray, down: bool) -> None:
            try:
                while data := await src.read(65536):
                    record += data
                    if down and self.down_hook is not None:
                        data = self.down_hook(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        tasks = [asyncio.ensure_future(pipe(reader, up_writer, self.up, False)),
                 asyncio.ensure_future(pipe(up_reader, writer, self.down, True))]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()


async def dealer_round_trip(router: Any, chan: Any, got: list[list[Any]], identity: bytes) -> None:
    """Messages both ways between a DEALER channel (``got`` collects what it receives) and a
    ROUTER: multipart, empty and 1 MiB frames up; 3,000 replies routed back by the channel's
    identity, in order and whole, and a 1 MiB one."""
    big = bytes(range(256)) * 4096  # 1 MiB: long frames, split over many reads
    chan.send([b"hello", b"", b"x" * 300])
    chan.send([bytearray(big)])
    assert await recv_from(router) == [identity, b"hello", b"", b"x" * 300]
    assert await recv_from(router) == [identity, big]
    n = 3000
    for i in range(n):  # replies are routed to us by the identity we announced
        router.send_multipart([identity, b"reply", str(i).encode()])
    router.send_multipart([identity, big, b"end"])
    await wait_until(lambda: len(got) == n + 1, 10, f"all {n + 1} messages routed to us arrived", interval=0.005)
    assert [int(f[1]) for f in got[:n]] == list(range(n))
    assert all(f[0] == b"reply" and len(f) == 2 for f in got[:n])  # multipart messages stay whole
    assert got[n] == [big, b"end"]
    assert chan.connected and chan.queued == 0


async def burst_arrives_in_order(pub: Any, got: list[list[Any]], n: int = 10_000) -> None:
    """``n`` messages published back to back all reach the SUB channel that fills ``got``,
    whole and in order."""
    for i in range(n):
        pub.send_multipart([b"stream", b"line %d" % i])
    await wait_until(lambda: len(got) == n, 20, f"all {n} published messages arrived", interval=0.005)
    assert [int(f[1].split()[1]) for f in got] == list(range(n))
    assert all(f[0] == b"stream" and len(f) == 2 for f in got)
