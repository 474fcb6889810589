"""The relay's connections to a kernel: ZMTP 3.0 spoken directly on the asyncio loop.

A Jupyter kernel listens with ZMQ ROUTER (shell, control, stdin) and PUB (iopub)
sockets. The gateway used to connect to them with libzmq, which moves every message
through a background I/O thread: one more thread wake-up in each direction, and around
seventy system calls per execute round trip between the two threads (mailbox eventfds,
``poll`` on every ``ZMQ_EVENTS`` check, fork checks). :class:`ZmtpChannel` is the client
side of one such connection written as an asyncio protocol instead. The loop reads the
kernel's TCP socket itself, so a round trip is a few ``recv``/``send`` calls on the loop,
and a burst of output is parsed from one read of up to 256 KiB.

What is spoken (https://rfc.zeromq.org/spec/23/, ZMTP 3.0): the 64-byte greeting with
the NULL security mechanism (messages are signed with the kernel's key above this layer),
READY with our socket type and routing identity, then framed multipart messages (READY is
accepted without the command flag too, as libzmq 4.0 and the JeroMQ in Apache Toree send
it). Given the kernel's CurveZMQ public key (``curve_server_key``), the greeting names the
CURVE mechanism instead: HELLO, WELCOME, INITIATE (with our socket type and identity) and
READY are exchanged as :mod:`.curve` makes and checks them, and every frame after that, in
both directions, travels as an encrypted MESSAGE (in a ZMTP frame of its own, which libzmq
sends and expects without the command flag). A SUB channel subscribes to everything with a subscription
message, as ZMTP 3.0 defines it. PING is answered with PONG; other commands are ignored.
A peer that speaks anything else (another mechanism, a socket type that does not match),
or does not finish the handshake within ``handshake_timeout`` seconds, is refused with a
warning and tried again slowly.

Everything the peer says is bounded before it is buffered (:mod:`.frames`): a message
larger than ``max_message_bytes`` is skipped as it arrives and reported to
``on_oversize`` (on CurveZMQ, where each frame is one box that must arrive whole, a single
frame past the bound is reported and drops the connection, as libzmq does; a message whose
frames together pass it is skipped); a PING is answered only while the peer takes what we write (a peer that
never reads cannot make PONGs pile up).

Like a connecting libzmq socket, a channel connects in the background, reconnects when
the connection drops, and keeps what is sent meanwhile in a queue bounded in bytes
(``max_queued_bytes``) and messages (:data:`MAX_QUEUED`); past either bound the kernel
counts as not taking messages (:class:`KernelNotTaking`). Sends never block the loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

from .batch import batch
from .curve import MESSAGE_COMMAND, MESSAGE_MORE, MESSAGE_OVERHEAD, CurveClient
from .frames import COMMAND, FRAME_OVERHEAD, MORE, Frame, FrameReader, ProtocolError

log = logging.getLogger(__name__)

#: Messages waiting for a kernel that takes none (while unconnected or its socket is full).
MAX_QUEUED = 10_000
#: Defaults of the bounds (the gateway passes its configured ones).
MAX_QUEUED_BYTES = 16 * 1024 * 1024
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0
#: A PING's context is at most 16 bytes (ZMTP 3.1); a PONG echoes no more.
_PING_CONTEXT_MAX = 16
#: Seconds between connection attempts (libzmq's default), then the slower interval after
#: :data:`RECONNECT_FAST_TRIES` failures in a row.
RECONNECT_INTERVAL = 0.1
RECONNECT_SLOW_INTERVAL = 1.0
RECONNECT_FAST_TRIES = 50

_LONG = 0x02
_SIGNATURE = b"\xff" + bytes(8) + b"\x7f"
_VERSION_END = 11  # signature and major version
#: signature, version 3.0, mechanism NULL, as-server 0, filler.
GREETING = _SIGNATURE + bytes((3, 0)) + b"NULL".ljust(20, b"\0") + b"\0" + bytes(31)
#: The same with the CURVE mechanism (we are its client).
CURVE_GREETING = _SIGNATURE + bytes((3, 0)) + b"CURVE".ljust(20, b"\0") + b"\0" + bytes(31)
#: Socket types each of ours may talk to.
_PEERS = {"DEALER": (b"ROUTER", b"DEALER", b"REP"), "SUB": (b"PUB", b"XPUB")}


class KernelNotTaking(Exception):
    """The kernel has stopped taking messages: the send queue is full."""


class ChannelClosed(Exception):
    """A send on a channel that was closed."""


@dataclass(frozen=True)
class Endpoint:
    """Where a kernel channel listens: TCP host and port, or an IPC socket path."""

    transport: str
    host: str
    port: int = 0

    def __str__(self) -> str:
        if self.transport == "ipc":
            return f"ipc://{self.host}"
        return f"tcp://{self.host}:{self.port}"


def _frame_header(flags: int, size: int) -> bytes:
    if size < 256:
        return bytes((flags, size))
    return bytes((flags | _LONG,)) + size.to_bytes(8, "big")


def encode_message(frames: Sequence[Frame]) -> bytes:
    """One multipart message as ZMTP frames."""
    parts: list[Frame] = []
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        parts.append(_frame_header(MORE if i < last else 0, len(frame)))
        parts.append(frame)
    return b"".join(parts)


def encode_command(name: bytes, body: bytes = b"") -> bytes:
    data = bytes((len(name),)) + name + body
    return _frame_header(COMMAND, len(data)) + data


def _wire_size(frames: Sequence[Frame]) -> int:
    """Bytes of ``frames`` as ZMTP frames (what the send queue counts)."""
    return sum(len(f) + (2 if len(f) < 256 else 9) for f in frames)


def encode_properties(props: dict[bytes, bytes]) -> bytes:
    return b"".join(bytes((len(k),)) + k + len(v).to_bytes(4, "big") + v for k, v in props.items())


def decode_properties(data: bytes) -> dict[bytes, bytes]:
    props: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        n = data[pos]
        name = data[pos + 1:pos + 1 + n]
        pos += 1 + n
        if pos + 4 > len(data):
            raise ProtocolError("truncated property in READY")
        size = int.from_bytes(data[pos:pos + 4], "big")
        pos += 4
        if pos + size > len(data):
            raise ProtocolError("truncated property in READY")
        props[name.lower()] = data[pos:pos + size]
        pos += size
    return props


class ZmtpChannel(asyncio.BufferedProtocol):
    """A DEALER or SUB connection to one kernel channel; see the module docstring.

    ``on_message`` receives every multipart message (a list of frames, ``bytearray``
    objects cut from the read buffer or received into their own, ``bytes`` on CurveZMQ) in
    order, inside a :func:`~.batch.batch` per read. ``curve_server_key``: the kernel's
    CurveZMQ public key (32 raw bytes) to speak CurveZMQ; None for NULL.
    ``on_oversize(kept, announced)`` is told of every message larger than
    ``max_message_bytes``, with the frames that came before the bound was passed and the
    size the peer announced; the message itself is never buffered.
    """

    def __init__(self, endpoint: Endpoint, socket_type: str, on_message: Callable[[list[Frame]], None],
                 identity: bytes = b"", label: str = "", *,
                 on_oversize: Optional[Callable[[list[Frame], int], None]] = None,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, max_queued_bytes: int = MAX_QUEUED_BYTES,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, curve_server_key: Optional[bytes] = None) -> None:
        if socket_type not in _PEERS:
            raise ValueError(f"unsupported socket type {socket_type}")
        if curve_server_key is not None and len(curve_server_key) != 32:
            raise ValueError("a CurveZMQ public key is 32 bytes (decode the Z85 text first)")
        self.curve_server_key = curve_server_key
        self._mechanism = b"NULL" if curve_server_key is None else b"CURVE"
        self._curve: Optional[CurveClient] = None  # this connection's CurveZMQ session
        # The message being read on CurveZMQ: its frames, bytes counted, bytes announced.
        self._curve_frames: list[Frame] = []
        self._curve_kept = self._curve_announced = 0
        self._curve_dropping = False
        self.endpoint = endpoint
        self.socket_type = socket_type
        self.on_message = on_message
        self.on_oversize = on_oversize
        self.identity = identity
        self.label = label or str(endpoint)
        self.max_message_bytes = max_message_bytes
        self.max_queued_bytes = max_queued_bytes
        self.handshake_timeout = handshake_timeout
        self._loop = asyncio.get_running_loop()
        self._transport: Optional[asyncio.Transport] = None
        self._ready = False  # handshake done: messages may flow
        self._sent_greeting = 0  # 0: our signature sent, 1: and the major version, 2: all of it
        self._greeting_in = bytearray(len(GREETING))  # the peer's greeting, as far as it came
        self._greeting_len = 0
        self._reader: Optional[FrameReader] = None  # once the peer's greeting is here
        self._can_write = True
        self._queue: collections.deque[tuple[list[bytes], int]] = collections.deque()
        self._queued_bytes = 0
        self._retry_timer: Optional[asyncio.TimerHandle] = None
        self._pace_timer: Optional[asyncio.TimerHandle] = None
        self._handshake_timer: Optional[asyncio.TimerHandle] = None
        self._failures = 0
        self._warned = False
        self._connecting: Optional[asyncio.Task[None]] = None
        #: Seconds to stop reading after each read (0: read as soon as data arrives). Set
        #: while a kernel floods output, so a burst is relayed in batches of many messages.
        self.pace = 0.0
        self.closed = False
        self._connect()

    @property
    def on_message(self) -> Callable[[list[Frame]], None]:
        return self._on_message

    @on_message.setter
    def on_message(self, callback: Callable[[list[Frame]], None]) -> None:
        self._on_message = callback
        if getattr(self, "_reader", None) is not None and self.curve_server_key is None:
            self._reader.on_message = callback  # type: ignore[union-attr]

    # -- connection ---------------------------------------------------------------------
    def _connect(self) -> None:
        self._retry_timer = None
        if not self.closed:
            self._connecting = self._loop.create_task(self._open())

    async def _open(self) -> None:
        ep = self.endpoint
        try:
            if ep.transport == "ipc":
                opening = self._loop.create_unix_connection(lambda: self, ep.host)
            else:
                opening = self._loop.create_connection(lambda: self, ep.host, ep.port)
            await asyncio.wait_for(opening, self.handshake_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            self._failures += 1
            log.debug("%s: cannot connect to %s yet: %s", self.label, ep, exc or "timed out")
            self._retry()
        finally:
            self._connecting = None

    def _retry(self) -> None:
        if self.closed or self._retry_timer is not None:
            return
        delay = RECONNECT_SLOW_INTERVAL if self._failures > RECONNECT_FAST_TRIES else RECONNECT_INTERVAL
        self._retry_timer = self._loop.call_later(delay, self._connect)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self.closed:
            transport.abort()
            return
        self._transport = transport
        self._ready = False
        self._reader = None
        self._greeting_len = 0
        self._sent_greeting = 0
        self._can_write = True
        self._curve = CurveClient(self.curve_server_key) if self.curve_server_key is not None else None
        self._curve_reset()
        # A peer that connects and then says nothing (or not enough) is not waited for.
        self._handshake_timer = self._loop.call_later(self.handshake_timeout, self._handshake_expired)
        # The greeting goes out in steps, as libzmq sends it: the signature first, the major
        # version once the peer's signature is here, the rest once its major version is,
        # READY once its whole greeting has arrived.
        # (The JeroMQ in Apache Toree sends garbage to a peer that sends everything at once.)
        # The signature's padding carries the routing id's length + 1, as libzmq's does.
        transport.write(b"\xff" + (len(self.identity) + 1).to_bytes(8, "big") + b"\x7f")

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._transport = None
        self._reader = None
        self._curve = None
        self._curve_reset()
        was_ready, self._ready = self._ready, False
        for timer in (self._pace_timer, self._handshake_timer):
            if timer is not None:
                timer.cancel()
        self._pace_timer = self._handshake_timer = None
        if self.closed:
            return
        self._failures += 1
        if not was_ready and not self._warned:
            # libzmq closes a connection whose greeting or socket type it does not accept (on
            # CurveZMQ: a HELLO that does not open with the kernel's secret key).
            why = ("it closed the connection during the CurveZMQ handshake: the kernel's CurveZMQ key does not "
                   "match the one the gateway has, or it does not speak CurveZMQ") if self._mechanism == b"CURVE" \
                else "it closed the connection during the handshake"
            self._refuse(why, slow=False)
        else:
            log.debug("%s: connection to %s lost: %s", self.label, self.endpoint, exc or "closed by the kernel")
        self._retry()

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if not self._ready and not self.closed:
            self._refuse(f"it did not complete the ZMTP handshake within {self.handshake_timeout:g} s")

    def _refuse(self, why: str, slow: bool = True) -> None:
        """Drop a connection to a peer we cannot talk to (``slow``: try again only slowly)."""
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        log.log(level, "%s: the %s socket at %s does not speak ZMTP 3 as a Jupyter kernel does: %s",
                self.label, self.socket_type.lower(), self.endpoint, why)
        self._ready = False
        if self._reader is not None:
            self._reader.halt()
        if slow:
            self._failures = max(self._failures, RECONNECT_FAST_TRIES)
        if self._transport is not None:
            self._transport.abort()

    def _on_ready(self, props: dict[bytes, bytes]) -> None:
        peer = props.get(b"socket-type", b"")
        if peer not in _PEERS[self.socket_type]:
            raise ProtocolError(f"its socket type is {peer.decode(errors='replace') or 'missing'}")
        self._ready = True
        self._failures = 0
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        assert self._transport is not None and self._reader is not None
        self._reader.commands_only = False
        if self.socket_type == "SUB":
            self._transport.write(self._encode([b"\x01"]))  # subscribe to every topic
        self._flush_queue()

    # -- receiving ----------------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        reader = self._reader
        if reader is not None:
            return reader.get_buffer()
        # The greeting: never read past it (what follows belongs to the frame reader).
        return memoryview(self._greeting_in)[self._greeting_len:]

    def buffer_updated(self, nbytes: int) -> None:
        try:
            reader = self._reader
            if reader is None:
                self._greeting_len += nbytes
                self._greeting()
                return
            with batch():
                reader.buffer_updated(nbytes)
        except ProtocolError as exc:
            self._refuse(str(exc))
            return
        if self.pace and self._transport is not None and not self.closed:
            self._transport.pause_reading()
            self._pace_timer = self._loop.call_later(self.pace, self._resume)

    def _resume(self) -> None:
        self._pace_timer = None
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()

    def _greeting(self) -> None:
        """Take the peer's greeting as far as it has come, answering it step by step."""
        assert self._transport is not None
        data, n = self._greeting_in, self._greeting_len
        if data[0] != 0xFF or (n >= 10 and not data[9] & 1):
            raise ProtocolError("no ZMTP greeting")
        if n < 10:
            return
        if self._sent_greeting == 0:  # its signature is here: our major version
            self._transport.write(GREETING[10:_VERSION_END])
            self._sent_greeting = 1
        if n < _VERSION_END:
            return
        if data[10] < 3:
            raise ProtocolError(f"it speaks ZMTP version {data[10]}, older than 3.0")
        if self._sent_greeting == 1:  # its major version is here: the rest of ours
            self._transport.write((GREETING if self._curve is None else CURVE_GREETING)[_VERSION_END:])
            self._sent_greeting = 2
        if n < len(GREETING):
            return
        mechanism = bytes(data[12:32]).rstrip(b"\0")
        if mechanism != self._mechanism:
            if self._mechanism == b"CURVE":
                raise ProtocolError(f"it does not speak CurveZMQ (it asks for the "
                                    f"{mechanism.decode(errors='replace')} security mechanism)")
            raise ProtocolError(f"it asks for the {mechanism.decode(errors='replace')} security mechanism")
        # (Messages go straight to on_message: close() and _refuse() halt the reader.)
        if self._curve is not None:
            # The handshake's commands go to _command, then each MESSAGE (a data frame) to
            # _curve_box; one MESSAGE may hold a frame up to the bound.
            self._reader = FrameReader(self._curve_box, self._command, self._curve_box_oversize,
                                       self.max_message_bytes + MESSAGE_OVERHEAD + FRAME_OVERHEAD)
            cmd = self._curve.hello()
            self._transport.write(_frame_header(COMMAND, len(cmd)) + cmd)
            return
        self._reader = FrameReader(self.on_message, self._command, self._on_oversize, self.max_message_bytes)
        self._transport.write(encode_command(b"READY", encode_properties(self._properties())))

    def _properties(self) -> dict[bytes, bytes]:
        """What our READY (or CurveZMQ INITIATE) says of us."""
        props = {b"Socket-Type": self.socket_type.encode()}
        if self.socket_type == "DEALER":
            # Always, empty or not, as libzmq sends it: the JeroMQ in Apache Toree routes no
            # replies to a peer whose READY has no Identity.
            props[b"Identity"] = self.identity
        return props

    def _on_oversize(self, kept: list[Frame], announced: int) -> None:
        log.debug("%s: skipped a message of %d bytes (the bound is %d)", self.label, announced,
                  self.max_message_bytes)
        if self.on_oversize is not None:
            self.on_oversize(kept, announced)
        if (self.closed or self._transport is None) and self._reader is not None:
            self._reader.halt()

    def _command(self, body: bytes) -> None:
        curve = self._curve
        if curve is not None:
            self._curve_command(curve, body)
            return
        name = body[1:1 + body[0]] if body else b""
        rest = body[1 + len(name):]
        if not self._ready and name not in (b"READY", b"ERROR"):
            raise ProtocolError(f"it sent {body[:24]!r} where READY belongs")
        if name == b"READY":
            if self._ready:
                raise ProtocolError("a second READY")
            self._on_ready(decode_properties(rest))
        elif name == b"ERROR":
            reason = rest[1:1 + rest[0]].decode(errors="replace") if rest else ""
            raise ProtocolError(f"it sent ERROR: {reason}")
        elif name == b"PING" and self._transport is not None and self._can_write:
            # PONG echoes the ping's context (after its 2-byte TTL). Not while the peer leaves
            # what we wrote unread (the transport's buffer is past its high-water mark):
            # a peer that pings and never reads must not make PONGs pile up here.
            self._transport.write(encode_command(b"PONG", rest[2:2 + _PING_CONTEXT_MAX]))

    # -- CurveZMQ -----------------------------------------------------------------------
    def _curve_box(self, frames: list[Frame]) -> None:
        """A MESSAGE from the kernel (the reader's message: one data frame): decrypted, its
        frame goes into the message being read (a CurveError drops the connection)."""
        curve = self._curve
        if curve is None or len(frames) != 1:
            raise ProtocolError("a CurveZMQ peer sent a frame with the MORE flag outside a box")
        flags, data = curve.decrypt(frames[0])
        if flags & MESSAGE_COMMAND:
            self._curve_inner_command(data)
        else:
            self._curve_frame(flags, data)

    def _curve_box_oversize(self, kept: list[Frame], announced: int) -> None:
        """One MESSAGE past the bound: reported, and (as libzmq does) the connection dropped,
        since what follows it cannot be told apart (its MORE flag is inside the box)."""
        frames = self._curve_frames
        self._curve_reset()
        self._on_oversize(frames, max(announced - MESSAGE_OVERHEAD, self.max_message_bytes + 1))
        if self._reader is not None:
            self._reader.halt()
        if self._transport is not None:
            self._transport.abort()

    def _curve_command(self, curve: CurveClient, body: bytes) -> None:
        name = body[1:1 + body[0]] if body else b""
        if name == b"WELCOME":
            cmd = curve.welcome(body, encode_properties(self._properties()))
            assert self._transport is not None
            self._transport.write(_frame_header(COMMAND, len(cmd)) + cmd)
        elif name == b"READY":
            if self._ready:
                raise ProtocolError("a second READY")
            self._on_ready(decode_properties(curve.ready(body)))
        elif name == b"ERROR":
            rest = body[1 + len(name):]
            reason = rest[1:1 + rest[0]].decode(errors="replace") if rest else ""
            raise ProtocolError(f"it sent ERROR: {reason}")
        elif not self._ready:
            raise ProtocolError(f"it sent {body[:24]!r} during the CurveZMQ handshake")
        # Anything else unencrypted after the handshake is ignored (it could not be trusted).

    def _curve_inner_command(self, data: bytes) -> None:
        """A command inside a MESSAGE box (libzmq 4.3 encrypts its PINGs)."""
        name = data[1:1 + data[0]] if data else b""
        if name == b"PING" and self._transport is not None and self._can_write and self._curve is not None:
            rest = data[1 + len(name):]
            pong = b"\x04PONG" + rest[2:2 + _PING_CONTEXT_MAX]
            cmd = self._curve.encrypt(MESSAGE_COMMAND, pong)
            self._transport.write(_frame_header(0, len(cmd)) + cmd)

    def _curve_frame(self, flags: int, data: bytes) -> None:
        """One decrypted frame: into the message being read, within the bound."""
        self._curve_announced += len(data)
        if not self._curve_dropping:
            kept = self._curve_kept + len(data) + FRAME_OVERHEAD
            if kept <= self.max_message_bytes:
                self._curve_kept = kept
                self._curve_frames.append(data)
            else:
                self._curve_dropping = True
        if flags & MESSAGE_MORE:
            return
        frames, dropped, announced = self._curve_frames, self._curve_dropping, self._curve_announced
        self._curve_reset()
        if dropped:
            self._on_oversize(frames, announced)
        else:
            self.on_message(frames)

    def _curve_reset(self) -> None:
        self._curve_frames = []
        self._curve_kept = self._curve_announced = 0
        self._curve_dropping = False

    def _encode(self, frames: Sequence[Frame]) -> bytes:
        """``frames`` as they go on the wire: ZMTP frames, or on CurveZMQ a MESSAGE each (in a
        data frame without MORE: that flag travels inside the box)."""
        curve = self._curve
        if curve is None:
            return encode_message(frames)
        parts: list[bytes] = []
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            cmd = curve.encrypt(MESSAGE_MORE if i < last else 0, bytes(frame))
            parts.append(_frame_header(0, len(cmd)))
            parts.append(cmd)
        return b"".join(parts)

    # -- sending ------------------------------------------------------------------------
    def send(self, frames: Sequence[Frame]) -> None:
        """Send one multipart message without blocking.

        Raises :class:`KernelNotTaking` when :data:`MAX_QUEUED` messages or
        ``max_queued_bytes`` already wait for the kernel (one message is always taken into
        an empty queue, whatever its size), and :class:`ChannelClosed` after :meth:`close`.
        """
        if self.closed:
            raise ChannelClosed(f"{self.label}: the connection to the kernel is closed")
        if self._ready and self._can_write and not self._queue:
            assert self._transport is not None
            self._transport.write(self._encode(frames))
            return
        # Queued unencoded: on CurveZMQ, what is sent after a reconnection is boxed with
        # that connection's keys.
        size = _wire_size(frames)
        if len(self._queue) >= MAX_QUEUED or (self._queue and self._queued_bytes + size > self.max_queued_bytes):
            raise KernelNotTaking("the kernel is not taking messages")
        self._queue.append(([bytes(f) for f in frames], size))
        self._queued_bytes += size

    def pause_writing(self) -> None:
        self._can_write = False

    def resume_writing(self) -> None:
        self._can_write = True
        self._flush_queue()

    def _flush_queue(self) -> None:
        queue, transport = self._queue, self._transport
        while queue and self._can_write and self._ready and transport is not None:
            frames, size = queue.popleft()
            self._queued_bytes -= size
            transport.write(self._encode(frames))  # may call pause_writing

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Bytes of messages waiting for the kernel (not counting the transport's buffer)."""
        return self._queued_bytes

    @property
    def connected(self) -> bool:
        """Whether the handshake with the kernel is done (CurveZMQ's included)."""
        return self._ready

    # -- closing ------------------------------------------------------------------------
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._ready = False
        self._queue.clear()
        self._queued_bytes = 0
        for timer in (self._retry_timer, self._pace_timer, self._handshake_timer):
            if timer is not None:
                timer.cancel()
        self._retry_timer = self._pace_timer = self._handshake_timer = None
        if self._reader is not None:
            self._reader.halt()
        if self._connecting is not None:
            self._connecting.cancel()
        if self._transport is not None:
            self._transport.abort()  # like ZMQ_LINGER 0: nothing unsent is kept
