"""launch_ipykernel.py end to end: a real launcher process, a real ResponseListener, a real
jupyter_client kernel client and the real control client."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq
from jupyter_client.asynchronous import AsyncKernelClient

from helpers.curve_client import kernel_client, shell_answers
from helpers.sniff import MARKER_CELL, LoopbackCapture, capture_available, clear_text_of_marker_cell
from yarn_gateway.provisioners.control_client import ControlRequestError, send_control
from yarn_gateway.provisioners.response_listener import ResponseListener
from yarn_gateway_launchers import launcher_protocol as lp

LAUNCHER = Path(__file__).resolve().parents[2] / "launchers" / "python" / "launch_ipykernel.py"
CLUSTER_PYTHON = Path(
    os.environ.get("YARN_GATEWAY_CLUSTER_ENV", "/opt/yarn-gateway-dev/cluster-venv")
) / "bin" / "python"


def _free_range(width: int = 60) -> tuple[int, int]:
    (s,) = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1")
    base = s.getsockname()[1]
    s.close()
    lo = min(base, 65535 - width)
    return lo, lo + width


@dataclass
class Launched:
    proc: asyncio.subprocess.Process
    kernel_id: str
    token: str
    info: dict[str, Any]
    port_range: tuple[int, int]
    log_path: Path
    kc: AsyncKernelClient = field(init=False)

    @property
    def key(self) -> str:
        return str(self.info["connection_info"]["key"])

    async def control(self, request: str, signum: Any = None) -> dict[str, Any]:
        return await send_control("127.0.0.1", self.info["control_port"], self.kernel_id, self.key, request,
                                  signum, timeout=10)


async def _launch(tmp_path: Path, python: str, mode: str, extra_env: dict[str, str] | None = None,
                  encryption: str = "curve") -> AsyncIterator[Launched]:
    lo, hi = _free_range()
    listener = ResponseListener("127.0.0.1", f"{lo}..{hi}")
    await listener.start()
    kernel_id, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    fut = listener.register(kernel_id, token)
    log_path = tmp_path / "launcher.log"
    env = dict(os.environ, KERNEL_LAUNCH_TOKEN=token, **(extra_env or {}))
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            python, str(LAUNCHER), "--kernel-id", kernel_id, "--response-address", listener.address,
            "--public-key", listener.public_key_b64, "--port-range", f"{lo}..{hi}",
            "--spark-context-initialization-mode", mode, "--transport-encryption", encryption,
            env=env, stdout=log_file, stderr=log_file, cwd=str(tmp_path),
        )
    try:
        info = await asyncio.wait_for(fut, 60)
        launched = Launched(proc, kernel_id, token, info, (lo, hi), log_path)
        launched.kc = kernel_client(info["connection_info"])
        launched.kc.start_channels()
        await launched.kc.wait_for_ready(timeout=30)
        yield launched
        launched.kc.stop_channels()
    finally:
        await listener.stop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def kernel(tmp_path: Path) -> AsyncIterator[Launched]:
    async for launched in _launch(tmp_path, sys.executable, "none"):
        yield launched


async def _execute(kc: AsyncKernelClient, code: str, timeout: float = 30) -> dict[str, Any]:
    """Run code; return {"status", "result" (text/plain), "ename"}."""
    out: dict[str, Any] = {}

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "execute_result":
            out["result"] = msg["content"]["data"]["text/plain"]

    reply = await kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    out["status"] = reply["content"]["status"]
    out["ename"] = reply["content"].get("ename")
    return out


async def _raw_control(port: int, req: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(json.dumps(req).encode() + b"\n")
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return json.loads(line)


def _listen_ports(pid: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


async def test_launcher_end_to_end_without_spark(kernel: Launched) -> None:
    kc = kernel.kc
    assert (await _execute(kc, "1+1"))["result"] == "2"

    # Every listening port of the launcher lies in the range: 5 ZMQ ports + control port.
    ports = _listen_ports(kernel.info["pid"])
    lo, hi = kernel.port_range
    ci = kernel.info["connection_info"]
    expected = {ci[p] for p in lp.CONNECTION_INFO_PORTS} | {kernel.info["control_port"]}
    assert ports == expected and len(ports) == 6
    assert all(lo <= p <= hi for p in ports)

    # The token left the environment; the key is not a uuid.
    assert (await _execute(kc, "import os; 'KERNEL_LAUNCH_TOKEN' in os.environ"))["result"] == "False"
    assert len(kernel.key) == 64 and "-" not in kernel.key

    # Interrupt a long cell through the control port.
    # stop_on_error=False: the next request must not be aborted along with the interrupted one.
    msg_id = kc.execute("import time; time.sleep(60)", stop_on_error=False)
    while True:  # wait until the cell is running
        msg = await kc.get_iopub_msg(timeout=10)
        if msg["msg_type"] == "execute_input" and msg["parent_header"].get("msg_id") == msg_id:
            break
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    assert await kernel.control("signal", int(signal.SIGINT)) == {"status": "ok"}
    while True:
        reply = await kc.get_shell_msg(timeout=10)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert time.monotonic() - t0 < 5
    after = await _execute(kc, "21*2")
    assert after.get("result") == "42", after
    assert await kernel.control("ping") == {"status": "ok"}

    # The control port refuses forged, stale and replayed requests.
    port = kernel.info["control_port"]
    good = lp.sign_control_request(kernel.kernel_id, kernel.key, "ping")
    assert (await _raw_control(port, good))["status"] == "ok"
    replay = await _raw_control(port, good)
    assert replay["status"] == "error" and replay["reason"].startswith(lp.E_REPLAY)
    bad_mac = lp.sign_control_request(kernel.kernel_id, "not-the-key", "shutdown")
    assert (await _raw_control(port, bad_mac))["reason"].startswith(lp.E_BAD_MAC)
    stale = lp.sign_control_request(kernel.kernel_id, kernel.key, "shutdown", ts=int(time.time()) - 90)
    assert (await _raw_control(port, stale))["reason"].startswith(lp.E_STALE_TS)
    with pytest.raises(ControlRequestError, match="bad_mac"):
        await send_control("127.0.0.1", port, kernel.kernel_id, "wrong", "ping")
    assert kernel.proc.returncode is None

    # Shutdown ends the process with 0, and nothing secret was logged.
    assert await kernel.control("shutdown") == {"status": "ok"}
    assert await asyncio.wait_for(kernel.proc.wait(), 30) == 0
    logged = kernel.log_path.read_text(errors="replace")
    assert kernel.key not in logged and kernel.token not in logged
    with pytest.raises(ControlRequestError, match="refused"):
        await kernel.control("ping")


async def test_launcher_kernel_shutdown_request_exits_zero(kernel: Launched) -> None:
    kernel.kc.shutdown()
    assert await asyncio.wait_for(kernel.proc.wait(), 30) == 0


async def test_launcher_without_token_fails(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KERNEL_LAUNCH_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(LAUNCHER), "--kernel-id", "k", "--response-address", "127.0.0.1:9",
        "--public-key", "AAAA", "--port-range", "0..0", "--spark-context-initialization-mode", "none",
        env=env, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and b"KERNEL_LAUNCH_TOKEN" in err


async def test_launcher_rejected_response_exits_nonzero(tmp_path: Path) -> None:
    lo, hi = _free_range()
    listener = ResponseListener("127.0.0.1", f"{lo}..{hi}")
    await listener.start()
    try:
        kid = str(uuid.uuid4())
        fut = listener.register(kid, "the-real-token")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(LAUNCHER), "--kernel-id", kid, "--response-address", listener.address,
            "--public-key", listener.public_key_b64, "--port-range", f"{lo}..{hi}",
            "--spark-context-initialization-mode", "none",
            env=dict(os.environ, KERNEL_LAUNCH_TOKEN="a-forged-token"), stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 1 and b"bad_token" in err
        assert not fut.done()
    finally:
        await listener.stop()


@pytest.mark.jvm
@pytest.mark.skipif(not CLUSTER_PYTHON.exists(), reason="cluster venv (make cluster-env) not built")
async def test_launcher_lazy_spark(tmp_path: Path) -> None:
    env = {"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": str(CLUSTER_PYTHON),
           "PYSPARK_SUBMIT_ARGS": "--master local[1] --conf spark.ui.enabled=false pyspark-shell"}
    async for k in _launch(tmp_path, str(CLUSTER_PYTHON), "lazy", env):
        kc = k.kc
        # While the session starts, kernel_info and completion answer at once.
        t0 = time.monotonic()
        await kc.kernel_info(reply=True, timeout=5)
        reply = await kc.complete("sc.", 3, reply=True, timeout=5)
        assert reply["content"]["status"] == "ok"
        await kc.complete("spark.ra", 8, reply=True, timeout=5)
        await kc.inspect("sc", 2, reply=True, timeout=5)
        assert time.monotonic() - t0 < 5  # the acceptance bound
        # ... and they did so while the session was still starting (still the proxies).
        assert (await _execute(kc, "type(sc).__name__, type(spark).__name__"))["result"] == \
            "('LazySpark', 'LazySpark')"
        assert (await _execute(kc, "spark.range(10).count()", timeout=120))["result"] == "10"
        assert (await _execute(kc, "type(sc).__name__"))["result"] == "'SparkContext'"

        # Interrupt cancels the running Spark job and the kernel stays usable.
        msg_id = kc.execute("import time\nsc.parallelize(range(1000), 2).map(lambda x: time.sleep(0.1)).count()")
        await asyncio.sleep(3)  # the job is running (1000 x 0.1 s on 2 tasks takes ~50 s)
        t1 = time.monotonic()
        assert await k.control("signal", int(signal.SIGINT)) == {"status": "ok"}
        while True:
            reply = await kc.get_shell_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        assert reply["content"]["ename"] == "KeyboardInterrupt", reply["content"].get("ename")
        assert time.monotonic() - t1 < 5
        await asyncio.sleep(1)
        assert (await _execute(kc, "list(sc.statusTracker().getActiveJobsIds())"))["result"] == "[]"
        assert (await _execute(kc, "sc.parallelize(range(5)).sum()", timeout=60))["result"] == "10"
        # Besides the six protocol ports, the only listener is py4j's callback server,
        # which PySpark always binds on loopback at a random port (not reachable from
        # the cluster, so not a firewall concern).
        ci = k.info["connection_info"]
        protocol_ports = {ci[p] for p in lp.CONNECTION_INFO_PORTS} | {k.info["control_port"]}
        listeners = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(k.info["pid"]).net_connections(
            kind="inet") if c.status == psutil.CONN_LISTEN}
        assert protocol_ports <= {port for _, port in listeners}
        assert all(k.port_range[0] <= p <= k.port_range[1] for p in protocol_ports)
        others = [(ip, port) for ip, port in listeners if port not in protocol_ports]
        assert len(others) <= 1 and all(ip == "127.0.0.1" for ip, _ in others), others
        assert await k.control("shutdown") == {"status": "ok"}
        assert await asyncio.wait_for(k.proc.wait(), 60) == 0


@pytest.mark.jvm
@pytest.mark.skipif(not CLUSTER_PYTHON.exists(), reason="cluster venv (make cluster-env) not built")
async def test_launcher_eager_spark(tmp_path: Path) -> None:
    env = {"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": str(CLUSTER_PYTHON),
           "PYSPARK_SUBMIT_ARGS": "--master local[1] --conf spark.ui.enabled=false pyspark-shell"}
    async for k in _launch(tmp_path, str(CLUSTER_PYTHON), "eager", env):
        # The session existed before the launcher reported back.
        assert (await _execute(k.kc, "type(spark).__name__, type(sc).__name__"))["result"] == \
            "('SparkSession', 'SparkContext')"
        assert (await _execute(k.kc, "spark.range(7).count()", timeout=60))["result"] == "7"
        assert await k.control("shutdown") == {"status": "ok"}
        assert await asyncio.wait_for(k.proc.wait(), 60) == 0


# -- CurveZMQ (launcher protocol v2): what the network sees, who may talk to the kernel --------------------



async def _marker_cell_through_tap(k: Launched) -> tuple[str, Any]:
    ci = k.info["connection_info"]
    ports = {ci[p] for p in lp.CONNECTION_INFO_PORTS}
    printed: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])

    with LoopbackCapture(ports) as tap:
        reply = await k.kc.execute_interactive(MARKER_CELL, timeout=30, output_hook=hook)
        await asyncio.sleep(0.3)  # the last packets reach the tap
    assert reply["content"]["status"] == "ok"
    return "".join(printed), tap


async def test_curve_kernel_ports_show_nothing_in_clear_and_answer_only_its_public_key(tmp_path: Path) -> None:
    async for k in _launch(tmp_path, sys.executable, "none"):
        ci = k.info["connection_info"]
        public = ci["curve_publickey"]
        assert len(public) == 40 and "curve_secretkey" not in ci  # the secret stays in the container
        if capture_available():
            printed, tap = await _marker_cell_through_tap(k)
            assert printed == "secret-marker\n"  # intact at the client
            assert tap.payload_bytes > 300, "the tap saw the cell's traffic"
            assert not clear_text_of_marker_cell(tap.payload())
        # The HMAC key alone opens nothing: a NULL client, and a CurveZMQ client with another server key.
        other_public, _ = zmq.curve_keypair()
        assert not await asyncio.to_thread(shell_answers, "127.0.0.1", ci["shell_port"], k.key, None)
        assert not await asyncio.to_thread(shell_answers, "127.0.0.1", ci["shell_port"], k.key, other_public)
        # With the kernel's public key, the same request is answered (the test can tell the two apart).
        assert await asyncio.to_thread(shell_answers, "127.0.0.1", ci["shell_port"], k.key, public.encode())
        assert (await _execute(k.kc, "6*7"))["result"] == "42"  # the refused clients changed nothing
        logged = k.log_path.read_text(errors="replace")
        assert "CurveZMQ" in logged and k.key not in logged


async def test_encryption_none_is_plain_zmq_as_before(tmp_path: Path) -> None:
    async for k in _launch(tmp_path, sys.executable, "none", encryption="none"):
        ci = k.info["connection_info"]
        assert "curve_publickey" not in ci
        assert await asyncio.to_thread(shell_answers, "127.0.0.1", ci["shell_port"], k.key, None)
        if capture_available():  # the control for the tap: without CurveZMQ it does see the marker
            printed, tap = await _marker_cell_through_tap(k)
            assert printed == "secret-marker\n" and clear_text_of_marker_cell(tap.payload()) == ["code", "output"]
