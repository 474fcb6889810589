"""The floor: kernels started and driven by jupyter_client inside the bench process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any, Optional

import zmq
from bench_common import KERNEL_NAME, CellResult, KernelHandle, StreamSink, Target
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

DELIM = b"<IDS|MSG>"


def parse_frames(frames: list[bytes]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(header, parent_header, content) of a raw kernel message.

    The same work the gateway client does per message (one JSON decode of each part),
    without jupyter_client's per-message HMAC check and date parsing, so that the floor
    is not slowed by client-side costs the gateway targets do not pay."""
    i = frames.index(DELIM)
    return json.loads(frames[i + 2]), json.loads(frames[i + 3]), json.loads(frames[i + 5])


class DirectKernel(KernelHandle):
    """A kernel owned by an AsyncKernelManager, reached with an AsyncKernelClient.

    ``lean`` (the default floor) receives on the client's zmq sockets and decodes with
    :func:`parse_frames`; otherwise messages go through ``get_iopub_msg``/``get_shell_msg``
    (poll, recv, HMAC check, date parsing)."""

    def __init__(self, km: AsyncKernelManager, lean: bool = True) -> None:
        self.km = km
        self.kc: Any = None
        self.lean = lean

    async def _next(self, channel: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(header, parent_header, content) of the next message on shell or iopub."""
        if self.lean:
            sock = (self.kc.shell_channel if channel == "shell" else self.kc.iopub_channel).socket
            return parse_frames(await sock.recv_multipart())
        msg = await (self.kc.get_shell_msg() if channel == "shell" else self.kc.get_iopub_msg())
        return msg["header"], msg["parent_header"], msg["content"]

    async def connect(self) -> None:
        if self.kc is None:
            self.kc = self.km.client()
            # No receive high-water mark on the client's sockets (the default 1000 drops iopub
            # messages whenever this process falls behind a burst): a lossy floor is no floor.
            self.kc.context.setsockopt(zmq.RCVHWM, 0)
            self.kc.start_channels()

    async def run_cell(
        self, code: str, on_stream: Optional[StreamSink] = None, wait_idle: bool = True
    ) -> CellResult:
        await self.connect()
        kc = self.kc
        msg_id = kc.execute(code, store_history=False)
        reply: dict[str, Any] = {}

        async def wait_reply() -> None:
            while True:
                _, parent, content = await self._next("shell")
                if parent.get("msg_id") == msg_id:
                    reply["status"] = content["status"]
                    reply["t"] = time.perf_counter()
                    return

        if not wait_idle:
            await wait_reply()
            return CellResult(reply["status"], reply["t"], None, 1, 0)
        # iopub is read while the cell runs (not after the reply): a SUB socket left
        # unread past its high-water mark drops messages, which would make the floor lossy.
        reply_task = asyncio.ensure_future(wait_reply())
        n_msgs = n_stream = 0
        try:
            while True:
                header, parent, content = await self._next("iopub")
                if parent.get("msg_id") != msg_id:
                    continue
                n_msgs += 1
                msg_type = header["msg_type"]
                if msg_type == "stream":
                    n_stream += 1
                    if on_stream is not None:
                        on_stream(content["text"])
                elif msg_type == "status" and content["execution_state"] == "idle":
                    t_idle = time.perf_counter()
                    break
            await reply_task
        finally:
            if not reply_task.done():
                reply_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reply_task
        return CellResult(reply["status"], reply["t"], t_idle, n_msgs + 1, n_stream)

    async def disconnect(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None

    async def shutdown(self) -> None:
        await self.disconnect()
        with contextlib.suppress(Exception):
            if self.km.has_kernel:
                await self.km.shutdown_kernel(now=True)


class DirectTarget(Target):
    """The floor. ``curve``: the kernels are started with ``transport_encryption="required"``
    (the kernelspec in ``kernels_dir`` must declare ``supported_encryption: ["curve"]``), so
    jupyter_client's client sockets are CurveZMQ clients of the kernel (it uses the key pair
    of the connection file for them)."""

    key = "direct"
    label = "direct jupyter_client"

    def __init__(self, kernels_dir: Path, lean: bool = True, curve: bool = False) -> None:
        self.lean = lean
        self.curve = curve
        if not lean:
            self.key, self.label = "direct-api", "direct (jupyter_client API)"
        if curve:
            self.key, self.label = self.key + "-curve", self.label + ", CurveZMQ"
        self.ksm = KernelSpecManager(kernel_dirs=[str(kernels_dir)], ensure_native_kernel=False)
        self.kernels: list[DirectKernel] = []

    async def setup(self) -> None:
        self.ksm.get_kernel_spec(KERNEL_NAME)  # fail early on a broken spec

    def connection_file(self, kernel: KernelHandle) -> Optional[str]:
        return kernel.km.connection_file if isinstance(kernel, DirectKernel) else None

    async def create_kernel(self) -> KernelHandle:
        km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=self.ksm,
                                transport_encryption="required" if self.curve else "disabled")
        kernel = DirectKernel(km, self.lean)
        self.kernels.append(kernel)
        await km.start_kernel()
        return kernel

    async def teardown(self) -> None:
        for kernel in self.kernels:
            await kernel.shutdown()
        self.kernels.clear()
