"""Launcher protocol, version 2: the Python implementation of everything a launcher does
(response, control port) and of what both sides share (crypto, control-request MACs).

See PROTOCOL.md. The gateway imports this module as ``yarn_gateway_launchers.launcher_protocol``
(its side of the response, parsing and decrypting frames, is
``yarn_gateway.provisioners.response_frames``); the Python launcher imports it as a sibling file
inside the YARN container, so it may use only the standard library and pycryptodome.

Wire decisions every implementation (Python, Scala, R) must match, pinned by
``tests/protocol/vectors_v2.json``:

* Response plaintext: UTF-8 JSON object (any key order; the reference encoder writes
  canonical JSON: sorted keys, separators ``,`` and ``:``, UTF-8, no ASCII escaping).
* AES-256-GCM, 12-byte nonce, 16-byte tag, associated data = kernel id (ASCII).
  The ``ciphertext`` field is ``ciphertext || tag`` (what javax.crypto's ``doFinal``
  returns), base64.
* The AES key is wrapped with RSA-OAEP, hash SHA-256, MGF1 with SHA-256, empty label.
  (Java: pass ``OAEPParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256,
  PSource.PSpecified.DEFAULT)`` explicitly; the JDK's default MGF1 hash is SHA-1.)
* Frame: 4-byte big-endian unsigned length of the body, then the body, UTF-8 JSON
  ``{"version": 2, "kernel_id", "key", "nonce", "ciphertext"}``; binary fields in
  standard base64 with padding. The reference encoder writes canonical JSON; the
  gateway accepts any valid JSON. Body limit: 64 KiB.
* Control request MAC: HMAC-SHA256 keyed with the UTF-8 bytes of the kernel's
  connection key, over the canonical JSON of every field but ``mac``; ``mac`` is lower
  hex. ``ts`` is integer Unix seconds; ``nonce`` 32 hex chars (16 random bytes).
* Version 2 adds CurveZMQ (``--transport-encryption curve``, the default): the launcher makes
  the kernel's key pair in the container, every network-facing kernel port is a CurveZMQ server,
  and ``connection_info`` carries ``curve_publickey`` (40 characters of Z85). The secret key never
  leaves the container: a plaintext with ``curve_secretkey`` is refused. Without encryption
  (``none``, or a libzmq without CURVE) the plaintext has no ``curve_publickey``.
* ``busy`` and ``timeout`` answers mean "not processed, try again": launchers and the
  gateway's control client retry them with jittered backoff until their own deadline.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import json
import logging
import random
import secrets
import socket
import struct
import threading
import time
from typing import Any, Callable, Optional, Union

from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.Hash import SHA256
from Crypto.PublicKey import RSA

PROTOCOL_VERSION = 2
MAX_FRAME_BYTES = 64 * 1024
MIN_RSA_BITS = 2048
AES_KEY_BYTES = 32
GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16
CONTROL_TS_WINDOW = 60
MAX_CONTROL_LINE = 4096
CONTROL_REQUESTS = ("ping", "signal", "shutdown")
CONNECTION_INFO_PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
CONNECTION_INFO_FIELDS = ("ip", "transport", "signature_scheme", "key", *CONNECTION_INFO_PORTS, "kernel_name")
#: ``--transport-encryption`` values: ``curve`` (CurveZMQ kernel ports, the default) or ``none``.
TRANSPORT_ENCRYPTION = ("curve", "none")
CURVE_PUBLIC_FIELD = "curve_publickey"
CURVE_SECRET_FIELD = "curve_secretkey"  # noqa: S105 - a field name; it must never be sent

# Rejection codes. Answers carry ``reason`` = "<code>: <detail>" so a launcher can act on
# the code (e.g. treat "duplicate" after a lost answer as success) and a human can read it.
E_OVERSIZE = "oversize"
E_MALFORMED = "malformed"
E_BAD_VERSION = "bad_version"
E_DECRYPT = "decrypt_failed"
E_INVALID = "invalid_plaintext"
E_UNKNOWN_KERNEL = "unknown_kernel"
E_BAD_TOKEN = "bad_token"  # noqa: S105 - an error code, not a secret
E_DUPLICATE = "duplicate"
E_TIMEOUT = "timeout"
E_BUSY = "busy"
E_BAD_MAC = "bad_mac"
E_STALE_TS = "stale_ts"
E_REPLAY = "replayed_nonce"
E_WRONG_KERNEL = "wrong_kernel"
E_BAD_REQUEST = "bad_request"
E_INTERNAL = "internal_error"
#: Answers that mean the request was not processed and may be sent again.
RETRYABLE_CODES = (E_BUSY, E_TIMEOUT)

#: Kernel message signature schemes a gateway may be configured to accept; it accepts only
#: ``DEFAULT_SIGNATURE_SCHEMES`` unless told otherwise (never md5 or sha1).
SIGNATURE_SCHEMES = ("hmac-sha256", "hmac-sha384", "hmac-sha512")
DEFAULT_SIGNATURE_SCHEMES = ("hmac-sha256",)

log = logging.getLogger("yarn_gateway.launcher_protocol")

RandBytes = Callable[[int], bytes]


class ProtocolError(Exception):
    """A rejected frame or request. ``code`` is one of the ``E_*`` constants; the message
    never contains key material or tokens."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


