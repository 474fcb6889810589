"""ResponseListener with real sockets: hostile clients are rejected while a real launch
response for another kernel is accepted on time."""

from __future__ import annotations

import asyncio
import json
import secrets
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Optional

import pytest
from Crypto.PublicKey import RSA

from yarn_gateway.provisioners.response_listener import LauncherResponseError, ResponseListener
from yarn_gateway_launchers import launcher_protocol as lp

SLOW_DEADLINE = 3.0


@pytest.fixture(scope="module")
def rsa_key() -> RSA.RsaKey:
    return RSA.generate(2048)


def _free_range(width: int = 50) -> tuple[int, int]:
    (s,) = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1")
    base = s.getsockname()[1]
    s.close()
    lo = min(base, 65535 - width)
    return lo, lo + width


@pytest.fixture
async def listener(rsa_key: RSA.RsaKey) -> AsyncIterator[ResponseListener]:
    lo, hi = _free_range()
    rl = ResponseListener("127.0.0.1", f"{lo}..{hi}", private_key=rsa_key, frame_timeout=SLOW_DEADLINE,
                          first_byte_timeout=SLOW_DEADLINE, max_connections=16)
    await rl.start()
    yield rl
    await rl.stop()


def _plaintext(token: str) -> dict[str, Any]:
    ci = {"ip": "127.0.0.1", "transport": "tcp", "signature_scheme": "hmac-sha256",
          "key": secrets.token_hex(32), "shell_port": 50001, "iopub_port": 50002, "stdin_port": 50003,
          "control_port": 50004, "hb_port": 50005, "kernel_name": "python3"}
    return lp.build_response_plaintext(token, ci, 50006, 1234, "worker1")


async def _send(rl: ResponseListener, data: bytes, read_timeout: float = 10) -> Optional[dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", rl.port)
    try:
        writer.write(data)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), read_timeout)
        return json.loads(line) if line else None
    finally:
        writer.close()


def test_protocol_listener_properties(listener: ResponseListener) -> None:
    lo, hi = listener.port_range
    assert lo <= listener.port <= hi
    assert listener.address == f"127.0.0.1:{listener.port}"
    assert lp.load_public_key(listener.public_key_b64).size_in_bits() == 2048


