#!/usr/bin/env python
"""Where the CPU goes on the encrypted path: per-thread CPU time of every process involved.

gateway_bench.py reports rates (sensitive to other load) and the gateway's CPU per round
trip / MB / message. This diagnostic splits that CPU by thread — the gateway's event loop
(Python: relay, websocket, JSON) and libzmq's I/O thread (TCP, and on the CurveZMQ path the
decryption) — and shows the same for the kernel and, for the direct floors, for the bench
process's own client (its loop and its libzmq I/O thread). Targets: any of ``direct``,
``yarn-gateway`` (ipykernel 6, NULL), ``direct-curve``, ``yarn-gateway-curve`` (ipykernel 7,
CurveZMQ); phases alternate between them, the order swapping each round. CPU time hardly
moves with other load on the machine, so this runs on a busy machine too. ::

    .venv/bin/python bench/curve_cpu.py [--rounds 4] [--targets ...] [--cprofile OUT.prof]

``--perf-trace N`` then counts system calls per round trip of each thread of the gateway (of
the bench process for a direct floor) with ``perf trace -s`` over N round trips.
``--cprofile DIR`` runs both gateways under cProfile (their event loop only; libzmq's thread
is C) and writes DIR/yarn-gateway.prof and DIR/yarn-gateway-curve.prof when they stop (then
``python -c "import pstats; pstats.Stats('F').sort_stats('tottime').print_stats(25)"``);
``--phases stream`` (any of rtt,stream,burst) runs only some phases.
Not part of ``make bench`` (no ``*_bench.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from bench_common import KernelHandle, Target, burst_code, stream_code, write_kernelspec
from bench_direct import DirectTarget
from bench_gateways import YarnGatewayTarget
from bench_measure import run_collect, settle_ready

BENCH_DIR = Path(__file__).resolve().parent
CURVE_PYTHON = BENCH_DIR.parent / "build" / "curve-kernel-venv" / "bin" / "python"


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) per thread kind of process ``pid``: ``loop`` (the main
    thread), ``zmq-io`` (libzmq's I/O threads), ``other``."""
    out: dict[str, float] = collections.defaultdict(float)
    with contextlib.suppress(psutil.Error):
        for t in psutil.Process(pid).threads():
            try:
                name = Path(f"/proc/{pid}/task/{t.id}/comm").read_text().strip()
            except OSError:
                name = ""
            kind = "loop" if t.id == pid else "zmq-io" if name.startswith("ZMQbg/IO") else "other"
            out[kind] += t.user_time + t.system_time
    return dict(out)


