"""YARN launch benchmark (issue 9, acceptance 4): this gateway, the peer and the floor,
side by side in one run on one minicluster with the same containers.

* **yarn-gateway**: this gateway as a daemon process, kernelspec ``spark_python_yarn_cluster``.
* **peer**: Jupyter Kernel Gateway 3.0.1 + gateway_provisioners 0.5.0 ``YarnProvisioner``
  (kernelspec from ``jupyter-yarn-spec install --spark --impersonation-enabled``), from
  ``bench/.venvs/jkg`` (``make bench-yarn-venv``).
* **floor**: ``yarn_floor.Floor``: spark-submit of the same launcher, no gateway.

All three run the driver in YARN cluster mode as ``alice`` via ``--proxy-user`` with
``--spark-context-initialization-mode lazy``; the first cell is ``1 + 1``.

Measured: launch time to the first executed cell (median of N, targets interleaved
round by round, plus the median of per-round paired ratios and, for this gateway and
the floor, the split into "cluster" time - spark-submit to the launcher's response, the
same work for both - and time outside it, from the gateway's log lines); 16 concurrent
launches per gateway; gateway CPU seconds per launch (user+system of the gateway
process only, from before POST to the first executed cell; spark-submit children are
excluded - the same program for both - and reported separately); gateway RSS per
running YARN kernel ((RSS with 16 kernels running, no client attached - RSS before) /
16, from a second burst so the allocator's high-water mark of a burst of launches is
not counted as per-kernel state; the first, "cold" burst is reported too); and, on this
gateway, the execute round trip p50 of one active kernel alone (before and after) and
with 200 idle kernels attached (tiny_kernel.py stand-ins, each with an open websocket).

Usage: ``python bench/yarn_launch.py [--quick] [--rounds N] [--concurrent 16] [--idle 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import sys
import time
from collections.abc import Awaitable
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from yarn_bench_env import (
    PEER_SPEC,
    TOKENS,
    YARN_SPEC,
    GatewayClient,
    GatewayProcess,
    PeerGateway,
    cpu_seconds,
    delete_all,
    gateway_process,
    kill_live_apps,
    loadavg,
    log,
    machine,
    median,
    percentile,
    rss_mb,
    start_and_run,
    start_cluster,
    table,
    wait_no_live_apps,
    write_results,
)
from yarn_floor import Floor

_LOG_TS = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")


def gateway_phases(log_path: str, kid: str, t_post: float, t_done: float) -> Optional[dict[str, float]]:
    """Split one launch through this gateway by its log lines (wall clock, ms resolution):
    ``gateway_before_submit`` (POST to "submitting"), ``cluster`` ("submitting" to "launcher
    response accepted": spark-submit, YARN, the container; the same work as the floor's), and
    ``gateway_after_response`` (response to the first executed cell seen by the client)."""
    marks: dict[str, float] = {}
    with open(log_path, errors="replace") as f:
        for line in f:
            if kid not in line:
                continue
            m = _LOG_TS.match(line)
            if not m:
                continue
            ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            if "submitting to YARN" in line:
                marks.setdefault("submit", ts)
            elif "launcher response accepted" in line:
                marks.setdefault("response", ts)
    if len(marks) < 2:
        return None
    return {"gateway_before_submit": marks["submit"] - t_post, "cluster": marks["response"] - marks["submit"],
            "gateway_after_response": t_done - marks["response"]}


class RestTarget:
    """A gateway reached over REST + websocket (this gateway or the peer)."""

    def __init__(self, name: str, client: GatewayClient, spec: str, pid: int, log_path: str = "") -> None:
        self.name, self.client, self.spec, self.pid = name, client, spec, pid
        self.log_path = log_path
        self.last_phases: Optional[dict[str, float]] = None

    async def launch(self) -> tuple[float, float, Callable[[], Awaitable[None]]]:
        t_post = time.time()
        kid, _t201, t_first, ws = await start_and_run(self.client, self.spec)
        if self.log_path:
            self.last_phases = gateway_phases(self.log_path, kid, t_post, t_post + t_first)

        async def stop() -> None:
            ws.close()
            await delete_all(self.client, [kid])

        return t_first, _t201, stop


async def sequential(targets: dict[str, Any], floor: Floor, cluster: Any, rounds: int) -> dict[str, Any]:
    names = ["floor", *targets]
    out: dict[str, Any] = {n: {"first_cell_s": [], "started_s": [], "cpu_s": [], "cpu_children_s": []}
                           for n in names}
    for r in range(rounds + 1):  # round 0 warms the page cache and the JVMs' class data
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            cpu0 = cpu1 = ch0 = ch1 = 0.0
            try:
                if name == "floor":
                    fk, t_first = await floor.launch()
                    t201 = float("nan")
                    stop: Callable[[], Awaitable[None]] = fk.shutdown
                else:
                    tgt = targets[name]
                    cpu0, ch0 = cpu_seconds(tgt.pid), cpu_seconds(tgt.pid, children=True)
                    t_first, t201, stop = await tgt.launch()
                    cpu1, ch1 = cpu_seconds(tgt.pid), cpu_seconds(tgt.pid, children=True)
            except Exception as exc:  # recorded as measured, the run goes on
                log(f"round {r} {name}: FAILED {str(exc)[:300]}")
                out[name].setdefault("failures", []).append(str(exc)[:1000])
                await asyncio.to_thread(kill_live_apps, cluster)
                await wait_no_live_apps(cluster, 60)
                continue
            log(f"round {r} {name}: first cell {t_first:.2f} s" + (f", cpu {cpu1 - cpu0:.2f} s" if cpu1 else ""))
            if r > 0:
                rec = out[name]
                rec["first_cell_s"].append(t_first)
                rec["started_s"].append(t201)
                if name != "floor":
                    rec["cpu_s"].append(cpu1 - cpu0)
                    rec["cpu_children_s"].append((ch1 - ch0) - (cpu1 - cpu0))
                    if targets[name].last_phases:
                        rec.setdefault("phases", []).append(targets[name].last_phases)
                else:
                    rec.setdefault("phases", []).append(fk.phases)
            await stop()
            if await wait_no_live_apps(cluster, 60):
                await asyncio.to_thread(kill_live_apps, cluster)
                await wait_no_live_apps(cluster, 60)
    return out


async def burst(tgt: RestTarget, cluster: Any, n: int) -> dict[str, Any]:
    """``n`` launches at once, then RSS with them running (clients attached, then not), then delete."""
    await asyncio.sleep(3)
    rss0 = rss_mb(tgt.pid)
    cpu0 = cpu_seconds(tgt.pid)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(start_and_run(tgt.client, tgt.spec) for _ in range(n)), return_exceptions=True)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(tgt.pid) - cpu0
    ok = [r for r in results if not isinstance(r, BaseException)]
    errors = [f"{type(r).__name__}: {r}"[:300] for r in results if isinstance(r, BaseException)]
    rss_connected = rss_mb(tgt.pid)
    for _kid, _t, _f, ws in ok:
        ws.close()
    await asyncio.sleep(5)
    rss_idle = rss_mb(tgt.pid)
    log(f"{tgt.name}: {len(ok)}/{n} concurrent launches ok in {wall:.1f} s; RSS {rss0:.1f} -> {rss_idle:.1f} MB")
    listed = await tgt.client.request("GET", "api/kernels")
    await delete_all(tgt.client, [r[0] for r in ok])
    if await wait_no_live_apps(cluster, 90):
        await asyncio.to_thread(kill_live_apps, cluster)
        await wait_no_live_apps(cluster, 60)
    first = [r[2] for r in ok]
    return {"n": n, "ok": len(ok), "errors": errors, "wall_s": wall, "first_cell_p50_s": median(first),
            "first_cell_max_s": max(first) if first else float("nan"), "cpu_s_per_launch": cpu / n,
            "rss_before_mb": rss0, "rss_connected_mb": rss_connected, "rss_running_mb": rss_idle,
            "rss_per_kernel_mb": (rss_idle - rss0) / max(1, len(ok)),
            "rss_per_connected_kernel_mb": (rss_connected - rss0) / max(1, len(ok)),
            "kernels_listed": len(listed.body) if isinstance(listed.body, list) else None}


async def concurrent(tgt: RestTarget, cluster: Any, n: int) -> dict[str, Any]:
    """Two bursts: the first is the concurrency result (and a cold RSS figure that includes the
    allocator's high-water mark of a burst of launches); the second, from the RSS left after the
    first, gives the RSS held per running kernel."""
    first = await burst(tgt, cluster, n)
    second = await burst(tgt, cluster, n)
    first["cold_rss_per_kernel_mb"] = first["rss_per_kernel_mb"]
    first["cold_rss_per_connected_kernel_mb"] = first["rss_per_connected_kernel_mb"]
    for key in ("rss_per_kernel_mb", "rss_per_connected_kernel_mb"):
        first[key] = second[key]
    first["second_burst"] = second
    return first


async def round_trips(ws: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        res = await ws.execute("1 + 1")
        out.append(time.perf_counter() - t)
        if res.status != "ok":
            raise RuntimeError(f"execute: {res.status}")
    return out


async def idle_kernels(workdir: str, cluster: Any, n_idle: int, n_rt: int) -> dict[str, Any]:
    """This gateway alone, one real local ipykernel active, then ``n_idle`` tiny kernels attached."""
    from yarn_gateway.app import builtin_kernelspec_dir

    spec_dir = os.path.join(workdir, "tiny-specs", "tiny")
    os.makedirs(spec_dir, exist_ok=True)
    tiny = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_kernel.py")
    with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
        json.dump({"argv": [sys.executable, tiny, "-f", "{connection_file}"], "display_name": "tiny",
                   "language": "python"}, f)
    gw = gateway_process(cluster, os.path.join(workdir, "idle"))
    with open(gw.config_path, "a") as f:
        f.write(f"c.YarnGatewayApp.kernelspec_dirs = {[builtin_kernelspec_dir(), os.path.dirname(spec_dir)]!r}\n")
    await gw.start()
    assert gw.proc is not None
    pid = gw.proc.pid
    client = GatewayClient(gw.url, TOKENS["alice"])
    try:
        kid, _t, _f, ws = await start_and_run(client, "python_local")
        await round_trips(ws, 20)  # warm-up
        single = await round_trips(ws, n_rt)
        rss0 = rss_mb(pid)
        sem = asyncio.Semaphore(8)
        idle_ws: list[Any] = []

        async def one() -> str:
            async with sem:
                k, _a, _b, w = await start_and_run(client, "tiny")
                idle_ws.append(w)
                return k

        t0 = time.perf_counter()
        idle_ids = await asyncio.gather(*(one() for _ in range(n_idle)))
        log(f"{n_idle} idle kernels attached in {time.perf_counter() - t0:.1f} s")
        await asyncio.sleep(5)
        cpu0 = cpu_seconds(pid)
        await asyncio.sleep(10)
        idle_cpu = (cpu_seconds(pid) - cpu0) / 10
        loaded = await round_trips(ws, n_rt)
        rss1 = rss_mb(pid)
        for w in idle_ws:
            w.close()
        await delete_all(client, idle_ids)
        await asyncio.sleep(5)
        # Alone again: drift of the (possibly shared) machine shows as before/after differences.
        after = await round_trips(ws, n_rt)
        ws.close()
        await delete_all(client, [kid])
    finally:
        await gw.close()
    before = single
    single = before + after
    return {"n_idle": n_idle, "n_round_trips": n_rt, "single_before_p50_ms": median(before) * 1e3,
            "single_after_p50_ms": median(after) * 1e3, "single_p50_ms": median(single) * 1e3,
            "single_p90_ms": percentile(single, 0.9) * 1e3, "idle_p50_ms": median(loaded) * 1e3,
            "idle_p90_ms": percentile(loaded, 0.9) * 1e3, "ratio_p50": median(loaded) / median(single),
            "gateway_cpu_share_idle": idle_cpu, "rss_per_idle_kernel_mb": (rss1 - rss0) / n_idle}


def report(res: dict[str, Any]) -> str:
    seq, conc, idle = res["sequential"], res["concurrent"], res.get("idle")
    rows = []
    for name, rec in seq.items():
        c = conc.get(name, {})
        rows.append([name, len(rec["first_cell_s"]), median(rec["first_cell_s"]),
                     median(rec["first_cell_s"]) / median(seq["floor"]["first_cell_s"]),
                     min(rec["first_cell_s"]) if rec["first_cell_s"] else "-",
                     mean(rec["cpu_s"]) if rec["cpu_s"] else "-",
                     mean(rec["cpu_children_s"]) if rec["cpu_children_s"] else "-",
                     f"{c['ok']}/{c['n']}" if c else "-", c.get("first_cell_p50_s", "-"),
                     c.get("rss_per_kernel_mb", "-"), c.get("rss_per_connected_kernel_mb", "-"),
                     c.get("cold_rss_per_kernel_mb", "-")])
    text = table(["target", "N ok", "first cell p50 s", "x floor", "first cell min s", "gw CPU s/launch (mean)",
                  "spark-submit CPU s", "concurrent ok", "concurrent p50 s", "RSS MB/kernel",
                  "RSS MB/kernel (ws open)", "cold RSS MB/kernel"], rows)
    if idle:
        text += "\n\n" + table(["idle kernels", "single p50 ms (before/after)", "with idle p50 ms", "ratio",
                                "single p90 ms", "with idle p90 ms", "gw CPU share idle", "RSS MB/idle kernel"],
                               [[idle["n_idle"], f"{idle['single_p50_ms']:.2f} ({idle['single_before_p50_ms']:.2f}/"
                                 f"{idle['single_after_p50_ms']:.2f})", idle["idle_p50_ms"], idle["ratio_p50"],
                                 idle["single_p90_ms"], idle["idle_p90_ms"], idle["gateway_cpu_share_idle"],
                                 idle["rss_per_idle_kernel_mb"]]])
    text += "\n\n" + phase_table(seq)
    checks = targets(res)
    text += "\n\n" + table(["target", "value", "limit", "result"], checks)
    return text


def mean(xs: list[float]) -> float:
    """CPU times tick in 10 ms steps: the mean (total / launches) is the per-launch cost."""
    return sum(xs) / len(xs)


def phase_table(seq: dict[str, Any]) -> str:
    """Where the launch time goes (medians): the cluster phase is the same work for both."""
    rows = []
    for name in ("floor", "yarn-gateway"):
        ph = seq.get(name, {}).get("phases") or []
        if not ph:
            continue
        before = [p.get("gateway_before_submit", 0.0) for p in ph]
        after = [p.get("gateway_after_response", p.get("after_response", 0.0)) for p in ph]
        rows.append([name, len(ph), median(before), median([p["cluster"] for p in ph]), median(after),
                     median([b + a for b, a in zip(before, after)])])
    return table(["target", "N", "before submit s", "cluster s (submit..response)", "response..first cell s",
                  "outside the cluster s"], rows)


def paired_ratio(seq: dict[str, Any]) -> Optional[float]:
    """Median over rounds of (this gateway / floor) in the same round (adjacent launches)."""
    a, b = seq["yarn-gateway"]["first_cell_s"], seq["floor"]["first_cell_s"]
    if len(a) != len(b) or not a:
        return None
    return median([x / y for x, y in zip(a, b)])


def targets(res: dict[str, Any]) -> list[list[Any]]:
    seq, conc, idle = res["sequential"], res["concurrent"], res.get("idle")
    floor = median(seq["floor"]["first_cell_s"])
    ours = seq["yarn-gateway"]
    out: list[list[Any]] = []

    def check(name: str, value: Any, limit: str, ok: Optional[bool]) -> None:
        out.append([name, value, limit, "n/a" if ok is None else ("PASS" if ok else "FAIL")])

    check("launch / floor", median(ours["first_cell_s"]) / floor, "<= 1.1", median(ours["first_cell_s"]) <= 1.1 * floor)
    pr = paired_ratio(seq)
    check("launch / floor, paired per round (info)", pr if pr is not None else "-", "<= 1.1", None)
    c = conc.get("yarn-gateway")
    check(f"{c['n'] if c else 16} concurrent all succeed", f"{c['ok']}/{c['n']}" if c else "-", "all",
          bool(c) and c["ok"] == c["n"])
    peer_c = conc.get("peer")
    check("peer concurrent (recorded)", f"{peer_c['ok']}/{peer_c['n']}" if peer_c else "not run", "-", None)
    if "peer" in seq and seq["peer"]["cpu_s"]:
        ratio = mean(ours["cpu_s"]) / mean(seq["peer"]["cpu_s"])
        check("CPU s/launch vs peer", ratio, "<= 0.5", ratio <= 0.5)
    else:
        check("CPU s/launch vs peer", "peer not run", "<= 0.5", None)
    if c:
        check("RSS MB per running YARN kernel", c["rss_per_kernel_mb"], "<= 0.3", c["rss_per_kernel_mb"] <= 0.3)
    if idle:
        check(f"{idle['n_idle']}-idle p50 / single p50", idle["ratio_p50"], "<= 1.25", idle["ratio_p50"] <= 1.25)
    return out


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds, 4 concurrent, 40 idle kernels")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--concurrent", type=int, default=None)
    ap.add_argument("--idle", type=int, default=None)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--report", metavar="JSON", help="print the tables of an earlier results file and exit")
    ns = ap.parse_args()
    if ns.report:
        with open(ns.report) as f:
            print(report(json.load(f)))
        return 0
    rounds = ns.rounds or (2 if ns.quick else 7)
    n_conc = ns.concurrent or (4 if ns.quick else 16)
    n_idle = ns.idle if ns.idle is not None else (40 if ns.quick else 200)
    from yarn_bench_env import make_workdir

    workdir = make_workdir("yarnbench-launch-")
    log(f"workdir {workdir}; starting the minicluster")
    cluster = await asyncio.to_thread(start_cluster)
    gw: Optional[GatewayProcess] = None
    peer: Optional[PeerGateway] = None
    floor = Floor(cluster)
    res: dict[str, Any] = {"machine": machine(), "rounds": rounds, "concurrent": {}, "notes": [],
                           "loadavg_at_start": loadavg()}
    try:
        await floor.start()
        gw = gateway_process(cluster, workdir)
        await gw.start()
        assert gw.proc is not None
        tgts: dict[str, RestTarget] = {
            "yarn-gateway": RestTarget("yarn-gateway", GatewayClient(gw.url, TOKENS["alice"]), YARN_SPEC, gw.proc.pid,
                                       gw.log_path)}
        peer = PeerGateway(cluster, workdir)
        why = "--no-peer" if ns.no_peer else peer.available()
        if why is None:
            res["peer_kernelspec"] = peer.install_spec()
            await peer.start()
            assert peer.proc is not None
            tgts["peer"] = RestTarget("peer", peer.client(), PEER_SPEC, peer.proc.pid)
        else:
            res["notes"].append(f"peer not run: {why}")
            log(f"peer not run: {why}")
        res["sequential"] = await sequential(tgts, floor, cluster, rounds)
        for name, tgt in tgts.items():
            res["concurrent"][name] = await concurrent(tgt, cluster, n_conc)
        if n_idle:
            res["idle"] = await idle_kernels(workdir, cluster, n_idle, 50 if ns.quick else 200)
    finally:
        if peer is not None:
            await peer.stop()
        if gw is not None:
            await gw.close()
        await floor.stop()
        await asyncio.to_thread(kill_live_apps, cluster)
        await asyncio.to_thread(cluster.close)
    res["loadavg_at_end"] = loadavg()
    text = report(res)
    print("\n" + text)
    path = write_results("yarn_launch", {**res, "table": text})
    print(f"\nresults: {path}  (logs under {workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