# --------------------------------------------------------------------------- ports


def parse_port_range(spec: str) -> tuple[int, int]:
    """Parse ``lo..hi``; ``0..0`` means any port. Raises ValueError on anything else."""
    lo_s, sep, hi_s = spec.strip().partition("..")
    if not sep or not lo_s.isdigit() or not hi_s.isdigit():
        raise ValueError(f"port range must look like 'lo..hi', got {spec!r}")
    lo, hi = int(lo_s), int(hi_s)
    if (lo, hi) != (0, 0) and not (1 <= lo <= hi <= 65535):
        raise ValueError(f"port range {spec!r} must satisfy 1 <= lo <= hi <= 65535 (or be 0..0)")
    return lo, hi


def bind_sockets_in_range(
    count: int,
    port_range: tuple[int, int],
    host: str = "0.0.0.0",
    rng: Optional[random.Random] = None,
    listen: bool = True,
) -> list[socket.socket]:
    """Bind ``count`` TCP sockets at random distinct ports in ``port_range`` and return them
    still bound (and listening unless ``listen`` is false) so nobody can take a port
    between choosing and using it. Raises OSError when the range has too few free ports."""
    lo, hi = port_range
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    rng = rng or random.SystemRandom()
    if (lo, hi) == (0, 0):
        candidates: list[int] = [0] * count
    else:
        candidates = list(range(lo, hi + 1))
        rng.shuffle(candidates)
    bound: list[socket.socket] = []
    try:
        for port in candidates:
            if len(bound) == count:
                break
            s = socket.socket(family, socket.SOCK_STREAM)
            # SO_REUSEADDR only skips TIME_WAIT leftovers; Linux still refuses a second
            # listener on the same port.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
                if listen:
                    s.listen(128)
            except OSError:
                s.close()
                continue
            bound.append(s)
    except BaseException:
        for s in bound:
            s.close()
        raise
    if len(bound) < count:
        for s in bound:
            s.close()
        raise OSError(f"only {len(bound)} of {count} ports free in range {lo}..{hi} on {host}")
    return bound


