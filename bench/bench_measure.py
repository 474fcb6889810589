"""The measurements of gateway_bench, one target at a time, in rounds.

Every target is prepared first (gateway started, kernel starts and RSS measured, one
kernel kept for the rest); then round trips, stream throughput and the small-message
burst run in interleaved rounds, the order of targets rotating each round, so slow drift
of the machine (CPU frequency, page cache, other load) does not favour one target.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import statistics
import time
import traceback
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

import bench_curve
import psutil
from bench_common import KernelHandle, Target, TargetSkipped, burst_code, stream_code, stream_expected
from bench_gateways import GatewayTarget
from bench_same_kernel import SameKernelFloor

T = TypeVar("T")


@dataclass
class Plan:
    """How much of each measurement to do (``--quick`` shrinks everything)."""

    idle_kernels: int = 10
    rtt_warmup: int = 30
    rtt_n: int = 300
    rtt_rounds: int = 5
    stream_chunks: int = 320  # 320 x 64 KiB = 20 MiB
    stream_chunk: int = 65536
    stream_runs: int = 9
    burst_lines: int = 10000
    burst_runs: int = 7
    cell_timeout: float = 300.0

    @classmethod
    def quick(cls) -> Plan:
        return cls(idle_kernels=2, rtt_warmup=5, rtt_n=30, stream_chunks=32, stream_runs=1,
                   burst_lines=1000, burst_runs=1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def timed(aw: Awaitable[T], timeout: float, what: str) -> T:
    try:
        return await asyncio.wait_for(aw, timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"{what}: no answer within {timeout:.0f} s") from None


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def rss_mb(pid: Optional[int]) -> Optional[float]:
    if pid is None:
        return None
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def cpu_seconds(pid: Optional[int]) -> float:
    """User + system CPU time of the gateway process (0 for the direct target)."""
    if pid is None:
        return 0.0
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def burst_damage(text: str, n: int) -> tuple[int, int]:
    """(missing lines, out-of-order or duplicated lines) in the output of burst_code(n)."""
    values = []
    for line in text.split("\n")[:-1]:
        with contextlib.suppress(ValueError):
            values.append(int(line))
    missing = n - len(set(values) & set(range(n)))
    disorder = sum(1 for a, b in zip(values, values[1:]) if b <= a)
    return missing, disorder


async def settle_ready(kernel: KernelHandle) -> None:
    """Run cells until one completes with its idle status.

    A client that subscribes to iopub just as the kernel starts may miss the first
    status messages (a zmq late joiner), so the first attempts may time out."""
    for _ in range(20):
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(kernel.run_cell("pass"), 3)
            return
    raise TimeoutError("kernel never delivered an idle status")


async def start_one(target: Target, timeout: float) -> tuple[KernelHandle, float, float]:
    """Start a kernel and run a first cell; return (kernel, ms to created, ms to first reply)."""
    t0 = time.perf_counter()
    kernel = await timed(target.create_kernel(), timeout, "kernel start request")
    t_created = time.perf_counter()
    await timed(kernel.connect(), timeout, "client connect")
    result = await timed(kernel.run_cell("pass", wait_idle=False), timeout, "first execute")
    return kernel, (t_created - t0) * 1e3, (result.t_reply - t0) * 1e3


async def run_collect(kernel: KernelHandle, code: str, timeout: float) -> tuple[str, float, int]:
    """Run ``code``; return (stream text, seconds from request to idle, stream messages)."""
    parts: list[str] = []
    t0 = time.perf_counter()
    result = await timed(kernel.run_cell(code, parts.append), timeout, "output cell")
    assert result.t_idle is not None
    if result.status != "ok":
        raise RuntimeError(f"cell failed with status {result.status}")
    return "".join(parts), result.t_idle - t0, result.n_stream


@dataclass
class Subject:
    """One target under measurement and what was measured so far."""

    target: Target
    out: dict[str, Any] = field(default_factory=dict)
    kernel: Optional[KernelHandle] = None
    rtt: list[float] = field(default_factory=list)
    stream_rates: list[float] = field(default_factory=list)
    stream_complete: bool = True
    msg_rates: list[float] = field(default_factory=list)
    line_rates: list[float] = field(default_factory=list)
    burst_missing: int = 0
    burst_disorder: int = 0
    burst_msgs: int = 0
    #: Gateway CPU seconds spent per phase (insensitive to other load on the machine).
    cpu: dict[str, float] = field(default_factory=dict)
    #: A direct client on this gateway's own kernel, and its burst rates (bench_same_kernel).
    floor: Optional[SameKernelFloor] = None
    floor_rates: list[float] = field(default_factory=list)
    floor_missing: int = 0

    def charge(self, phase: str, seconds: float) -> None:
        self.cpu[phase] = self.cpu.get(phase, 0.0) + seconds

    @property
    def ok(self) -> bool:
        return self.out.get("status", "ok") == "ok"

    async def close(self) -> None:
        if self.floor is not None:
            self.floor.close()
            self.floor = None
        if self.kernel is not None:
            await self.kernel.shutdown()
            self.kernel = None
        await self.target.teardown()

    async def guarded(self, what: str, aw: Awaitable[None]) -> None:
        """Run one step; on failure record why, stop the target and keep the others going."""
        try:
            await aw
        except TargetSkipped as exc:
            self.out["status"], self.out["reason"] = "skipped", str(exc)
            log(f"{self.target.label}: SKIPPED: {exc}")
            await self.close()
        except Exception as exc:
            self.out["status"], self.out["reason"] = "error", f"{what}: {type(exc).__name__}: {exc}"
            log(f"{self.target.label}: ERROR in {what}: {exc}\n{traceback.format_exc()}")
            target = self.target
            if isinstance(target, GatewayTarget) and target.process is not None:
                self.out["log_tail"] = target.process.log_tail(30)
                log(f"{target.label} log tail:\n{self.out['log_tail']}")
            await self.close()


async def prepare(s: Subject, plan: Plan) -> None:
    """Start the target, measure kernel starts and RSS, keep one warmed-up kernel."""
    target, out = s.target, s.out
    log(f"{target.label}: starting")
    await target.setup()
    warm, _, _ = await start_one(target, plan.cell_timeout)  # loads lazy imports in the gateway
    await settle_ready(warm)
    await warm.shutdown()

    log(f"{target.label}: {plan.idle_kernels} kernel starts, RSS")
    pid = target.server_pid()
    gc.collect()
    await asyncio.sleep(1.0)
    out["rss0_mb"] = rss_mb(pid)
    kernels: list[KernelHandle] = []
    created, replied = [], []
    try:
        for _ in range(plan.idle_kernels):
            kernel, c_ms, r_ms = await start_one(target, plan.cell_timeout)
            kernels.append(kernel)
            created.append(c_ms)
            replied.append(r_ms)
            await settle_ready(kernel)
            await kernel.disconnect()
        await asyncio.sleep(2.0)
        out["rss_n_mb"] = rss_mb(pid)
    finally:
        for kernel in kernels:
            await kernel.shutdown()
    out["idle_kernels"] = plan.idle_kernels
    if out["rss0_mb"] is not None and out["rss_n_mb"] is not None:
        out["rss_per_kernel_mb"] = (out["rss_n_mb"] - out["rss0_mb"]) / plan.idle_kernels
    out["start_created_ms"] = statistics.median(created)
    out["start_reply_ms"] = statistics.median(replied)
    out["start_samples_ms"] = [round(x, 1) for x in replied]

    log(f"{target.label}: kernel for the timed rounds, warm-up")
    s.kernel, _, _ = await start_one(target, plan.cell_timeout)
    await settle_ready(s.kernel)
    await check_encryption(s)
    for _ in range(plan.rtt_warmup):
        await timed(s.kernel.run_cell("pass"), 30, "warm-up execute")
    await run_collect(s.kernel, stream_code(16, plan.stream_chunk), plan.cell_timeout)
    await run_collect(s.kernel, burst_code(1000), plan.cell_timeout)
    if isinstance(target, GatewayTarget):
        s.floor = SameKernelFloor.attach(target, s.kernel)
        if s.floor is None:
            log(f"{target.label}: no same-kernel floor (its kernel process was not found)")
        else:
            async with s.floor as direct:
                await settle_ready(direct)


async def check_encryption(s: Subject) -> None:
    """Record whether the timed kernel's connection is CurveZMQ (bench_curve); a CurveZMQ
    target whose kernel is not is an error of that target."""
    target = s.target
    assert s.kernel is not None
    path = target.connection_file(s.kernel)
    if path is None:
        if target.curve:
            raise bench_curve.NotEncrypted(f"{target.label}: the kernel's connection file was not found, "
                                           "so its encryption cannot be checked")
        log(f"{target.label}: kernel connection file not found, encryption not checked")
        return
    probe = await bench_curve.check(path, target.curve, target.label)
    s.out["encryption"] = probe
    s.out["kernel_transport"] = "CurveZMQ only" if probe["encrypted"] else "NULL (plaintext)"
    log(f"{target.label}: kernel connection {'CurveZMQ' if probe['encrypted'] else 'NOT encrypted'} ({probe})")


async def rtt_round(s: Subject, n: int) -> None:
    assert s.kernel is not None
    pid = s.target.server_pid()
    c0 = cpu_seconds(pid)
    for _ in range(n):
        t0 = time.perf_counter()
        result = await timed(s.kernel.run_cell("pass"), 30, "execute")
        assert result.t_idle is not None
        s.rtt.append((max(result.t_idle, result.t_reply) - t0) * 1e3)
    s.charge("rtt", cpu_seconds(pid) - c0)


async def stream_round(s: Subject, plan: Plan, expected: str) -> None:
    assert s.kernel is not None
    code = stream_code(plan.stream_chunks, plan.stream_chunk)
    pid = s.target.server_pid()
    c0 = cpu_seconds(pid)
    text, secs, _ = await run_collect(s.kernel, code, plan.cell_timeout)
    s.charge("stream", cpu_seconds(pid) - c0)
    s.stream_complete = s.stream_complete and text == expected
    s.stream_rates.append(len(text) / 1e6 / secs)


async def burst_round(s: Subject, plan: Plan) -> None:
    assert s.kernel is not None
    pid = s.target.server_pid()
    c0 = cpu_seconds(pid)
    text, secs, n_stream = await run_collect(s.kernel, burst_code(plan.burst_lines), plan.cell_timeout)
    s.charge("burst", cpu_seconds(pid) - c0)
    miss, dis = burst_damage(text, plan.burst_lines)
    s.burst_missing = max(s.burst_missing, miss)
    s.burst_disorder = max(s.burst_disorder, dis)
    s.burst_msgs = n_stream
    s.msg_rates.append(n_stream / secs)
    s.line_rates.append(plan.burst_lines / secs)
    if s.floor is not None:  # the same burst on the same kernel, read directly
        async with s.floor as direct:
            text, secs, n_stream = await run_collect(direct, burst_code(plan.burst_lines), plan.cell_timeout)
        s.floor_missing = max(s.floor_missing, sum(burst_damage(text, plan.burst_lines)))
        s.floor_rates.append(n_stream / secs)


def summarize(s: Subject, plan: Plan) -> None:
    out = s.out
    out["rtt_p50_ms"] = percentile(s.rtt, 50)
    out["rtt_p99_ms"] = percentile(s.rtt, 99)
    out["rtt_mean_ms"] = statistics.fmean(s.rtt)
    out["rtt_n"] = len(s.rtt)
    out["stream_mb"] = plan.stream_chunks * plan.stream_chunk / 1e6
    out["stream_mb_s"] = statistics.median(s.stream_rates)
    out["stream_runs_mb_s"] = [round(r, 1) for r in s.stream_rates]
    out["stream_complete"] = s.stream_complete
    out["burst_lines"] = plan.burst_lines
    out["burst_stream_msgs"] = s.burst_msgs
    out["burst_msgs_s"] = statistics.median(s.msg_rates)
    out["burst_runs_msgs_s"] = [round(r) for r in s.msg_rates]
    out["burst_lines_s"] = statistics.median(s.line_rates)
    out["burst_missing"] = s.burst_missing
    out["burst_out_of_order"] = s.burst_disorder
    if s.floor_rates:
        out["floor_burst_msgs_s"] = statistics.median(s.floor_rates)
        out["floor_burst_runs_msgs_s"] = [round(r) for r in s.floor_rates]
        out["floor_burst_missing"] = s.floor_missing
        out["same_kernel_ratio"] = out["burst_msgs_s"] / out["floor_burst_msgs_s"]
    if s.target.server_pid() is not None:
        out["cpu_us_per_rtt"] = s.cpu.get("rtt", 0.0) / len(s.rtt) * 1e6
        out["cpu_ms_per_mb"] = s.cpu.get("stream", 0.0) * 1e3 / (out["stream_mb"] * len(s.stream_rates))
        out["cpu_us_per_msg"] = s.cpu.get("burst", 0.0) * 1e6 / (plan.burst_lines * len(s.msg_rates))
    out["status"] = "ok"


def rotated(subjects: list[Subject], n: int) -> list[Subject]:
    live = [s for s in subjects if s.ok]
    if not live:
        return live
    k = n % len(live)
    return live[k:] + live[:k]


async def measure_all(targets: list[Target], plan: Plan) -> dict[str, dict[str, Any]]:
    """Measure every target; a target that fails is reported and the others go on."""
    subjects = [Subject(t, {"label": t.label}) for t in targets]
    try:
        for s in subjects:
            await s.guarded("start", prepare(s, plan))
        per_round = max(1, plan.rtt_n // plan.rtt_rounds)
        for rnd in range(plan.rtt_rounds):
            log(f"round trips, round {rnd + 1}/{plan.rtt_rounds}")
            for s in rotated(subjects, rnd):
                await s.guarded("round trips", rtt_round(s, per_round))
        expected = stream_expected(plan.stream_chunks, plan.stream_chunk)
        for rnd in range(plan.stream_runs):
            log(f"stream throughput, round {rnd + 1}/{plan.stream_runs}")
            for s in rotated(subjects, rnd):
                await s.guarded("stream", stream_round(s, plan, expected))
        for rnd in range(plan.burst_runs):
            log(f"small-message burst, round {rnd + 1}/{plan.burst_runs}")
            for s in rotated(subjects, rnd):
                await s.guarded("burst", burst_round(s, plan))
        for s in subjects:
            if s.ok:
                summarize(s, plan)
    finally:
        for s in subjects:
            with contextlib.suppress(Exception):
                await s.close()
    return {s.target.key: s.out for s in subjects}
