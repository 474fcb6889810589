"""Restart recovery benchmark (issue 7, acceptance 6).

This gateway runs as a daemon process on a real single-host YARN (devcluster, started by
the benchmark in its own directory on ``--port-base``, stopped by PID at the end) with a
directory session store; N YARN Python kernels (default 20) are started through it and
each is given ``x = <i>``. Then, once per mode, the gateway is stopped (``SIGTERM``: a
clean stop that leaves the kernels running; ``kill -9``: a crash) and started again. The
clock starts at the restart command; from that instant a client per kernel retries (every
0.1 s) to open the kernel's websocket and execute ``x``; a kernel is *usable again* when
that execute answers ``ok`` with its own value. Reported per mode: time until the REST API
answers, until ``GET /api/kernels`` lists all N, and until the first / median / last
kernel is usable.

Each kernel is a Spark driver in a YARN container (the AM JVM plus the Python kernel;
``--executors`` per kernel, default 0, i.e. dynamic allocation from zero executors:
executors take no part in re-attaching). Kernels
are started in batches and the benchmark stops adding kernels when less than
``--reserve-gb`` of memory would remain, saying so (the largest N that fits).

Usage: ``python bench/recovery_bench.py [--quick] [--kernels 20] [--modes sigterm,kill9]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any, Optional

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from yarn_bench_env import (
    DEFAULT_PORT_BASE,
    TOKENS,
    YARN_SPEC,
    GatewayClient,
    GatewayProcess,
    YarnCluster,
    cluster_rss_gb,
    delete_all,
    gateway_process,
    kill_live_apps,
    loadavg,
    log,
    machine,
    make_workdir,
    median,
    start_and_run,
    start_cluster,
    stop_cluster,
    table,
    wait_no_live_apps,
    write_results,
)


async def start_kernels(client: GatewayClient, cluster: YarnCluster, want: int, reserve_gb: float,
                        batch: int, env: dict[str, str]) -> tuple[list[str], str]:
    """Start up to ``want`` kernels (``x = i`` in each); returns ids and a note when memory capped N."""
    ids: list[str] = []
    note = ""
    per_kernel_gb = 0.0
    while len(ids) < want:
        avail = psutil.virtual_memory().available / 2**30
        n = min(batch, want - len(ids))
        if per_kernel_gb and avail - n * per_kernel_gb < reserve_gb:
            n = int((avail - reserve_gb) / per_kernel_gb)
            if n <= 0:
                note = (f"memory: stopped at N={len(ids)} ({avail:.1f} GB available, ~{per_kernel_gb:.2f} GB per "
                        f"kernel, {reserve_gb:g} GB reserve)")
                break
        # sc.applicationId waits for the lazy SparkContext: the drivers are complete, as in real use.
        started = await asyncio.gather(*(start_and_run(client, YARN_SPEC, code=f"x = {len(ids) + i}; sc.applicationId",
                                                       env=env) for i in range(n)))
        for kid, _t, _f, ws in started:
            ids.append(kid)
            ws.close()
        per_kernel_gb = max(per_kernel_gb, cluster_rss_gb(cluster) / len(ids))
        log(f"{len(ids)} kernels running; {psutil.virtual_memory().available / 2**30:.1f} GB available")
    return ids, note


async def usable(client: GatewayClient, kid: str, value: int, t0: float, deadline: float) -> Optional[float]:
    """Seconds from ``t0`` until ``kid`` answers ``x`` with ``value`` through the gateway (None: never)."""
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        ws = None
        try:
            ws = await client.connect(kid)
            res = await ws.execute("x", timeout=max(1.0, deadline - loop.time()))
            if res.status == "ok" and res.text == str(value):
                return time.perf_counter() - t0
        except Exception:  # refused, 404 before re-attach, closed socket: retry like a client would
            pass
        finally:
            if ws is not None:
                ws.close()
        await asyncio.sleep(0.1)
    return None


async def listed(client: GatewayClient, ids: set[str], t0: float, deadline: float) -> Optional[float]:
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        try:
            r = await client.request("GET", "api/kernels", timeout=5)
            if r.code == 200 and ids <= {k["id"] for k in r.body}:
                return time.perf_counter() - t0
        except Exception:  # not up yet
            pass
        await asyncio.sleep(0.1)
    return None


async def restart(gw: GatewayProcess, mode: str, ids: list[str], timeout: float) -> dict[str, Any]:
    client = GatewayClient(gw.url, TOKENS["alice"])
    if mode == "sigterm":
        code = await gw.terminate()
        log(f"gateway stopped with SIGTERM (exit {code})")
    else:
        await gw.kill9()
        log("gateway killed with SIGKILL")
    await asyncio.sleep(1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    t0 = time.perf_counter()
    starting = asyncio.create_task(gw.start(timeout=timeout))
    probes = [asyncio.create_task(usable(client, kid, i, t0, deadline)) for i, kid in enumerate(ids)]
    listing = asyncio.create_task(listed(client, set(ids), t0, deadline))
    await starting
    t_api = time.perf_counter() - t0
    times = await asyncio.gather(*probes)
    t_listed = await listing
    ok = [t for t in times if t is not None]
    return {"mode": mode, "n": len(ids), "usable": len(ok), "api_up_s": t_api, "listed_all_s": t_listed,
            "first_usable_s": min(ok) if ok else None, "median_usable_s": median(ok) if ok else None,
            "all_usable_s": max(ok) if len(ok) == len(ids) else None, "per_kernel_s": times}


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 kernels")
    ap.add_argument("--kernels", type=int, default=None)
    ap.add_argument("--modes", default="sigterm,kill9")
    ap.add_argument("--repeat", type=int, default=1, help="restarts per mode")
    ap.add_argument("--reserve-gb", type=float, default=3.0)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--batch", type=int, default=2, help="kernels started at once (default 2)")
    ap.add_argument("--executors", type=int, default=0,
                    help="executors per kernel (default 0: dynamic allocation, none requested)")
    ap.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE,
                    help=f"the dev cluster's port base (default {DEFAULT_PORT_BASE}, env YARN_BENCH_PORT_BASE)")
    ns = ap.parse_args()
    want = ns.kernels or (2 if ns.quick else 20)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    workdir = make_workdir("yarnbench-recovery-")
    log(f"workdir {workdir}; starting the dev cluster on port base {ns.port_base}")
    res: dict[str, Any] = {"machine": machine(), "wanted": want, "executors_per_kernel": ns.executors, "runs": [],
                           "notes": []}
    cluster: Optional[YarnCluster] = None
    gw: Optional[GatewayProcess] = None
    try:
        cluster, starts = await asyncio.to_thread(start_cluster, workdir, ns.port_base)
        res["cluster_start_s"] = starts
        gw = gateway_process(cluster, cluster.spark_home, workdir)  # Python kernels only: the cluster's own
        await gw.start()
        client = GatewayClient(gw.url, TOKENS["alice"])
        mem0 = psutil.virtual_memory().available / 2**30
        # No executors: dynamic allocation from 0 (Spark refuses spark.executor.instances=0 without it);
        # the start cell runs no job, so none is requested.
        env = ({"KERNEL_SPARK_DYNAMIC_ALLOCATION_ENABLED": "true"} if ns.executors == 0
               else {"KERNEL_SPARK_EXECUTOR_INSTANCES": str(ns.executors)})
        ids, note = await start_kernels(client, cluster, want, ns.reserve_gb, ns.batch, env)
        res["kernels"] = len(ids)
        res["mem_per_kernel_gb"] = (mem0 - psutil.virtual_memory().available / 2**30) / max(1, len(ids))
        res["container_rss_per_kernel_gb"] = cluster_rss_gb(cluster) / max(1, len(ids))
        if note:
            res["notes"].append(note)
            log(note)
        for _ in range(ns.repeat):
            for mode in ns.modes.split(","):
                run = await restart(gw, mode, ids, ns.timeout)
                res["runs"].append(run)
                log(f"{mode}: all {run['n']} usable after {run['all_usable_s']} s (API up {run['api_up_s']:.2f} s)")
        await delete_all(client, ids)
        await wait_no_live_apps(cluster, 90)
    finally:
        if gw is not None:
            await gw.close()
        if cluster is not None:
            await asyncio.to_thread(kill_live_apps, cluster)
            await asyncio.to_thread(stop_cluster, cluster)

    res["loadavg_at_end"] = loadavg()

    def f(v: Optional[float]) -> Any:
        return "never" if v is None else v

    text = table(["restart after", "kernels", "usable", "API up s", "all listed s", "first usable s",
                  "median usable s", "all usable s"],
                 [[r["mode"], r["n"], r["usable"], r["api_up_s"], f(r["listed_all_s"]), f(r["first_usable_s"]),
                   f(r["median_usable_s"]), f(r["all_usable_s"])] for r in res["runs"]])
    text += (f"\n\nmemory per running kernel: {res['container_rss_per_kernel_gb']:.2f} GB RSS of its container "
             f"processes, {res['mem_per_kernel_gb']:.2f} GB less available memory on the host")
    for n in res["notes"]:
        text += f"\nnote: {n}"
    print("\n" + text)
    path = write_results("recovery", {**res, "table": text})
    print(f"\nresults: {path}  (logs under {workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
