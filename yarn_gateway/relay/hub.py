"""The gateway's connection to one kernel, shared by all of that kernel's clients.

A :class:`KernelHub` subscribes to the kernel's iopub channel once, tracks the kernel's
execution state and last activity from it, and fans every iopub message out to the
:class:`~.session.ClientSession` objects (one per client ``session_id``). Sessions own
their request sockets, so replies reach only the client that asked.

Readiness: :meth:`KernelHub.connect` returns only once the kernel has answered a
``kernel_info_request`` *and* an iopub message has arrived on the gateway's
subscription, so nothing the kernel publishes after that can be lost to ZMQ's
"slow joiner" effect. The gateway's side of iopub has no high-water mark and drops
nothing (bounds are applied per client instead); while the event loop is busy, the
kernel's output waits in its socket buffers and its own ZMQ send queue.

The connections to the kernel are :class:`~.channel.KernelChannel` objects:
:class:`~.zmtp.ZmtpChannel` (ZMTP spoken on the event loop itself, without libzmq's I/O
thread: the relay's hot path), with the NULL mechanism for a kernel whose connection info
has no CurveZMQ key and CurveZMQ (the kernel's public key) for one that has; or, with
``RelayLimits.curve_relay = "libzmq"``, :class:`~.zmq_channel.LibzmqChannel` (libzmq's
CurveZMQ) for an encrypted kernel. A message
larger than ``RelayLimits.max_message_bytes`` is never buffered: an iopub one is dropped
and every session is told so (:meth:`KernelHub.dropped_notice`), as when output is dropped
for a client that was away.

Sessions are capped per kernel and per user (:meth:`KernelHub.admit`); at a cap, the
session detached for the longest is evicted, and if every session is attached the new one
is refused (:class:`SessionLimitReached`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Iterable
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from .channel import CurveKeys, KernelChannel
from .frames import Frame
from .session import ClientSession, Dropped, RelayLimits
from .wire import (
    InvalidMessage,
    KernelMessage,
    Signer,
    encode_synthetic,
    message_head,
    new_header,
    parse_kernel_message,
    synthetic_message,
    zmq_frames,
)
from .zmq_channel import LibzmqChannel
from .zmtp import Endpoint, ZmtpChannel

log = logging.getLogger(__name__)


#: Output a kernel may flood with; while it does, iopub is drained in paced batches.
OUTPUT_TYPES = frozenset({"stream", "display_data", "update_display_data", "clear_output"})
#: Output messages at least this large (content bytes) are relayed without pacing.
PACED_MAX_BYTES = 4096


class KernelNotReady(Exception):
    """The kernel did not answer within the readiness timeout (``timed_out``), or died while starting."""

    def __init__(self, message: str, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class SessionLimitReached(Exception):
    """No room for another client session (the message says which cap, and what to do)."""


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


class KernelHub:
    """See the module docstring."""

    def __init__(self, kernel_id: str, limits: Optional[RelayLimits] = None) -> None:
        self.kernel_id = kernel_id
        self.limits = limits or RelayLimits()
        self.gateway_session = uuid.uuid4().hex
        self.execution_state = "starting"
        self._activity = time.time()  # a float: touched for every message
        self.sessions: dict[str, ClientSession] = {}
        self.signer = Signer(b"")
        self._conn_info: dict[str, Any] = {}
        self._iopub: Optional[KernelChannel] = None
        self._curve: Optional[CurveKeys] = None
        self._iopub_seen = asyncio.Event()

    @property
    def last_activity(self) -> datetime:
        return datetime.fromtimestamp(self._activity, timezone.utc)

    @last_activity.setter
    def last_activity(self, value: datetime) -> None:
        self._activity = value.timestamp()

    # -- connection ---------------------------------------------------------------------
    def endpoint(self, channel: str) -> Endpoint:
        """Where the kernel listens for ``channel`` (from its connection info)."""
        info = self._conn_info
        transport = info.get("transport", "tcp")
        port = int(info[f"{channel}_port"])
        if transport == "ipc":
            return Endpoint("ipc", f"{info['ip']}-{port}")
        ip = info["ip"]
        if ip in ("0.0.0.0", ""):
            ip = "127.0.0.1"
        return Endpoint(transport, ip, port)

    async def connect(
        self,
        connection_info: dict[str, Any],
        timeout: float,
        is_alive: Optional[Callable[[], Awaitable[bool]]] = None,
    ) -> None:
        """Connect to the kernel described by ``connection_info`` and wait until it is ready.

        Raises :class:`KernelNotReady` when the kernel does not answer within ``timeout``
        seconds or ``is_alive`` reports it gone.
        """
        self.disconnect()
        # The kernel's CurveZMQ secret key (jupyter_client puts it in a local kernel's
        # connection info) is the kernel's alone: the relay keeps only the public key.
        self._conn_info = {k: v for k, v in connection_info.items() if k != "curve_secretkey"}
        self._curve = CurveKeys.from_connection_info(self._conn_info)
        key = connection_info.get("key", b"")
        self.signer = Signer(key.encode() if isinstance(key, str) else bytes(key),
                             connection_info.get("signature_scheme", "hmac-sha256"))
        self._iopub_seen = asyncio.Event()
        self._iopub = self.channel("iopub", self._on_iopub, on_dropped=self._on_iopub_dropped)
        await self._wait_ready(timeout, is_alive)
        for session in self.sessions.values():
            session.kernel_reconnected()

    @property
    def is_connected(self) -> bool:
        """Whether the hub follows a kernel (it is not between a disconnect and a connect)."""
        return self._iopub is not None

    def disconnect(self) -> None:
        """Close every ZMQ socket (sessions keep their websockets and buffers)."""
        if self._iopub is not None:
            self._iopub.close()
            self._iopub = None
        for session in self.sessions.values():
            session.close_sockets()

    def close(self) -> None:
        """Shut the hub down: close every session and socket."""
        self.disconnect()
        for session in list(self.sessions.values()):
            session.close()
        self.sessions.clear()

    async def _wait_ready(self, timeout: float, is_alive: Optional[Callable[[], Awaitable[bool]]]) -> None:
        deadline = time.monotonic() + timeout
        replied = asyncio.Event()

        def on_reply(msg: KernelMessage) -> None:
            if msg.msg_type == "kernel_info_reply":
                replied.set()

        channel = self.channel("shell", on_reply)
        interval = 0.05
        try:
            while True:
                replied.clear()
                channel.send(self._request("kernel_info_request"))
                try:
                    await asyncio.wait_for(replied.wait(), timeout=interval)
                except asyncio.TimeoutError:
                    pass
                else:
                    try:
                        # The reply's own status messages arrive within milliseconds once the
                        # subscription is live: wait briefly, then ask again.
                        await asyncio.wait_for(self._iopub_seen.wait(), timeout=0.05)
                        return
                    except asyncio.TimeoutError:
                        interval = 0.05
                        continue
                if time.monotonic() > deadline:
                    raise KernelNotReady(f"kernel did not answer within {timeout:g} s", timed_out=True)
                if is_alive is not None and not await is_alive():
                    raise KernelNotReady("kernel process ended while starting", timed_out=False)
                interval = min(interval * 2, 1.0)
        finally:
            channel.close()

    def _request(self, msg_type: str, content: Optional[dict[str, Any]] = None) -> list[bytes]:
        header = new_header(msg_type, self.gateway_session)
        parts = [json.dumps(header).encode(), b"{}", b"{}", json.dumps(content or {}).encode()]
        return zmq_frames(self.signer, parts)

    def channel(self, channel: str, on_message: Callable[[KernelMessage], None],
                identity: bytes = b"", on_dropped: Optional[Callable[[Dropped], None]] = None) -> KernelChannel:
        """Connect to the kernel's ``channel`` (SUB for iopub, DEALER with ``identity`` for
        the others): every kernel message is verified and handed to ``on_message``.

        Messages with a bad signature or header are dropped with a log line; messages larger
        than ``limits.max_message_bytes`` are skipped unread, logged and handed to
        ``on_dropped``.
        """
        signer = self.signer
        limits = self.limits

        def on_oversize(kept: list[Frame], announced: int) -> None:
            msg_type, parent = message_head(kept)
            self._activity = time.time()
            log.warning("Kernel %s: dropped an over-size %s message of %s on %s: larger than the relay's bound of %s "
                        "(KernelRegistry.max_kernel_message_bytes)", self.kernel_id, msg_type or "(unreadable)",
                        _size(announced), channel, _size(limits.max_message_bytes))
            if on_dropped is not None:
                on_dropped(Dropped(channel, msg_type, parent, announced))

        def on_frames(frames: list[Frame]) -> None:
            try:
                msg = parse_kernel_message(channel, frames, signer)
            except InvalidMessage as exc:
                log.warning("Kernel %s: dropped an invalid %s message: %s", self.kernel_id, channel, exc)
                return
            self._activity = time.time()
            on_message(msg)

        socket_type = "SUB" if channel == "iopub" else "DEALER"
        if self._curve is not None and limits.curve_relay == "zmtp":
            return ZmtpChannel(self.endpoint(channel), socket_type, on_frames, identity,
                               label=f"Kernel {self.kernel_id} ({channel})", on_oversize=on_oversize,
                               max_message_bytes=limits.max_message_bytes, max_queued_bytes=limits.send_queue_bytes,
                               handshake_timeout=limits.handshake_timeout, curve_server_key=self._curve.raw())
        if self._curve is not None:
            return LibzmqChannel(self.endpoint(channel), socket_type, on_frames, identity,
                                 label=f"Kernel {self.kernel_id} ({channel})", curve=self._curve,
                                 on_oversize=on_oversize, max_message_bytes=limits.max_message_bytes,
                                 max_queued_bytes=limits.send_queue_bytes, handshake_timeout=limits.handshake_timeout)
        return ZmtpChannel(self.endpoint(channel), socket_type, on_frames, identity,
                           label=f"Kernel {self.kernel_id} ({channel})", on_oversize=on_oversize,
                           max_message_bytes=limits.max_message_bytes, max_queued_bytes=limits.send_queue_bytes,
                           handshake_timeout=limits.handshake_timeout)

    def dropped_text(self, dropped: Dropped) -> str:
        kind = dropped.msg_type
        what = f"{'an' if kind[:1] in tuple('aeiou') else 'a'} {kind} message" if kind else "a message"
        return (f"[yarn-gateway] Kernel {self.kernel_id}: the kernel sent {what} of {_size(dropped.size)} on "
                f"{dropped.channel}, more than the gateway relays ({_size(self.limits.max_message_bytes)}, "
                "KernelRegistry.max_kernel_message_bytes), so it was dropped; the kernel itself is unaffected. "
                "Produce smaller output (write large results to a file, for instance), or ask the gateway's "
                "administrator to raise the limit.\n")

    def dropped_notice(self, dropped: Dropped) -> KernelMessage:
        """A ``stream`` message on stderr telling a client that ``dropped`` was dropped."""
        header = new_header("stream", self.gateway_session)
        return synthetic_message("iopub", header, {"name": "stderr", "text": self.dropped_text(dropped)},
                                 dropped.parent)

    def _on_iopub_dropped(self, dropped: Dropped) -> None:
        notice = self.dropped_notice(dropped)
        for session in list(self.sessions.values()):
            session.deliver(notice)

    def _on_iopub(self, msg: KernelMessage) -> None:
        self._iopub_seen.set()
        state = msg.execution_state()
        if state is not None:
            self.execution_state = state
            msg.lazy = state == "busy"
        elif msg.msg_type == "execute_input":
            msg.lazy = True
        if self._iopub is not None:
            # Pace only while output flows; a status (or anything else) ends it, so the final
            # "idle" and every reply go out as soon as they arrive.
            # Large messages are cheap per byte already: pacing them would only add latency.
            small_output = msg.msg_type in OUTPUT_TYPES and len(msg.frames[3]) < PACED_MAX_BYTES
            self._iopub.pace = self.limits.output_batch_interval if small_output else 0.0
        for session in list(self.sessions.values()):
            session.deliver(msg)

    # -- sessions -----------------------------------------------------------------------
    def touch(self) -> None:
        self._activity = time.time()

    def session(self, session_id: str, user: str = "") -> ClientSession:
        """The session named ``session_id`` (created on first use, for ``user``; see :meth:`admit`)."""
        session = self.sessions.get(session_id)
        if session is None or session.closed:
            session = ClientSession(self, session_id, self.limits, user)
            self.sessions[session_id] = session
        return session

    def admit(self, session_id: str, user: str, hubs: Iterable[KernelHub]) -> None:
        """Make room for session ``session_id`` of ``user`` (``hubs``: every kernel's, for the
        per-user cap), evicting the longest-detached session at a cap; raises
        :class:`SessionLimitReached` when every session that counts is attached.
        A session that exists already (a client coming back) is always admitted."""
        existing = self.sessions.get(session_id)
        if existing is not None and not existing.closed:
            return
        per_kernel = self.limits.max_sessions_per_kernel
        own = [(self, s) for s in self.sessions.values()]
        if per_kernel > 0 and len(self.sessions) >= per_kernel and not _evict(own):
            raise SessionLimitReached(
                f"Kernel {self.kernel_id} already has {len(self.sessions)} client connections, the most allowed per "
                "kernel (KernelRegistry.max_sessions_per_kernel): close another notebook or console using this "
                "kernel, then try again.")
        per_user = self.limits.max_sessions_per_user
        if per_user > 0:
            mine = [(hub, s) for hub in hubs for s in hub.sessions.values() if s.user == user and not s.closed]
            if len(mine) >= per_user and not _evict(mine):
                raise SessionLimitReached(
                    f"{user} already has {len(mine)} client connections to kernels, the most allowed per user "
                    f"(KernelRegistry.max_sessions_per_user), so kernel {self.kernel_id} cannot get another: "
                    "close some notebooks or consoles, then try again.")

    def drop_session(self, session_id: str) -> None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            if session.conn is None:
                log.info("Kernel %s: session %s expired", self.kernel_id, session_id)
            session.close()

    @property
    def detached_with_sockets(self) -> int:
        """Detached sessions that still hold kernel connections (a reply is owed to them)."""
        return sum(1 for s in self.sessions.values() if s.conn is None and s.has_sockets)

    def kernel_channels(self) -> list[KernelChannel]:
        """Every open connection to the kernel: iopub and the sessions' shell, control and stdin."""
        own = [self._iopub] if self._iopub is not None else []
        return own + [ch for s in self.sessions.values() for ch in s.kernel_channels]

    @property
    def encrypted(self) -> bool:
        """Whether the kernel's traffic is CurveZMQ (its connection info has its public key)."""
        return self._curve is not None

    @property
    def connections(self) -> int:
        return sum(1 for s in self.sessions.values() if s.conn is not None)

    def broadcast_status(self, state: str) -> None:
        """Tell every attached client about a state the kernel cannot report itself."""
        self.execution_state = state
        header = new_header("status", self.gateway_session)
        for session in self.sessions.values():
            if session.conn is not None:
                data, binary = encode_synthetic("iopub", header, {"execution_state": state}, session.conn.protocol)
                session.conn.send(data, binary)


def _evict(sessions: list[tuple[KernelHub, ClientSession]]) -> bool:
    """Drop the session detached for the longest (its replay buffer with it); False if none is."""
    detached = [(hub, s) for hub, s in sessions if s.conn is None]
    if not detached:
        return False
    hub, oldest = min(detached, key=lambda pair: pair[1].detached_at)
    log.info("Kernel %s: session %s (detached) evicted to make room for a new client session",
             hub.kernel_id, oldest.session_id)
    hub.sessions.pop(oldest.session_id, None)
    oldest.close()
    return True
