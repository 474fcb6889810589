"""YARN launch benchmark: this gateway, the peer and the floor, side by side in one run on
one real YARN (devcluster: Apache Hadoop 3.3.6 RM + NM on this host) with the same containers.

Measured in one run, samples of different targets alternating round by round:

1. **dev cluster cold start**: ``Cluster.start()`` from an empty directory until the
   NodeManager's node is RUNNING in the ResourceManager (``--cluster-starts`` samples; the
   last cluster is the one everything else runs on).
2. **spark-submit -> application RUNNING**: the floor's real spark-submit of the Python
   launcher, until the RM reports the application RUNNING (the AM registered; polled every
   0.1 s). Scala and R are reported too.
3. **yarn-gateway**: this gateway as a daemon process, ``POST /api/kernels`` until the first
   executed cell, for the Python, Scala (Toree) and R kernelspecs it ships.
4. **floor**: ``yarn_floor.Floor``: the same launchers submitted by hand with spark-submit and
   no gateway (callback on a response socket, connect, first cell), the same three languages.
5. **peer** (Python): Jupyter Kernel Gateway 3.0.1 + gateway_provisioners 0.5.0
   ``YarnProvisioner`` (kernelspec from ``jupyter-yarn-spec install --spark
   --impersonation-enabled``) from ``bench/.venvs/jkg`` (``make bench-yarn-venv``).

All run the driver in YARN cluster mode as ``alice`` via ``--proxy-user`` with
``--spark-context-initialization-mode lazy``; the first cell is ``1 + 1``. Reported: p50,
min, max and every sample; per language the gateway/floor ratio of the medians and the
median of per-round paired ratios; where the launch time goes (floor phases from its own
clock, gateway phases from its log lines); gateway CPU seconds per launch vs the peer's;
``--concurrent`` simultaneous Python launches per gateway with the gateway's RSS per
running YARN kernel (second burst; the first, "cold" one is reported too); and, on this
gateway, the execute round trip of one active kernel alone and with ``--idle`` idle kernels
attached (tiny_kernel.py stand-ins, no JVM).

Usage: ``python bench/yarn_launch.py [--quick] [--rounds N] [--cluster-starts N]
[--concurrent N] [--idle N] [--languages python,scala,r] [--no-peer] [--port-base 35000]
[--json]``.
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
    DEFAULT_PORT_BASE,
    FIRST_CELL,
    PEER_SPEC,
    SPECS,
    TOKENS,
    GatewayClient,
    GatewayProcess,
    PeerGateway,
    YarnCluster,
    cpu_seconds,
    delete_all,
    gateway_process,
    kernel_bounds,
    kill_live_apps,
    loadavg,
    log,
    machine,
    make_workdir,
    median,
    percentile,
    rss_mb,
    settle,
    start_and_run,
    start_cluster,
    stop_cluster,
    table,
    write_results,
)
from yarn_floor import Floor

_LOG_TS = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")
LANG_NAMES = {"python": "Python", "scala": "Scala", "r": "R"}


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
    """A gateway reached over REST + websocket (this gateway or the peer), one kernelspec."""

    def __init__(self, name: str, client: GatewayClient, spec: str, lang: str, pid: int, log_path: str = "") -> None:
        self.name, self.client, self.spec, self.lang, self.pid = name, client, spec, lang, pid
        self.log_path = log_path
        self.last_phases: Optional[dict[str, float]] = None

    async def launch(self) -> tuple[float, float, Callable[[], Awaitable[None]]]:
        t_post = time.time()
        kid, _t201, t_first, ws = await start_and_run(self.client, self.spec, FIRST_CELL[self.lang])
        if self.log_path:
            self.last_phases = gateway_phases(self.log_path, kid, t_post, t_post + t_first)

        async def stop() -> None:
            ws.close()
            await delete_all(self.client, [kid])

        return t_first, _t201, stop


def target_name(kind: str, lang: str) -> str:
    return f"{kind} {lang}"


def round_order(groups: list[list[str]], r: int) -> list[str]:
    """Round ``r``'s launch order: the language groups rotated by ``r``, each group rotated by ``r``
    too, so every target runs early and late, and next to its floor, in turn."""
    rotated = groups[r % len(groups):] + groups[: r % len(groups)]
    out = []
    for g in rotated:
        k = r % len(g)
        out += g[k:] + g[:k]
    return out


async def sequential(targets: dict[str, RestTarget], floor: Floor, langs: list[str], cluster: YarnCluster,
                     rounds: int, warmup: int) -> dict[str, Any]:
    """One launch at a time (at most one kernel alive), every target once per round."""
    groups = [[n for n in (target_name("floor", lang), target_name("yarn-gateway", lang),
                           target_name("peer", lang)) if n.startswith("floor") or n in targets] for lang in langs]
    names = [n for g in groups for n in g]
    out: dict[str, Any] = {n: {"first_cell_s": [], "started_s": [], "cpu_s": [], "cpu_children_s": [],
                               "rounds": []} for n in names}
    for r in range(rounds + warmup):  # the warm-up rounds fill the page cache and the JVMs' class data
        measured = r >= warmup
        for name in round_order(groups, r):
            kind, lang = name.split(" ", 1)
            cpu0 = cpu1 = ch0 = ch1 = 0.0
            fk = None
            try:
                if kind == "floor":
                    fk, t_first = await floor.launch(lang, FIRST_CELL[lang])
                    t201 = float("nan")
                    await fk.wait_running(120)  # lazy mode: RUNNING may come after the first cell
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
                await settle(cluster, 60)
                continue
            extra = ""
            if fk is not None and "running" in fk.phases:
                extra = f", RUNNING at {fk.phases['running']:.2f} s"
            elif cpu1:
                extra = f", gateway cpu {cpu1 - cpu0:.2f} s"
            log(f"round {r}{'' if measured else ' (warm-up)'} {name}: first cell {t_first:.2f} s{extra}")
            if measured:
                rec = out[name]
                rec["first_cell_s"].append(t_first)
                rec["started_s"].append(t201)
                rec["rounds"].append(r)
                if kind != "floor":
                    rec["cpu_s"].append(cpu1 - cpu0)
                    # Reaped children only (the peer reaps its spark-submit when the kernel ends: ~0 here).
                    rec["cpu_children_s"].append(max(0.0, (ch1 - ch0) - (cpu1 - cpu0)))
                    if targets[name].last_phases:
                        rec.setdefault("phases", []).append(targets[name].last_phases)
                else:
                    assert fk is not None
                    rec.setdefault("phases", []).append(dict(fk.phases))
            await stop()
            await settle(cluster, 90)
    return out


async def burst(tgt: RestTarget, cluster: YarnCluster, n: int) -> dict[str, Any]:
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
    await settle(cluster, 120)
    first = [r[2] for r in ok]
    return {"n": n, "ok": len(ok), "errors": errors, "wall_s": wall, "first_cell_p50_s": median(first),
            "first_cell_max_s": max(first) if first else float("nan"), "cpu_s_per_launch": cpu / n,
            "rss_before_mb": rss0, "rss_connected_mb": rss_connected, "rss_running_mb": rss_idle,
            "rss_per_kernel_mb": (rss_idle - rss0) / max(1, len(ok)),
            "rss_per_connected_kernel_mb": (rss_connected - rss0) / max(1, len(ok)),
            "kernels_listed": len(listed.body) if isinstance(listed.body, list) else None}


async def concurrent(tgt: RestTarget, cluster: YarnCluster, n: int) -> dict[str, Any]:
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


async def idle_kernels(workdir: str, cluster: YarnCluster, spark_home: str, n_idle: int,
                       n_rt: int) -> dict[str, Any]:
    """This gateway alone, one real local ipykernel active, then ``n_idle`` tiny kernels attached."""
    from yarn_gateway.app import builtin_kernelspec_dir

    spec_dir = os.path.join(workdir, "tiny-specs", "tiny")
    os.makedirs(spec_dir, exist_ok=True)
    tiny = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_kernel.py")
    with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
        json.dump({"argv": [sys.executable, tiny, "-f", "{connection_file}"], "display_name": "tiny",
                   "language": "python"}, f)
    gw = gateway_process(cluster, spark_home, os.path.join(workdir, "idle"))
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


# ------------------------------------------------------------------------- report


def mean(xs: list[float]) -> float:
    """CPU times tick in 10 ms steps: the mean (total / launches) is the per-launch cost."""
    return sum(xs) / len(xs)


def samples(xs: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs) or "-"


def _row(measurement: str, target: str, xs: list[float], ratio: Any = "-", paired: Any = "-") -> list[Any]:
    if not xs:
        return [measurement, target, 0, "-", "-", "-", ratio, paired, "-"]
    return [measurement, target, len(xs), median(xs), min(xs), max(xs), ratio, paired, samples(xs)]


def paired_ratio(seq: dict[str, Any], a: str, b: str) -> Optional[float]:
    """Median over rounds of (a / b) in the same round (launches next to each other)."""
    ra = dict(zip(seq.get(a, {}).get("rounds", []), seq.get(a, {}).get("first_cell_s", [])))
    rb = dict(zip(seq.get(b, {}).get("rounds", []), seq.get(b, {}).get("first_cell_s", [])))
    common = sorted(set(ra) & set(rb))
    return median([ra[r] / rb[r] for r in common]) if common else None


def main_table(res: dict[str, Any]) -> str:
    seq = res["sequential"]
    rows = [_row("dev cluster cold start (RM+NM until the node is RUNNING)", "devcluster", res["cluster_start_s"])]
    for lang in res["languages"]:
        ph = seq.get(target_name("floor", lang), {}).get("phases", [])
        rows.append(_row("spark-submit -> application RUNNING (no gateway)", f"floor {LANG_NAMES[lang]}",
                         [p["running"] for p in ph if "running" in p]))
    for lang in res["languages"]:
        floor = seq.get(target_name("floor", lang), {}).get("first_cell_s", [])
        for kind in ("yarn-gateway", "peer"):
            name = target_name(kind, lang)
            if name not in seq:
                continue
            xs = seq[name]["first_cell_s"]
            ratio = median(xs) / median(floor) if xs and floor else "-"
            pr = paired_ratio(seq, name, target_name("floor", lang))
            rows.append(_row("POST /api/kernels -> first executed cell", f"{kind} {LANG_NAMES[lang]}", xs, ratio,
                             pr if pr is not None else "-"))
        rows.append(_row("spark-submit -> callback -> connect -> first cell (floor)", f"floor {LANG_NAMES[lang]}",
                         floor, 1.0 if floor else "-"))
    return table(["measurement", "target", "N", "p50 s", "min s", "max s", "x floor (p50)", "x floor (paired)",
                  "samples s"], rows)


def phase_table(res: dict[str, Any]) -> str:
    """Where the launch time goes (medians, seconds from spark-submit / POST)."""
    seq = res["sequential"]
    rows = []
    for lang in res["languages"]:
        ph = seq.get(target_name("floor", lang), {}).get("phases") or []
        if ph:
            def med(key: str, phases: list[dict[str, float]] = ph) -> Any:
                xs = [p[key] for p in phases if key in p]
                return median(xs) if xs else "-"

            rows.append([f"floor {LANG_NAMES[lang]}", len(ph), med("app_id"), med("submit_exit"), med("callback"),
                         med("connected"), med("first_cell"), med("running")])
    text = table(["floor", "N", "app id printed", "spark-submit exited", "launcher callback", "connected",
                  "first cell", "app RUNNING"], rows)
    rows = []
    for lang in res["languages"]:
        name = target_name("yarn-gateway", lang)
        ph = seq.get(name, {}).get("phases") or []
        floor = seq.get(target_name("floor", lang), {}).get("phases") or []
        if not ph:
            continue
        before = [p["gateway_before_submit"] for p in ph]
        after = [p["gateway_after_response"] for p in ph]
        floor_after = [p["first_cell"] - p["callback"] for p in floor]
        rows.append([f"yarn-gateway {LANG_NAMES[lang]}", len(ph), median(before), median([p["cluster"] for p in ph]),
                     median([f["callback"] for f in floor]) if floor else "-", median(after),
                     median(floor_after) if floor_after else "-"])
    text += "\n\n" + table(["gateway", "N", "POST..submit s", "submit..callback s", "floor submit..callback s",
                            "callback..first cell s", "floor callback..first cell s"], rows)
    return text


def gateway_table(res: dict[str, Any]) -> str:
    seq, conc = res["sequential"], res["concurrent"]
    rows = []
    for kind in ("yarn-gateway", "peer"):
        name = target_name(kind, "python")
        if name not in seq:
            continue
        rec, c = seq[name], conc.get(kind, {})
        rows.append([kind, mean(rec["cpu_s"]) if rec["cpu_s"] else "-",
                     mean(rec["cpu_children_s"]) if rec["cpu_children_s"] else "-",
                     f"{c['ok']}/{c['n']}" if c else "-", c.get("first_cell_p50_s", "-"),
                     c.get("rss_per_kernel_mb", "-"), c.get("rss_per_connected_kernel_mb", "-"),
                     c.get("cold_rss_per_kernel_mb", "-")])
    return table(["Python kernels", "gw CPU s/launch (mean)", "spark-submit CPU s", "concurrent ok",
                  "concurrent first cell p50 s", "RSS MB/kernel", "RSS MB/kernel (ws open)", "cold RSS MB/kernel"],
                 rows)


def report(res: dict[str, Any]) -> str:
    idle = res.get("idle")
    text = main_table(res) + "\n\n" + phase_table(res) + "\n\n" + gateway_table(res)
    if idle:
        text += "\n\n" + table(["idle kernels", "single p50 ms (before/after)", "with idle p50 ms", "ratio",
                                "single p90 ms", "with idle p90 ms", "gw CPU share idle", "RSS MB/idle kernel"],
                               [[idle["n_idle"], f"{idle['single_p50_ms']:.2f} ({idle['single_before_p50_ms']:.2f}/"
                                 f"{idle['single_after_p50_ms']:.2f})", idle["idle_p50_ms"], idle["ratio_p50"],
                                 idle["single_p90_ms"], idle["idle_p90_ms"], idle["gateway_cpu_share_idle"],
                                 idle["rss_per_idle_kernel_mb"]]])
    text += "\n\n" + table(["target", "value", "limit", "result"], targets(res))
    failures = [(n, f) for n, rec in res["sequential"].items() for f in rec.get("failures", [])]
    for name, failure in failures:
        text += f"\nfailed launch: {name}: {failure[:300]}"
    for note in res.get("notes", []):
        text += f"\nnote: {note}"
    return text


def targets(res: dict[str, Any]) -> list[list[Any]]:
    seq, conc, idle = res["sequential"], res["concurrent"], res.get("idle")
    out: list[list[Any]] = []

    def check(name: str, value: Any, limit: str, ok: Optional[bool]) -> None:
        out.append([name, value, limit, "n/a" if ok is None else ("PASS" if ok else "FAIL")])

    for lang in res["languages"]:
        ours = seq.get(target_name("yarn-gateway", lang), {}).get("first_cell_s", [])
        floor = seq.get(target_name("floor", lang), {}).get("first_cell_s", [])
        if ours and floor:
            ratio = median(ours) / median(floor)
            check(f"{LANG_NAMES[lang]} launch / floor", ratio, "<= 1.1", ratio <= 1.1)
            pr = paired_ratio(seq, target_name("yarn-gateway", lang), target_name("floor", lang))
            check(f"{LANG_NAMES[lang]} launch / floor, paired per round (info)", pr if pr is not None else "-",
                  "<= 1.1", None)
    c = conc.get("yarn-gateway")
    if c:
        check(f"{c['n']} concurrent all succeed", f"{c['ok']}/{c['n']}", "all", c["ok"] == c["n"])
    peer_c = conc.get("peer")
    check("peer concurrent (recorded)", f"{peer_c['ok']}/{peer_c['n']}" if peer_c else "not run", "-", None)
    ours_cpu = seq.get(target_name("yarn-gateway", "python"), {}).get("cpu_s", [])
    peer_cpu = seq.get(target_name("peer", "python"), {}).get("cpu_s", [])
    if ours_cpu and peer_cpu and mean(peer_cpu) > 0:
        ratio = mean(ours_cpu) / mean(peer_cpu)
        check("CPU s/launch vs peer", ratio, "<= 0.5", ratio <= 0.5)
    else:
        check("CPU s/launch vs peer", "peer not run", "<= 0.5", None)
    if c:
        check("RSS MB per running YARN kernel", c["rss_per_kernel_mb"], "<= 0.3", c["rss_per_kernel_mb"] <= 0.3)
    if idle:
        check(f"{idle['n_idle']}-idle p50 / single p50", idle["ratio_p50"], "<= 1.25", idle["ratio_p50"] <= 1.25)
    return out


# ------------------------------------------------------------------------- main


async def run(ns: argparse.Namespace, res: dict[str, Any]) -> str:
    langs = [x.strip().lower() for x in ns.languages.split(",") if x.strip()]
    unknown = [x for x in langs if x not in SPECS]
    if unknown:
        raise SystemExit(f"unknown language(s) {unknown}: choose from {', '.join(SPECS)}")
    res["languages"] = langs
    workdir = make_workdir("yarnbench-launch-")
    res["workdir"] = workdir
    log(f"workdir {workdir}; {ns.cluster_starts} cold start(s) of the dev cluster on port base {ns.port_base}")
    cluster: Optional[YarnCluster] = None
    gw: Optional[GatewayProcess] = None
    peer: Optional[PeerGateway] = None
    floor: Optional[Floor] = None
    try:
        cluster, res["cluster_start_s"] = await asyncio.to_thread(start_cluster, workdir, ns.port_base,
                                                                  ns.cluster_starts)
        res["rm_url"] = cluster.rm_url
        # The cluster's own (pip PySpark, no R/lib/sparkr.zip: build_argv then submits the R launcher
        # through Spark's RRunner; the floor uses build_argv too).
        spark_home = cluster.spark_home
        res["spark_home"] = spark_home
        floor = Floor(cluster, spark_home, kernel_bounds(cluster))
        await floor.start()
        gw = gateway_process(cluster, spark_home, workdir)
        await gw.start()
        assert gw.proc is not None
        client = GatewayClient(gw.url, TOKENS["alice"])
        tgts: dict[str, RestTarget] = {
            target_name("yarn-gateway", lang): RestTarget("yarn-gateway", client, SPECS[lang], lang, gw.proc.pid,
                                                          gw.log_path) for lang in langs}
        peer = PeerGateway(cluster, spark_home, workdir)
        why = "--no-peer" if ns.no_peer else ("Python not measured" if "python" not in langs else peer.available())
        if why is None:
            res["peer_kernelspec"] = peer.install_spec()
            await peer.start()
            assert peer.proc is not None
            tgts[target_name("peer", "python")] = RestTarget("peer", peer.client(), PEER_SPEC, "python",
                                                             peer.proc.pid)
        else:
            res["notes"].append(f"peer not run: {why}")
            log(f"peer not run: {why}")
        res["sequential"] = await sequential(tgts, floor, langs, cluster, ns.rounds, ns.warmup)
        if ns.concurrent and "python" in langs:
            for kind in ("yarn-gateway", "peer"):
                name = target_name(kind, "python")
                if name in tgts:
                    res["concurrent"][kind] = await concurrent(tgts[name], cluster, ns.concurrent)
        if ns.idle:
            res["idle"] = await idle_kernels(workdir, cluster, spark_home, ns.idle, ns.round_trips)
    finally:
        if peer is not None:
            await peer.stop()
        if gw is not None:
            await gw.close()
        if floor is not None:
            await floor.stop()
        if cluster is not None:
            await asyncio.to_thread(kill_live_apps, cluster)
            await asyncio.to_thread(stop_cluster, cluster, ns.keep_logs)
    return workdir


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 rounds, 2 cluster cold starts, 2 concurrent, 40 idle kernels")
    ap.add_argument("--rounds", type=int, default=None, help="measured rounds (default 7, quick 2)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up rounds, not counted (default 1)")
    ap.add_argument("--cluster-starts", type=int, default=None, help="dev cluster cold starts (default 3, quick 2)")
    ap.add_argument("--concurrent", type=int, default=None,
                    help="simultaneous Python launches per gateway, 0 = none (default 4, quick 2)")
    ap.add_argument("--idle", type=int, default=None, help="idle tiny kernels (default 200, quick 40)")
    ap.add_argument("--languages", default="python,scala,r")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE,
                    help=f"the dev cluster's port base (default {DEFAULT_PORT_BASE}, env YARN_BENCH_PORT_BASE)")
    ap.add_argument("--keep-logs", action="store_true",
                    help="stop the cluster but keep its directory (container logs) under the work directory")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of the tables")
    ap.add_argument("--report", metavar="JSON", help="print the tables of an earlier results file and exit")
    ns = ap.parse_args()
    if ns.report:
        with open(ns.report) as f:
            print(report(json.load(f)))
        return 0
    ns.rounds = ns.rounds or (2 if ns.quick else 7)
    ns.cluster_starts = ns.cluster_starts or (2 if ns.quick else 3)
    ns.concurrent = ns.concurrent if ns.concurrent is not None else (2 if ns.quick else 4)
    ns.idle = ns.idle if ns.idle is not None else (40 if ns.quick else 200)
    ns.round_trips = 50 if ns.quick else 200
    # The host name resolves to loopback here: Spark's client and drivers bind 127.0.0.1.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    res: dict[str, Any] = {"machine": machine(), "command": " ".join(["bench/yarn_launch.py", *sys.argv[1:]]),
                           "rounds": ns.rounds, "warmup": ns.warmup, "concurrent": {}, "notes": [],
                           "loadavg_at_start": loadavg()}
    workdir = await run(ns, res)
    res["loadavg_at_end"] = loadavg()
    text = report(res)
    path = write_results("yarn_launch", {**res, "table": text})
    if ns.json:
        print(json.dumps({**res, "results_file": str(path)}, indent=2, default=str))
    else:
        print("\n" + text)
        print(f"\nresults: {path}  (logs under {workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
