"""Authenticated session records: a MAC with the gateway's record key over every record.

A stored record is the canonical JSON (sorted keys, no spaces, ASCII) of an envelope::

    {"format": "yarn-gateway-session-record", "version": 2,
     "mac": "hmac-sha256:<hex>", "record": {...the record...}}

The MAC is HMAC-SHA256 with the record key over a context string, the kernel id the record
is stored under (its file or znode name) and the canonical JSON of the record, so a record
can be neither altered nor moved to another kernel's name. A record is trusted only once
its MAC verifies; records of yarn-gateway versions before the MAC (bare ``version: 1``
objects) are refused, as is anything else (see :class:`RecordRejected`).

The key is a file of at least 32 characters (mode 0600, owned by the gateway's user); the
gateway generates one at first start when the file is absent (``secrets.token_hex(32)``).
Its :func:`fingerprint` (logged at start, shown by ``yarn-gateway check``) lets an operator
compare the keys of gateways that share a store without showing the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from typing import Any

from .private_files import PrivateFileError, create_private, directory_problem, read_private

ENVELOPE = "yarn-gateway-session-record"
SEALED_VERSION = 2
MAC_PREFIX = "hmac-sha256:"
KEY_MAX_BYTES = 4096
KEY_MIN_CHARS = 32
_CONTEXT = b"yarn-gateway session record v2\0"


class RecordRejected(Exception):
    """A stored record that is not trusted: ``reason`` says why; ``legacy`` for a record of a
    yarn-gateway version before record MACs; ``bad_mac`` when the MAC does not verify (most
    often: another record key)."""

    def __init__(self, reason: str, legacy: bool = False, bad_mac: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.legacy = legacy
        self.bad_mac = bad_mac


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def record_mac(key: bytes, kernel_id: str, record: Mapping[str, Any]) -> str:
    msg = _CONTEXT + kernel_id.encode() + b"\0" + canonical(record)
    return MAC_PREFIX + hmac.new(key, msg, hashlib.sha256).hexdigest()


def seal(key: bytes, record: Mapping[str, Any]) -> bytes:
    """The stored form of ``record`` (stored under the name ``record['kernel_id']``)."""
    return canonical({"format": ENVELOPE, "version": SEALED_VERSION,
                      "mac": record_mac(key, str(record["kernel_id"]), record), "record": record})


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a session record")


def unseal(key: bytes, name: str, data: bytes, max_bytes: int) -> dict[str, Any]:
    """The record stored as ``data`` under kernel id ``name``, once its MAC verifies;
    :class:`RecordRejected` otherwise."""
    if len(data) > max_bytes:
        raise RecordRejected(f"it is {len(data)} bytes, more than SessionStore.max_record_bytes ({max_bytes})")
    try:
        doc = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RecordRejected(f"it is not JSON ({str(exc)[:200]})") from None
    if not isinstance(doc, dict):
        raise RecordRejected("it is not a JSON object")
    if doc.get("format") != ENVELOPE:
        if doc.get("version") == 1 and "kernel_id" in doc and "mac" not in doc:
            raise RecordRejected("it was written by a yarn-gateway version before session-record MACs", legacy=True)
        raise RecordRejected("it is not a yarn-gateway session record")
    if doc.get("version") != SEALED_VERSION:
        raise RecordRejected(f"its format version {str(doc.get('version'))[:20]!r} is unknown to this yarn-gateway")
    record, mac = doc.get("record"), doc.get("mac")
    if not isinstance(record, dict) or not isinstance(mac, str):
        raise RecordRejected("it has no record or no MAC")
    try:
        expected = record_mac(key, name, record)
    except (ValueError, TypeError, RecursionError):
        raise RecordRejected("its record cannot be put in canonical form") from None
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        raise RecordRejected("its MAC does not verify (it was modified or planted outside the gateway, moved "
                             "from another kernel's name, or written with another record key)", bad_mac=True)
    if record.get("kernel_id") != name:  # pragma: no cover - implied by the MAC, which binds the name
        raise RecordRejected("it names another kernel")
    return record


def fingerprint(key: bytes) -> str:
    """A short public digest of a record key (equal fingerprints: equal keys)."""
    return hashlib.sha256(b"yarn-gateway record key fingerprint\0" + key).hexdigest()[:16]


def inspect_key_file(path: str) -> tuple[str | None, str | None]:
    """(why the key file ``path`` or its directory is unusable, the key's fingerprint): both None
    when the file is absent and may be generated. Blocking; never creates anything."""
    directory = os.path.dirname(os.path.realpath(path))
    if os.path.isdir(directory):
        problem = directory_problem(directory)
        if problem:
            return f"the directory of the record key {path}: {problem}", None
    try:
        return None, fingerprint(_key_of(read_private(path, KEY_MAX_BYTES), path))
    except FileNotFoundError:
        return None, None
    except PrivateFileError as exc:
        return str(exc), None


def _key_of(data: bytes, path: str) -> bytes:
    key = data.strip()
    if len(key) < KEY_MIN_CHARS:
        raise PrivateFileError(f"the record key {path} holds {len(key)} characters, fewer than {KEY_MIN_CHARS}; "
                               f"remove it to have one generated, or write one (openssl rand -hex 32 > {path})")
    return key


def load_key(path: str) -> tuple[bytes, bool]:
    """The record key in ``path``, generated there first if the file is absent; (key, created).

    Blocking. :class:`~yarn_gateway.kernels.private_files.PrivateFileError` (a ValueError)
    when the file or its directory is unsafe (not the gateway user's, accessible by others, a
    symbolic link) or the key too short."""
    problem = None
    directory = os.path.dirname(os.path.realpath(path))
    if os.path.isdir(directory):
        problem = directory_problem(directory)
    if problem:
        raise PrivateFileError(f"the directory of the record key {path}: {problem}")
    created = False
    if not os.path.lexists(path):
        created = create_private(path, (secrets.token_hex(32) + "\n").encode())
    try:
        return _key_of(read_private(path, KEY_MAX_BYTES), path), created
    except FileNotFoundError:
        raise PrivateFileError(f"the record key {path} vanished while the gateway read it") from None
