"""ZMQ sockets driven straight from the asyncio loop, without a future per message.

``zmq.asyncio`` costs a future, a poller registration and several loop iterations for
every message received, which is most of the relay's CPU when a kernel prints fast.
:class:`ZmqChannel` instead registers the socket's file descriptor with
``loop.add_reader`` and, when it fires, receives every message that is waiting (up to
a batch, then it yields so other kernels and websockets get their turn) and hands each
to a callback.

ZMQ's descriptor is edge-triggered and only says "something may have changed": after
any send the socket may already hold messages the descriptor will not signal again,
so every send is followed by a check of ``ZMQ_EVENTS``.

Sends never block: when the socket's high-water mark is reached (a kernel that stopped
reading), messages wait in a bounded queue here and leave as soon as ZMQ takes them.

Websocket writes made while a batch is handled can be held back (:func:`defer_flush`)
and written together when the batch ends, in the same callback: one ``send()`` system
call for a burst of kernel output instead of one per message, and nothing can run
between the messages being accepted and written.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Callable, Optional

import zmq

log = logging.getLogger(__name__)

_NOBLOCK = int(zmq.NOBLOCK)

#: Messages received in one go before the loop is given back to other work.
BATCH = 256
#: Messages waiting for a kernel that takes none (beyond ZMQ's own high-water mark).
MAX_QUEUED = 10_000


class _Batch:
    depth = 0
    flushes: list[Callable[[], None]] = []


def batching() -> bool:
    """Whether a batch of received messages is being handled right now."""
    return _Batch.depth > 0


def defer_flush(flush: Callable[[], None]) -> None:
    """Call ``flush`` when the current batch ends (only valid while :func:`batching`)."""
    _Batch.flushes.append(flush)


def _end_batch() -> None:
    _Batch.depth -= 1
    if _Batch.depth == 0:
        while _Batch.flushes:
            flushes, _Batch.flushes = _Batch.flushes, []
            for flush in flushes:
                try:
                    flush()
                except Exception:  # one broken writer must not keep the others' output back
                    log.exception("Flushing a websocket failed")


class KernelNotTaking(Exception):
    """The kernel has stopped taking messages: the send queue is full."""


class ZmqChannel:
    """One synchronous ZMQ socket read and written from the running event loop."""

    def __init__(self, sock: zmq.Socket, on_message: Callable[[list[bytes]], None]) -> None:
        self.sock = sock
        self.on_message = on_message
        self._loop = asyncio.get_running_loop()
        self._fd = int(sock.getsockopt(zmq.FD))
        self._queue: collections.deque[list[bytes]] = collections.deque()
        self._drain_scheduled = False
        self._timer: Optional[asyncio.TimerHandle] = None
        self._last_drain = 0.0
        #: Seconds between two drains (0: drain as soon as a message arrives). Set while a
        #: kernel floods output, so a burst is relayed in batches rather than message by message.
        self.pace = 0.0
        self.closed = False
        self._loop.add_reader(self._fd, self._readable)

    # -- receiving ------------------------------------------------------------------------
    def _readable(self) -> None:
        if self._timer is not None or self._drain_scheduled:
            self.sock.getsockopt(zmq.EVENTS)  # consumes the edge; the drain is already due
            return
        if self.pace:
            wait = self._last_drain + self.pace - self._loop.time()
            if wait > 0:
                self.sock.getsockopt(zmq.EVENTS)
                self._timer = self._loop.call_later(wait, self._ready)
                return
        self._ready()

    def _ready(self) -> None:
        self._drain_scheduled = False
        self._timer = None
        if self.closed:
            return
        self._last_drain = self._loop.time()
        sock = self.sock
        if self._queue:
            self._flush_queue()
        recv = sock.recv
        on_message = self.on_message
        _Batch.depth += 1
        try:
            for _ in range(BATCH):
                # Frames, not bytes: Frame.more is an attribute, where getsockopt(RCVMORE)
                # converts its option to an enum on every call.
                frame = recv(_NOBLOCK, copy=False)
                frames = [frame.bytes]
                while frame.more:
                    frame = recv(_NOBLOCK, copy=False)
                    frames.append(frame.bytes)
                on_message(frames)
                if self.closed:  # the callback closed us
                    return
        except zmq.Again:
            if self._queue:  # room may have come while we were receiving (the edge is spent)
                self._check_events()
            return
        except zmq.ZMQError as exc:
            if not self.closed:
                log.debug("ZMQ socket error, closing it: %s", exc)
                self.close()
            return
        finally:
            _end_batch()
        self._schedule_drain()  # more may be waiting: continue after other work

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled and not self.closed:
            self._drain_scheduled = True
            self._loop.call_soon(self._ready)

    # -- sending --------------------------------------------------------------------------
    def send(self, frames: list[bytes]) -> None:
        """Send one multipart message without blocking.

        Raises :class:`KernelNotTaking` when the kernel has not taken the last
        :data:`MAX_QUEUED` messages, and ``zmq.ZMQError`` when the socket is closed.
        """
        if self._queue:
            if len(self._queue) >= MAX_QUEUED:
                raise KernelNotTaking("the kernel is not taking messages")
            self._queue.append(frames)
        else:
            try:
                self.sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self._queue.append(frames)
        # The send may have consumed the edge that announces waiting messages (or free room).
        self._check_events()

    def _check_events(self) -> None:
        if int(self.sock.getsockopt(zmq.EVENTS)) & (zmq.POLLIN | (zmq.POLLOUT if self._queue else 0)):
            self._schedule_drain()

    def _flush_queue(self) -> None:
        queue = self._queue
        send = self.sock.send_multipart
        try:
            while queue:
                send(queue[0], zmq.NOBLOCK, copy=False)
                queue.popleft()
        except zmq.Again:
            pass

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- closing --------------------------------------------------------------------------
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._loop.remove_reader(self._fd)
        except (ValueError, OSError, RuntimeError):  # the loop is already closed
            pass
        self.sock.close(linger=0)
