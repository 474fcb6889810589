"""A socket-level tap on the loopback interface: what someone on the network would see.

``LoopbackCapture(ports)`` opens an ``AF_PACKET`` socket on ``lo`` (root only; the tests and CI
run as root) and, in a thread, keeps the TCP payload of every packet whose source or destination
port is one of ``ports``. YARN containers of the dev cluster run on this host, so the gateway's
traffic to a kernel's ports crosses ``lo`` whatever address the launcher reported.

Bounded: at most ``limit`` payload bytes are kept (later bytes are counted, not stored).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Optional

#: The cell the encryption tests run while tapping, and what of it would show in clear text.
MARKER_CELL = 'print("secret-" + "marker")'
#: The code as it crosses the wire inside a Jupyter message (JSON-escaped quotes), and its output.
_MARKER_CODE = b'\\"secret-\\" + \\"marker\\"'
_MARKER_OUTPUT = b"secret-marker"

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
IPPROTO_TCP = 6


def capture_available() -> bool:
    """True when this process may open a raw packet socket (root, Linux)."""
    return hasattr(socket, "AF_PACKET") and os.geteuid() == 0


def clear_text_of_marker_cell(payload: bytes) -> list[str]:
    """Which of the marker cell's code and output appear in clear in ``payload`` (empty: neither).
    Each of the words "secret" and "marker" is looked for alone too: six given bytes turn up in
    ciphertext about once in 2**48 bytes, so any hit means clear text."""
    found = []
    if _MARKER_CODE in payload or (b"secret" in payload and b"marker" in payload and _MARKER_OUTPUT not in payload):
        found.append("code")
    if _MARKER_OUTPUT in payload:
        found.append("output")
    if not found and (b"secret" in payload or b"marker" in payload):
        found.append("a word of the cell")
    return found


def _tcp_segment(frame: bytes) -> Optional[tuple[int, int, bytes]]:
    """``(src_port, dst_port, payload)`` of an Ethernet frame carrying TCP over IPv4/IPv6."""
    if len(frame) < 14:
        return None
    (ethertype,) = struct.unpack("!H", frame[12:14])
    ip = frame[14:]
    if ethertype == ETH_P_IP and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        (total,) = struct.unpack("!H", ip[2:4])
        if ip[9] != IPPROTO_TCP:
            return None
        tcp = ip[ihl:total]
    elif ethertype == ETH_P_IPV6 and len(ip) >= 40:
        if ip[6] != IPPROTO_TCP:  # no extension headers on loopback TCP
            return None
        (plen,) = struct.unpack("!H", ip[4:6])
        tcp = ip[40:40 + plen]
    else:
        return None
    if len(tcp) < 20:
        return None
    src, dst = struct.unpack("!HH", tcp[:4])
    offset = (tcp[12] >> 4) * 4
    return src, dst, tcp[offset:]


class LoopbackCapture:
    """Context manager: capture TCP payload on ``lo`` for ``ports`` while the block runs."""

    def __init__(self, ports: Iterable[int], limit: int = 64 * 1024 * 1024) -> None:
        self.ports = frozenset(ports)
        self.limit = limit
        self.packets = 0
        self.payload_bytes = 0
        self._chunks: list[bytes] = []
        self._kept = 0
        self._stop = threading.Event()
        self._sock: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> LoopbackCapture:
        if not capture_available():
            raise RuntimeError("LoopbackCapture needs root on Linux (AF_PACKET)")
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        s.bind(("lo", 0))
        self._sock = s
        self._thread = threading.Thread(target=self._run, name="loopback-capture", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if not ready:
                continue
            frame, addr = self._sock.recvfrom(65536 + 64)
            # On lo every packet is seen twice (outgoing and incoming); keep the incoming copy.
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            seg = _tcp_segment(frame)
            if seg is None or (seg[0] not in self.ports and seg[1] not in self.ports):
                continue
            self.packets += 1
            self.payload_bytes += len(seg[2])
            if seg[2] and self._kept < self.limit:
                self._chunks.append(seg[2])
                self._kept += len(seg[2])

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def payload(self) -> bytes:
        """Every TCP payload byte seen so far on the ports, in arrival order, concatenated."""
        return b"".join(self._chunks)
