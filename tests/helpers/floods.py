"""Hostile TCP clients for flood tests (real sockets, 127.0.0.0/8 only).

Linux routes all of 127.0.0.0/8 to loopback, so a flood can come "from another host" by
binding its client sockets to 127.0.0.2 while the legitimate client connects from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional

OTHER_HOST = "127.0.0.2"


@dataclass
class FloodStats:
    opened: int = 0
    refused: int = 0  # connect() failed
    answers: list[dict[str, Any]] = field(default_factory=list)  # what the server told flooders
    bytes_before_answer: list[int] = field(default_factory=list)  # drip floods: bytes sent when cut off

    def codes(self) -> set[str]:
        return {str(a.get("reason", a.get("status", ""))).partition(":")[0] for a in self.answers}


class Flood:
    """``count`` connections to ``host:port`` from ``source``, each idle (``drip`` None) or
    sending ``drip`` one byte every ``interval`` seconds, never completing a request. With
    ``churn`` a connection the server closes is opened again at once, so the flood stays at
    ``count``. Use as ``async with Flood(...) as f:``; :attr:`stats` records what happened."""

    def __init__(self, host: str, port: int, count: int, *, source: str = OTHER_HOST, churn: bool = False,
                 drip: Optional[bytes] = None, interval: float = 0.3) -> None:
        self.host, self.port, self.count, self.source = host, port, count, source
        self.churn, self.drip, self.interval = churn, drip, interval
        self.stats = FloodStats()
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()
        self._up = 0

    @property
    def open_now(self) -> int:
        """Flood connections the server has not closed (yet)."""
        return self._up

    async def __aenter__(self) -> Flood:
        self._tasks = [asyncio.create_task(self._one()) for _ in range(self.count)]
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _one(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port, local_addr=(self.source, 0))
            except OSError:
                self.stats.refused += 1
                await asyncio.sleep(0.05)
                if not self.churn:
                    return
                continue
            self.stats.opened += 1
            self._up += 1
            if self.stats.opened >= self.count:
                self.connected.set()
            try:
                await self._hold(reader, writer)
            finally:
                self._up -= 1
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            if not self.churn:
                return
            await asyncio.sleep(0.01)

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent = 0
        read = asyncio.ensure_future(reader.readline())
        try:
            while True:
                done, _ = await asyncio.wait({read}, timeout=self.interval)
                if done:
                    try:
                        line = read.result()
                    except (OSError, ValueError):
                        return
                    if line:
                        with contextlib.suppress(ValueError):
                            self.stats.answers.append(json.loads(line))
                        self.stats.bytes_before_answer.append(sent)
                    return
                if self.drip is not None and sent < len(self.drip):
                    try:
                        writer.write(self.drip[sent:sent + 1])
                        await writer.drain()
                    except OSError:
                        return
                    sent += 1
        finally:
            read.cancel()
            with contextlib.suppress(BaseException):
                await read


class BusyFront:
    """A TCP front for ``target``: answers the first ``busy_first`` connections with the
    protocol's ``busy`` error (what an overloaded gateway or control port says), then
    relays connections to the target unchanged. Counts what it did."""

    def __init__(self, target_host: str, target_port: int, busy_first: int,
                 answer: bytes = b'{"status": "error", "reason": "busy: too many connections"}\n') -> None:
        self.target = (target_host, target_port)
        self.busy_left = busy_first
        self.answer = answer
        self.busy_sent = 0
        self.relayed = 0
        self._server: Optional[asyncio.AbstractServer] = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> BusyFront:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.busy_left > 0:
                self.busy_left -= 1
                self.busy_sent += 1
                with contextlib.suppress(OSError, asyncio.TimeoutError):
                    await asyncio.wait_for(reader.read(65536), 2)  # take the request, then refuse it
                    writer.write(self.answer)
                    await writer.drain()
                return
            self.relayed += 1
            up_r, up_w = await asyncio.open_connection(*self.target)
            try:
                await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
            finally:
                up_w.close()
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except OSError:
        pass