# --------------------------------------------------------------------------- encoding helpers


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (non-ASCII kept as is)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError(E_MALFORMED, f"field {field!r} must be a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ProtocolError(E_MALFORMED, f"field {field!r} is not valid base64") from e


def _aad(kernel_id: str) -> bytes:
    try:
        return kernel_id.encode("ascii")
    except UnicodeEncodeError as e:
        raise ProtocolError(E_MALFORMED, "kernel_id must be ASCII") from e


def load_public_key(public_key_b64: str) -> RSA.RsaKey:
    """Import the gateway's key (base64 DER SubjectPublicKeyInfo); refuse < 2048 bits."""
    key = RSA.import_key(base64.b64decode(public_key_b64, validate=True))
    if key.size_in_bits() < MIN_RSA_BITS:
        raise ValueError(f"gateway RSA key has {key.size_in_bits()} bits; at least {MIN_RSA_BITS} required")
    return key


def public_key_b64(private_key: RSA.RsaKey) -> str:
    """Base64 DER SubjectPublicKeyInfo of ``private_key``'s public half."""
    return _b64(private_key.public_key().export_key(format="DER"))


# --------------------------------------------------------------------------- launcher side: response


def build_response_plaintext(
    launch_token: str, connection_info: dict[str, Any], control_port: int, pid: int, hostname: str
) -> dict[str, Any]:
    return {
        "launch_token": launch_token,
        "connection_info": dict(connection_info),
        "control_port": control_port,
        "pid": pid,
        "hostname": hostname,
    }


def aes_gcm_encrypt(aes_key: bytes, nonce: bytes, kernel_id: str, plaintext: bytes) -> bytes:
    """Return ``ciphertext || 16-byte tag``."""
    cipher = AES.new(aes_key, AES.MODE_GCM, nonce=nonce, mac_len=GCM_TAG_BYTES)
    cipher.update(_aad(kernel_id))
    ct, tag = cipher.encrypt_and_digest(plaintext)
    return bytes(ct) + bytes(tag)


def aes_gcm_decrypt(aes_key: bytes, nonce: bytes, kernel_id: str, ct_and_tag: bytes) -> bytes:
    if len(ct_and_tag) < GCM_TAG_BYTES or len(nonce) != GCM_NONCE_BYTES or len(aes_key) != AES_KEY_BYTES:
        raise ProtocolError(E_DECRYPT, "wrong key, nonce or ciphertext length")
    cipher = AES.new(aes_key, AES.MODE_GCM, nonce=nonce, mac_len=GCM_TAG_BYTES)
    cipher.update(_aad(kernel_id))
    try:
        return bytes(cipher.decrypt_and_verify(ct_and_tag[:-GCM_TAG_BYTES], ct_and_tag[-GCM_TAG_BYTES:]))
    except ValueError as e:
        raise ProtocolError(E_DECRYPT, "authentication failed") from e


def rsa_wrap_key(public_key: RSA.RsaKey, aes_key: bytes, randfunc: Optional[RandBytes] = None) -> bytes:
    return bytes(PKCS1_OAEP.new(public_key, hashAlgo=SHA256, randfunc=randfunc).encrypt(aes_key))


def rsa_unwrap_key(private_key: RSA.RsaKey, wrapped: bytes) -> bytes:
    try:
        key = bytes(PKCS1_OAEP.new(private_key, hashAlgo=SHA256).decrypt(wrapped))
    except (ValueError, TypeError) as e:
        raise ProtocolError(E_DECRYPT, "key unwrap failed") from e
    if len(key) != AES_KEY_BYTES:
        raise ProtocolError(E_DECRYPT, "wrapped key has the wrong length")
    return key


def encode_frame(kernel_id: str, wrapped_key: bytes, nonce: bytes, ct_and_tag: bytes) -> bytes:
    """Length prefix + canonical JSON body."""
    body = canonical_json(
        {
            "version": PROTOCOL_VERSION,
            "kernel_id": kernel_id,
            "key": _b64(wrapped_key),
            "nonce": _b64(nonce),
            "ciphertext": _b64(ct_and_tag),
        }
    )
    if len(body) > MAX_FRAME_BYTES:
        raise ValueError(f"response frame of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    return struct.pack(">I", len(body)) + body


def encrypt_response(
    kernel_id: str,
    plaintext: dict[str, Any],
    public_key: Union[str, RSA.RsaKey],
    *,
    aes_key: Optional[bytes] = None,
    nonce: Optional[bytes] = None,
    oaep_randfunc: Optional[RandBytes] = None,
) -> bytes:
    """Build the complete frame. Randomness is injectable so test vectors are exact."""
    key = load_public_key(public_key) if isinstance(public_key, str) else public_key
    aes_key = aes_key if aes_key is not None else secrets.token_bytes(AES_KEY_BYTES)
    nonce = nonce if nonce is not None else secrets.token_bytes(GCM_NONCE_BYTES)
    ct = aes_gcm_encrypt(aes_key, nonce, kernel_id, canonical_json(plaintext))
    return encode_frame(kernel_id, rsa_wrap_key(key, aes_key, oaep_randfunc), nonce, ct)


class ResponseRejected(Exception):
    """The gateway answered ``status: error``; ``reason`` is its text."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"gateway rejected the response: {reason}")
        self.reason = reason


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address must be host:port, got {address!r}")
    return host.strip("[]"), int(port)


def send_response(
    address: str,
    frame: bytes,
    timeout: float = 60.0,
    io_timeout: float = 10.0,
    initial_backoff: float = 0.2,
    max_backoff: float = 5.0,
) -> dict[str, Any]:
    """Send ``frame`` to ``host:port`` and return the gateway's ``{"status": "ok"}``.

    Connection errors (refused, reset, timed out) and the answers ``busy`` and ``timeout``
    (the gateway did not process the frame) are retried with jittered exponential backoff
    until ``timeout`` seconds have passed; then :class:`TimeoutError`. Any other error
    answer raises :class:`ResponseRejected` at once, except ``duplicate`` after an earlier
    attempt delivered the whole frame (its answer was lost, so the gateway already has it)."""
    host, port = split_address(address)
    deadline = time.monotonic() + timeout
    backoff = initial_backoff
    delivered = False
    last_error: Optional[BaseException] = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"could not deliver the response to {address} within {timeout:g} s: {last_error}")
        try:
            with socket.create_connection((host, port), timeout=min(io_timeout, remaining)) as s:
                s.sendall(frame)
                delivered = True
                line = _read_line(s, MAX_CONTROL_LINE, time.monotonic() + min(io_timeout, remaining))
            answer = json.loads(line)
            if not isinstance(answer, dict):
                raise ValueError("answer is not a JSON object")
        except (OSError, ValueError, RecursionError) as e:
            last_error = e
        else:
            if answer.get("status") == "ok":
                return answer
            reason = str(answer.get("reason", "no reason given"))
            code = reason.partition(":")[0]
            if delivered and last_error is not None and code == E_DUPLICATE:
                return {"status": "ok"}
            if code not in RETRYABLE_CODES:
                raise ResponseRejected(reason)
            last_error = ResponseRejected(reason)
        log.warning("response to %s failed (%s); retrying", address, last_error)
        time.sleep(min(backoff * (0.5 + random.random()), max(0.0, deadline - time.monotonic())))  # noqa: S311
        backoff = min(backoff * 2, max_backoff)


def _read_line(s: socket.socket, limit: int, deadline: Optional[float] = None) -> str:
    """One line (without the newline) of at most ``limit`` bytes; with ``deadline``
    (``time.monotonic()``) the whole line must arrive by then, however the peer drips it."""
    buf = b""
    while b"\n" not in buf:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete line in time")
            s.settimeout(remaining)
        chunk = s.recv(1024)
        if not chunk:
            if buf:
                break
            raise ConnectionError("peer closed without an answer")
        buf += chunk
        if len(buf) > limit:
            raise ValueError("answer line too long")
    return buf.split(b"\n", 1)[0].decode("utf-8")


# --------------------------------------------------------------------------- control requests


def control_mac(fields: dict[str, Any], key: str) -> str:
    """HMAC-SHA256 (hex) of the canonical JSON of ``fields`` (without ``mac``)."""
    msg = canonical_json({k: v for k, v in fields.items() if k != "mac"})
    return hmac.new(key.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def sign_control_request(
    kernel_id: str,
    key: str,
    request: str,
    signum: Optional[int] = None,
    *,
    ts: Optional[int] = None,
    nonce: Optional[str] = None,
) -> dict[str, Any]:
    """Return the request dict including ``mac``; ``ts``/``nonce`` injectable for vectors."""
    fields: dict[str, Any] = {
        "kernel_id": kernel_id,
        "request": request,
        "ts": int(time.time()) if ts is None else ts,
        "nonce": secrets.token_hex(16) if nonce is None else nonce,
    }
    if signum is not None:
        fields["signum"] = signum
    fields["mac"] = control_mac(fields, key)
    return fields


class ControlVerifier:
    """Checks control requests for one kernel: MAC, kernel id, ``ts`` within ``window``
    seconds of ``clock()``, nonce unseen. Seen nonces are kept in a bounded cache; a nonce
    older than the window can no longer pass the ``ts`` check, so eviction is safe as long
    as fewer than ``cache_size`` requests arrive within one window."""

    def __init__(
        self, kernel_id: str, key: str, window: int = CONTROL_TS_WINDOW, cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kernel_id = kernel_id
        self._key = key
        self.window = window
        self.cache_size = cache_size
        self.clock = clock
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def verify(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            raise ProtocolError(E_BAD_REQUEST, "request is not a JSON object")
        allowed = {"kernel_id", "request", "signum", "ts", "nonce", "mac"}
        if set(req) - allowed or not {"kernel_id", "request", "ts", "nonce", "mac"} <= set(req):
            raise ProtocolError(E_BAD_REQUEST, "unexpected or missing fields")
        mac = req["mac"]
        if not isinstance(mac, str) or not hmac.compare_digest(
            mac.encode("ascii", "replace"), control_mac(req, self._key).encode("ascii")
        ):
            raise ProtocolError(E_BAD_MAC, "MAC does not verify")
        if req["kernel_id"] != self.kernel_id:
            raise ProtocolError(E_WRONG_KERNEL, "request names another kernel")
        ts = req["ts"]
        if not isinstance(ts, int) or isinstance(ts, bool) or abs(self.clock() - ts) > self.window:
            raise ProtocolError(E_STALE_TS, f"timestamp outside +/-{self.window} s")
        nonce = req["nonce"]
        if not isinstance(nonce, str) or not (8 <= len(nonce) <= 128):
            raise ProtocolError(E_BAD_REQUEST, "bad nonce")
        if req["request"] not in CONTROL_REQUESTS:
            raise ProtocolError(E_BAD_REQUEST, "unknown request")
        signum = req.get("signum")
        if req["request"] == "signal" and (
            not isinstance(signum, int) or isinstance(signum, bool) or not 1 <= signum <= 64
        ):
            raise ProtocolError(E_BAD_REQUEST, "signal needs an integer signum in 1..64")
        with self._lock:
            if nonce in self._seen:
                raise ProtocolError(E_REPLAY, "nonce already used")
            self._seen[nonce] = None
            while len(self._seen) > self.cache_size:
                self._seen.popitem(last=False)
        return req


class ConnectionLimiter:
    """Caps open connections in total (``max_total``) and per source address
    (``max_per_source``) for a server that reads one short request per connection.

    At a cap a new connection is not refused: the oldest connection still reading its
    request is evicted instead (of the same source at the per-source cap, of any source at
    the total cap). Real clients send their request at once, so a flood of idle or
    slow-dripping connections only ever evicts itself, and a flood from one address never
    evicts another address's connections. A connection is refused (``busy``) only when
    every slot it could take is past reading. Thread-safe; ``conn`` is any hashable handle.
    """

    def __init__(self, max_total: int, max_per_source: int) -> None:
        if max_total < 1 or max_per_source < 1:
            raise ValueError("connection caps must be at least 1")
        self.max_total = max_total
        self.max_per_source = max_per_source
        self._conns: collections.OrderedDict[Any, tuple[str, bool]] = collections.OrderedDict()  # -> (source, reading)
        self._per_source: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def admit(self, source: str, conn: Any) -> tuple[bool, Optional[Any]]:
        """``(admitted, evicted)``: the caller closes ``evicted`` (telling it ``busy``)."""
        with self._lock:
            victim: Optional[Any] = None
            if self._per_source[source] >= self.max_per_source:
                victim = self._oldest_reading(source)
            elif len(self._conns) >= self.max_total:
                victim = self._oldest_reading(None)
            else:
                victim = _NONE
            if victim is None:
                return False, None
            if victim is not _NONE:
                self._drop(victim)
            self._conns[conn] = (source, True)
            self._per_source[source] += 1
            return True, (None if victim is _NONE else victim)

    def done_reading(self, conn: Any) -> bool:
        """``conn`` has its whole request: it can no longer be evicted. False if it was
        evicted already (it was told ``busy``: its request must not be carried out)."""
        with self._lock:
            if conn not in self._conns:
                return False
            self._conns[conn] = (self._conns[conn][0], False)
            return True

    def release(self, conn: Any) -> bool:
        """Forget ``conn``; False if it was evicted (or never admitted)."""
        with self._lock:
            return self._drop(conn)

    def holds(self, conn: Any) -> bool:
        with self._lock:
            return conn in self._conns

    def __len__(self) -> int:
        with self._lock:
            return len(self._conns)

    def _oldest_reading(self, source: Optional[str]) -> Optional[Any]:
        for conn, (src, reading) in self._conns.items():
            if reading and (source is None or src == source):
                return conn
        return None

    def _drop(self, conn: Any) -> bool:
        entry = self._conns.pop(conn, None)
        if entry is None:
            return False
        self._per_source[entry[0]] -= 1
        if self._per_source[entry[0]] <= 0:
            del self._per_source[entry[0]]
        return True


_NONE = object()


class ControlServer:
    """Launcher-side control port: a thread accepting on a pre-bound listening socket, one
    JSON line per connection, one line answered. ``on_signal(signum)`` and
    ``on_shutdown()`` run after the ``ok`` answer has been sent (shutdown usually exits).

    Each request must arrive whole within ``request_timeout`` seconds of the connection
    (one deadline, however the peer drips it); at most ``max_handlers`` connections are
    served at once, at most ``max_per_source`` from one address (:class:`ConnectionLimiter`:
    a flood evicts its own oldest connections, answered ``busy``)."""

    def __init__(
        self,
        sock: socket.socket,
        verifier: ControlVerifier,
        on_signal: Callable[[int], None],
        on_shutdown: Callable[[], None],
        request_timeout: float = 5.0,
        max_handlers: int = 16,
        max_per_source: int = 4,
    ) -> None:
        self.sock = sock
        self.verifier = verifier
        self.on_signal = on_signal
        self.on_shutdown = on_shutdown
        self.request_timeout = request_timeout
        self.limiter = ConnectionLimiter(max_handlers, max_per_source)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="launcher-control", daemon=True)
        self._warned: dict[str, tuple[int, float]] = {}
        self._warn_lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, addr = self.sock.accept()
            except OSError:
                if self._stopped.is_set():
                    return
                time.sleep(0.05)
                continue
            admitted, evicted = self.limiter.admit(str(addr[0]), conn)
            if evicted is not None:
                # Its handler thread is blocked reading: shutdown() wakes it, and it closes.
                _answer(evicted, {"status": "error", "reason": f"{E_BUSY}: too many control connections"})
                try:
                    evicted.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if not admitted:
                conn.settimeout(1.0)
                _answer(conn, {"status": "error", "reason": f"{E_BUSY}: too many control connections"})
                conn.close()
                continue
            threading.Thread(target=self._handle, args=(conn,), name="launcher-control-conn", daemon=True).start()

    def _warn(self, kind: str, detail: str, interval: float = 10.0) -> None:
        """At most one warning per kind and ``interval`` seconds, with a count: a flood must not
        flood the container log too."""
        now = time.monotonic()
        with self._warn_lock:
            pending, last = self._warned.get(kind, (0, float("-inf")))
            pending += 1
            if now - last < interval:
                self._warned[kind] = (pending, last)
                return
            self._warned[kind] = (0, now)
        log.warning("control requests %s: %d since the last such warning, the latest: %s", kind, pending, detail)

    def _handle(self, conn: socket.socket) -> None:
        action: Optional[Callable[[], None]] = None
        deadline = time.monotonic() + self.request_timeout
        try:
            try:
                line = _read_line(conn, MAX_CONTROL_LINE, deadline)
                if not self.limiter.done_reading(conn):
                    return  # evicted while its last bytes arrived: it was told "busy"
                req = self.verifier.verify(json.loads(line))
            except ProtocolError as e:
                self._warn("rejected", e.reason)
                _answer(conn, {"status": "error", "reason": e.reason})
                return
            except TimeoutError:
                if self.limiter.holds(conn):
                    self._warn("cut off", f"incomplete after {self.request_timeout:g} s")
                _answer(conn, {"status": "error",
                               "reason": f"{E_TIMEOUT}: no complete request within {self.request_timeout:g} s"})
                return
            except (OSError, ValueError, RecursionError) as e:
                if self.limiter.holds(conn):  # an evicted connection was told "busy" already
                    self._warn("unreadable", type(e).__name__)
                    _answer(conn, {"status": "error", "reason": f"{E_BAD_REQUEST}: unreadable request "
                                   "(one JSON object of at most 4096 bytes on one line)"})
                return
            kind = req["request"]
            if kind == "signal":
                signum = int(req["signum"])
                action = lambda: self.on_signal(signum)  # noqa: E731
            elif kind == "shutdown":
                action = self.on_shutdown
            _answer(conn, {"status": "ok"})
        except Exception as e:  # a bug must cost one answer, never the control port
            log.error("control request failed: %s", type(e).__name__)
            _answer(conn, {"status": "error", "reason": f"{E_INTERNAL}: the launcher could not process it"})
        finally:
            self.limiter.release(conn)
            conn.close()
        if action is not None:
            try:
                action()
            except Exception:
                log.exception("control action %s failed", req["request"])


def _answer(conn: socket.socket, answer: dict[str, Any]) -> None:
    try:
        conn.sendall(json.dumps(answer).encode("utf-8") + b"\n")
    except OSError:
        pass
