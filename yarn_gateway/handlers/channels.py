"""GET /api/kernels/{id}/channels: the websocket relay endpoint.

Speaks the legacy JSON protocol (default, what jupyter_server's GatewayClient uses) or
``v1.kernel.websocket.jupyter.org`` when the client offers it. Authentication, the
ownership check and the session caps happen before the upgrade, so a refused client gets
an HTTP 401/404/429.

A message the gateway cannot read closes the connection (4400); one it refuses (JSON nested
too deeply) is answered with a notice and the connection stays; one the kernel cannot take
(its send queue is full) closes it with 1013.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import struct
import uuid
from typing import Any, Optional

from tornado import web
from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketHandler

from ..errors import GatewayError
from ..kernels.kernel_record import KernelRecord
from ..metrics import RelayTraffic
from ..relay.batch import batching, defer_flush
from ..relay.hub import SessionLimitReached
from ..relay.session import ClientSession
from ..relay.wire import V1_PROTOCOL, InvalidMessage, MessageRefused, decode_client_message
from ..relay.zmtp import KernelNotTaking
from .base import GatewayMixin

log = logging.getLogger(__name__)

LEGACY = ""
#: What a client may send as ``session_id`` (Jupyter clients send a UUID).
SESSION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: Seconds a lazy message (see KernelMessage.lazy) may wait for the next one.
LAZY_HOLD = 0.001
#: Pending writes up to this many bytes are joined into one buffer (one send); larger ones go
#: to the stream piece by piece (tornado keeps large pieces as they are: no copy).
JOIN_MAX = 256 * 1024


class ChannelsHandler(GatewayMixin, WebSocketHandler):
    """One websocket client of one kernel (a :class:`ClientConnection`)."""

    protocol: str = LEGACY
    _rec: Optional[KernelRecord] = None
    _session: Optional[ClientSession] = None
    _backlog = 0
    _pending: collections.deque[tuple[Any, int]]
    _out: list[bytes]  # frames not written yet: until the batch ends, or briefly for lazy messages
    _deferred = False  # a flush is due when the current batch ends
    _hold: Optional[asyncio.TimerHandle] = None  # a flush is due for lazy messages
    _traffic: Optional[RelayTraffic] = None  # the gateway's relay counters (plain ints: hot path)

    async def get(self, kernel_id: str) -> None:
        """Authorise, check ``session_id`` (it names the session in logs and the replay buffer)
        and the session caps, then upgrade."""
        try:
            self._rec = await self.registry.lookup(kernel_id, self.caller)
        except GatewayError as exc:
            raise web.HTTPError(exc.status, exc.message) from None
        session_id = self.get_argument("session_id", "")
        if session_id and not SESSION_ID.fullmatch(session_id):
            raise GatewayError(400, f"Kernel {kernel_id}: session_id must be 1-128 characters of letters, digits "
                               "and . _ : - (a UUID, as Jupyter clients send)", reason="Bad session_id")
        try:
            self._admit(self._rec, session_id)
        except SessionLimitReached as exc:
            raise GatewayError(429, str(exc), reason="Too many client connections") from None
        await super().get(kernel_id)

    def _admit(self, rec: KernelRecord, session_id: str) -> None:
        """Room for this client's session (no ``session_id``: a new one), or :class:`SessionLimitReached`."""
        hubs = [r.hub for r in self.registry.kernels.values()]
        rec.hub.admit(session_id or uuid.uuid4().hex, self.caller.name, hubs)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, GatewayError):
            self.set_status(e.status)
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(json.dumps(e.to_json()))
            return
        super()._handle_request_exception(e)

    def select_subprotocol(self, subprotocols: list[str]) -> Optional[str]:
        return V1_PROTOCOL if V1_PROTOCOL in subprotocols else None

    def get_compression_options(self) -> Optional[dict[str, Any]]:
        return None  # kernel traffic is mostly small; compression costs latency

    def open(self, kernel_id: str) -> None:
        assert self._rec is not None
        self.set_nodelay(True)  # no ~40 ms delayed-ACK stalls on every round trip
        self.protocol = self.selected_subprotocol or LEGACY
        session_id = self.get_argument("session_id", "") or uuid.uuid4().hex
        self._traffic = self.registry.metrics.relay
        self._pending = collections.deque()
        self._out = []
        try:
            self._admit(self._rec, session_id)  # again: others may have connected since get()
        except SessionLimitReached as exc:
            log.info("Kernel %s: refused a client: %s", kernel_id, exc)
            self.close(1013, "too many client connections; close some and try again")
            return
        self._session = self._rec.hub.session(session_id, self.caller.name)
        self._session.attach(self)
        log.info("Kernel %s: client connected (session %s, user %s, protocol %s)",
                 kernel_id, session_id, self.caller.name, self.protocol or "legacy",
                 extra={"kernel_id": kernel_id, "user": self.caller.name, "session_id": session_id})

    def on_message(self, message: str | bytes) -> None:
        session = self._session
        if session is None:
            return
        traffic = self._traffic
        if traffic is not None:
            traffic.in_messages += 1
            traffic.in_bytes += len(message)
        try:
            channel, frames = decode_client_message(message, self.protocol)
            session.send_to_kernel(channel, frames)
        except MessageRefused as exc:
            log.info("Kernel %s: refused a client message: %s", session.hub.kernel_id, exc)
            session.refuse(self, str(exc), exc.header)
        except RecursionError:  # anything decode_client_message did not foresee
            log.info("Kernel %s: refused a client message nested too deeply", session.hub.kernel_id)
            session.refuse(self, "it is nested too deeply for the gateway to read")
        except InvalidMessage as exc:
            log.info("Kernel %s: closing a client that sent an invalid message: %s", session.hub.kernel_id, exc)
            self.close(4400, f"invalid Jupyter message: {exc}"[:120])
        except KernelNotTaking:
            log.warning("Kernel %s: closing a client: the kernel has not taken its last messages",
                        session.hub.kernel_id)
            self.close(1013, "the kernel is not taking messages; reconnect when it answers again")

    def on_close(self) -> None:
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        if self._session is not None:
            self._session.detach(self)
            log.info("Kernel %s: client disconnected (session %s)", self._session.hub.kernel_id,
                     self._session.session_id,
                     extra={"kernel_id": self._session.hub.kernel_id, "session_id": self._session.session_id})

    # -- ClientConnection ---------------------------------------------------------------
    def send(self, data: bytes, binary: bool, lazy: bool = False) -> bool:
        """Write one message; False when the connection is already closing (not sent).

        This is the relay's hot path: no task and no callback per message. While a batch
        of kernel messages is being relayed, frames are collected and written together
        when the batch ends (one system call); otherwise they are written at once. A lazy
        message waits up to :data:`LAZY_HOLD` for the next one, so a "busy" status and the
        execute_input echo usually leave with the reply instead of costing a write each.
        Pending writes are kept in order and counted lazily (see :attr:`backlog_bytes`).
        """
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return False  # the session keeps it for replay
        traffic = self._traffic
        if traffic is not None:
            traffic.out_messages += 1
            traffic.out_bytes += len(data)
        self._out.append(_frame_header(len(data), binary))
        self._out.append(data)
        if lazy:
            if self._hold is None:
                self._hold = asyncio.get_running_loop().call_later(LAZY_HOLD, self._flush)
        elif batching():
            if not self._deferred:
                self._deferred = True
                defer_flush(self._flush)
        else:
            self._flush()
        return True

    def _flush(self) -> None:
        self._deferred = False
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        out = self._out
        if not out:
            return
        self._out = []
        conn = self.ws_connection
        stream = conn.stream if conn is not None else None
        if stream is None:
            return
        size = sum(map(len, out))
        if size > JOIN_MAX:
            try:
                for piece in out:
                    fut = stream.write(piece)
            except StreamClosedError:
                return  # on_close follows
            if not fut.done():
                self._pending.append((fut, size))
                self._backlog += size
            return
        data = b"".join(out)
        if type(stream) is IOStream and not stream.writing() and not stream.closed():
            # Nothing queued in tornado: hand the bytes to the socket ourselves (what
            # stream.write would do first anyway, minus its bookkeeping); any rest, or an
            # error, goes through the stream as usual.
            try:
                sent = stream.socket.send(data)
            except OSError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        try:
            fut = stream.write(data)
        except StreamClosedError:
            return  # on_close follows
        if not fut.done():
            self._pending.append((fut, len(data)))
            self._backlog += len(data)

    @property
    def backlog_bytes(self) -> int:
        """Bytes written to this websocket that the socket has not taken yet."""
        pending = self._pending
        while pending and pending[0][0].done():
            fut, n = pending.popleft()
            if not fut.cancelled():
                fut.exception()  # retrieved: a closed connection is handled by on_close
            self._backlog -= n
        return self._backlog


def _frame_header(n: int, binary: bool) -> bytes:
    """The header of an unmasked, unfragmented, uncompressed websocket frame (RFC 6455 5.2)."""
    first = 0x82 if binary else 0x81
    if n < 126:
        return bytes((first, n))
    if n <= 0xFFFF:
        return struct.pack("!BBH", first, 126, n)
    return struct.pack("!BBQ", first, 127, n)
