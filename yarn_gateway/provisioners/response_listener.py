"""The gateway's response listener: where launchers in YARN containers send their kernel's
connection info (PROTOCOL.md, "The response").

One asyncio server per gateway on a port from the configured range (or a fixed port).
Launches wait on a future obtained from :meth:`ResponseListener.register`; every
connection is handled in its own task with a deadline, so a slow or hostile client never
delays another launch. Frames are parsed and decrypted by
``yarn_gateway_launchers.launcher_protocol``, the same module the Python launcher uses.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import logging
import socket
from typing import Any, Optional, Union

from Crypto.PublicKey import RSA

from yarn_gateway_launchers import launcher_protocol as lp

log = logging.getLogger(__name__)

PortRange = Union[str, tuple[int, int], None]


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
    ``(lo, hi)``, or ``None``/``"0..0"`` for any port). ``frame_timeout`` (seconds) bounds
    the time from connect to a complete frame; at most ``max_connections`` connections are
    served at once (others are answered ``busy`` and closed).
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
        max_connections: int = 64,
        recent_size: int = 1024,
    ) -> None:
        if key_bits < lp.MIN_RSA_BITS:
            raise ValueError(f"key_bits must be at least {lp.MIN_RSA_BITS}")
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
        self.max_connections = max_connections
        self._private_key = private_key
        self._public_key_b64: Optional[str] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self._port = 0
        self._waiting: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        # Kernels whose response was accepted recently, so a replay is answered "duplicate"
        # rather than "unknown kernel". Bounded: old entries fall out.
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._recent_size = recent_size
        self._active = 0
        self._writers: set[asyncio.StreamWriter] = set()

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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self._active >= self.max_connections:
            log.warning("response from %s refused: %d connections open", peer, self._active)
            await self._answer(writer, {"status": "error", "reason": f"{lp.E_BUSY}: too many connections"})
            return
        self._active += 1
        self._writers.add(writer)
        try:
            try:
                body = await asyncio.wait_for(self._read_body(reader), self.frame_timeout)
                kernel_id = self._accept(body)
            except lp.ProtocolError as e:
                log.warning("response from %s rejected: %s", peer, e.reason)
                await self._answer(writer, {"status": "error", "reason": e.reason}, reader)
                return
            except asyncio.TimeoutError:
                log.warning("response from %s rejected: no complete frame within %.1f s", peer,
                            self.frame_timeout)
                await self._answer(writer, {"status": "error",
                                            "reason": f"{lp.E_TIMEOUT}: no complete frame in time"})
                return
            except (OSError, asyncio.IncompleteReadError) as e:
                log.warning("response from %s dropped: %s", peer, type(e).__name__)
                return
            log.info("kernel %s: launcher response accepted from %s", kernel_id, peer)
            await self._answer(writer, {"status": "ok"})
        finally:
            self._active -= 1
            self._writers.discard(writer)
            writer.close()

    async def _read_body(self, reader: asyncio.StreamReader) -> bytes:
        length = lp.parse_frame_length(await reader.readexactly(4))
        return await reader.readexactly(length)

    def _accept(self, body: bytes) -> str:
        """Decrypt and check one frame; resolve the waiting future. Returns the kernel id."""
        assert self._private_key is not None
        kernel_id, plain = lp.decrypt_frame_body(body, self._private_key)
        entry = self._waiting.get(kernel_id)
        if entry is None or entry[1].done():
            if kernel_id in self._recent:
                raise lp.ProtocolError(lp.E_DUPLICATE, f"kernel {kernel_id} already has a response")
            raise lp.ProtocolError(lp.E_UNKNOWN_KERNEL, f"no launch is waiting for kernel {kernel_id}")
        token, fut = entry
        got = plain.get("launch_token")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode("utf-8"), token.encode("utf-8")):
            raise lp.ProtocolError(lp.E_BAD_TOKEN, f"wrong launch token for kernel {kernel_id}")
        del self._waiting[kernel_id]
        self._remember(kernel_id)
        try:
            lp.validate_plaintext(plain)
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
