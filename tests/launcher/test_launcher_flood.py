"""The real Python launcher (launch_ipykernel.py) starts, runs a cell and takes an interrupt
while the response listener and then its own control port are flooded (issue 15, items 5
and 9); it retries a gateway that answers ``busy``."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient

from helpers.curve_client import kernel_client
from helpers.floods import OTHER_HOST, BusyFront, Flood
from yarn_gateway.provisioners.control_client import send_control
from yarn_gateway.provisioners.response_listener import ResponseListener
from yarn_gateway_launchers import launcher_protocol as lp

LAUNCHER = Path(__file__).resolve().parents[2] / "launchers" / "python" / "launch_ipykernel.py"
DRIP = b'{"kernel_id": "' + b"x" * 400


def _free_range(width: int = 60) -> tuple[int, int]:
    (s,) = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1")
    base = s.getsockname()[1]
    s.close()
    lo = min(base, 65535 - width)
    return lo, lo + width


@asynccontextmanager
async def _launcher(tmp_path: Path, listener: ResponseListener, response_address: str,
                    port_range: tuple[int, int]) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, Any],
                                                                        str]]:
    kernel_id, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    fut = listener.register(kernel_id, token)
    log_path = tmp_path / f"launcher-{kernel_id}.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(LAUNCHER), "--kernel-id", kernel_id, "--response-address", response_address,
            "--public-key", listener.public_key_b64, "--port-range", f"{port_range[0]}..{port_range[1]}",
            "--spark-context-initialization-mode", "none",
            env=dict(os.environ, KERNEL_LAUNCH_TOKEN=token, KERNEL_LAUNCH_TIMEOUT="60"),
            stdout=log_file, stderr=log_file, cwd=str(tmp_path),
        )
    try:
        exited = asyncio.ensure_future(proc.wait())
        done, _ = await asyncio.wait({fut, exited}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        assert fut in done, f"the launcher did not report (exit {proc.returncode}):\n{log_path.read_text()[-3000:]}"
        yield proc, fut.result(), kernel_id
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def _run(kc: AsyncKernelClient, code: str) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "execute_result":
            out["result"] = msg["content"]["data"]["text/plain"]

    reply = await kc.execute_interactive(code, timeout=30, output_hook=hook)
    out["status"] = reply["content"]["status"]
    return out


async def test_launcher_starts_and_interrupts_under_floods(tmp_path: Path) -> None:
    lo, hi = _free_range()
    listener = ResponseListener("127.0.0.1", f"{lo}..{hi}")
    await listener.start()
    try:
        # More idle connections than the listener's 64 slots from another address, plus a
        # churning flood from the launcher's own address.
        async with Flood("127.0.0.1", listener.port, 100, source=OTHER_HOST), \
                Flood("127.0.0.1", listener.port, 30, source="127.0.0.1", churn=True), \
                _launcher(tmp_path, listener, listener.address, (lo, hi)) as (proc, info, kid):
            kc = kernel_client(info["connection_info"])  # CurveZMQ with the kernel's public key
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=30)
                assert (await _run(kc, "1+1"))["result"] == "2"
                key = str(info["connection_info"]["key"])
                cport = int(info["control_port"])
                # Now slow-drip floods on the control port, from elsewhere and from the gateway's address.
                async with Flood("127.0.0.1", cport, 20, source=OTHER_HOST, drip=DRIP, interval=0.4), \
                        Flood("127.0.0.1", cport, 20, source="127.0.0.1", drip=DRIP, interval=0.4, churn=True):
                    await asyncio.sleep(0.5)
                    msg_id = kc.execute("import time; time.sleep(60)", stop_on_error=False)
                    while True:
                        msg = await kc.get_iopub_msg(timeout=10)
                        if msg["msg_type"] == "execute_input" and msg["parent_header"].get("msg_id") == msg_id:
                            break
                    await asyncio.sleep(0.3)
                    answer = await send_control("127.0.0.1", cport, kid, key, "signal", int(signal.SIGINT), timeout=10)
                    assert answer == {"status": "ok"}
                    while True:
                        reply = await kc.get_shell_msg(timeout=10)
                        if reply["parent_header"].get("msg_id") == msg_id:
                            break
                    assert reply["content"]["ename"] == "KeyboardInterrupt"
                    assert (await _run(kc, "21*2"))["result"] == "42"
                    assert await send_control("127.0.0.1", cport, kid, key, "shutdown", timeout=10) == {"status": "ok"}
                assert await asyncio.wait_for(proc.wait(), 30) == 0
            finally:
                kc.stop_channels()
    finally:
        await listener.stop()


async def test_launcher_retries_a_busy_gateway(tmp_path: Path) -> None:
    lo, hi = _free_range()
    listener = ResponseListener("127.0.0.1", f"{lo}..{hi}")
    await listener.start()
    try:
        async with BusyFront("127.0.0.1", listener.port, busy_first=3) as front, \
                _launcher(tmp_path, listener, front.address, (lo, hi)) as (proc, info, kid):
            assert front.busy_sent == 3 and front.relayed >= 1
            key = str(info["connection_info"]["key"])
            assert await send_control("127.0.0.1", info["control_port"], kid, key, "shutdown") == {"status": "ok"}
            assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        await listener.stop()
