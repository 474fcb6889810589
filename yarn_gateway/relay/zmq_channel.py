"""The relay's connection to a kernel channel through libzmq: CurveZMQ, or NULL for an odd peer.

:class:`LibzmqChannel` offers what :class:`~.zmtp.ZmtpChannel` offers (the
:class:`~.channel.KernelChannel` interface) over a pyzmq DEALER or SUB socket. Given the
kernel's :class:`~.channel.CurveKeys` it is a CurveZMQ client (https://rfc.zeromq.org/spec/26/):
``curve_serverkey`` is the kernel's public key and the channel's own key pair is made by
:func:`zmq.curve_keypair` for each socket, kept only by libzmq and never logged. The
handshake, encryption and framing are libzmq's (and libsodium's); this module only moves
messages between the socket and the loop. Without keys it speaks NULL, for a peer the
hand-written client does not get along with.

The socket is read on the asyncio loop (``loop.add_reader`` on its ``FD``, so it works on
tornado's loop too) and never blocks it: every call is ``NOBLOCK``. libzmq's ``FD`` is
edge-triggered (it signals that ``ZMQ_EVENTS`` may have changed), so each wake-up reads until
libzmq has nothing more, at most :data:`BURST_MESSAGES` messages or :data:`BURST_BYTES`
bytes, then yields to the loop and continues; every message of one wake-up goes to
``on_message`` inside one :func:`~.batch.batch`. ``pace`` holds reading back after a burst,
as in :class:`~.zmtp.ZmtpChannel`.

libzmq connects in the background and reconnects on its own (every 0.1 s, backing off to 1 s).
What happens on the connection is followed through a monitor socket: ``connected`` is true
between the handshake's success and the next disconnection.

Bounds, and where they differ from :class:`~.zmtp.ZmtpChannel`'s:

- ``max_message_bytes`` is ``ZMQ_MAXMSGSIZE`` (frames of a message together, nothing counted
  for framing). libzmq does not skip a message past it: it drops the *connection*, and after
  such a protocol error libzmq 4.3 never reconnects. The channel sees the disconnection not
  followed by a retry, reports it to ``on_oversize`` (with no frames kept and the size
  unknown: passed as ``max_message_bytes + 1``, the least it was) and opens a new socket.
  Whatever the kernel sent meanwhile on that connection, and what libzmq had not yet written
  to it, is lost.
- What waits to be sent: with ``ZMQ_IMMEDIATE`` libzmq takes a message only on a connection
  whose handshake is done, and at most :data:`SEND_HWM` messages (``ZMQ_SNDHWM``) for a kernel
  that does not read. The rest waits in the channel's own queue, bounded like
  ``ZmtpChannel``'s by ``max_queued_bytes`` (bytes of frames) and :data:`.zmtp.MAX_QUEUED`
  messages; past either a send raises :class:`~.zmtp.KernelNotTaking` (one message is always
  taken into an empty queue). ``queued`` and ``queued_bytes`` count that queue.
- What is received: libzmq's I/O thread reads ahead of the loop up to ``ZMQ_RCVHWM``
  messages (:data:`RECV_HWM`), then leaves the rest in the kernel's TCP buffers. That bound
  is in messages: in bytes it is ``RECV_HWM * max_message_bytes`` at worst.
- ``handshake_timeout``: ``ZMQ_HANDSHAKE_IVL`` and ``ZMQ_CONNECT_TIMEOUT``: a peer that does not
  complete the handshake in time is dropped by libzmq and connected to again. One warning per
  channel says why a handshake failed, naming the kernel: a CurveZMQ kernel that closes the
  connection during the handshake holds another key ("the kernel's CurveZMQ key does not
  match"); a peer asking for another mechanism is named as such. After a failed handshake
  (libzmq would retry at once, or never) a new socket tries again a second later.
- ``close`` is ``ZMQ_LINGER`` 0: nothing unsent is kept.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import time
from collections.abc import Sequence
from typing import Callable, Optional, cast

import zmq
from zmq.utils.monitor import parse_monitor_message

from . import zmtp
from .batch import batch
from .channel import CurveKeys, KernelChannel
from .frames import Frame
from .zmtp import ChannelClosed, Endpoint, KernelNotTaking, ZmtpChannel

log = logging.getLogger(__name__)

#: Messages and bytes read per wake-up before the loop gets a turn.
BURST_MESSAGES = 256
BURST_BYTES = 4 * 1024 * 1024
#: Messages libzmq itself holds for a kernel that has stopped reading (beyond the queue).
SEND_HWM = 1000
#: Messages libzmq's I/O thread reads ahead of the loop (libzmq's default).
RECV_HWM = 1000
#: libzmq's reconnect interval, backing off to the maximum (milliseconds).
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 1000
#: After a disconnection, how long to wait for libzmq to say it retries before concluding
#: that it gave up on the connection (it does so after a protocol error).
GAVE_UP_AFTER = 0.5

_TYPES = {"DEALER": zmq.DEALER, "SUB": zmq.SUB}
_EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_DELAYED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_DISCONNECTED
           | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
           | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_RETRYING = zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CONNECT_DELAYED | zmq.EVENT_CONNECTED
_PROTOCOL_ERRORS: dict[int, str] = {
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "a CurveZMQ message from it failed to decrypt",
    zmq.PROTOCOL_ERROR_ZMTP_INVALID_METADATA: "its socket type does not match (or its READY is malformed)",
}
_context: Optional[zmq.Context[zmq.Socket[bytes]]] = None


def _shared_context() -> zmq.Context[zmq.Socket[bytes]]:
    """One libzmq context (one I/O thread) for every channel of the process."""
    global _context
    if _context is None:
        _context = zmq.Context(io_threads=1)
    return _context


def _events(sock: zmq.Socket[bytes]) -> int:
    """``ZMQ_EVENTS``: what the socket can do now (reading it also resets the FD's signal)."""
    return cast(int, sock.get(zmq.EVENTS))


class LibzmqChannel:
    """A DEALER or SUB connection to one kernel channel through libzmq; see the module docstring.

    Same arguments as :class:`~.zmtp.ZmtpChannel`, and ``curve``: the kernel's keys for
    CurveZMQ (None: the NULL mechanism). ``on_message`` receives every multipart message as a
    list of ``bytes``, in order, inside a :func:`~.batch.batch` per read burst.
    """

    def __init__(self, endpoint: Endpoint, socket_type: str, on_message: Callable[[list[Frame]], None],
                 identity: bytes = b"", label: str = "", *, curve: Optional[CurveKeys] = None,
                 on_oversize: Optional[Callable[[list[Frame], int], None]] = None,
                 max_message_bytes: int = zmtp.MAX_MESSAGE_BYTES, max_queued_bytes: int = zmtp.MAX_QUEUED_BYTES,
                 handshake_timeout: float = zmtp.HANDSHAKE_TIMEOUT) -> None:
        if socket_type not in _TYPES:
            raise ValueError(f"unsupported socket type {socket_type}")
        if len(identity) > 255:
            raise ValueError("a ZMQ routing identity is at most 255 bytes")
        self.endpoint = endpoint
        self.socket_type = socket_type
        self.on_message = on_message
        self.on_oversize = on_oversize
        self.identity = identity
        self.label = label or str(endpoint)
        self.curve = curve
        self.max_message_bytes = max_message_bytes
        self.max_queued_bytes = max_queued_bytes
        self.handshake_timeout = handshake_timeout
        #: Seconds to stop reading after each read burst (see :class:`~.zmtp.ZmtpChannel`).
        self.pace = 0.0
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._sock: Optional[zmq.Socket[bytes]] = None
        self._monitor: Optional[zmq.Socket[bytes]] = None
        self._fds: tuple[int, ...] = ()
        self._queue: collections.deque[tuple[list[Frame], int]] = collections.deque()
        self._queued_bytes = 0
        self._connected = False
        self._connected_at = 0.0  # when the last TCP connection was made (monotonic)
        self._had_handshake = False  # the last connection completed its handshake
        self._refused = False  # the last connection ended in a protocol error during the handshake
        self._warned = False
        self._wake_pending = False
        self._paused = False
        self._pace_timer: Optional[asyncio.TimerHandle] = None
        self._handshake_timer: Optional[asyncio.TimerHandle] = None
        self._gave_up_timer: Optional[asyncio.TimerHandle] = None
        self._reopen_timer: Optional[asyncio.TimerHandle] = None
        self._open()

    # -- the interface (channel.KernelChannel) ------------------------------------------
    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Bytes of the frames of messages libzmq has not taken yet."""
        return self._queued_bytes

    @property
    def connected(self) -> bool:
        """Whether the handshake with the kernel is done (CurveZMQ's included)."""
        return self._connected

    def send(self, frames: Sequence[Frame]) -> None:
        """Send one multipart message without blocking; see :meth:`.channel.KernelChannel.send`."""
        if self.closed:
            raise ChannelClosed(f"{self.label}: the connection to the kernel is closed")
        size = sum(len(f) for f in frames)
        sock = self._sock
        if not self._queue:
            if sock is not None:
                try:
                    sock.send_multipart(frames, zmq.NOBLOCK)
                except zmq.Again:
                    pass
                else:
                    # The call may have consumed the FD's signal of a message that arrived.
                    if not self._wake_pending and _events(sock) & zmq.POLLIN:
                        self._schedule_wake()
                    return
        elif len(self._queue) >= zmtp.MAX_QUEUED or self._queued_bytes + size > self.max_queued_bytes:
            raise KernelNotTaking("the kernel is not taking messages")
        self._queue.append(([bytes(f) for f in frames], size))
        self._queued_bytes += size

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._connected = False
        self._queue.clear()
        self._queued_bytes = 0
        for timer in (self._pace_timer, self._handshake_timer, self._gave_up_timer, self._reopen_timer):
            if timer is not None:
                timer.cancel()
        self._pace_timer = self._handshake_timer = self._gave_up_timer = self._reopen_timer = None
        self._close_socket()

    # -- the socket -----------------------------------------------------------------------
    def _open(self) -> None:
        self._reopen_timer = None
        if self.closed:
            return
        ctx = _shared_context()
        sock = ctx.socket(_TYPES[self.socket_type])
        try:
            sock.linger = 0
            sock.immediate = 1
            sock.sndhwm = SEND_HWM
            sock.rcvhwm = RECV_HWM
            sock.maxmsgsize = self.max_message_bytes
            sock.handshake_ivl = sock.connect_timeout = max(1, int(self.handshake_timeout * 1000))
            sock.reconnect_ivl = RECONNECT_IVL_MS
            sock.reconnect_ivl_max = RECONNECT_IVL_MAX_MS
            if self.identity:
                sock.setsockopt(zmq.ROUTING_ID, self.identity)
            if self.curve is not None:
                public, secret = zmq.curve_keypair()  # ephemeral: this socket's only
                sock.curve_serverkey = self.curve.server_public_key
                sock.curve_publickey = public
                sock.curve_secretkey = secret
                del secret
            if self.socket_type == "SUB":
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            monitor = sock.get_monitor_socket(_EVENTS)
        except BaseException:
            sock.close(linger=0)
            raise
        self._sock, self._monitor = sock, monitor
        self._fds = (sock.FD, monitor.FD)
        self._loop.add_reader(self._fds[0], self._wake)
        self._loop.add_reader(self._fds[1], self._on_monitor)
        sock.connect(str(self.endpoint))
        # The FDs signal only changes after a check: check both once (the queue may wait already).
        self._loop.call_soon(self._on_monitor)
        self._schedule_wake()

    def _close_socket(self) -> None:
        sock, monitor = self._sock, self._monitor
        self._sock = self._monitor = None
        for fd in self._fds:
            self._loop.remove_reader(fd)
        self._fds = ()
        if sock is not None:
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            sock.close(linger=0)
        if monitor is not None:
            monitor.close(linger=0)

    def _reopen(self, delay: float) -> None:
        """Replace a socket libzmq gave up on (the queue is kept)."""
        self._close_socket()
        self._connected = False
        if not self.closed and self._reopen_timer is None:
            self._reopen_timer = self._loop.call_later(delay, self._open)

    # -- reading --------------------------------------------------------------------------
    def _schedule_wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_pending = False
        sock = self._sock
        if sock is None:
            return
        events = _events(sock)
        if events & zmq.POLLOUT and self._queue:
            self._flush(sock)
            events = _events(sock)
        if events & zmq.POLLIN and not self._paused:
            self._read(sock)

    def _read(self, sock: zmq.Socket[bytes]) -> None:
        count = size = 0
        more = False
        with batch():
            while True:
                try:
                    frames: list[Frame] = list(sock.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
                count += 1
                size += sum(len(f) for f in frames)
                try:
                    self.on_message(frames)
                except Exception:  # one broken handler must not leave the socket unread
                    log.exception("%s: handling a kernel message failed", self.label)
                if self._sock is not sock:  # closed or replaced meanwhile
                    return
                if count >= BURST_MESSAGES or size >= BURST_BYTES:
                    more = True
                    break
        if self.pace and count:
            self._paused = True
            self._pace_timer = self._loop.call_later(self.pace, self._resume)
        elif more:
            self._schedule_wake()

    def _resume(self) -> None:
        self._pace_timer = None
        self._paused = False
        self._wake()

    def _flush(self, sock: zmq.Socket[bytes]) -> None:
        queue = self._queue
        while queue:
            frames, size = queue[0]
            try:
                sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                return
            queue.popleft()
            self._queued_bytes -= size

    # -- what happens on the connection ---------------------------------------------------
    def _on_monitor(self) -> None:
        monitor = self._monitor
        while monitor is not None and self._monitor is monitor:
            try:
                msg = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = parse_monitor_message(msg)
            self._event(event["event"], event["value"])

    def _event(self, event: int, value: int) -> None:
        if event & _RETRYING and self._gave_up_timer is not None:
            self._gave_up_timer.cancel()
            self._gave_up_timer = None
        if event == zmq.EVENT_CONNECTED:
            self._connected_at = time.monotonic()
            self._had_handshake = self._refused = False
            if self._handshake_timer is None:
                self._handshake_timer = self._loop.call_later(self.handshake_timeout, self._handshake_expired)
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._connected = self._had_handshake = True
            self._cancel_handshake_timer()
            self._schedule_wake()  # libzmq takes the queued messages now
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self._cancel_handshake_timer()
            elapsed = time.monotonic() - self._connected_at
            if value == errno.ETIMEDOUT or elapsed >= 0.9 * self.handshake_timeout:
                return self._handshake_expired()  # libzmq dropped it and connects again
            self._refused = True
            if self.curve is not None:
                self._warn("it closed the connection during the CurveZMQ handshake: the kernel's CurveZMQ key does "
                           "not match the one the gateway has, or it does not speak CurveZMQ")
            else:
                self._warn("it closed the connection during the ZMTP handshake (as a kernel that asks for "
                           "CurveZMQ does when the gateway has no key for it)")
        elif event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH):
            self._cancel_handshake_timer()
            self._refused = True
            self._warn(self._protocol_error(value) if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                       else f"it refused the gateway's CurveZMQ key (ZAP status {value})")
        elif event == zmq.EVENT_DISCONNECTED:
            self._connected = False
            self._cancel_handshake_timer()
            if self._refused:
                # Said already (_warn). libzmq would try again at once, or never after a
                # protocol error: a new socket tries again in a second (with new keys).
                self._reopen(zmtp.RECONNECT_SLOW_INTERVAL)
            elif self._gave_up_timer is None:
                self._gave_up_timer = self._loop.call_later(GAVE_UP_AFTER, self._gave_up)

    def _gave_up(self) -> None:
        """libzmq did not retry after a disconnection: it ended the session (a protocol error)."""
        self._gave_up_timer = None
        if self.closed:
            return
        if not self._had_handshake:
            self._reopen(zmtp.RECONNECT_SLOW_INTERVAL)
            return
        # After the handshake, libzmq's only protocol error on a sane kernel's stream is a
        # message past ZMQ_MAXMSGSIZE.
        log.debug("%s: libzmq dropped the connection to %s, by all signs for a message larger than %d bytes",
                  self.label, self.endpoint, self.max_message_bytes)
        if self.on_oversize is not None:
            try:
                self.on_oversize([], self.max_message_bytes + 1)
            except Exception:
                log.exception("%s: reporting an over-size message failed", self.label)
        self._reopen(zmtp.RECONNECT_INTERVAL)

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if not self._connected and not self.closed:
            mechanism = "CurveZMQ" if self.curve is not None else "ZMTP"
            self._warn(f"it did not complete the {mechanism} handshake within {self.handshake_timeout:g} s")

    def _protocol_error(self, code: int) -> str:
        if code == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH and self.curve is not None:
            return "it does not speak CurveZMQ (it asks for another security mechanism)"
        if code == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return "it asks for a security mechanism (CurveZMQ?) and the gateway has no key for it"
        return _PROTOCOL_ERRORS.get(code, f"it broke the ZMTP protocol (libzmq error {code:#x})")

    def _warn(self, why: str) -> None:
        """Say once per channel why the kernel's socket cannot be talked to (later: debug)."""
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        log.log(level, "%s: cannot talk to the %s socket at %s: %s; trying again", self.label,
                self.socket_type.lower(), self.endpoint, why)


# mypy checks both implementations against the interface the relay uses.
_ZMTP: type[KernelChannel] = ZmtpChannel
_LIBZMQ: type[KernelChannel] = LibzmqChannel
