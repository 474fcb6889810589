"""Generate tests/protocol/vectors_v2.json, the launcher protocol v2 test vectors.

Run: ``python tests/protocol/make_vectors.py`` (writes the file next to this script).
The committed JSON is the reference; every launcher (Python, Scala, R) and the gateway
are tested against it. All randomness is derived from fixed seeds (SHAKE-256 streams), so
rerunning with the same pycryptodome reproduces the file.

File format (one JSON object):

``protocol_version``      2
``rsa_private_key_pem``   the gateway's fixed RSA-2048 private key, PKCS#8 PEM ("BEGIN PRIVATE KEY";
                          Java: strip the armour, PKCS8EncodedKeySpec)
``rsa_public_key_b64``    its public key as the launcher receives it (``--public-key``):
                          base64 DER SubjectPublicKeyInfo
``response``              one positive response vector:
  ``kernel_id``                 also the AES-GCM associated data (ASCII)
  ``launch_token``              the token inside the plaintext
  ``plaintext``                 the plaintext object (its connection_info has the kernel's
                                CurveZMQ ``curve_publickey``, 40 characters of Z85)
  ``plaintext_b64``             its exact bytes: canonical JSON (sorted keys, separators
                                "," and ":", UTF-8)
  ``aes_key_hex``, ``nonce_hex``  AES-256 key, 12-byte GCM nonce
  ``ciphertext_and_tag_b64``    AES-GCM(aes_key, nonce, aad=kernel_id)(plaintext): the
                                ciphertext followed by the 16-byte tag
  ``oaep_seed_hex``             the 32-byte OAEP seed used to wrap the key (only for
                                implementations that can inject it)
  ``wrapped_key_b64``           RSA-OAEP(SHA-256, MGF1-SHA-256, empty label) of aes_key;
                                must decrypt to aes_key with the private key
  ``frame_body``                the frame JSON text (canonical form)
  ``frame_b64``                 4-byte big-endian length + frame_body, base64
``control``               list of control-request vectors:
  ``key``                       the kernel's connection key (MAC key = its UTF-8 bytes)
  ``fields``                    request fields without ``mac``
  ``canonical``                 the exact text the MAC covers
  ``mac_hex``                   HMAC-SHA256, lower hex
  ``now``                       a verifier clock at which the request is valid
``negative``              list of inputs that must be rejected; ``kind`` is
  ``frame``          ``frame_b64`` → gateway rejects with ``expect_error``
  ``frame_plaintext`` ``frame_b64`` decrypts, but its plaintext is refused → ``expect_error``
  ``frame_token``    ``frame_b64`` decrypts, but the waiting kernel ``waiting_kernel_id``
                     expects ``expected_launch_token`` → ``bad_token``
  ``control``        ``request`` (with ``mac``) for kernel ``kernel_id`` / ``key``, checked
                     at clock ``now`` after the nonces in ``seen_nonces`` were used →
                     ``expect_error``
``expect_error`` values are the codes of launcher_protocol (``E_*``): oversize, malformed,
bad_version, decrypt_failed, invalid_plaintext, bad_token, bad_mac, stale_ts, replayed_nonce, wrong_kernel.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "launchers" / "python"))

import launcher_protocol as lp
from Crypto.PublicKey import RSA

OUT = Path(__file__).with_name("vectors_v2.json")


def stream(seed: bytes) -> Callable[[int], bytes]:
    """Deterministic byte source (SHAKE-256 of seed, consumed in order)."""
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        out = hashlib.shake_256(seed).digest(pos + n)[pos:]
        pos += n
        return out

    return read


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def frame_from_body(body: dict[str, Any]) -> bytes:
    raw = lp.canonical_json(body)
    return struct.pack(">I", len(raw)) + raw


def build() -> dict[str, Any]:
    priv = RSA.generate(2048, randfunc=stream(b"yarn-gateway vectors v1 rsa"))
    pub = priv.public_key()
    kernel_id = "3f1d9f4e-6a7b-4c2d-9e8f-0a1b2c3d4e5f"
    token = "q3Jt0Yg7cZ2bX9vK1wR4sT6uV8xA0dC2eF4gH6iJ8kL"
    conn = {
        "ip": "10.1.2.3", "transport": "tcp", "signature_scheme": "hmac-sha256",
        "key": "5c0ffee0" * 8, "shell_port": 40001, "iopub_port": 40002, "stdin_port": 40003,
        "control_port": 40004, "hb_port": 40005, "kernel_name": "python3",
        # A fixed Curve25519 public key in Z85 (the kernel's; the launcher makes a fresh pair each launch).
        "curve_publickey": "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",
    }
    plaintext = lp.build_response_plaintext(token, conn, 40006, 4242, "worker7.example.com")
    aes_key = bytes(range(32))
    nonce = bytes.fromhex("000102030405060708090a0b")
    oaep_seed = hashlib.sha256(b"yarn-gateway vectors v1 oaep").digest()
    ct = lp.aes_gcm_encrypt(aes_key, nonce, kernel_id, lp.canonical_json(plaintext))
    wrapped = lp.rsa_wrap_key(pub, aes_key, randfunc=lambda n: oaep_seed[:n])
    frame = lp.encode_frame(kernel_id, wrapped, nonce, ct)
    body = json.loads(frame[4:])

    ctl_key = conn["key"]
    controls = []
    for request, signum, ts, cnonce in (("signal", 2, 1767225600, "00112233445566778899aabbccddeeff"),
                                        ("ping", None, 1767225601, "ffeeddccbbaa99887766554433221100"),
                                        ("shutdown", None, 1767225602, "0123456789abcdef0123456789abcdef")):
        req = lp.sign_control_request(kernel_id, ctl_key, request, signum, ts=ts, nonce=cnonce)
        fields = {k: v for k, v in req.items() if k != "mac"}
        controls.append({"key": ctl_key, "fields": fields, "canonical": lp.canonical_json(fields).decode(),
                         "mac_hex": req["mac"], "now": ts + 30})

    def tampered_ct() -> bytes:
        raw = bytearray(base64.b64decode(body["ciphertext"]))
        raw[5] ^= 0x01
        return frame_from_body({**body, "ciphertext": b64(bytes(raw))})

    other_token_pt = lp.build_response_plaintext("not-the-token", conn, 40006, 4242, "worker7.example.com")
    other_token_frame = lp.encrypt_response(kernel_id, other_token_pt, pub, aes_key=aes_key, nonce=nonce,
                                            oaep_randfunc=lambda n: oaep_seed[:n])
    def frame_with(connection_info: dict[str, Any]) -> bytes:
        pt = lp.build_response_plaintext(token, connection_info, 40006, 4242, "worker7.example.com")
        return lp.encrypt_response(kernel_id, pt, pub, aes_key=aes_key, nonce=nonce,
                                   oaep_randfunc=lambda n: oaep_seed[:n])

    with_secret = frame_with({**conn, "curve_secretkey": "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"})
    short_key = frame_with({**conn, "curve_publickey": conn["curve_publickey"][:39]})
    not_z85 = frame_with({**conn, "curve_publickey": "~" * 40})
    good_req = dict(controls[0]["fields"], mac=controls[0]["mac_hex"])
    bad_mac = dict(good_req, mac="0" * 64)
    signed_other = lp.sign_control_request("another-kernel", ctl_key, "ping", ts=1767225600,
                                           nonce="abababababababababababababababab")
    negative = [
        {"name": "tampered_ciphertext", "kind": "frame", "frame_b64": b64(tampered_ct()),
         "expect_error": lp.E_DECRYPT},
        {"name": "wrong_kernel_id_aad", "kind": "frame",
         "frame_b64": b64(frame_from_body({**body, "kernel_id": "3f1d9f4e-6a7b-4c2d-9e8f-0a1b2c3d4e50"})),
         "expect_error": lp.E_DECRYPT},
        {"name": "wrong_version", "kind": "frame", "frame_b64": b64(frame_from_body({**body, "version": 3})),
         "expect_error": lp.E_BAD_VERSION},
        {"name": "version_1_frame", "kind": "frame", "frame_b64": b64(frame_from_body({**body, "version": 1})),
         "expect_error": lp.E_BAD_VERSION},
        {"name": "curve_secret_key_sent", "kind": "frame_plaintext", "frame_b64": b64(with_secret),
         "expect_error": lp.E_INVALID},
        {"name": "curve_public_key_too_short", "kind": "frame_plaintext", "frame_b64": b64(short_key),
         "expect_error": lp.E_INVALID},
        {"name": "curve_public_key_not_z85", "kind": "frame_plaintext", "frame_b64": b64(not_z85),
         "expect_error": lp.E_INVALID},
        {"name": "oversize_length_prefix", "kind": "frame",
         "frame_b64": b64(struct.pack(">I", lp.MAX_FRAME_BYTES + 1)), "expect_error": lp.E_OVERSIZE},
        {"name": "junk_body", "kind": "frame", "frame_b64": b64(struct.pack(">I", 9) + b"not json!"),
         "expect_error": lp.E_MALFORMED},
        {"name": "wrong_launch_token", "kind": "frame_token", "frame_b64": b64(other_token_frame),
         "waiting_kernel_id": kernel_id, "expected_launch_token": token, "expect_error": lp.E_BAD_TOKEN},
        {"name": "bad_mac", "kind": "control", "kernel_id": kernel_id, "key": ctl_key, "request": bad_mac,
         "now": controls[0]["now"], "seen_nonces": [], "expect_error": lp.E_BAD_MAC},
        {"name": "mac_with_other_key", "kind": "control", "kernel_id": kernel_id, "key": "f" * 64,
         "request": good_req, "now": controls[0]["now"], "seen_nonces": [], "expect_error": lp.E_BAD_MAC},
        {"name": "stale_ts", "kind": "control", "kernel_id": kernel_id, "key": ctl_key, "request": good_req,
         "now": good_req["ts"] + 61, "seen_nonces": [], "expect_error": lp.E_STALE_TS},
        {"name": "future_ts", "kind": "control", "kernel_id": kernel_id, "key": ctl_key, "request": good_req,
         "now": good_req["ts"] - 61, "seen_nonces": [], "expect_error": lp.E_STALE_TS},
        {"name": "replayed_nonce", "kind": "control", "kernel_id": kernel_id, "key": ctl_key,
         "request": good_req, "now": controls[0]["now"], "seen_nonces": [good_req["nonce"]],
         "expect_error": lp.E_REPLAY},
        {"name": "other_kernel", "kind": "control", "kernel_id": kernel_id, "key": ctl_key,
         "request": signed_other, "now": 1767225600, "seen_nonces": [], "expect_error": lp.E_WRONG_KERNEL},
    ]
    return {
        "protocol_version": lp.PROTOCOL_VERSION,
        "rsa_private_key_pem": priv.export_key(format="PEM", pkcs=8).decode("ascii"),
        "rsa_public_key_b64": lp.public_key_b64(priv),
        "response": {
            "kernel_id": kernel_id, "launch_token": token, "plaintext": plaintext,
            "plaintext_b64": b64(lp.canonical_json(plaintext)),
            "aes_key_hex": aes_key.hex(), "nonce_hex": nonce.hex(), "ciphertext_and_tag_b64": b64(ct),
            "oaep_seed_hex": oaep_seed.hex(), "wrapped_key_b64": b64(wrapped),
            "frame_body": frame[4:].decode("utf-8"), "frame_b64": b64(frame),
        },
        "control": controls,
        "negative": negative,
    }


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
