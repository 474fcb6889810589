"""Hostile content for the response listener (issue 15, items 10 and 15): deeply nested JSON
is answered with a clear error and the listener keeps serving; a launcher choosing a weak
kernel signature scheme (hmac-md5) fails its launch with a clear reason."""

from __future__ import annotations

import asyncio
import json
import secrets
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from Crypto.PublicKey import RSA
from traitlets import TraitError

from yarn_gateway.provisioners.response_listener import LauncherResponseError, ResponseListener
from yarn_gateway.provisioners.services import YarnServices
from yarn_gateway_launchers import launcher_protocol as lp


@pytest.fixture(scope="module")
def rsa_key() -> RSA.RsaKey:
    return RSA.generate(2048)


@pytest.fixture
async def listener(rsa_key: RSA.RsaKey) -> AsyncIterator[ResponseListener]:
    rl = ResponseListener("127.0.0.1", private_key=rsa_key)
    await rl.start()
    yield rl
    await rl.stop()


def _plaintext(token: str, scheme: str = "hmac-sha256") -> dict[str, Any]:
    ci = {"ip": "127.0.0.1", "transport": "tcp", "signature_scheme": scheme,
          "key": secrets.token_hex(32), "shell_port": 50001, "iopub_port": 50002, "stdin_port": 50003,
          "control_port": 50004, "hb_port": 50005, "kernel_name": "python3"}
    return lp.build_response_plaintext(token, ci, 50006, 77, "worker1")


async def _send(rl: ResponseListener, data: bytes) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", rl.port)
    try:
        writer.write(data)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line, "the listener closed the connection without an answer"
        return dict(json.loads(line))
    finally:
        writer.close()


async def _good_launch(rl: ResponseListener) -> None:
    kid, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    fut = rl.register(kid, token)
    assert await _send(rl, lp.encrypt_response(kid, _plaintext(token), rl.public_key_b64)) == {"status": "ok"}
    assert (await asyncio.wait_for(fut, 1))["pid"] == 77


async def test_listener_answers_deeply_nested_json_and_keeps_serving(listener: ResponseListener) -> None:
    body = b"[" * 60000 + b"]" * 4000  # fits the 64 KiB limit, nests far past Python's recursion limit
    answer = await _send(listener, struct.pack(">I", len(body)) + body)
    assert answer["status"] == "error" and answer["reason"].startswith(lp.E_MALFORMED), answer
    assert "nested" in answer["reason"]

    # Nested plaintext inside a correctly encrypted frame for a waiting kernel: refused, the
    # launch keeps waiting (the frame proves nothing: anyone can encrypt to the public key).
    kid, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    fut = listener.register(kid, token)
    text = lp.canonical_json(_plaintext(token)).replace(b'"worker1"', b"[" * 3000 + b"]" * 3000)
    aes_key, nonce = secrets.token_bytes(32), secrets.token_bytes(12)
    wrapped = lp.rsa_wrap_key(lp.load_public_key(listener.public_key_b64), aes_key)
    frame = lp.encode_frame(kid, wrapped, nonce, lp.aes_gcm_encrypt(aes_key, nonce, kid, text))
    answer = await _send(listener, frame)
    assert answer["reason"].startswith(lp.E_INVALID) and "nested" in answer["reason"], answer
    assert not fut.done()
    listener.unregister(kid)

    for _ in range(3):
        await _good_launch(listener)


async def test_listener_refuses_a_weak_kernel_signature_scheme(listener: ResponseListener) -> None:
    kid, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    fut = listener.register(kid, token)
    frame = lp.encrypt_response(kid, _plaintext(token, "hmac-md5"), listener.public_key_b64)
    answer = await _send(listener, frame)
    assert answer.get("reason", "").startswith(lp.E_INVALID) and "hmac-md5" in answer["reason"], answer
    with pytest.raises(LauncherResponseError, match="signature_scheme 'hmac-md5' is not allowed"):
        await asyncio.wait_for(fut, 1)
    for scheme in ("hmac-sha1", "hmac-sha512", "", "none"):  # sha512 only when configured
        kid, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
        fut = listener.register(kid, token)
        answer = await _send(listener, lp.encrypt_response(kid, _plaintext(token, scheme), listener.public_key_b64))
        assert answer.get("reason", "").startswith(lp.E_INVALID), (scheme, answer)
        with pytest.raises(LauncherResponseError):
            await asyncio.wait_for(fut, 1)
    await _good_launch(listener)


async def test_listener_signature_scheme_allow_list(rsa_key: RSA.RsaKey) -> None:
    rl = ResponseListener("127.0.0.1", private_key=rsa_key, signature_schemes=("hmac-sha256", "hmac-sha512"))
    await rl.start()
    try:
        kid, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
        fut = rl.register(kid, token)
        frame = lp.encrypt_response(kid, _plaintext(token, "hmac-sha512"), rl.public_key_b64)
        assert await _send(rl, frame) == {"status": "ok"}
        assert (await asyncio.wait_for(fut, 1))["connection_info"]["signature_scheme"] == "hmac-sha512"
    finally:
        await rl.stop()
    with pytest.raises(ValueError, match="signature_schemes"):
        ResponseListener("127.0.0.1", signature_schemes=("hmac-sha256", "hmac-md5"))


def test_yarn_services_signature_scheme_setting() -> None:
    assert YarnServices().kernel_signature_schemes == ["hmac-sha256"]
    assert YarnServices(kernel_signature_schemes=["hmac-sha384"]).kernel_signature_schemes == ["hmac-sha384"]
    for bad in (["hmac-md5"], [], ["hmac-sha256", "sha256"]):
        with pytest.raises(TraitError, match="kernel_signature_schemes"):
            YarnServices(kernel_signature_schemes=bad)
