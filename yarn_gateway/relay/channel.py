"""What the relay uses of one connection to one kernel channel, whatever speaks it.

Two implementations stand side by side, chosen per kernel:

- :class:`~.zmtp.ZmtpChannel`: ZMTP 3.0 spoken on the event loop itself, with the NULL
  mechanism, or CurveZMQ given the kernel's public key (:mod:`.curve`: the handshake and
  boxes of RFC 26, the cipher libsodium's through PyNaCl). The fast path, and the only one
  without libzmq's I/O thread.
- :class:`~.zmq_channel.LibzmqChannel`: the same interface over a libzmq socket (pyzmq),
  CurveZMQ when given the kernel's :class:`CurveKeys`, NULL otherwise (for a peer the
  hand-written client does not get along with). The library path beside the fast one:
  encryption and the CurveZMQ handshake are libzmq's and libsodium's.

Both connect in the background, reconnect on their own, never block the loop, and hand
every multipart message to ``on_message`` inside a :func:`~.batch.batch` per read burst.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

from zmq.utils import z85

from .frames import Frame
from .zmtp import ChannelClosed, Endpoint, KernelNotTaking

__all__ = ["Z85_ALPHABET", "ChannelClosed", "CurveKeys", "Endpoint", "KernelChannel", "KernelNotTaking"]

#: The characters of Z85 (https://rfc.zeromq.org/spec/32/), the text form of CurveZMQ keys.
Z85_ALPHABET = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")
#: A 32-byte Curve25519 key in Z85.
Z85_KEY_LENGTH = 40


class KernelChannel(Protocol):
    """A DEALER or SUB connection to one kernel channel, as the relay uses it."""

    #: Seconds to stop reading after each read burst (0: read as soon as data arrives). The
    #: hub sets it while a kernel floods output, so a burst is relayed in batches.
    pace: float

    @property
    def on_message(self) -> Callable[[list[Frame]], None]:
        """Called with the frames of every multipart message, in order, inside a batch."""
        ...

    @on_message.setter
    def on_message(self, callback: Callable[[list[Frame]], None]) -> None: ...

    @property
    def label(self) -> str:
        """Names the kernel and channel in log lines ("Kernel <id> (shell)")."""
        ...

    @property
    def closed(self) -> bool: ...

    def send(self, frames: Sequence[Frame]) -> None:
        """Send one multipart message without blocking.

        Raises :class:`KernelNotTaking` when the channel's send bound is reached (one message
        is always taken into an empty queue), :class:`ChannelClosed` after :meth:`close`.
        """
        ...

    @property
    def queued(self) -> int:
        """Messages waiting to be sent, counted against the channel's bound."""
        ...

    @property
    def queued_bytes(self) -> int:
        """Bytes of those messages."""
        ...

    @property
    def connected(self) -> bool:
        """Whether the handshake with the kernel is done (messages flow)."""
        ...

    def close(self) -> None:
        """Drop the connection and everything unsent (idempotent); no callback follows."""
        ...


@dataclass(frozen=True)
class CurveKeys:
    """What a channel needs to speak CurveZMQ to a kernel: the kernel's public key (Z85).

    The client's key pair is made per channel (ephemeral), so only the kernel's public key
    is given: it authenticates the kernel to the gateway (a peer without the matching
    secret key cannot complete the handshake). A public key is no secret, but it is not
    logged either (``repr`` shows its first characters only).
    """

    server_public_key: bytes

    def __post_init__(self) -> None:
        key: Any = self.server_public_key
        if isinstance(key, str):
            try:
                key = key.encode("ascii")
            except UnicodeEncodeError:
                raise ValueError("a CurveZMQ public key must be Z85 text (ASCII); this one is not") from None
            object.__setattr__(self, "server_public_key", key)
        if not isinstance(key, bytes):
            raise ValueError(f"a CurveZMQ public key must be Z85 text or bytes, not {type(key).__name__}")
        if len(key) != Z85_KEY_LENGTH:
            raise ValueError(f"a CurveZMQ public key is {Z85_KEY_LENGTH} characters of Z85; this one has {len(key)} "
                             "(was the raw 32-byte key or a hex form given?)")
        if not Z85_ALPHABET.issuperset(key):
            raise ValueError("a CurveZMQ public key must be Z85; this one has characters outside Z85's alphabet")

    def raw(self) -> bytes:
        """The kernel's public key as 32 raw bytes."""
        return bytes(z85.decode(self.server_public_key))

    def __repr__(self) -> str:
        return f"CurveKeys(server_public_key={self.server_public_key[:4].decode()}...)"

    @classmethod
    def from_connection_info(cls, info: Mapping[str, Any]) -> Optional[CurveKeys]:
        """The keys in a kernel's connection info (jupyter_client's ``curve_publickey``), or
        None when it has none (the kernel speaks NULL). The kernel's secret key, also there
        for a kernel jupyter_client starts, is neither needed nor read here."""
        key = info.get("curve_publickey")
        return cls(key) if key else None
