"""The response listener under connection floods (issue 15, item 5): idle and slow-drip
connections from one address, from the launcher's own address, never stop a real launch
(the Python launcher's own ``send_response``); the listener stays within its caps; cheap
checks come before the RSA unwrap."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from Crypto.PublicKey import RSA

from helpers.floods import OTHER_HOST, Flood
from helpers.waiting import wait_until
from yarn_gateway.provisioners.response_listener import ResponseListener
from yarn_gateway_launchers import launcher_protocol as lp

DEFAULT_PER_SOURCE = 8


@pytest.fixture(scope="module")
def rsa_key() -> RSA.RsaKey:
    return RSA.generate(2048)


@pytest.fixture
async def listener(rsa_key: RSA.RsaKey) -> AsyncIterator[ResponseListener]:
    rl = ResponseListener("127.0.0.1", private_key=rsa_key)  # the gateway's defaults
    await rl.start()
    yield rl
    await rl.stop()


def _plaintext(token: str) -> dict[str, Any]:
    ci = {"ip": "127.0.0.1", "transport": "tcp", "signature_scheme": "hmac-sha256",
          "key": secrets.token_hex(32), "shell_port": 50001, "iopub_port": 50002, "stdin_port": 50003,
          "control_port": 50004, "hb_port": 50005, "kernel_name": "python3"}
    return lp.build_response_plaintext(token, ci, 50006, 4321, "worker1")


async def _launch(rl: ResponseListener, timeout: float = 30.0) -> dict[str, Any]:
    """What a launcher does: register (gateway side), then the real launcher code sends the
    frame from 127.0.0.1 in a thread, retrying as it does in a container."""
    kid, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    fut = rl.register(kid, token)
    frame = lp.encrypt_response(kid, _plaintext(token), rl.public_key_b64)
    answer = await asyncio.to_thread(lp.send_response, rl.address, frame, timeout)
    assert answer == {"status": "ok"}
    info = await asyncio.wait_for(fut, 1)
    assert info["pid"] == 4321
    return info


async def test_listener_idle_flood_from_one_address_does_not_stop_launches(listener: ResponseListener) -> None:
    # 100 idle connections (more than the 64 that used to make every launch fail) from one address.
    async with Flood("127.0.0.1", listener.port, 100, source=OTHER_HOST) as flood:
        await asyncio.sleep(0.2)
        for _ in range(3):
            await _launch(listener)
        # The flood holds at most its per-source share; everything else was evicted with "busy".
        assert listener.open_connections <= DEFAULT_PER_SOURCE
        assert flood.open_now <= DEFAULT_PER_SOURCE
        assert flood.stats.codes() <= {lp.E_BUSY}


async def test_listener_churning_flood_from_the_launchers_own_address(listener: ResponseListener) -> None:
    # The attacker shares the launcher's address, opens more connections than the listener has
    # slots, and reopens every connection the listener drops.
    async with Flood("127.0.0.1", listener.port, 80, source="127.0.0.1", churn=True) as flood:
        await asyncio.sleep(0.2)
        for _ in range(3):
            await _launch(listener)
        assert listener.open_connections <= DEFAULT_PER_SOURCE
        assert flood.stats.opened >= 80


async def test_listener_many_sources_stay_under_the_total_cap(rsa_key: RSA.RsaKey) -> None:
    # 8 addresses with 6 idle connections each: within the per-source cap, three times the total.
    rl = ResponseListener("127.0.0.1", private_key=rsa_key, max_connections=16)
    await rl.start()
    try:
        floods = [Flood("127.0.0.1", rl.port, 6, source=f"127.0.0.{10 + i}") for i in range(8)]
        for f in floods:
            await f.__aenter__()
        try:
            await asyncio.sleep(0.2)
            await _launch(rl)
            assert rl.open_connections <= 16
            assert sum(f.open_now for f in floods) <= 16
        finally:
            for f in floods:
                await f.__aexit__(None, None, None)
    finally:
        await rl.stop()


async def test_listener_first_bytes_deadline_cuts_a_slow_header(listener: ResponseListener) -> None:
    # One byte every 0.9 s: the 4-byte length prefix would be complete after 3.6 s, but it is
    # due within 2 s of connecting. Meanwhile a launch goes through.
    frame_start = struct.pack(">I", 100) + b"{" * 100
    n = DEFAULT_PER_SOURCE  # as many as one address may hold, so none is evicted
    async with Flood("127.0.0.1", listener.port, n, source=OTHER_HOST, drip=frame_start, interval=0.9) as flood:
        await _launch(listener)
        await wait_until(lambda: len(flood.stats.answers) == n, 10, interval=0.1,
                         what=lambda: f"all {n} slow headers were answered ({len(flood.stats.answers)} so far)")
    assert flood.stats.codes() == {lp.E_TIMEOUT}
    assert max(flood.stats.bytes_before_answer) < 4, "the length prefix must be due before it could arrive"


async def test_listener_whole_frame_deadline_cuts_a_slow_body(rsa_key: RSA.RsaKey) -> None:
    rl = ResponseListener("127.0.0.1", private_key=rsa_key, frame_timeout=1.5)
    await rl.start()
    try:
        frame_start = struct.pack(">I", 1000) + b" " * 1000
        async with Flood("127.0.0.1", rl.port, 1, drip=frame_start, interval=0.2) as flood:
            await wait_until(lambda: flood.stats.answers, 5, "the slow body was answered", interval=0.1)
        assert flood.stats.codes() == {lp.E_TIMEOUT}
        assert 4 <= flood.stats.bytes_before_answer[0] < 20
        await _launch(rl)
    finally:
        await rl.stop()


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


def _junk_key_frame(kernel_id: str) -> bytes:
    body = json.dumps({"version": lp.PROTOCOL_VERSION, "kernel_id": kernel_id,
                       "key": base64.b64encode(b"\x01" * 256).decode(),
                       "nonce": base64.b64encode(b"\x00" * 12).decode(),
                       "ciphertext": base64.b64encode(b"\x00" * 64).decode()}).encode()
    return struct.pack(">I", len(body)) + body


async def test_listener_checks_the_kernel_id_before_the_rsa_unwrap(listener: ResponseListener) -> None:
    # A frame for no waiting kernel is refused by name, without trying to unwrap its (junk) key.
    answer = await _send(listener, _junk_key_frame(str(uuid.uuid4())))
    assert answer["reason"].startswith(lp.E_UNKNOWN_KERNEL), answer
    # For a waiting kernel the unwrap runs and fails; the launch keeps waiting for the real frame.
    kid = str(uuid.uuid4())
    fut = listener.register(kid, "the-token")
    answer = await _send(listener, _junk_key_frame(kid))
    assert answer["reason"].startswith(lp.E_DECRYPT), answer
    assert not fut.done()
    listener.unregister(kid)


def test_listener_connection_limiter_semantics() -> None:
    lim = lp.ConnectionLimiter(max_total=3, max_per_source=2)
    assert lim.admit("a", "a1") == (True, None)
    assert lim.admit("a", "a2") == (True, None)
    # Per-source cap: the oldest of that source that is still reading goes.
    assert lim.admit("a", "a3") == (True, "a1")
    assert not lim.done_reading("a1")  # evicted: its request must not be carried out
    assert lim.done_reading("a2")
    assert lim.admit("a", "a4") == (True, "a3")  # a2 is past reading: never evicted
    lim.done_reading("a4")
    assert lim.admit("a", "a5") == (False, None)  # every slot of "a" is past reading
    # Total cap: the oldest reading connection of any source goes; another source's
    # finished connections are safe.
    assert lim.admit("b", "b1") == (True, None)
    assert lim.admit("c", "c1") == (True, "b1")
    assert lim.release("a2") and not lim.release("b1")
    assert len(lim) == 2 and lim.holds("c1") and not lim.holds("a1")
