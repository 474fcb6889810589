"""The real R launcher (Rscript launch_IRkernel.R + its Python helper), locally without Spark:
it gets through a flooded response listener that also answers ``busy`` first, then runs a
cell and takes an interrupt while its control port is slow-drip flooded (issue 15, items 5
and 9). No cluster: mode ``none`` outside a YARN container."""

from __future__ import annotations

import asyncio
import secrets
import signal
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from jupyter_client.asynchronous import AsyncKernelClient

from helpers.curve_client import kernel_client
from helpers.floods import OTHER_HOST, BusyFront, Flood
from helpers.r_launcher import free_range, has_irkernel, start_r_launcher
from helpers.waiting import wait_until
from yarn_gateway.provisioners.control_client import send_control
from yarn_gateway.provisioners.response_listener import ResponseListener

DRIP = b'{"kernel_id": "' + b"x" * 400

pytestmark = pytest.mark.skipif(not has_irkernel(), reason="Rscript with IRkernel is not installed")


async def _result(kc: AsyncKernelClient, code: str) -> list[str]:
    results: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] in ("execute_result", "display_data"):
            results.append(msg["content"]["data"]["text/plain"])
        elif msg["msg_type"] == "stream":
            results.append(msg["content"]["text"])

    reply = await kc.execute_interactive(code, timeout=30, output_hook=hook)
    assert reply["content"]["status"] == "ok", reply["content"]
    return results


async def _idle(kc: AsyncKernelClient, msg_id: str, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await kc.get_iopub_msg(timeout=max(0.1, deadline - loop.time()))
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status" \
                and msg["content"]["execution_state"] == "idle":
            return


async def test_r_launcher_under_listener_and_control_floods(tmp_path: Path) -> None:
    lo, hi = free_range()
    listener = ResponseListener("127.0.0.1", f"{lo}..{hi}")
    await listener.start()
    kid, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    fut = listener.register(kid, token)
    proc = None
    try:
        async with Flood("127.0.0.1", listener.port, 100, source=OTHER_HOST), \
                Flood("127.0.0.1", listener.port, 30, source="127.0.0.1", churn=True), \
                BusyFront("127.0.0.1", listener.port, busy_first=2) as front:
            proc, log_path = await start_r_launcher(tmp_path, kid, token, front.address, listener.public_key_b64,
                                                    (lo, hi))
            exited = asyncio.ensure_future(proc.wait())
            done, _ = await asyncio.wait({fut, exited}, timeout=90, return_when=asyncio.FIRST_COMPLETED)
            assert fut in done, f"the R launcher did not report (exit {proc.returncode}):\n" \
                                f"{log_path.read_text(errors='replace')[-3000:]}"
            assert front.busy_sent == 2
            # The front stays up until the helper has its answer: a lost answer makes it retry.
            await wait_until(lambda: "connection info delivered" in log_path.read_text(errors="replace"), 30,
                             "the helper got the gateway's answer")
            helpers = psutil.Process(proc.pid).children()
            assert len(helpers) == 1 and "launch_r_helper.py" in " ".join(helpers[0].cmdline())
        info = fut.result()
        key, cport = str(info["connection_info"]["key"]), int(info["control_port"])
        # the default, CurveZMQ: IRkernel behind the helper's proxy, reached with the public key only
        assert info["connection_info"].get("curve_publickey")
        kc = kernel_client(info["connection_info"])
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            assert (await _result(kc, "1+1"))[-1] == "[1] 2"  # after the one-line notice (no Spark)
            async with Flood("127.0.0.1", cport, 20, source=OTHER_HOST, drip=DRIP, interval=0.4), \
                    Flood("127.0.0.1", cport, 20, source="127.0.0.1", drip=DRIP, interval=0.4, churn=True):
                await asyncio.sleep(0.5)
                msg_id = kc.execute("x <- 21; Sys.sleep(60)")
                await asyncio.sleep(2)
                answer = await send_control("127.0.0.1", cport, kid, key, "signal", int(signal.SIGINT), timeout=10)
                assert answer == {"status": "ok"}
                while True:
                    reply = await kc.get_shell_msg(timeout=10)
                    if reply["parent_header"].get("msg_id") == msg_id:
                        break
                # IRkernel aborts every shell request that arrives between an interrupted cell's
                # reply and its idle status, and sends no IOPub status for an aborted one: the next
                # cell goes only after that idle.
                await _idle(kc, msg_id)
                assert (await _result(kc, "x * 2"))[-1] == "[1] 42"
                assert await send_control("127.0.0.1", cport, kid, key, "shutdown", timeout=10) == {"status": "ok"}
            assert await asyncio.wait_for(proc.wait(), 30) == 0
            # With R gone, its helper goes too (it must not linger serving the control port).
            await wait_until(lambda: not helpers[0].is_running() or helpers[0].status() == psutil.STATUS_ZOMBIE, 10,
                             "the helper exited after R")
        finally:
            kc.stop_channels()
        logged = log_path.read_text(errors="replace")
        assert key not in logged and token not in logged
    finally:
        await listener.stop()
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
