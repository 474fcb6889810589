"""launcher_protocol against the committed v2 test vectors (shared with Scala and R)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from Crypto.PublicKey import RSA

from yarn_gateway.provisioners import response_frames as frames
from yarn_gateway_launchers import launcher_protocol as lp

VECTORS = json.loads(Path(__file__).with_name("vectors_v2.json").read_text(encoding="utf-8"))
RESP = VECTORS["response"]


@pytest.fixture(scope="module")
def private_key() -> RSA.RsaKey:
    return RSA.import_key(VECTORS["rsa_private_key_pem"])


def test_protocol_vectors_public_key_matches(private_key: RSA.RsaKey) -> None:
    assert lp.public_key_b64(private_key) == VECTORS["rsa_public_key_b64"]
    assert lp.load_public_key(VECTORS["rsa_public_key_b64"]).size_in_bits() == 2048


def test_protocol_vectors_plaintext_and_gcm() -> None:
    plain = lp.canonical_json(RESP["plaintext"])
    assert base64.b64encode(plain).decode() == RESP["plaintext_b64"]
    ct = lp.aes_gcm_encrypt(bytes.fromhex(RESP["aes_key_hex"]), bytes.fromhex(RESP["nonce_hex"]),
                            RESP["kernel_id"], plain)
    assert base64.b64encode(ct).decode() == RESP["ciphertext_and_tag_b64"]
    assert len(ct) == len(plain) + 16  # ciphertext || 16-byte tag


def test_protocol_vectors_wrapped_key_unwraps(private_key: RSA.RsaKey) -> None:
    aes_key = lp.rsa_unwrap_key(private_key, base64.b64decode(RESP["wrapped_key_b64"]))
    assert aes_key.hex() == RESP["aes_key_hex"]


def test_protocol_vectors_full_frame_reproduces(private_key: RSA.RsaKey) -> None:
    seed = bytes.fromhex(RESP["oaep_seed_hex"])
    frame = lp.encrypt_response(
        RESP["kernel_id"], RESP["plaintext"], VECTORS["rsa_public_key_b64"],
        aes_key=bytes.fromhex(RESP["aes_key_hex"]), nonce=bytes.fromhex(RESP["nonce_hex"]),
        oaep_randfunc=lambda n: seed[:n],
    )
    assert base64.b64encode(frame).decode() == RESP["frame_b64"]
    assert frame[4:].decode() == RESP["frame_body"]
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    kernel_id, plain = frames.decode_frame(frame, private_key)
    assert kernel_id == RESP["kernel_id"]
    assert plain == RESP["plaintext"]
    assert frames.validate_plaintext(plain)["launch_token"] == RESP["launch_token"]


def test_protocol_vectors_random_frames_roundtrip(private_key: RSA.RsaKey) -> None:
    a = lp.encrypt_response(RESP["kernel_id"], RESP["plaintext"], VECTORS["rsa_public_key_b64"])
    b = lp.encrypt_response(RESP["kernel_id"], RESP["plaintext"], VECTORS["rsa_public_key_b64"])
    assert a != b  # fresh AES key, nonce and OAEP seed each time
    assert frames.decode_frame(a, private_key)[1] == frames.decode_frame(b, private_key)[1] == RESP["plaintext"]


@pytest.mark.parametrize("vec", VECTORS["control"], ids=lambda v: v["fields"]["request"])
def test_protocol_vectors_control_mac(vec: dict[str, Any]) -> None:
    assert lp.canonical_json(vec["fields"]).decode() == vec["canonical"]
    assert lp.control_mac(vec["fields"], vec["key"]) == vec["mac_hex"]
    f = vec["fields"]
    signed = lp.sign_control_request(f["kernel_id"], vec["key"], f["request"], f.get("signum"),
                                     ts=f["ts"], nonce=f["nonce"])
    assert signed["mac"] == vec["mac_hex"]
    verifier = lp.ControlVerifier(f["kernel_id"], vec["key"], clock=lambda: vec["now"])
    assert verifier.verify(dict(signed))["request"] == f["request"]


@pytest.mark.parametrize("vec", VECTORS["negative"], ids=lambda v: v["name"])
def test_protocol_vectors_negative_rejected(vec: dict[str, Any], private_key: RSA.RsaKey) -> None:
    with pytest.raises(lp.ProtocolError) as info:
        if vec["kind"] == "frame":
            frames.decode_frame(base64.b64decode(vec["frame_b64"]), private_key)
        elif vec["kind"] == "frame_plaintext":
            frames.validate_plaintext(frames.decode_frame(base64.b64decode(vec["frame_b64"]), private_key)[1])
        elif vec["kind"] == "frame_token":
            kernel_id, plain = frames.decode_frame(base64.b64decode(vec["frame_b64"]), private_key)
            assert kernel_id == vec["waiting_kernel_id"]
            if plain["launch_token"] != vec["expected_launch_token"]:
                raise lp.ProtocolError(lp.E_BAD_TOKEN, "wrong token")
        else:
            verifier = lp.ControlVerifier(vec["kernel_id"], vec["key"], clock=lambda: vec["now"])
            for nonce in vec["seen_nonces"]:
                prior = lp.sign_control_request(vec["kernel_id"], vec["key"], "ping",
                                                ts=int(vec["now"]), nonce=nonce)
                verifier.verify(prior)
            verifier.verify(dict(vec["request"]))
    assert info.value.code == vec["expect_error"]


def test_protocol_vectors_unknown_version_reason_is_clear() -> None:
    vec = next(v for v in VECTORS["negative"] if v["name"] == "wrong_version")
    with pytest.raises(lp.ProtocolError) as info:
        frames.parse_frame_body(base64.b64decode(vec["frame_b64"])[4:])
    assert "version 3" in info.value.reason and "version 2" in info.value.reason