class ProfiledGateway(YarnGatewayTarget):
    """The gateway run as ``python -m cProfile -o OUT yarn-gateway ...``."""

    def __init__(self, *args: object, profile: Path, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.profile = profile

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        return [sys.executable, "-m", "cProfile", "-o", str(self.profile), *cmd], env


class Side:
    def __init__(self, target: Target, kernel: KernelHandle, kernel_pid: int) -> None:
        self.target, self.kernel, self.kernel_pid = target, kernel, kernel_pid
        gw = target.server_pid()
        #: process label -> pid: the gateway, or for a direct floor its client (the bench process).
        self.procs = {"gw/client": gw or os.getpid(), "kernel": kernel_pid}
        self.cpu: dict[str, list[float]] = collections.defaultdict(list)
        self.rates: dict[str, list[float]] = collections.defaultdict(list)
        self.calls: dict[str, list[float]] = {}

    def snap(self) -> dict[str, float]:
        return {f"{label} {kind}": v for label, pid in self.procs.items() for kind, v in thread_cpu(pid).items()}

    async def phase(self, name: str, units: float, unit_name: str, work: object) -> None:
        c0, t0 = self.snap(), time.perf_counter()
        await work  # type: ignore[misc]
        secs, c1 = time.perf_counter() - t0, self.snap()
        for k in c1:
            self.cpu[f"{name}: {k}"].append((c1[k] - c0.get(k, 0.0)) / units * 1e6)
        self.rates[f"{name} ({unit_name}/s)"].append(units / secs)

    async def rtt(self, n: int) -> None:
        async def go() -> None:
            for _ in range(n):
                await self.kernel.run_cell("pass")
        await self.phase("round trip", n, "rt", go())

    async def stream(self, chunks: int, chunk: int) -> None:
        mb = chunks * chunk / 1e6
        await self.phase("stream MB", mb, "MB", run_collect(self.kernel, stream_code(chunks, chunk), 300))

    async def burst(self, lines: int) -> None:
        await self.phase("small msg", lines, "msg", run_collect(self.kernel, burst_code(lines), 300))


async def syscalls_per_rtt(side: Side, n: int, out: Path) -> dict[str, float]:
    """System calls per round trip of each thread of the gateway (or the bench process for a
    direct floor), counted by ``perf trace -s -p PID`` over ``n`` round trips."""
    pid = side.procs["gw/client"]
    tracer = await asyncio.create_subprocess_exec(
        "perf", "trace", "-s", "-p", str(pid), "-o", str(out),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(2.0)  # attached
    for _ in range(n):
        await side.kernel.run_cell("pass")
    tracer.send_signal(signal.SIGINT)
    await tracer.wait()
    per_thread: dict[str, float] = collections.defaultdict(float)
    for line in out.read_text(errors="replace").splitlines():
        m = re.match(r"\s*(.+?) \((\d+)\), (\d+) events", line)
        if m:
            kind = "loop" if int(m.group(2)) == pid else m.group(1)
            per_thread[kind] += int(m.group(3)) / n
    return dict(per_thread)


def table(sides: list[Side]) -> str:
    """Medians: rates, then CPU microseconds per unit of each process's threads (``gw/client``:
    the gateway, or the bench process for a direct floor)."""
    rows: dict[str, dict[str, float]] = {}
    for side in sides:
        for k, v in [*side.rates.items(), *((f"{k} (CPU us)", v) for k, v in side.cpu.items()),
                     *side.calls.items()]:
            rows.setdefault(k, {})[side.target.label] = statistics.median(v)
    rows = {k: v for k, v in rows.items() if any(x > 0 for x in v.values())}
    labels = [s.target.label for s in sides]
    width = max(len(k) for k in rows)
    lines = [" " * width + "".join(f"{lb:>34s}" for lb in labels)]
    for k, v in rows.items():
        lines.append(f"{k:{width}s}" + "".join(f"{v[lb]:34,.1f}" if lb in v else " " * 33 + "-" for lb in labels))
    return "\n".join(lines)


def kernel_pid_of(target: Target, kernel: KernelHandle) -> int:
    if isinstance(target, DirectTarget):
        km = kernel.km  # type: ignore[attr-defined]
        return int(km.provisioner.process.pid)
    path = target.connection_file(kernel)
    assert path is not None and target.server_pid() is not None
    for proc in psutil.Process(target.server_pid()).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if path in proc.cmdline():
                return proc.pid
    raise RuntimeError(f"{target.label}: kernel process not found")


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="curve-cpu-"))
    os.environ["IPYTHONDIR"] = str(root / "ipython")
    os.environ["JUPYTER_RUNTIME_DIR"] = str(root / "runtime")
    null_dir = write_kernelspec(root, sys.executable)
    curve_dir = write_kernelspec(root / "curve", str(args.curve_kernel_python), curve=True)
    exe = Path(sys.executable).parent / "yarn-gateway"
    make = {
        "direct": lambda: DirectTarget(null_dir),
        "yarn-gateway": lambda: (
            ProfiledGateway(root / "gw", null_dir, exe, profile=args.cprofile / "yarn-gateway.prof")
            if args.cprofile else YarnGatewayTarget(root / "gw", null_dir, exe)),
        "direct-curve": lambda: DirectTarget(curve_dir, curve=True),
        "yarn-gateway-curve": lambda: (
            ProfiledGateway(root / "gwc", curve_dir, exe, curve=True, profile=args.cprofile / "yarn-gateway-curve.prof")
            if args.cprofile else YarnGatewayTarget(root / "gwc", curve_dir, exe, curve=True)),
    }
    if args.cprofile:
        args.cprofile.mkdir(parents=True, exist_ok=True)
    phases = set(args.phases.split(","))
    targets = [make[k]() for k in args.targets.split(",")]
    sides: list[Side] = []
    try:
        for target in targets:
            await target.setup()
            kernel = await target.create_kernel()
            await kernel.connect()
            await settle_ready(kernel)
            for _ in range(30):
                await kernel.run_cell("pass")
            await run_collect(kernel, burst_code(1000), 300)
            sides.append(Side(target, kernel, kernel_pid_of(target, kernel)))
        for rnd in range(args.rounds):
            order = sides if rnd % 2 == 0 else sides[::-1]
            print(f"round {rnd + 1}/{args.rounds}", flush=True)
            for side in order if "rtt" in phases else []:
                await side.rtt(args.rtt_n)
            for side in order if "stream" in phases else []:
                await side.stream(args.stream_chunks, 65536)
            for side in order if "burst" in phases else []:
                await side.burst(args.burst_lines)
        if args.perf_trace:
            for side in sides:
                calls = await syscalls_per_rtt(side, args.perf_trace, root / f"trace-{side.target.key}.txt")
                for thread, v in calls.items():
                    side.calls[f"round trip: system calls, {thread}"] = [v]
        print(table(sides))
    finally:
        for side in sides:
            with contextlib.suppress(Exception):
                await side.kernel.shutdown()
        for target in targets:
            await target.teardown()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="direct,yarn-gateway,direct-curve,yarn-gateway-curve")
    p.add_argument("--curve-kernel-python", type=Path, default=CURVE_PYTHON)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--rtt-n", type=int, default=200)
    p.add_argument("--stream-chunks", type=int, default=320)
    p.add_argument("--burst-lines", type=int, default=10000)
    p.add_argument("--phases", default="rtt,stream,burst", help="which of rtt,stream,burst to run")
    p.add_argument("--cprofile", type=Path, metavar="DIR",
                   help="run both gateways under cProfile: DIR/yarn-gateway.prof, DIR/yarn-gateway-curve.prof")
    p.add_argument("--perf-trace", type=int, metavar="N",
                   help="then count system calls per round trip and thread (perf trace -s) over N round trips")
    asyncio.run(main(p.parse_args()))
