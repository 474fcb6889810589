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

The connections to the kernel are :class:`~.zmtp.ZmtpChannel` objects: ZMTP spoken on the
event loop itself, without libzmq's I/O thread (this is the relay's hot path).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from .session import ClientSession, RelayLimits
from .wire import (
    InvalidMessage,
    KernelMessage,
    Signer,
    encode_synthetic,
    new_header,
    parse_kernel_message,
    zmq_frames,
)
from .zmtp import Endpoint, ZmtpChannel

log = logging.getLogger(__name__)


#: Output a kernel may flood with; while it does, iopub is drained in paced batches.
OUTPUT_TYPES = frozenset({"stream", "display_data", "update_display_data", "clear_output"})
#: Output messages at least this large (content bytes) are relayed without pacing.
PACED_MAX_BYTES = 4096


class KernelNotReady(Exception):
    """The kernel did not answer within the readiness timeout (or died while starting)."""


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
        self._iopub: Optional[ZmtpChannel] = None
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
        self._conn_info = dict(connection_info)
        key = connection_info.get("key", b"")
        self.signer = Signer(key.encode() if isinstance(key, str) else bytes(key),
                             connection_info.get("signature_scheme", "hmac-sha256"))
        self._iopub_seen = asyncio.Event()
        self._iopub = self.channel("iopub", self._on_iopub)
        await self._wait_ready(timeout, is_alive)
        for session in self.sessions.values():
            session.open_sockets()

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
                    raise KernelNotReady(f"kernel did not answer within {timeout:g} s")
                if is_alive is not None and not await is_alive():
                    raise KernelNotReady("kernel process ended while starting")
                interval = min(interval * 2, 1.0)
        finally:
            channel.close()

    def _request(self, msg_type: str, content: Optional[dict[str, Any]] = None) -> list[bytes]:
        header = new_header(msg_type, self.gateway_session)
        parts = [json.dumps(header).encode(), b"{}", b"{}", json.dumps(content or {}).encode()]
        return zmq_frames(self.signer, parts)

    def channel(self, channel: str, on_message: Callable[[KernelMessage], None],
                identity: bytes = b"") -> ZmtpChannel:
        """Connect to the kernel's ``channel`` (SUB for iopub, DEALER with ``identity`` for
        the others): every kernel message is verified and handed to ``on_message``.

        Messages with a bad signature or header are dropped with a log line.
        """
        signer = self.signer

        def on_frames(frames: list[bytes]) -> None:
            try:
                msg = parse_kernel_message(channel, frames, signer)
            except InvalidMessage as exc:
                log.warning("Kernel %s: dropped an invalid %s message: %s", self.kernel_id, channel, exc)
                return
            self._activity = time.time()
            on_message(msg)

        socket_type = "SUB" if channel == "iopub" else "DEALER"
        return ZmtpChannel(self.endpoint(channel), socket_type, on_frames, identity,
                           label=f"Kernel {self.kernel_id} ({channel})")

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

    def session(self, session_id: str) -> ClientSession:
        """The session named ``session_id`` (created on first use)."""
        session = self.sessions.get(session_id)
        if session is None or session.closed:
            session = ClientSession(self, session_id, self.limits)
            self.sessions[session_id] = session
        return session

    def drop_session(self, session_id: str) -> None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            if session.conn is None:
                log.info("Kernel %s: session %s expired", self.kernel_id, session_id)
            session.close()

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
