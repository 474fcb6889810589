"""Message formats between ZMQ frames and the two websocket protocols.

Kernel side (ZMQ), after any routing identities::

    [b"<IDS|MSG>", signature, header, parent_header, metadata, content, *buffers]

Client side (websocket):

- legacy (what jupyter_server's GatewayClient forces): a text frame holding one JSON
  object ``{"header", "msg_id", "msg_type", "parent_header", "metadata", "content",
  "buffers": [], "channel"}``, or, when the message has buffers, a binary frame
  ``u32be nbufs, u32be offsets[nbufs], json, *buffers`` (jupyter_server's
  ``serialize_binary_message``);
- ``v1.kernel.websocket.jupyter.org``: a binary frame ``u64le n, u64le offsets[n],
  channel, header, parent_header, metadata, content, *buffers``.

Kernel-to-client messages are assembled from the raw JSON frames without decoding the
content, so a 20 MB stream costs one concatenation. Only the header is parsed (to learn
msg_id and msg_type); a status message's content is parsed to learn the state.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional

DELIM = b"<IDS|MSG>"
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
CLIENT_CHANNELS = frozenset({"shell", "control", "stdin"})
ALL_CHANNELS = CLIENT_CHANNELS | {"iopub"}


class InvalidMessage(ValueError):
    """A message from a client (or kernel) that is not a valid Jupyter message."""


class Signer:
    """HMAC signing as jupyter_client's Session does it (an empty key disables signing)."""

    def __init__(self, key: bytes, scheme: str = "hmac-sha256") -> None:
        if not scheme.startswith("hmac-"):
            raise ValueError(f"unsupported signature scheme {scheme!r}")
        digest = getattr(hashlib, scheme[len("hmac-") :], None)
        if digest is None:
            raise ValueError(f"unsupported signature scheme {scheme!r}")
        self._digest: Callable[..., Any] = digest
        self._key = key
        # Keyed once; each message copies it (a copy skips hashing the padded key again).
        self._template = hmac.new(key, digestmod=digest) if key else None

    def sign(self, parts: list[bytes]) -> bytes:
        if self._template is None:
            return b""
        h = self._template.copy()
        for p in parts:
            h.update(p)
        return h.hexdigest().encode("ascii")

    def verify(self, signature: bytes, parts: list[bytes]) -> bool:
        if self._template is None:
            return True
        return hmac.compare_digest(signature, self.sign(parts))


@dataclass
class KernelMessage:
    """One message from the kernel, kept as raw frames; encodings are cached per protocol."""

    channel: str
    frames: list[bytes]  # header, parent_header, metadata, content, *buffers
    msg_id: str
    msg_type: str
    #: Nobody waits on it (a "busy" status, an execute_input echo): a client may get it a
    #: moment later, together with what follows, in one write.
    lazy: bool = False
    _legacy: Optional[tuple[bytes, bool]] = field(default=None, repr=False)
    _v1: Optional[bytes] = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        return sum(len(f) for f in self.frames)

    def execution_state(self) -> Optional[str]:
        """For an iopub ``status`` message, the kernel's execution state."""
        if self.msg_type != "status":
            return None
        try:
            state = json.loads(self.frames[3]).get("execution_state")
        except (ValueError, AttributeError):
            return None
        return state if isinstance(state, str) else None

    def parent_msg_type(self) -> Optional[str]:
        try:
            value = json.loads(self.frames[1]).get("msg_type")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    def encode(self, protocol: str) -> tuple[bytes, bool]:
        """The websocket payload for ``protocol`` and whether it is a binary frame."""
        if protocol == V1_PROTOCOL:
            if self._v1 is None:
                self._v1 = encode_v1(self.channel, self.frames)
            return self._v1, True
        if self._legacy is None:
            self._legacy = encode_legacy(self.channel, self.frames, self.msg_id, self.msg_type)
        return self._legacy


