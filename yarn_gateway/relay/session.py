"""One client session of one kernel: its own ZMQ sockets, its websocket, its replay buffer.

A session is named by the ``session_id`` the client puts in the websocket URL. It owns
DEALER connections for shell, control and stdin (so replies and input requests reach only
this client) and receives every iopub message from its :class:`~.hub.KernelHub`.

While no websocket is attached (the client dropped), messages are kept in a bounded
buffer and replayed when a websocket comes back with the same ``session_id``. When the
buffer (or a slow client's write backlog) exceeds its bound, iopub messages are dropped,
counted, and the client is told so with a ``stream`` message on stderr, followed by the
kernel's latest status so a notebook is never left "busy" forever. Replies on shell,
control and stdin are never dropped.

A detached session holds no connections to the kernel once no reply is owed to it (every
request it sent on shell and control has been answered): output keeps reaching its buffer
through the hub's iopub subscription, and its sockets are opened again (with a new routing
identity) when a websocket re-attaches. While a reply is owed, the sockets stay, so that
reply is replayed too; but not for a request that will never be answered (a message type
the kernel does not know): once the kernel has been idle at two checks
:data:`OWED_CHECK_INTERVAL` apart, the session stops waiting.

A kernel message larger than ``max_message_bytes`` is never buffered (:mod:`.frames`): a
reply of that size is answered to the client with an error reply and a notice, an iopub
message with a notice to every session (see :meth:`.hub.KernelHub.dropped_notice`).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

from .channel import KernelChannel
from .frames import Frame
from .wire import (
    CLIENT_CHANNELS,
    InvalidMessage,
    KernelMessage,
    Signer,
    encode_synthetic,
    flat_dict,
    new_header,
    synthetic_message,
    zmq_frames,
)
from .zmtp import HANDSHAKE_TIMEOUT, MAX_MESSAGE_BYTES, MAX_QUEUED_BYTES, ChannelClosed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dropped:
    """A kernel message that was too large to relay: where it came, what it seemed to be (from
    the unverified frames that arrived before the bound), and the size the kernel announced."""

    channel: str
    msg_type: str
    parent: dict[str, Any]
    size: int


class KernelSide(Protocol):
    """What a session needs of the kernel it relays to (:class:`~.hub.KernelHub` is one)."""

    kernel_id: str
    gateway_session: str
    execution_state: str
    signer: Signer

    @property
    def is_connected(self) -> bool: ...

    def channel(self, channel: str, on_message: Callable[[KernelMessage], None], identity: bytes = b"",
                on_dropped: Optional[Callable[[Dropped], None]] = None) -> KernelChannel: ...

    def dropped_text(self, dropped: Dropped) -> str: ...

    def dropped_notice(self, dropped: Dropped) -> KernelMessage: ...

    def touch(self) -> None: ...

    def drop_session(self, session_id: str) -> None: ...

#: Seconds between checks whether a detached session still waits for a reply (see above).
OWED_CHECK_INTERVAL = 5.0


@dataclass
class RelayLimits:
    """Bounds of the relay (bytes, counts, seconds)."""

    replay_buffer_bytes: int = 64 * 1024 * 1024
    replay_buffer_messages: int = 200_000
    client_backlog_bytes: int = 64 * 1024 * 1024
    session_expiry: float = 600.0
    output_batch_interval: float = 0.002
    #: Largest message taken from a kernel (its frames together).
    max_message_bytes: int = MAX_MESSAGE_BYTES
    #: Bytes of client messages kept per kernel channel while the kernel takes none.
    send_queue_bytes: int = MAX_QUEUED_BYTES
    #: Seconds a kernel's socket gets to complete the ZMTP handshake (connecting included).
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    #: Who speaks CurveZMQ to an encrypted kernel: "zmtp" (the relay's own ZMTP client on the
    #: event loop, libsodium through PyNaCl for the boxes) or "libzmq" (pyzmq's socket).
    curve_relay: str = "zmtp"
    #: Client sessions (distinct session_ids) per kernel, and per user over all kernels (0: no cap).
    max_sessions_per_kernel: int = 16
    max_sessions_per_user: int = 64


class ClientConnection(Protocol):
    """What a session needs from a websocket (implemented by the channels handler)."""

    protocol: str

    def send(self, data: bytes, binary: bool, lazy: bool = False) -> bool:
        """Queue a message; False when the connection is already closing (not sent).

        ``lazy``: the message may wait briefly (at most a millisecond) for company."""
        ...

    @property
    def backlog_bytes(self) -> int: ...

    def close(self, code: int, reason: str) -> None: ...


class _Gap:
    """Where output was dropped from a replay buffer: how much, and the cell it belonged to."""

    __slots__ = ("count", "parent")

    def __init__(self, parent: Frame) -> None:
        self.count = 0
        self.parent = parent


class ClientSession:
    """See the module docstring. Created and owned by :class:`~.hub.KernelHub`."""

    def __init__(self, hub: KernelSide, session_id: str, limits: RelayLimits, user: str = "") -> None:
        self.hub = hub
        self.session_id = session_id
        self.limits = limits
        #: Who opened it (sessions are capped per user).
        self.user = user
        self.conn: Optional[ClientConnection] = None
        #: When its websocket went away (monotonic; the oldest detached session is evicted first).
        self.detached_at = time.monotonic()
        self._sockets: dict[str, KernelChannel] = {}
        # Messages kept for replay, in order; a _Gap stands where output was dropped.
        self._buffer: collections.deque[KernelMessage | _Gap] = collections.deque()
        self._buffer_bytes = 0
        self._lost = 0
        self._lost_parent: Frame = b"{}"
        self._owed = 0  # requests sent on shell and control not answered yet
        self._last_status: Optional[KernelMessage] = None
        self._expiry: Optional[asyncio.TimerHandle] = None
        self._drain_check: Optional[asyncio.TimerHandle] = None
        self._owed_check: Optional[asyncio.TimerHandle] = None
        self._idle_seen = False
        self.closed = False
        if hub.is_connected:
            self.open_sockets()

    # -- ZMQ side ---------------------------------------------------------------------
    def open_sockets(self) -> None:
        """(Re)connect this session's DEALER sockets to the kernel's current ports."""
        self.close_sockets()
        identity = f"{self.session_id}-{uuid.uuid4().hex[:8]}".encode()
        for channel in ("shell", "control", "stdin"):
            # shell and stdin share one identity so the kernel routes input_request here.
            own = identity if channel != "control" else identity + b"-c"
            self._sockets[channel] = self.hub.channel(channel, self._from_kernel, own, self._reply_dropped)

    def close_sockets(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    @property
    def has_sockets(self) -> bool:
        """Whether it holds connections to the kernel (a detached one owed nothing holds none)."""
        return bool(self._sockets)

    @property
    def kernel_channels(self) -> list[KernelChannel]:
        """Its open connections to the kernel."""
        return list(self._sockets.values())

    def kernel_reconnected(self) -> None:
        """The hub connected to a (re)started kernel: nothing is owed by the old one."""
        self._owed = 0
        if self.conn is not None:
            self.open_sockets()
        else:
            self.close_sockets()

    def _from_kernel(self, msg: KernelMessage) -> None:
        self._answered(msg.channel)
        self.deliver(msg)

    def _answered(self, channel: str) -> None:
        if channel != "stdin" and self._owed:
            self._owed -= 1
            if not self._owed and self.conn is None:
                asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        """A detached session owed nothing: give its kernel connections back until it re-attaches."""
        if self.conn is not None or not self._sockets or self.closed:
            return
        if not self._owed:
            self.close_sockets()
            log.debug("Kernel %s: session %s released its kernel connections while detached",
                      self.hub.kernel_id, self.session_id)
        elif self._owed_check is None:
            self._idle_seen = False
            self._owed_check = asyncio.get_running_loop().call_later(OWED_CHECK_INTERVAL, self._check_owed)

    def _check_owed(self) -> None:
        """While detached and owed replies: stop waiting once the kernel is idle at two checks in a
        row (every request it was handling has been answered by then: those left never will be)."""
        self._owed_check = None
        if self.conn is not None or not self._sockets or self.closed or not self._owed:
            return
        if self.hub.execution_state == "idle":
            if self._idle_seen:
                log.info("Kernel %s: session %s (detached) stops waiting for %d unanswered request(s)",
                         self.hub.kernel_id, self.session_id, self._owed)
                self._owed = 0
                self._release()
                return
            self._idle_seen = True
        else:
            self._idle_seen = False
        self._owed_check = asyncio.get_running_loop().call_later(OWED_CHECK_INTERVAL, self._check_owed)

    def _reply_dropped(self, dropped: Dropped) -> None:
        """A message too large to relay came on one of this session's channels."""
        self._answered(dropped.channel)
        notice = self.hub.dropped_notice(dropped)
        self.deliver(notice)
        if dropped.msg_type.endswith("_reply"):
            # The client waits for this reply: answer it, with the reason.
            content: dict[str, Any] = {"status": "error", "ename": "MessageTooLarge",
                                       "evalue": self.hub.dropped_text(dropped), "traceback": []}
            header = new_header(dropped.msg_type, self.hub.gateway_session)
            self.deliver(synthetic_message(dropped.channel, header, content, dropped.parent))

    def send_to_kernel(self, channel: str, frames: list[bytes]) -> None:
        """Sign and send a validated client message on ``channel``."""
        if channel not in CLIENT_CHANNELS:
            raise InvalidMessage(f"cannot send on channel {channel!r}")
        sock = self._sockets.get(channel)
        if sock is None:
            raise InvalidMessage("the kernel is not connected")
        self.hub.touch()
        try:
            sock.send(zmq_frames(self.hub.signer, frames))  # KernelNotTaking: the handler closes the client
        except ChannelClosed as exc:
            log.warning("Kernel %s: sending on %s failed: %s", self.hub.kernel_id, channel, exc)
            return
        if channel != "stdin":  # every request on shell and control is answered
            self._owed += 1

    def refuse(self, conn: ClientConnection, reason: str, header: Optional[dict[str, Any]] = None) -> None:
        """Tell the client that one of its messages was refused (its connection stays)."""
        text = (f"[yarn-gateway] Kernel {self.hub.kernel_id}: a message from this client was refused ({reason}); "
                "it did not reach the kernel. Send it in a form the gateway can read; this connection stays open.\n")
        msg = synthetic_message("iopub", new_header("stream", self.hub.gateway_session),
                                {"name": "stderr", "text": text}, flat_dict(header or {}))
        data, binary = msg.encode(conn.protocol)
        conn.send(data, binary)

    # -- client side --------------------------------------------------------------------
    def deliver(self, msg: KernelMessage) -> None:
        """Send ``msg`` to the attached client, or keep it for replay."""
        if msg.msg_type == "status" and msg.channel == "iopub":
            self._last_status = msg
        conn = self.conn
        if conn is None:
            self._buffer_message(msg)
            return
        if conn.backlog_bytes <= self.limits.client_backlog_bytes:
            if self._lost:  # it caught up: first say what it missed
                self._report_loss(conn)
        elif msg.channel == "iopub":
            # A live client that cannot keep up: drop output and tell it once it catches up.
            self._drop(msg)
            return
        # (Replies on shell, control and stdin are never dropped, however far behind the client is.)
        data, binary = msg.encode(conn.protocol)
        if not conn.send(data, binary, msg.lazy):
            # The websocket is closing but on_close has not run yet: keep the message for replay.
            self.detach(conn)
            self._buffer_message(msg)

    @property
    def dropped(self) -> int:
        """Output messages dropped for this client and not yet reported to it."""
        return self._lost + sum(item.count for item in self._buffer if isinstance(item, _Gap))

    def _buffer_message(self, msg: KernelMessage) -> None:
        full = (
            self._buffer_bytes + msg.nbytes > self.limits.replay_buffer_bytes
            or len(self._buffer) >= self.limits.replay_buffer_messages
        )
        # Output is dropped when the buffer is full; statuses and replies are always kept (they
        # are small, and a client that misses them waits forever).
        if full and msg.channel == "iopub" and msg.msg_type != "status":
            gap = self._buffer[-1] if self._buffer else None
            if not isinstance(gap, _Gap):
                gap = _Gap(msg.frames[1])
                self._buffer.append(gap)
            gap.count += 1
            return
        self._buffer.append(msg)
        self._buffer_bytes += msg.nbytes

    def _drop(self, msg: KernelMessage) -> None:
        if msg.msg_type != "status":
            self._lost += 1
            self._lost_parent = msg.frames[1]
        if self.conn is not None and self._drain_check is None:
            self._drain_check = asyncio.get_running_loop().call_later(0.2, self._check_drain)

    def _check_drain(self) -> None:
        """While output is being dropped for a slow client: tell it as soon as it catches up,
        even if the kernel has gone quiet (so the final status is never lost)."""
        self._drain_check = None
        conn = self.conn
        if conn is None or not self._lost:
            return
        if conn.backlog_bytes <= self.limits.client_backlog_bytes:
            self._report_loss(conn)
        else:
            self._drain_check = asyncio.get_running_loop().call_later(0.2, self._check_drain)

    def attach(self, conn: ClientConnection) -> None:
        """Attach a websocket: replay what it missed, then go live."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        old = self.conn
        if old is not None and old is not conn:
            old.close(4409, "replaced by a new connection with the same session_id")
        self.conn = conn
        if not self._sockets and self.hub.is_connected:
            self.open_sockets()  # released while it was away
        replayed = lost = 0
        while self._buffer:
            item = self._buffer.popleft()
            if isinstance(item, _Gap):  # said where it happened: before the final status and reply
                self._send_loss_notice(conn, item.count, item.parent)
                lost += item.count
                continue
            data, binary = item.encode(conn.protocol)
            conn.send(data, binary)
            replayed += 1
        self._buffer_bytes = 0
        if replayed or lost or self._lost:
            log.info("Kernel %s: replayed %d message(s) to session %s (%d lost)",
                     self.hub.kernel_id, replayed, self.session_id, lost + self._lost)
        if self._lost:
            self._report_loss(conn)

    def _report_loss(self, conn: ClientConnection) -> None:
        """A live client caught up after output was dropped: tell it, then repeat the status."""
        lost, self._lost = self._lost, 0
        self._send_loss_notice(conn, lost, self._lost_parent)
        if self._last_status is not None:
            data, binary = self._last_status.encode(conn.protocol)
            conn.send(data, binary)

    def _send_loss_notice(self, conn: ClientConnection, lost: int, parent_raw: Frame) -> None:
        text = (
            f"[yarn-gateway] {lost} output message(s) from this kernel were lost because this client "
            "was disconnected or could not keep up; the kernel itself is unaffected.\n"
        )
        header = new_header("stream", self.hub.gateway_session)
        try:
            parent = flat_dict(json.loads(parent_raw))
        except (ValueError, RecursionError, AttributeError):
            parent = {}
        data, binary = encode_synthetic("iopub", header, {"name": "stderr", "text": text}, conn.protocol, parent)
        conn.send(data, binary)

    def detach(self, conn: ClientConnection) -> None:
        """The websocket closed: buffer until it comes back or the session expires."""
        if self.conn is not conn:
            return
        self.conn = None
        self.detached_at = time.monotonic()
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(self.limits.session_expiry, self.hub.drop_session, self.session_id)
        self._release()

    def close(self) -> None:
        self.closed = True
        for timer in (self._drain_check, self._owed_check):
            if timer is not None:
                timer.cancel()
        if self._expiry is not None:
            self._expiry.cancel()
        self.close_sockets()
        self._buffer.clear()
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.close(1001, "kernel shut down")
