"""Where the small-message rate goes: the kernel's own pace, direct vs behind yarn-gateway.

gateway_bench.py measures the rate a client sees. This diagnostic asks the kernel too:
the burst cell times its own loop (``for i in range(10000): print(i, flush=True)``), so a
lower rate behind the gateway can be split into "the kernel itself printed slower" and
"the relay delivered late". Bursts alternate between a direct jupyter_client kernel and a
yarn-gateway kernel, in one process, the order swapping each round; it also reports CPU
time and context switches per message of every process involved.

    .venv/bin/python bench/burst_ab.py [--rounds 6] [--output-batch-interval 0.002]
        [--direct-env-like-gateway] [--direct-batch-interval S] [--pin-kernels CPU]
        [--same-kernel] [--gateway-kernel-first]

``--direct-env-like-gateway`` starts the direct kernel with the environment and log-file
stdout a gateway kernel gets, to rule those out. Not part of ``make bench`` (no targets).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import psutil
import zmq
from bench_common import KernelHandle, write_kernelspec
from bench_direct import DirectKernel, DirectTarget, parse_frames
from bench_gateways import YarnGatewayTarget
from bench_measure import settle_ready
from bench_same_kernel import SameKernelFloor

CODE = (
    "import time as _tm\n_t0 = _tm.perf_counter()\n"
    "for i in range(10000):\n    print(i, flush=True)\n"
    "_dt = _tm.perf_counter() - _t0\n"
)


class Side:
    def __init__(self, name: str, kernel: KernelHandle, procs: dict[str, psutil.Process],
                 floor: Optional[SameKernelFloor] = None) -> None:
        self.name, self.kernel, self.procs = name, kernel, procs
        self.rows: list[dict[str, float]] = []
        #: --same-kernel: this side is a direct client of the gateway's kernel, whose
        #: websocket is closed while this side runs.
        self.floor = floor

    def snap(self) -> dict[str, tuple[float, int, int]]:
        out = {}
        for label, p in self.procs.items():
            c, cs = p.cpu_times(), p.num_ctx_switches()
            out[label] = (c.user + c.system, cs.voluntary, cs.involuntary)
        return out

    async def burst(self) -> None:
        if self.floor is None:
            await self._burst()
            return
        async with self.floor:
            await self._burst()

    async def _burst(self) -> None:
        b0 = self.snap()
        t0 = time.perf_counter()
        result = await self.kernel.run_cell(CODE, lambda s: None)
        seen = time.perf_counter() - t0
        b1 = self.snap()
        parts: list[str] = []
        await self.kernel.run_cell("print(_dt)", parts.append)
        n = result.n_stream
        row = {"client msg/s": n / seen, "kernel lines/s": 10000 / float("".join(parts))}
        for label in b0:
            row[f"{label} cpu us/msg"] = (b1[label][0] - b0[label][0]) / n * 1e6
            row[f"{label} switches/msg"] = (b1[label][1] - b0[label][1] + b1[label][2] - b0[label][2]) / n
        self.rows.append(row)


class PacedGateway(YarnGatewayTarget):
    """yarn-gateway with a given KernelRegistry.output_batch_interval."""

    def __init__(self, workdir: Path, kernels_dir: Path, exe: Path, interval: float) -> None:
        super().__init__(workdir, kernels_dir, exe)
        self.interval = interval

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        with (self.workdir / "yarn_gateway_config.py").open("a") as f:
            f.write(f"c.KernelRegistry.output_batch_interval = {self.interval!r}\n")
        return cmd, env


def like_gateway(log_path: Path) -> None:
    """Start direct kernels as the gateway does: its KERNEL_* env and a log file as stdout."""
    from jupyter_client.manager import AsyncKernelManager

    original = AsyncKernelManager.start_kernel

    async def start_kernel(self: Any, **kw: Any) -> None:
        log = log_path.open("ab")
        env = dict(os.environ, KERNEL_USERNAME="alice", KERNEL_ID="direct", KERNEL_LAUNCH_TIMEOUT="60")
        kw.update(stdout=log, stderr=log, env=env)
        await original(self, **kw)

    AsyncKernelManager.start_kernel = start_kernel  # type: ignore[method-assign]


class PacedDirect(DirectKernel):
    """The direct floor reading iopub as the gateway does during a flood: whatever is waiting,
    at most every ``interval`` seconds, instead of waking for each message."""

    def __init__(self, km: Any, interval: float) -> None:
        super().__init__(km)
        self.interval = interval
        self._waiting: list[Any] = []

    async def _next(self, channel: str) -> Any:
        if channel != "iopub":
            return await super()._next(channel)
        sock = self.kc.iopub_channel.socket
        while not self._waiting:
            try:
                while True:
                    self._waiting.append(parse_frames(await sock.recv_multipart(zmq.NOBLOCK)))
            except zmq.Again:
                pass
            if not self._waiting:
                await asyncio.sleep(self.interval)
        return self._waiting.pop(0)


def pin(proc: psutil.Process, cpu: int) -> None:
    """Pin every thread of a process to one CPU (sched_setaffinity is per thread)."""
    for thread in proc.threads():
        os.sched_setaffinity(thread.id, {cpu})


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="burst-ab-"))
    if args.direct_env_like_gateway:
        like_gateway(root / "direct-kernel.log")
    kernels_dir = write_kernelspec(root, sys.executable)
    direct = DirectTarget(kernels_dir)
    gateway = PacedGateway(root / "gw", kernels_dir, Path(sys.executable).parent / "yarn-gateway",
                           args.output_batch_interval)
    await direct.setup()
    await gateway.setup()
    assert gateway.process is not None
    floor: Optional[SameKernelFloor] = None
    try:
        async def start(target: Any) -> KernelHandle:
            kernel = await target.create_kernel()
            if target is direct and args.direct_batch_interval:
                kernel = PacedDirect(kernel.km, args.direct_batch_interval)
            await kernel.connect()
            await settle_ready(kernel)
            return kernel

        if args.same_kernel:
            kg = await start(gateway)
            floor = SameKernelFloor.attach(gateway, kg)
            if floor is None:
                raise SystemExit("--same-kernel: the gateway's kernel process was not found")
            kd = floor.direct
            async with floor:
                await settle_ready(kd)
        elif args.gateway_kernel_first:
            kg = await start(gateway)
            kd = await start(direct)
        else:
            kd = await start(direct)
            kg = await start(gateway)
        me = psutil.Process()
        gw = psutil.Process(gateway.process.pid)
        direct_kernel = (gw.children()[0] if args.same_kernel else
                         next(p for p in me.children() if "ipykernel" in " ".join(p.cmdline())))
        if args.pin_kernels is not None:
            for proc in {direct_kernel, gw.children()[0]}:
                pin(proc, args.pin_kernels)
        sides = [
            Side("direct", kd, {"kernel": direct_kernel, "client": me}, floor=floor),
            Side("yarn-gateway", kg, {"kernel": gw.children()[0], "gateway": gw, "client": me}),
        ]
        for i in range(args.rounds):
            for side in sides if i % 2 == 0 else sides[::-1]:
                await side.burst()
        for side in sides:
            keys = side.rows[0].keys()
            medians = {k: statistics.median(r[k] for r in side.rows) for k in keys}
            print(f"{side.name:13s} " + "  ".join(f"{k} {v:,.1f}" for k, v in medians.items()))
    finally:
        if floor is not None:
            floor.close()
        await direct.teardown()
        await gateway.teardown()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--output-batch-interval", type=float, default=0.002)
    p.add_argument("--direct-env-like-gateway", action="store_true")
    p.add_argument("--direct-batch-interval", type=float, default=0.0, metavar="S",
                   help="the direct client reads iopub at most every S seconds, as the gateway paces a flood")
    p.add_argument("--same-kernel", action="store_true",
                   help="the direct side is a jupyter_client connected to the gateway's own kernel "
                   "(its websocket closed meanwhile): the relay's effect without kernel-to-kernel differences")
    p.add_argument("--gateway-kernel-first", action="store_true",
                   help="start the gateway's kernel before the direct one")
    p.add_argument("--pin-kernels", type=int, metavar="CPU",
                   help="pin both kernels' threads to this CPU (tests the idle-vCPU wake-up cost)")
    asyncio.run(main(p.parse_args()))
