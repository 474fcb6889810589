"""The Toree launcher's Java protocol classes (launchers/scala, from the built jar) under the
floods of issue 15: Protocol.sendResponse retries a ``busy`` gateway and gets through a
flooded response listener; ControlServer keeps taking signals from the gateway while
slow-drip connections from another address and from the gateway's own address flood it.
Plain ``java`` and ``javac`` with the launcher jar, no Spark, no cluster."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from Crypto.PublicKey import RSA

from helpers.floods import OTHER_HOST, BusyFront, Flood
from helpers.waiting import wait_until
from yarn_gateway.provisioners.control_client import send_control
from yarn_gateway.provisioners.response_listener import ResponseListener
from yarn_gateway_launchers import launcher_protocol as lp

pytestmark = pytest.mark.jvm

PROBE_SRC = Path(__file__).with_name("ProtocolProbe.java")
DRIP = b'{"kernel_id": "' + b"x" * 400


@pytest.fixture(scope="module")
def probe_cp(launcher_jar: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    javac, java = shutil.which("javac"), shutil.which("java")
    if not javac or not java:
        pytest.skip("javac/java not on PATH")
    out = tmp_path_factory.mktemp("probe")
    r = subprocess.run([javac, "-d", str(out), "-cp", str(launcher_jar), str(PROBE_SRC)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return f"{out}:{launcher_jar}"


@pytest.fixture(scope="module")
def rsa_key() -> RSA.RsaKey:
    return RSA.generate(2048)


@pytest.fixture
async def listener(rsa_key: RSA.RsaKey) -> AsyncIterator[ResponseListener]:
    rl = ResponseListener("127.0.0.1", private_key=rsa_key)
    await rl.start()
    yield rl
    await rl.stop()


async def _java_send(cp: str, address: str, kid: str, public_key: str, token: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "java", "-cp", cp, "ProtocolProbe", "send", address, kid, public_key, token, "30000",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode().strip() + (f"\n{err.decode()[-2000:]}" if proc.returncode else "")


async def test_java_send_response_retries_busy_under_a_flooded_listener(probe_cp: str,
                                                                       listener: ResponseListener) -> None:
    kid, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    fut = listener.register(kid, token)
    async with Flood("127.0.0.1", listener.port, 100, source=OTHER_HOST), \
            Flood("127.0.0.1", listener.port, 30, source="127.0.0.1", churn=True), \
            BusyFront("127.0.0.1", listener.port, busy_first=3) as front:
        result = await _java_send(probe_cp, front.address, kid, listener.public_key_b64, token)
        assert result == "OK", result
        assert front.busy_sent == 3 and front.relayed >= 1
        info = await asyncio.wait_for(fut, 5)
        assert info["pid"] == 4242 and info["connection_info"]["kernel_name"] == "spark_scala"


async def test_java_control_server_takes_signals_under_a_slow_drip_flood(probe_cp: str) -> None:
    kid, key = "scala-kernel", secrets.token_hex(32)
    proc = await asyncio.create_subprocess_exec(
        "java", "-cp", probe_cp, "ProtocolProbe", "control", kid, key,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert first.startswith("PORT "), first
        port = int(first.split()[1])
        async with Flood("127.0.0.1", port, 20, source=OTHER_HOST, drip=DRIP, interval=0.4) as other, \
                Flood("127.0.0.1", port, 20, source="127.0.0.1", drip=DRIP, interval=0.4, churn=True):
            await asyncio.sleep(0.5)
            for _ in range(2):
                answer = await send_control("127.0.0.1", port, kid, key, "signal", int(signal.SIGUSR1), timeout=10)
                assert answer == {"status": "ok"}
                line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
                assert line == f"SIGNAL {int(signal.SIGUSR1)}"
            assert await send_control("127.0.0.1", port, kid, key, "ping", timeout=10) == {"status": "ok"}
            assert other.open_now <= 4
            # The drippers holding a slot are cut at the 5 s request deadline.
            await wait_until(lambda: other.open_now == 0, 8, interval=0.1,
                             what=lambda: f"the port cut the other address's drippers ({other.open_now} still open)")
        assert lp.E_TIMEOUT in other.stats.codes() and other.stats.codes() <= {lp.E_TIMEOUT, lp.E_BUSY}
        cut = [n for n, a in zip(other.stats.bytes_before_answer, other.stats.answers)
               if str(a.get("reason", "")).startswith(lp.E_TIMEOUT)]
        assert cut and max(cut) < 20
        # Deeply nested JSON: a clear answer, and the port keeps serving.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"[" * 4000 + b"\n")
        answer_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert b"bad_request" in answer_line
        assert await send_control("127.0.0.1", port, kid, key, "ping", timeout=10) == {"status": "ok"}
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
