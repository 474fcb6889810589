"""An interrupt that reaches an R kernel between cells must not end it.

IRkernel catches SIGINT only while it waits for a message and while a cell runs; one that lands
while it answers a request (sending a reply or its idle status) used to escape to the top level,
Rscript quit with status 1 and YARN marked the application FAILED. A notebook user meets it when
they press Interrupt as a cell ends, and the gateway itself interrupts a kernel when it shuts it
down right after a reply. The real R launcher runs locally (mode ``none``, no Spark); SIGINTs are
fired at it in bursts while requests go on."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest
from jupyter_client.asynchronous import AsyncKernelClient

from helpers.curve_client import kernel_client
from helpers.r_launcher import free_range, has_irkernel, start_r_launcher
from yarn_gateway.provisioners.control_client import send_control
from yarn_gateway.provisioners.response_listener import ResponseListener

pytestmark = pytest.mark.skipif(not has_irkernel(), reason="Rscript with IRkernel is not installed")


def _sigint_bursts(pid: int, stop: threading.Event, sent: list[int]) -> None:
    """SIGINT every 2 ms, so that some land while IRkernel is busy answering."""
    while not stop.is_set():
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        sent[0] += 1
        time.sleep(0.002)


async def test_sigints_between_cells_leave_the_r_kernel_running(tmp_path: Path) -> None:
    lo, hi = free_range()
    listener = ResponseListener("127.0.0.1", f"{lo}..{hi}")
    await listener.start()
    kid, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    fut = listener.register(kid, token)
    proc, log_path = await start_r_launcher(tmp_path, kid, token, f"127.0.0.1:{listener.port}",
                                            listener.public_key_b64, (lo, hi))
    kc: Optional[AsyncKernelClient] = None
    try:
        info = await asyncio.wait_for(fut, 90)
        r_pid, key, cport = int(info["pid"]), str(info["connection_info"]["key"]), int(info["control_port"])
        kc = kernel_client(info["connection_info"])  # CurveZMQ (the default) through the helper's proxy
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)
        stop, sent = threading.Event(), [0]
        firing = threading.Thread(target=_sigint_bursts, args=(r_pid, stop, sent), daemon=True)
        firing.start()
        answered = 0
        try:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and proc.returncode is None:
                kc.kernel_info()
                with_reply = asyncio.ensure_future(kc.get_shell_msg(timeout=1))
                try:
                    await with_reply
                    answered += 1
                except Exception:
                    pass
        finally:
            stop.set()
            firing.join()
        log = log_path.read_text(errors="replace")
        assert proc.returncode is None, f"the R kernel died (status {proc.returncode}) after {sent[0]} SIGINTs:\n" \
                                        f"{log[-3000:]}"
        assert sent[0] > 500 and answered > 20, (sent[0], answered)
        # It still works: drain what the bursts left behind, then a cell and a clean shutdown.
        await asyncio.sleep(0.5)
        while True:
            try:
                await kc.get_shell_msg(timeout=0.5)
            except Exception:
                break
        reply = await kc.execute_interactive("21 * 2", timeout=30)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert await send_control("127.0.0.1", cport, kid, key, "shutdown", timeout=10) == {"status": "ok"}
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if kc is not None:
            kc.stop_channels()
        await listener.stop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