def split_zmq(frames: list[bytes]) -> tuple[list[bytes], bytes, list[bytes]]:
    """Split a raw ZMQ message into (identities, signature, message frames)."""
    try:
        i = frames.index(DELIM)
    except ValueError:
        raise InvalidMessage("missing <IDS|MSG> delimiter") from None
    rest = frames[i + 1 :]
    if len(rest) < 5:
        raise InvalidMessage("incomplete message")
    return frames[:i], rest[0], rest[1:]


def parse_kernel_message(channel: str, frames: list[bytes], signer: Signer) -> KernelMessage:
    """Check the signature of a raw kernel message and wrap it without decoding the content."""
    _idents, signature, parts = split_zmq(frames)
    if not signer.verify(signature, parts[:4]):
        raise InvalidMessage("invalid signature")
    try:
        header = json.loads(parts[0])
        msg_id, msg_type = header["msg_id"], header["msg_type"]
    except (ValueError, KeyError, TypeError):
        raise InvalidMessage("invalid header") from None
    return KernelMessage(channel, parts, str(msg_id), str(msg_type))


_CHANNEL_TAIL = {c: b',"buffers":[],"channel":"' + c.encode() + b'"}' for c in ALL_CHANNELS}


def _json_str(value: str) -> bytes:
    """``json.dumps(value).encode()``, without the encoder for the usual plain ASCII ids."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return b'"' + value.encode() + b'"'
    return json.dumps(value).encode()


def encode_legacy(channel: str, frames: list[bytes], msg_id: str, msg_type: str) -> tuple[bytes, bool]:
    """Splice raw JSON frames into one legacy-protocol message."""
    body = b"".join(
        (
            b'{"header":',
            frames[0],
            b',"msg_id":',
            _json_str(msg_id),
            b',"msg_type":',
            _json_str(msg_type),
            b',"parent_header":',
            frames[1],
            b',"metadata":',
            frames[2],
            b',"content":',
            frames[3],
            _CHANNEL_TAIL.get(channel) or b',"buffers":[],"channel":' + json.dumps(channel).encode() + b"}",
        )
    )
    buffers = frames[4:]
    if not buffers:
        return body, False
    parts = [body, *buffers]
    offsets = [4 * (len(parts) + 1)]
    for p in parts[:-1]:
        offsets.append(offsets[-1] + len(p))
    head = struct.pack(f"!{len(parts) + 1}I", len(parts), *offsets)
    return b"".join([head, *parts]), True


def encode_v1(channel: str, frames: list[bytes]) -> bytes:
    """Encode frames in the v1.kernel.websocket.jupyter.org binary format."""
    chan = channel.encode()
    offsets = [8 * (1 + 1 + len(frames) + 1)]
    offsets.append(offsets[-1] + len(chan))
    for f in frames:
        offsets.append(offsets[-1] + len(f))
    head = struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets)
    return b"".join([head, chan, *frames])


def encode_synthetic(channel: str, header: dict[str, Any], content: dict[str, Any], protocol: str,
                     parent_header: Optional[dict[str, Any]] = None) -> tuple[bytes, bool]:
    """A message the gateway itself sends to a client (never to a kernel)."""
    frames = [_dumps(header), _dumps(parent_header or {}), b"{}", _dumps(content)]
    msg = KernelMessage(channel, frames, header["msg_id"], header["msg_type"])
    return msg.encode(protocol)


def new_header(msg_type: str, session: str) -> dict[str, Any]:
    """A message header for a message the gateway itself originates."""
    return {
        "msg_id": uuid.uuid4().hex,
        "msg_type": msg_type,
        "session": session,
        "username": "yarn-gateway",
        "date": datetime.now(timezone.utc).isoformat(),
        "version": "5.3",
    }


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False).encode()


def _as_dict(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidMessage(f"{name} must be a JSON object")
    return value


def _check_header(header: Any) -> dict[str, Any]:
    if not isinstance(header, dict):
        raise InvalidMessage("header must be a JSON object")
    for key in ("msg_id", "msg_type"):
        if not isinstance(header.get(key), str) or not header[key]:
            raise InvalidMessage(f"header.{key} must be a non-empty string")
    return header


def _check_channel(channel: Any) -> str:
    if channel not in CLIENT_CHANNELS:
        raise InvalidMessage(f"channel must be one of shell, control, stdin (got {channel!r})")
    return str(channel)


def decode_client_message(payload: bytes | str, protocol: str) -> tuple[str, list[bytes]]:
    """Validate a client's websocket message; return (channel, frames) ready to sign.

    Raises :class:`InvalidMessage` with a reason a client developer can act on.
    """
    if protocol == V1_PROTOCOL:
        if isinstance(payload, str):
            raise InvalidMessage("the v1 protocol sends binary frames")
        channel, frames = _decode_v1(payload)
        if len(frames) < 4:
            raise InvalidMessage("a message needs header, parent_header, metadata and content")
        try:
            _check_header(json.loads(frames[0]))
            for i, name in ((1, "parent_header"), (2, "metadata"), (3, "content")):
                _as_dict(json.loads(frames[i]), name)
        except ValueError:
            raise InvalidMessage("message parts must be JSON") from None
        return _check_channel(channel), frames
    if isinstance(payload, bytes):
        msg, buffers = _decode_legacy_binary(payload)
    else:
        try:
            msg = json.loads(payload)
        except ValueError:
            raise InvalidMessage("message is not JSON") from None
        buffers = []
    if not isinstance(msg, dict):
        raise InvalidMessage("message must be a JSON object")
    channel = _check_channel(msg.get("channel"))
    header = _check_header(msg.get("header"))
    try:
        frames = [
            _dumps(header),
            _dumps(_as_dict(msg.get("parent_header"), "parent_header")),
            _dumps(_as_dict(msg.get("metadata"), "metadata")),
            _dumps(_as_dict(msg.get("content"), "content")),
        ]
    except ValueError:
        raise InvalidMessage("message contains values JSON cannot carry") from None
    return channel, frames + buffers


def _decode_v1(payload: bytes) -> tuple[str, list[bytes]]:
    try:
        (n,) = struct.unpack_from("<Q", payload, 0)
        if not 2 <= n <= 1024:
            raise InvalidMessage("bad offset count")
        offsets = list(struct.unpack_from(f"<{n}Q", payload, 8))
    except struct.error:
        raise InvalidMessage("truncated v1 frame") from None
    if offsets != sorted(offsets) or offsets[0] != 8 * (n + 1) or offsets[-1] != len(payload):
        raise InvalidMessage("bad v1 offsets")
    chunks = [payload[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    try:
        channel = chunks[0].decode()
    except UnicodeDecodeError:
        raise InvalidMessage("bad channel") from None
    return channel, [bytes(c) for c in chunks[1:]]


def _decode_legacy_binary(payload: bytes) -> tuple[Any, list[bytes]]:
    try:
        (nbufs,) = struct.unpack_from("!I", payload, 0)
        if not 1 <= nbufs <= 1024:
            raise InvalidMessage("bad buffer count")
        offsets = list(struct.unpack_from(f"!{nbufs}I", payload, 4))
    except struct.error:
        raise InvalidMessage("truncated binary message") from None
    offsets.append(len(payload))
    if offsets != sorted(offsets) or offsets[0] != 4 * (nbufs + 1):
        raise InvalidMessage("bad binary offsets")
    parts = [payload[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    try:
        msg = json.loads(parts[0])
    except ValueError:
        raise InvalidMessage("message is not JSON") from None
    return msg, [bytes(p) for p in parts[1:]]


def zmq_frames(signer: Signer, frames: list[bytes]) -> list[bytes]:
    """Frames to send on a DEALER socket: delimiter, signature, message parts."""
    return [DELIM, signer.sign(frames[:4]), *frames]
