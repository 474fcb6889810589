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

Client-to-kernel messages in the v1 protocol are read the same way: the header is parsed
and checked, the other parts only when they are small (:data:`PARSE_MAX`; a larger one is
only checked to be a JSON object's braces, the kernel reads it anyway) and passed on as
they came. The legacy protocol puts everything in one JSON document, which has to be
parsed and its parts serialised again.

JSON nested deeper than Python's recursion limit lets it parse, from either side, is
refused with a clear reason (:class:`MessageRefused` for a client: it keeps its
connection), never a ``RecursionError``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from .frames import Frame

DELIM = b"<IDS|MSG>"
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
CLIENT_CHANNELS = frozenset({"shell", "control", "stdin"})
ALL_CHANNELS = CLIENT_CHANNELS | {"iopub"}
#: Parts of a v1 client message up to this size are parsed to check them; larger ones are
#: passed on unparsed (only the header is always parsed).
PARSE_MAX = 64 * 1024
_TOO_DEEP = "its JSON is nested too deeply for the gateway to read"


class InvalidMessage(ValueError):
    """A message from a client (or kernel) that is not a valid Jupyter message."""


class MessageRefused(InvalidMessage):
    """A client message the gateway refuses without closing the connection (e.g. JSON nested
    too deeply to read). ``header``: the message's header, when it could be read."""

    def __init__(self, reason: str, header: Optional[dict[str, Any]] = None) -> None:
        super().__init__(reason)
        self.header = header


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

    def sign(self, parts: Sequence[Frame]) -> bytes:
        if self._template is None:
            return b""
        h = self._template.copy()
        for p in parts:
            h.update(p)
        return h.hexdigest().encode("ascii")

    def verify(self, signature: Frame, parts: Sequence[Frame]) -> bool:
        if self._template is None:
            return True
        return hmac.compare_digest(signature, self.sign(parts))


@dataclass
class KernelMessage:
    """One message from the kernel, kept as raw frames; encodings are cached per protocol."""

    channel: str
    frames: list[Frame]  # header, parent_header, metadata, content, *buffers
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
        except (ValueError, AttributeError, RecursionError):
            return None
        return state if isinstance(state, str) else None

    def parent_msg_type(self) -> Optional[str]:
        try:
            value = json.loads(self.frames[1]).get("msg_type")
        except (ValueError, AttributeError, RecursionError):
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


def split_zmq(frames: list[Frame]) -> tuple[list[Frame], Frame, list[Frame]]:
    """Split a raw ZMQ message into (identities, signature, message frames)."""
    try:
        i = frames.index(DELIM)
    except ValueError:
        raise InvalidMessage("missing <IDS|MSG> delimiter") from None
    rest = frames[i + 1 :]
    if len(rest) < 5:
        raise InvalidMessage("incomplete message")
    return frames[:i], rest[0], rest[1:]


def parse_kernel_message(channel: str, frames: list[Frame], signer: Signer) -> KernelMessage:
    """Check the signature of a raw kernel message and wrap it without decoding the content."""
    _idents, signature, parts = split_zmq(frames)
    if not signer.verify(signature, parts[:4]):
        raise InvalidMessage("invalid signature")
    try:
        header = json.loads(parts[0])
        msg_id, msg_type = header["msg_id"], header["msg_type"]
    except RecursionError:
        raise InvalidMessage(f"invalid header: {_TOO_DEEP}") from None
    except (ValueError, KeyError, TypeError):
        raise InvalidMessage("invalid header") from None
    return KernelMessage(channel, parts, str(msg_id), str(msg_type))


def message_head(frames: Sequence[Frame]) -> tuple[str, dict[str, Any]]:
    """The msg_type and parent header of a kernel message, from the frames of it that arrived
    (e.g. before it passed the size bound), as far as they can be read; ``("", {})`` if not.

    Unverified (the signature covers the parts that did not arrive): for telling a client
    what was dropped, never for routing.
    """
    try:
        i = list(frames).index(DELIM)
    except ValueError:
        return "", {}
    msg_type = ""
    if len(frames) > i + 2 and len(frames[i + 2]) <= PARSE_MAX:
        header = _loads_dict(frames[i + 2])
        value = header.get("msg_type")
        if isinstance(value, str) and value.isidentifier() and len(value) <= 64:
            msg_type = value
    parent = flat_header(frames[i + 3]) if len(frames) > i + 3 else {}
    return msg_type, parent


def flat_header(raw: Frame) -> dict[str, Any]:
    """A header (e.g. a parent header to quote) with only its plain values, so that quoting it
    can never nest; ``{}`` when it cannot be read."""
    if len(raw) > PARSE_MAX:
        return {}
    return flat_dict(_loads_dict(raw))


def flat_dict(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` without its nested (or otherwise unusual) values."""
    return {k: v for k, v in value.items() if isinstance(v, (str, int, float, bool)) or v is None}


def _loads_dict(raw: Frame) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


_CHANNEL_TAIL = {c: b',"buffers":[],"channel":"' + c.encode() + b'"}' for c in ALL_CHANNELS}


def _json_str(value: str) -> bytes:
    """``json.dumps(value).encode()``, without the encoder for the usual plain ASCII ids."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return b'"' + value.encode() + b'"'
    return json.dumps(value).encode()


def encode_legacy(channel: str, frames: Sequence[Frame], msg_id: str, msg_type: str) -> tuple[bytes, bool]:
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


def encode_v1(channel: str, frames: Sequence[Frame]) -> bytes:
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
    return synthetic_message(channel, header, content, parent_header).encode(protocol)


def synthetic_message(channel: str, header: dict[str, Any], content: dict[str, Any],
                      parent_header: Optional[dict[str, Any]] = None) -> KernelMessage:
    """A message the gateway itself originates, as a :class:`KernelMessage` (to deliver to
    client sessions like the kernel's own: kept for replay while a client is away)."""
    frames: list[Frame] = [_dumps(header), _dumps(parent_header or {}), b"{}", _dumps(content)]
    return KernelMessage(channel, frames, header["msg_id"], header["msg_type"])


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

    Raises :class:`InvalidMessage` with a reason a client developer can act on
    (:class:`MessageRefused` for one the client may follow with valid messages).
    """
    if protocol == V1_PROTOCOL:
        if isinstance(payload, str):
            raise InvalidMessage("the v1 protocol sends binary frames")
        channel, frames = _decode_v1(payload)
        if len(frames) < 4:
            raise InvalidMessage("a message needs header, parent_header, metadata and content")
        header = _check_header(_loads(frames[0], "header"))
        for i, name in ((1, "parent_header"), (2, "metadata"), (3, "content")):
            _check_object(frames[i], name, header)
        return _check_channel(channel), frames
    if isinstance(payload, bytes):
        msg, buffers = _decode_legacy_binary(payload)
    else:
        msg = _loads(payload, "message")
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
    except RecursionError:
        raise MessageRefused(_TOO_DEEP, header) from None
    except ValueError:
        raise InvalidMessage("message contains values JSON cannot carry") from None
    return channel, frames + buffers


def _loads(raw: str | bytes, name: str) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise MessageRefused(_TOO_DEEP) from None
    except ValueError:
        raise InvalidMessage(f"{name} is not JSON" if name != "message" else "message is not JSON") from None


def _check_object(raw: bytes, name: str, header: dict[str, Any]) -> None:
    """That a v1 part is a JSON object: parsed when small, else only its braces are checked."""
    if len(raw) > PARSE_MAX:
        if raw.lstrip()[:1] != b"{" or raw.rstrip()[-1:] != b"}":
            raise InvalidMessage(f"{name} must be a JSON object")
        return
    try:
        value = json.loads(raw)
    except RecursionError:
        raise MessageRefused(_TOO_DEEP, header) from None
    except ValueError:
        raise InvalidMessage("message parts must be JSON") from None
    _as_dict(value, name)


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
    return _loads(parts[0], "message"), [bytes(p) for p in parts[1:]]


def zmq_frames(signer: Signer, frames: list[bytes]) -> list[bytes]:
    """Frames to send on a DEALER socket: delimiter, signature, message parts."""
    return [DELIM, signer.sign(frames[:4]), *frames]
