"""CurveZMQ's client side for the relay's own ZMTP connection: the handshake's commands and
the encrypted MESSAGE boxes (https://rfc.zeromq.org/spec/26/, as ZMTP 3 carries them:
https://rfc.zeromq.org/spec/25/).

The cryptography is libsodium's ``crypto_box`` (Curve25519, XSalsa20, Poly1305) through
PyNaCl: nothing of the cipher is written here. What is written here is the protocol's
framing of it, which :class:`~.zmtp.ZmtpChannel` needs to speak CurveZMQ on the event loop
without libzmq's I/O thread. :class:`~.zmq_channel.LibzmqChannel` stays beside it as the
library path (``KernelRegistry.curve_relay = "libzmq"``).

One :class:`CurveClient` serves one TCP connection:

1. ``hello()``: our short-term public key C' and a box only the holder of the kernel's
   secret key can open.
2. ``welcome(body)``: the kernel's WELCOME opens only with the kernel's public key S (this
   is where the kernel proves who it is); it holds the kernel's short-term key S' and a
   cookie. Returns INITIATE: the cookie, our long-term key C vouched for C' and S, and our
   metadata (socket type, identity), boxed from C' to S'.
3. ``ready(body)``: the kernel's metadata, boxed from S' to C'.
4. ``encrypt(flags, data)`` / ``decrypt(body)``: every ZMTP frame after that, in either
   direction, is a MESSAGE whose box holds the frame's flags (MORE, COMMAND) and data,
   under the short-term keys. The MESSAGE itself travels in a ZMTP frame of its own with
   neither flag set, as libzmq sends and expects it.

Nonces: ours count up from 1 (HELLO) on every command we send; the kernel's short nonces
(READY's, then every MESSAGE's) must increase strictly, so a replayed or reordered box is
refused. Every key is made per connection (:func:`nacl.bindings.crypto_box_keypair`), held
only here and never logged. A box that does not open, a command of the wrong size or one
out of turn is a :class:`~.frames.ProtocolError`: the connection is dropped.
"""

from __future__ import annotations

import secrets

from nacl.bindings import (
    crypto_box_beforenm,
    crypto_box_easy,
    crypto_box_easy_afternm,
    crypto_box_keypair,
    crypto_box_open_easy,
    crypto_box_open_easy_afternm,
)
from nacl.exceptions import CryptoError

from .frames import ProtocolError

#: Bits of a MESSAGE box's flags byte.
MESSAGE_MORE = 0x01
MESSAGE_COMMAND = 0x02
#: A box's authenticator (Poly1305).
MAC_BYTES = 16
#: What a MESSAGE adds to a frame: its name (1 + 7 bytes), the short nonce, the MAC
#: and the flags byte.
MESSAGE_OVERHEAD = 8 + 8 + MAC_BYTES + 1

_HELLO = b"\x05HELLO"
_WELCOME = b"\x07WELCOME"
_INITIATE = b"\x08INITIATE"
_READY = b"\x05READY"
_MESSAGE = b"\x07MESSAGE"
_WELCOME_SIZE = len(_WELCOME) + 16 + MAC_BYTES + 32 + 96
_MAX_SHORT_NONCE = 2**64 - 1


class CurveError(ProtocolError):
    """The kernel's side of CurveZMQ failed: a box did not open, a command was malformed or
    came out of turn, or a nonce did not increase."""


