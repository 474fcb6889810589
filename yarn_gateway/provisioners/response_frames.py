"""Launcher protocol v2, gateway side of the response (PROTOCOL.md, "The response"):
parsing, decrypting and checking the frame a launcher sends to the response listener.

The launcher side (and the crypto primitives both sides share) is
``yarn_gateway_launchers.launcher_protocol``, which ships into YARN containers; what is
here runs only in the gateway. Every function raises
:class:`~yarn_gateway_launchers.launcher_protocol.ProtocolError` with a code the answer
carries; none of their messages holds key material or a token.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from Crypto.PublicKey import RSA

from yarn_gateway_launchers.launcher_protocol import (
    CONNECTION_INFO_FIELDS,
    CONNECTION_INFO_PORTS,
    CURVE_PUBLIC_FIELD,
    CURVE_SECRET_FIELD,
    DEFAULT_SIGNATURE_SCHEMES,
    E_BAD_VERSION,
    E_DECRYPT,
    E_INVALID,
    E_MALFORMED,
    E_OVERSIZE,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    _unb64,
    aes_gcm_decrypt,
    rsa_unwrap_key,
)

from ..relay.channel import CurveKeys


def parse_frame_length(header: bytes, limit: int = MAX_FRAME_BYTES) -> int:
    """Validate the 4-byte big-endian prefix; raise ``oversize`` before reading the body."""
    if len(header) != 4:
        raise ProtocolError(E_MALFORMED, "short length prefix")
    (length,) = struct.unpack(">I", header)
    if length > limit:
        raise ProtocolError(E_OVERSIZE, f"frame of {length} bytes exceeds the {limit}-byte limit")
    if length == 0:
        raise ProtocolError(E_MALFORMED, "empty frame")
    return int(length)


def _json_object(data: bytes, code: str, what: str) -> dict[str, Any]:
    """``data`` as a JSON object, or a :class:`ProtocolError` with ``code`` naming ``what``."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(code, f"{what} is not UTF-8 JSON") from e
    except RecursionError:
        raise ProtocolError(code, f"{what} is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError(code, f"{what} is not a JSON object")
    return obj


def parse_frame_body(body: bytes) -> dict[str, Any]:
    """Decode the body JSON and check version and field types (no decryption)."""
    envelope = _json_object(body, E_MALFORMED, "frame body")
    version = envelope.get("version")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError(
            E_BAD_VERSION,
            f"unsupported protocol version {version!r}; this gateway speaks version {PROTOCOL_VERSION}"
            " (launcher and gateway installs differ)",
        )
    for field in ("kernel_id", "key", "nonce", "ciphertext"):
        if not isinstance(envelope.get(field), str):
            raise ProtocolError(E_MALFORMED, f"missing or non-string field {field!r}")
    kid = envelope["kernel_id"]
    if not (0 < len(kid) <= 128) or not kid.isascii() or not kid.isprintable():
        raise ProtocolError(E_MALFORMED, "kernel_id must be 1-128 printable ASCII characters")
    return envelope


def decrypt_frame_body(body: bytes, private_key: RSA.RsaKey) -> tuple[str, dict[str, Any]]:
    """Parse, authenticate and decrypt a frame body; return ``(kernel_id, plaintext dict)``.
    The plaintext is not yet validated (see :func:`validate_plaintext`)."""
    envelope = parse_frame_body(body)
    return envelope["kernel_id"], decrypt_envelope(envelope, private_key)


def decrypt_envelope(envelope: dict[str, Any], private_key: RSA.RsaKey) -> dict[str, Any]:
    """Unwrap, authenticate and decrypt a parsed body (:func:`parse_frame_body`): the RSA
    step costs a millisecond or more, so a server makes its cheap checks first."""
    kernel_id = envelope["kernel_id"]
    wrapped = _unb64(envelope["key"], "key")
    if len(wrapped) != (private_key.size_in_bits() + 7) // 8:
        raise ProtocolError(E_DECRYPT, "wrapped key has the wrong length for this gateway's key")
    aes_key = rsa_unwrap_key(private_key, wrapped)
    plain = aes_gcm_decrypt(aes_key, _unb64(envelope["nonce"], "nonce"), kernel_id,
                            _unb64(envelope["ciphertext"], "ciphertext"))
    return _json_object(plain, E_INVALID, "plaintext")


def decode_frame(frame: bytes, private_key: RSA.RsaKey) -> tuple[str, dict[str, Any]]:
    """Whole frame (prefix + body) → ``(kernel_id, plaintext)``."""
    length = parse_frame_length(frame[:4])
    if len(frame) - 4 != length:
        raise ProtocolError(E_MALFORMED, "length prefix does not match the body")
    return decrypt_frame_body(frame[4:], private_key)


def _is_port(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535


def validate_plaintext(
    obj: dict[str, Any], signature_schemes: tuple[str, ...] = DEFAULT_SIGNATURE_SCHEMES
) -> dict[str, Any]:
    """Check the decrypted response shape; raise ``invalid_plaintext`` naming the field.
    The kernel's ``signature_scheme`` must be one of ``signature_schemes``."""
    if not isinstance(obj.get("launch_token"), str):
        raise ProtocolError(E_INVALID, "launch_token missing")
    ci = obj.get("connection_info")
    if not isinstance(ci, dict):
        raise ProtocolError(E_INVALID, "connection_info missing")
    missing = [f for f in CONNECTION_INFO_FIELDS if f not in ci]
    if missing:
        raise ProtocolError(E_INVALID, f"connection_info lacks {', '.join(missing)}")
    for f in CONNECTION_INFO_PORTS:
        if not _is_port(ci[f]):
            raise ProtocolError(E_INVALID, f"connection_info.{f} is not a port number")
    ip = ci["ip"]
    if not isinstance(ip, str) or ip in ("", "0.0.0.0", "::", "*"):
        raise ProtocolError(E_INVALID, "connection_info.ip is not a reachable address")
    if not isinstance(ci["key"], str) or not ci["key"]:
        raise ProtocolError(E_INVALID, "connection_info.key is empty")
    if ci["transport"] != "tcp":
        raise ProtocolError(E_INVALID, "connection_info transport must be tcp")
    scheme = ci["signature_scheme"]
    if not isinstance(scheme, str) or scheme not in signature_schemes:
        shown = scheme[:40] if isinstance(scheme, str) else type(scheme).__name__
        raise ProtocolError(E_INVALID, f"connection_info.signature_scheme {shown!r} is not allowed "
                            f"(this gateway accepts {', '.join(signature_schemes)})")
    if CURVE_SECRET_FIELD in ci:
        raise ProtocolError(E_INVALID, "connection_info carries the kernel's CurveZMQ secret key, which must "
                            "never leave the container (the launcher is broken; reinstall it)")
    if CURVE_PUBLIC_FIELD in ci:
        try:
            CurveKeys(ci[CURVE_PUBLIC_FIELD])
        except ValueError as e:
            raise ProtocolError(E_INVALID, f"connection_info.{CURVE_PUBLIC_FIELD}: {e}") from None
    if not _is_port(obj.get("control_port")):
        raise ProtocolError(E_INVALID, "control_port is not a port number")
    pid = obj.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise ProtocolError(E_INVALID, "pid is not a positive integer")
    if not isinstance(obj.get("hostname"), str):
        raise ProtocolError(E_INVALID, "hostname missing")
    return obj


