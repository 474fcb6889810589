"""The same-kernel floor: a direct jupyter_client on a gateway's own kernel.

Two kernel processes started from the same kernelspec do not print equally fast on every
machine: on the 2-vCPU VM of bench/README.md, separately started kernels differ by up to
10% in the small-message burst whoever reads them (the kernel started first tends to be
the faster one). A 0.95x target cannot be judged across that. This floor removes the
kernel from the comparison: the burst runs on the gateway's own kernel, once through the
gateway and once read directly over ZMQ, with the gateway's websocket closed meanwhile
(the gateway still receives the kernel's output then, and keeps it for a replay that
never comes, so if anything the floor is slowed a little by the gateway, not helped).
"""

from __future__ import annotations

import uuid
from typing import Optional

import zmq
from bench_common import KernelHandle
from bench_direct import DirectKernel
from bench_gateways import GatewayKernel, GatewayTarget, connection_file_of
from jupyter_client.asynchronous import AsyncKernelClient


class SameKernelFloor:
    """A direct client of a gateway target's timed kernel."""

    def __init__(self, gateway_kernel: GatewayKernel, connection_file: str) -> None:
        self.gateway_kernel = gateway_kernel
        kc = AsyncKernelClient()
        kc.load_connection_file(connection_file)
        kc.context.setsockopt(zmq.RCVHWM, 0)  # a lossy floor is no floor
        kc.start_channels()
        self.direct = DirectKernel(None)  # type: ignore[arg-type]  # a client only
        self.direct.kc = kc

    @classmethod
    def attach(cls, target: GatewayTarget, kernel: KernelHandle) -> Optional[SameKernelFloor]:
        if target.process is None or not isinstance(kernel, GatewayKernel):
            return None
        path = connection_file_of(target.process.pid)
        return None if path is None else cls(kernel, path)

    async def __aenter__(self) -> DirectKernel:
        """Close the gateway's websocket (a fresh session later: no replay) for a direct run."""
        await self.gateway_kernel.disconnect()
        self.gateway_kernel.session = uuid.uuid4().hex
        return self.direct

    async def __aexit__(self, *exc: object) -> None:
        await self.gateway_kernel.connect()

    def close(self) -> None:
        if self.direct.kc is not None:
            self.direct.kc.stop_channels()
            self.direct.kc = None