class CurveClient:
    """The client's half of one CurveZMQ session; see the module docstring.

    ``server_key``: the kernel's long-term public key, 32 raw bytes (the Z85 text decoded).
    """

    def __init__(self, server_key: bytes) -> None:
        if len(server_key) != 32:
            raise ValueError("a CurveZMQ public key is 32 bytes")
        self._server = bytes(server_key)
        self._public, self._secret = crypto_box_keypair()  # C, c: this connection's only
        self._short_public, self._short_secret = crypto_box_keypair()  # C', c'
        self._key = b""  # crypto_box_beforenm(S', c') once WELCOME is in
        self._nonce = 0  # the last short nonce we used
        self._peer_nonce = 0  # the last short nonce the kernel used
        self._cookie = b""
        self.state = "hello"  # -> "initiate" (WELCOME in) -> "ready" (READY in)

    def _next_nonce(self) -> bytes:
        if self._nonce >= _MAX_SHORT_NONCE:
            raise CurveError("this connection used up its CurveZMQ nonces")
        self._nonce += 1
        return self._nonce.to_bytes(8, "big")

    def _peer(self, short: bytes) -> None:
        n = int.from_bytes(short, "big")
        if n <= self._peer_nonce:
            raise CurveError("a CurveZMQ box from the kernel reused or reordered a nonce (a replay?)")
        self._peer_nonce = n

    # -- the handshake ------------------------------------------------------------------
    def hello(self) -> bytes:
        """The HELLO command (name and body)."""
        short = self._next_nonce()
        box = crypto_box_easy(bytes(64), b"CurveZMQHELLO---" + short, self._server, self._short_secret)
        return _HELLO + b"\x01\x00" + bytes(72) + self._short_public + short + box

    def welcome(self, command: bytes, metadata: bytes) -> bytes:
        """Take the kernel's WELCOME; return our INITIATE carrying ``metadata`` (ZMTP
        properties)."""
        if self.state != "hello":
            raise CurveError("it sent a second WELCOME")
        if len(command) != _WELCOME_SIZE or not command.startswith(_WELCOME):
            raise CurveError(f"its WELCOME is malformed ({len(command)} bytes)")
        long_nonce = command[8:24]
        try:
            plain = crypto_box_open_easy(command[24:], b"WELCOME-" + long_nonce, self._server, self._short_secret)
        except CryptoError:
            raise CurveError("its WELCOME does not open with the kernel's CurveZMQ key: the kernel's key does not "
                             "match the one the gateway has") from None
        server_short, self._cookie = plain[:32], plain[32:]
        self._key = crypto_box_beforenm(server_short, self._short_secret)
        vouch_nonce = secrets.token_bytes(16)
        vouch = crypto_box_easy(self._short_public + self._server, b"VOUCH---" + vouch_nonce, server_short,
                                self._secret)
        short = self._next_nonce()
        box = crypto_box_easy_afternm(self._public + vouch_nonce + vouch + metadata, b"CurveZMQINITIATE" + short,
                                      self._key)
        self.state = "initiate"
        return _INITIATE + self._cookie + short + box

    def ready(self, command: bytes) -> bytes:
        """Take the kernel's READY; return its metadata (ZMTP properties)."""
        if self.state != "initiate":
            raise CurveError("it sent READY out of turn")
        if len(command) < len(_READY) + 8 + MAC_BYTES or not command.startswith(_READY):
            raise CurveError("its READY is malformed")
        short = command[6:14]
        self._peer(short)
        try:
            metadata = crypto_box_open_easy_afternm(command[14:], b"CurveZMQREADY---" + short, self._key)
        except CryptoError:
            raise CurveError("its READY does not open with the session's key") from None
        self.state = "ready"
        self._cookie = b""
        return bytes(metadata)

    # -- messages -----------------------------------------------------------------------
    def encrypt(self, flags: int, data: bytes) -> bytes:
        """A MESSAGE (name and body) carrying one frame."""
        short = self._next_nonce()
        return _MESSAGE + short + crypto_box_easy_afternm(bytes((flags,)) + data, b"CurveZMQMESSAGEC" + short,
                                                          self._key)

    def decrypt(self, command: bytes | bytearray) -> tuple[int, bytes]:
        """The flags and data of the frame a MESSAGE from the kernel carries."""
        if self.state != "ready" or len(command) < MESSAGE_OVERHEAD or command[:8] != _MESSAGE:
            raise CurveError("a MESSAGE out of turn, too short, or not a MESSAGE")
        short = bytes(command[8:16])
        self._peer(short)
        try:
            plain = crypto_box_open_easy_afternm(bytes(memoryview(command)[16:]), b"CurveZMQMESSAGES" + short,
                                                 self._key)
        except CryptoError:
            raise CurveError("a CurveZMQ MESSAGE from it failed to decrypt") from None
        return plain[0], plain[1:]
