"""The gateway's response listener: where launchers in YARN containers send their kernel's
connection info (PROTOCOL.md, "The response").

One asyncio server per gateway on a port from the configured range (or a fixed port).
Launches wait on a future obtained from :meth:`ResponseListener.register`; every
connection is handled in its own task with deadlines and capped per source address, so a
slow, idle or hostile client never delays another launch. Frames are parsed and decrypted
by :mod:`.response_frames`, against the wire format of ``yarn_gateway_launchers.launcher_protocol``
(the module the Python launcher uses).
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any, Optional, Union

from Crypto.PublicKey import RSA

from yarn_gateway_launchers import launcher_protocol as lp

from ..utils import run_blocking
from . import response_frames as frames

log = logging.getLogger(__name__)

PortRange = Union[str, tuple[int, int], None]
#: Seconds between two warnings about evicted or refused connections.
FLOOD_LOG_INTERVAL = 10.0


class LauncherResponseError(Exception):
    """A launcher that knew the kernel's launch token sent an unusable response; the
    launch waiting for it fails with this (``reason`` names the problem, no secrets)."""

    def __init__(self, kernel_id: str, reason: str) -> None:
        super().__init__(f"kernel {kernel_id}: the launcher sent an invalid response ({reason})")
        self.kernel_id = kernel_id
        self.reason = reason


class ResponseListener:
    """Receives encrypted launcher responses.

    ``host`` is the bind address; ``advertise_host`` the name launchers use to reach it
    (default: ``host``, or this machine's FQDN when ``host`` is a wildcard). The port is
    ``port`` when non-zero, else a random free port in ``port_range`` (``"lo..hi"``,
    ``(lo, hi)``, or ``None``/``"0..0"`` for any port).

    Bounds on what a client can make it hold: a frame's 4-byte length prefix must arrive
    within ``first_byte_timeout`` seconds of the connection opening and the whole frame
    within ``frame_timeout``; the prefix is checked against the 64 KiB limit before the
    body is read. At most ``max_connections`` connections are open at once, at most
    ``max_connections_per_source`` from one address; at a cap the oldest connection still
    reading its frame is evicted (answered ``busy``) so a flood of idle connections never
    locks out a launcher, which sends its frame at once and retries ``busy``
    (:class:`~yarn_gateway_launchers.launcher_protocol.ConnectionLimiter`). Before the
    RSA unwrap (the only costly step, run off the event loop, at most
    ``max_concurrent_unwraps`` at once) the body must parse and name a kernel that waits
    for its launcher. ``signature_schemes`` are the kernel message signature schemes a
    launcher may choose (default: hmac-sha256 only).
    """

    def __init__(
        self,
        host: str = "0.0.0.0",
        port_range: PortRange = None,
        port: int = 0,
        *,
        advertise_host: Optional[str] = None,
        key_bits: int = 2048,
        private_key: Optional[RSA.RsaKey] = None,
        frame_timeout: float = 5.0,
        first_byte_timeout: float = 2.0,
        max_connections: int = 64,
        max_connections_per_source: int = 8,
        max_concurrent_unwraps: int = 2,
        signature_schemes: Sequence[str] = lp.DEFAULT_SIGNATURE_SCHEMES,
        recent_size: int = 1024,
    ) -> None:
        if key_bits < lp.MIN_RSA_BITS:
            raise ValueError(f"key_bits must be at least {lp.MIN_RSA_BITS}")
        unknown = [s for s in signature_schemes if s not in lp.SIGNATURE_SCHEMES]
        if unknown or not signature_schemes:
            raise ValueError(f"signature_schemes must be a non-empty subset of {', '.join(lp.SIGNATURE_SCHEMES)}; "
                             f"got {list(signature_schemes)!r}")
        self.host = host
        if port:
            self.port_range: tuple[int, int] = (port, port)
        elif isinstance(port_range, str):
            self.port_range = lp.parse_port_range(port_range)
        else:
            self.port_range = port_range or (0, 0)
        self.advertise_host = advertise_host
        self.key_bits = key_bits
        self.frame_timeout = frame_timeout
        self.first_byte_timeout = min(first_byte_timeout, frame_timeout)
        self.max_connections = max_connections
        self.signature_schemes = tuple(signature_schemes)
        self._private_key = private_key
        self._public_key_b64: Optional[str] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self._port = 0
        self._waiting: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        # Kernels whose response was accepted recently, so a replay is answered "duplicate"
        # rather than "unknown kernel". Bounded: old entries fall out.
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._recent_size = recent_size
        self._limiter = lp.ConnectionLimiter(max_connections, max_connections_per_source)
        self._unwraps = asyncio.Semaphore(max_concurrent_unwraps)
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flood_counts: dict[str, tuple[int, float]] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Generate the key pair (off the loop), bind a port, start serving."""
        loop = asyncio.get_running_loop()
        if self._private_key is None:
            self._private_key = await loop.run_in_executor(None, RSA.generate, self.key_bits)
        if self._private_key.size_in_bits() < lp.MIN_RSA_BITS:
            raise ValueError(f"the response key must have at least {lp.MIN_RSA_BITS} bits")
        self._public_key_b64 = lp.public_key_b64(self._private_key)
        (sock,) = lp.bind_sockets_in_range(1, self.port_range, self.host, listen=True)
        sock.setblocking(False)
        self._port = int(sock.getsockname()[1])
        if self.advertise_host is None:
            wildcard = self.host in ("", "0.0.0.0", "::")
            self.advertise_host = await loop.run_in_executor(None, socket.getfqdn) if wildcard else self.host
        self._server = await asyncio.start_server(self._handle, sock=sock)
        log.info("response listener on %s (bound %s:%d)", self.address, self.host, self._port)

    async def stop(self) -> None:
        """Stop serving, close open connections, cancel launches still waiting."""
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            # Closed connections end their tasks by themselves (end of stream); cancel what is left.
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=1.0)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        for _, fut in self._waiting.values():
            fut.cancel()
        self._waiting.clear()

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` for the launcher's ``--response-address``."""
        if self._server is None or self.advertise_host is None:
            raise RuntimeError("response listener not started")
        host = f"[{self.advertise_host}]" if ":" in self.advertise_host else self.advertise_host
        return f"{host}:{self._port}"

    @property
    def public_key_b64(self) -> str:
        """Base64 DER SubjectPublicKeyInfo for the launcher's ``--public-key``."""
        if self._public_key_b64 is None:
            raise RuntimeError("response listener not started")
        return self._public_key_b64

    # ------------------------------------------------------------------ registration

    def register(self, kernel_id: str, launch_token: str) -> asyncio.Future[dict[str, Any]]:
        """Wait for ``kernel_id``'s launcher. The future resolves with the decrypted
        plaintext minus ``launch_token`` (``connection_info``, ``control_port``, ``pid``,
        ``hostname``), or fails with :class:`LauncherResponseError`. Cancelling it (or
        :meth:`unregister`) stops waiting. Call on the event loop."""
        if not launch_token:
            raise ValueError("launch_token must not be empty")
        old = self._waiting.get(kernel_id)
        if old is not None and not old[1].done():
            raise ValueError(f"kernel {kernel_id} is already waiting for its launcher")
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[kernel_id] = (launch_token, fut)
        self._recent.pop(kernel_id, None)
        return fut

    def unregister(self, kernel_id: str) -> None:
        """Stop waiting for ``kernel_id`` (cancels its future if still pending)."""
        entry = self._waiting.pop(kernel_id, None)
        if entry is not None and not entry[1].done():
            entry[1].cancel()

    # ------------------------------------------------------------------ connections

    @property
    def open_connections(self) -> int:
        """Connections being served now (for tests and metrics)."""
        return len(self._limiter)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle_connection(reader, writer)
        except asyncio.CancelledError:
            # Only stop() cancels these tasks; the connection is closed by now. (Re-raising would
            # make asyncio log the cancellation as an error of the connection callback.)
            writer.close()
        finally:
            self._tasks.discard(task)

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else "?"
        admitted, evicted = self._limiter.admit(source, writer)
        if evicted is not None:
            self._flood_warning("evicted (too many connections still sending a frame)", source)
            self._evict(evicted)
        if not admitted:
            self._flood_warning("refused (every connection slot is busy)", source)
            await self._answer(writer, {"status": "error", "reason": f"{lp.E_BUSY}: too many connections"})
            return
        self._writers.add(writer)
        try:
            await self._serve(source, reader, writer)
        finally:
            self._limiter.release(writer)
            self._writers.discard(writer)
            writer.close()

    async def _serve(self, source: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                body = await self._read_body(reader)
            finally:
                still_held = self._limiter.done_reading(writer)
            if not still_held:
                return  # evicted while its last bytes arrived: it was told "busy" and will retry
            kernel_id = await self._accept(body)
        except lp.ProtocolError as e:
            log.warning("response from %s rejected: %s", source, e.reason)
            await self._answer(writer, {"status": "error", "reason": e.reason}, reader)
            return
        except asyncio.TimeoutError:
            self._flood_warning("cut off (no complete frame in time)", source)
            await self._answer(writer, {"status": "error", "reason": f"{lp.E_TIMEOUT}: no complete frame in "
                                        f"time (length within {self.first_byte_timeout:g} s, frame within "
                                        f"{self.frame_timeout:g} s)"})
            return
        except (OSError, asyncio.IncompleteReadError) as e:
            if self._limiter.holds(writer):  # an evicted connection was counted already
                self._flood_warning(f"dropped ({type(e).__name__})", source)
            return
        except Exception as e:  # a bug must cost this one answer, never the listener
            log.error("response from %s failed: %s", source, type(e).__name__)
            await self._answer(writer, {"status": "error",
                                        "reason": f"{lp.E_INTERNAL}: the gateway could not process the frame"})
            return
        log.info("kernel %s: launcher response accepted from %s", kernel_id, source)
        await self._answer(writer, {"status": "ok"})

    def _flood_warning(self, what: str, source: str) -> None:
        """At most one warning per kind and ``FLOOD_LOG_INTERVAL``, however fast a flood comes."""
        now = time.monotonic()
        pending, last = self._flood_counts.get(what, (0, float("-inf")))
        pending += 1
        if now - last >= FLOOD_LOG_INTERVAL:
            log.warning("response listener: %d connection(s) %s since the last such warning, the latest from %s",
                        pending, what, source)
            self._flood_counts[what] = (0, now)
        else:
            self._flood_counts[what] = (pending, last)

    def _evict(self, writer: asyncio.StreamWriter) -> None:
        """Tell a connection still sending its frame ``busy`` and close it; its task sees
        the end of the stream and finishes."""
        try:
            writer.write(json.dumps({"status": "error", "reason": f"{lp.E_BUSY}: too many connections"}).encode()
                         + b"\n")
        except (OSError, RuntimeError):
            pass
        writer.close()

    async def _read_body(self, reader: asyncio.StreamReader) -> bytes:
        """The frame's body, the prefix due within ``first_byte_timeout`` and the whole frame
        within ``frame_timeout`` of now (one ``wait_for`` at a time: never nested)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.frame_timeout
        header = await asyncio.wait_for(reader.readexactly(4), self.first_byte_timeout)
        length = frames.parse_frame_length(header)
        return await asyncio.wait_for(reader.readexactly(length), max(0.0, deadline - loop.time()))

    def _check_waiting(self, kernel_id: str) -> tuple[str, asyncio.Future[dict[str, Any]]]:
        entry = self._waiting.get(kernel_id)
        if entry is None or entry[1].done():
            if kernel_id in self._recent:
                raise lp.ProtocolError(lp.E_DUPLICATE, f"kernel {kernel_id} already has a response")
            raise lp.ProtocolError(lp.E_UNKNOWN_KERNEL, f"no launch is waiting for kernel {kernel_id}")
        return entry

    async def _accept(self, body: bytes) -> str:
        """Check and decrypt one frame; resolve the waiting future. Returns the kernel id.
        Cheap checks first: a frame for no waiting kernel never costs an RSA operation."""
        assert self._private_key is not None
        envelope = frames.parse_frame_body(body)
        kernel_id: str = envelope["kernel_id"]
        self._check_waiting(kernel_id)
        async with self._unwraps:
            self._check_waiting(kernel_id)  # another frame may have won while this one queued
            plain = await run_blocking(frames.decrypt_envelope, envelope, self._private_key)
        token, fut = self._check_waiting(kernel_id)
        got = plain.get("launch_token")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode("utf-8"), token.encode("utf-8")):
            raise lp.ProtocolError(lp.E_BAD_TOKEN, f"wrong launch token for kernel {kernel_id}")
        del self._waiting[kernel_id]
        self._remember(kernel_id)
        try:
            frames.validate_plaintext(plain, self.signature_schemes)
        except lp.ProtocolError as e:
            fut.set_exception(LauncherResponseError(kernel_id, e.reason))
            raise
        result = {k: v for k, v in plain.items() if k != "launch_token"}
        fut.set_result(result)
        return kernel_id

    @staticmethod
    async def _discard(reader: asyncio.StreamReader, limit: int = 1 << 20) -> None:
        seen = 0
        while seen < limit:
            chunk = await reader.read(65536)
            if not chunk:
                return
            seen += len(chunk)

    def _remember(self, kernel_id: str) -> None:
        self._recent[kernel_id] = None
        while len(self._recent) > self._recent_size:
            self._recent.popitem(last=False)

    async def _answer(
        self, writer: asyncio.StreamWriter, answer: dict[str, Any], reader: Optional[asyncio.StreamReader] = None
    ) -> None:
        try:
            writer.write(json.dumps(answer).encode("utf-8") + b"\n")
            await asyncio.wait_for(writer.drain(), self.frame_timeout)
            if reader is not None and writer.can_write_eof():
                # Closing with unread input sends a RST, which can destroy the answer
                # before the client reads it: half-close, then drain briefly and boundedly.
                writer.write_eof()
                await asyncio.wait_for(self._discard(reader), 1.0)
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()