async def test_protocol_listener_hostile_clients_do_not_delay_launch(listener: ResponseListener) -> None:
    good_id, good_token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    victim_id, victim_token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    good_fut = listener.register(good_id, good_token)
    victim_fut = listener.register(victim_id, victim_token)
    pub = listener.public_key_b64

    # A slow client that connects and never sends, opened first.
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", listener.port)
    slow_started = time.monotonic()

    wrong_token = lp.encrypt_response(victim_id, _plaintext("guessed-token"), pub)
    other = bytearray(lp.encrypt_response(victim_id, _plaintext(victim_token), pub))
    body = json.loads(bytes(other[4:]))
    body["version"] = lp.PROTOCOL_VERSION + 1
    raw = json.dumps(body).encode()
    other_version = struct.pack(">I", len(raw)) + raw
    hostile = [
        _send(listener, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        _send(listener, struct.pack(">I", 10 * 1024 * 1024) + b"x" * 100),
        _send(listener, wrong_token),
        _send(listener, other_version),
        _send(listener, struct.pack(">I", 20) + b"\xff" * 20),
    ]
    good_frame = lp.encrypt_response(good_id, _plaintext(good_token), pub)
    t0 = time.monotonic()
    answers = await asyncio.gather(_send(listener, good_frame), *hostile)
    info = await asyncio.wait_for(good_fut, 1)
    elapsed = time.monotonic() - t0
    assert elapsed < SLOW_DEADLINE / 3, "the valid launch waited for a hostile client"

    assert answers[0] == {"status": "ok"}
    assert info["connection_info"]["ip"] == "127.0.0.1" and "launch_token" not in info
    assert info["control_port"] == 50006 and info["pid"] == 1234
    reasons = [a["reason"] for a in answers[1:] if a]
    assert answers[1] is not None and answers[1]["status"] == "error"  # junk: length prefix is huge
    assert answers[1]["reason"].startswith(lp.E_OVERSIZE)
    assert answers[2] is not None and answers[2]["reason"].startswith(lp.E_OVERSIZE)
    assert answers[3] is not None and answers[3]["reason"].startswith(lp.E_BAD_TOKEN)
    assert answers[4] is not None and answers[4]["reason"].startswith(lp.E_BAD_VERSION)
    assert f"version {lp.PROTOCOL_VERSION}" in answers[4]["reason"]
    assert answers[5] is not None and answers[5]["reason"].startswith(lp.E_MALFORMED)
    assert all(good_token not in r and victim_token not in r for r in reasons)
    assert not victim_fut.done(), "a forged frame must not settle the victim's launch"

    # Replaying the accepted frame is refused.
    replay = await _send(listener, good_frame)
    assert replay is not None and replay["reason"].startswith(lp.E_DUPLICATE)

    # The slow client is cut off at the frame deadline with an error answer.
    line = await asyncio.wait_for(slow_reader.readline(), SLOW_DEADLINE + 2)
    assert json.loads(line)["reason"].startswith(lp.E_TIMEOUT)
    assert time.monotonic() - slow_started >= SLOW_DEADLINE - 0.2
    slow_writer.close()

    # The victim still launches with its real token.
    ok = await _send(listener, lp.encrypt_response(victim_id, _plaintext(victim_token), pub))
    assert ok == {"status": "ok"}
    assert (await asyncio.wait_for(victim_fut, 1))["hostname"] == "worker1"


async def test_protocol_listener_unknown_kernel_and_unregister(listener: ResponseListener) -> None:
    kid, token = str(uuid.uuid4()), "t" * 43
    frame = lp.encrypt_response(kid, _plaintext(token), listener.public_key_b64)
    answer = await _send(listener, frame)
    assert answer is not None and answer["reason"].startswith(lp.E_UNKNOWN_KERNEL)
    fut = listener.register(kid, token)
    listener.unregister(kid)
    assert fut.cancelled()
    answer = await _send(listener, frame)
    assert answer is not None and answer["reason"].startswith(lp.E_UNKNOWN_KERNEL)


async def test_protocol_listener_invalid_plaintext_fails_launch(listener: ResponseListener) -> None:
    kid, token = str(uuid.uuid4()), "t" * 43
    fut = listener.register(kid, token)
    plain = _plaintext(token)
    plain["connection_info"]["ip"] = "0.0.0.0"
    answer = await _send(listener, lp.encrypt_response(kid, plain, listener.public_key_b64))
    assert answer is not None and answer["reason"].startswith(lp.E_INVALID)
    with pytest.raises(LauncherResponseError, match="reachable"):
        await asyncio.wait_for(fut, 1)


async def test_protocol_listener_connection_cap_evicts_the_oldest_idle(rsa_key: RSA.RsaKey) -> None:
    rl = ResponseListener("127.0.0.1", private_key=rsa_key, frame_timeout=5, max_connections=2)
    await rl.start()
    try:
        holders = []
        for _ in range(2):
            holders.append(await asyncio.open_connection("127.0.0.1", rl.port))
            await asyncio.sleep(0.05)
        # A third connection with a real frame takes the oldest idle holder's slot.
        kid, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
        fut = rl.register(kid, token)
        answer = await _send(rl, lp.encrypt_response(kid, _plaintext(token), rl.public_key_b64))
        assert answer == {"status": "ok"}
        assert (await asyncio.wait_for(fut, 1))["pid"] == 1234
        first = await asyncio.wait_for(holders[0][0].readline(), 2)
        assert json.loads(first)["reason"].startswith(lp.E_BUSY)
        assert rl.open_connections <= 2
        for _, w in holders:
            w.close()
    finally:
        await rl.stop()


async def test_protocol_listener_fixed_port_and_stop(rsa_key: RSA.RsaKey) -> None:
    lo, _ = _free_range(1)
    rl = ResponseListener("127.0.0.1", port=lo, private_key=rsa_key)
    await rl.start()
    assert rl.port == lo
    fut = rl.register("k", "tok")
    await rl.stop()
    assert fut.cancelled()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", lo)
