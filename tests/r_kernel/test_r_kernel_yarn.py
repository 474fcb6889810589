"""Issue 5 (R half): the R kernel in YARN cluster mode, through the gateway, on a real ResourceManager and
NodeManager.

The cluster has no SparkR package (pip's PySpark has no R directory): the launcher's ``sc`` and ``spark``
are handles of the driver's JavaSparkContext and SparkSession, used with ``jcall()``/``jstatic()``
over Spark's RBackend. That is what these tests drive Spark with."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Any

import psutil
import pytest

from helpers.steps import behaviour
from helpers.waiting import wait_until
from helpers.yarn_cluster import container_user
from helpers.yarn_specs import PORT_RANGE
from helpers.yarn_specs import wait_app_state as _wait_app_state

# A driver, an executor, R and CLI JVMs per test on a small shared machine: more than the default 300 s.
pytestmark = [pytest.mark.e2e, pytest.mark.jvm, pytest.mark.timeout(600)]

SPEC = "spark_R_yarn_cluster"
KERNEL_PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
NOTICE = ("Note: the SparkR package is not installed on this cluster, so only plain R is available; `sc` and "
          '`spark` are JVM handles (jcall(sc, "sparkUser"), jstatic(class, method, ...)).\n')


async def _start(cluster: Any, client: Any, user: str) -> str:
    """Start the R kernel; on failure show the logs of the user's latest application (the launcher's output)."""
    try:
        return str(await client.start_kernel(SPEC))
    except AssertionError as e:
        apps = sorted(await asyncio.to_thread(cluster.apps_of, user), key=lambda a: int(a.get("startedTime", 0)))
        logs = "".join(cluster.container_log(a["id"], n)[-3000:] for a in apps[-1:] for n in ("stdout", "stderr"))
        raise AssertionError(f"{e}\n--- container logs ---\n{logs}") from None


def _app_of(gw: Any, kid: str) -> str:
    return str(gw.registry.kernels[kid].km.provisioner.app_id)




async def _out(ws: Any, code: str, timeout: float = 60) -> str:
    """What ``code`` printed on stdout (it must succeed and print nothing on stderr)."""
    res = await ws.execute(code, timeout)
    assert res.status == "ok" and not res.stderr, (res.stdout, res.stderr, res.error)
    return str(res.stdout)



def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for whoever adopted it counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _processes_of(app_id: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline", "status"])
            if app_id in " ".join(p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE]


def _listening(proc: psutil.Process) -> set[int]:
    return {c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}


def _bad_mac_answer(host: str, port: int, kid: str) -> dict[str, Any]:
    req = {"kernel_id": kid, "request": "ping", "ts": int(time.time()), "nonce": os.urandom(16).hex(), "mac": "00" * 32}
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(json.dumps(req).encode() + b"\n")
        return dict(json.loads(s.makefile().readline()))


async def test_r_kernel_runs_spark_on_yarn_as_caller_interrupts_and_finishes(
        make_gateway: Any, cluster: Any, yarn_gateway_config: dict[str, Any]) -> None:
    gw = await make_gateway(yarn_gateway_config)
    alice = gw.client("alice")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    kid = await _start(cluster, alice, "alice")
    started = loop.time() - t0
    app_id = _app_of(gw, kid)
    ws = await alice.connect(kid)

    # The first cell, and the first to use Spark (lazy mode: forcing `sc` waits for the SparkContext the
    # launcher asked the JVM for). Its output is what it printed and its value, plus the launcher's one-line
    # notice about SparkR; none of the launcher's log lines ("R launcher: ... SparkContext ready") and none
    # of Spark's.
    with behaviour('the first cell uses Spark and shows the notice once, no log lines'):
        total = 'jcall(jcall(jcall(spark, "sql", "SELECT sum(id) AS s FROM range(1, 11)"), "first"), "getLong", 0L)'
        first = await ws.execute_all(f'cat("first Spark cell\\n")\n{total}', timeout=180)
        assert first.status == "ok", (first.stdout, first.stderr, first.error)
        assert (first.stdout, first.stderr, first.results) == ("first Spark cell\n", NOTICE, ["[1] 55"]), first.messages
        again = await ws.execute_all('cat("second\\n")\n1+1')
        assert (again.stdout, again.stderr, again.results) == ("second\n", "", ["[1] 2"])  # the notice came once

    # What Spark in the driver says about itself: YARN cluster mode, the gateway's application, the caller.
    with behaviour('Spark runs in YARN cluster mode as alice, tagged by the gateway'):
        assert await _out(ws, 'cat(jcall(sc, "master"))') == "yarn"
        assert await _out(ws, 'cat(jcall(jcall(sc, "sc"), "deployMode"))') == "cluster"
        assert await _out(ws, 'cat(jcall(jcall(sc, "sc"), "applicationId"))') == app_id
        assert await _out(ws, 'cat(jcall(sc, "sparkUser"))') == "alice"
        # Hadoop's own CLI: RUNNING as the proxy user, with the gateway's tags (-status does not print tags).
        report = await asyncio.to_thread(cluster.application_status, app_id)
        assert (report["State"], report["User"], report["Application-Type"]) == ("RUNNING", "alice", "SPARK"), report
        for tag in ("yarn-gateway", "yarn-gateway-default", f"kernel-{kid}"):
            listed = await asyncio.to_thread(cluster.running_with_tag, tag)
            assert listed.get(app_id) == ("alice", "RUNNING"), (tag, listed)

    # DefaultContainerExecutor: the container runs as the NodeManager's Unix account; YARN and Spark see the
    # proxy user, and YARN sets USER to it.
    with behaviour("the container's user, and no launch token in the kernel"):
        owner = await _out(ws, 'cat(Sys.info()[["effective_user"]], Sys.getenv("USER"))')
        assert owner.split() == [container_user(), "alice"], owner
        assert (await ws.execute('nzchar(Sys.getenv("KERNEL_LAUNCH_TOKEN"))')).text.strip() == "[1] FALSE"

    # Every port the launcher reported is inside the range: its helper's (CurveZMQ proxy and control
    # port); IRkernel itself listens on 127.0.0.1 only, behind the proxy (tests/r_kernel/test_r_curve.py).
    with behaviour('every reported port is inside the range and the helper\'s; R listens on loopback only'):
        rec = gw.registry.kernels[kid]
        info = rec.km.get_connection_info()
        lo, hi = PORT_RANGE
        ports = [info[p] for p in KERNEL_PORTS] + [rec.km.provisioner.control_port]
        assert all(lo <= p <= hi for p in ports), ports
        r_pid = int(await _out(ws, "cat(Sys.getpid())"))
        r_proc = psutil.Process(r_pid)
        helpers = r_proc.children()
        assert len(helpers) == 1 and "launch_r_helper.py" in " ".join(helpers[0].cmdline())
        assert _listening(helpers[0]) == set(ports), (_listening(helpers[0]), ports)
        r_listening = [c.laddr for c in r_proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
        assert len(r_listening) == 5 and {a.ip for a in r_listening} == {"127.0.0.1"}, r_listening

    # The control port refuses a bad MAC.
    with behaviour('the control port refuses a bad MAC'):
        answer = _bad_mac_answer(rec.km.provisioner.control_host, rec.km.provisioner.control_port, kid)
        assert answer["status"] == "error" and answer["reason"].startswith("bad_mac"), answer

    # Interrupting Sys.sleep(60) returns within 5 s and the kernel stays usable.
    with behaviour('interrupting Sys.sleep(60) returns within 5 s, the kernel stays usable'):
        msg = ws.message("execute_request", {"code": "x <- 21; Sys.sleep(60)", "silent": False, "store_history": True,
                                             "user_expressions": {}, "allow_stdin": False})
        await ws.send(msg)
        await asyncio.sleep(2)
        t1 = loop.time()
        assert (await alice.request("POST", f"api/kernels/{kid}/interrupt", {})).code == 204
        res = await ws.collect(msg["header"]["msg_id"], timeout=30)
        assert loop.time() - t1 < 5
        assert res.status in ("error", "abort", "ok"), res
        assert (await ws.execute("x * 2")).text.strip() == "[1] 42"

    # Shutdown: the application ends FINISHED/SUCCEEDED and nothing is left running.
    with behaviour('shutdown ends the application FINISHED, nothing left'):
        assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
        final = await _wait_app_state(cluster, app_id, {"FINISHED", "FAILED", "KILLED"})
        assert (final["state"], final["finalStatus"]) == ("FINISHED", "SUCCEEDED"), final.get("diagnostics")
        assert _gone(r_pid) and _gone(helpers[0].pid)
        # The AM unregisters before its JVM has exited; the NodeManager then reaps the container.
        await wait_until(lambda: not _processes_of(app_id), 30, interval=0.5,
                         what=lambda: f"no process of {app_id} is left; still running: {_processes_of(app_id)}")
    assert started < 180


async def test_r_kernel_restart_gives_new_application(make_gateway: Any, cluster: Any,
                                                      yarn_gateway_config: dict[str, Any]) -> None:
    gw = await make_gateway(yarn_gateway_config)
    bob = gw.client("bob")
    kid = await _start(cluster, bob, "bob")
    first_app = _app_of(gw, kid)
    ws = await bob.connect(kid)
    assert (await ws.execute("y <- 5")).status == "ok"
    # A started kernel: its SparkContext is up (YARN says RUNNING). Stopping a driver before that
    # makes YARN fail the application.
    await _wait_app_state(cluster, first_app, {"RUNNING"}, timeout=120)
    r = await bob.request("POST", f"api/kernels/{kid}/restart", {})
    assert r.code == 200, r.body
    second_app = _app_of(gw, kid)
    assert second_app != first_app
    old = await _wait_app_state(cluster, first_app, {"FINISHED", "FAILED", "KILLED"})
    logs = cluster.container_log(first_app, "stderr")[-4000:] + cluster.container_log(first_app, "stdout")[-3000:]
    assert (old["state"], old["finalStatus"]) == ("FINISHED", "SUCCEEDED"), logs
    ws2 = await bob.connect(kid)
    assert (await ws2.execute('exists("y")')).text.strip() == "[1] FALSE"
    assert await _out(ws2, 'cat(jcall(jcall(sc, "sc"), "applicationId"), jcall(sc, "sparkUser"))', timeout=120) \
        == f"{second_app} bob"
    assert (await bob.request("DELETE", f"api/kernels/{kid}")).code == 204
    final = await _wait_app_state(cluster, second_app, {"FINISHED", "FAILED", "KILLED"})
    logs = cluster.container_log(second_app, "stderr")[-6000:] + cluster.container_log(second_app, "stdout")[-3000:]
    assert (final["state"], final["finalStatus"]) == ("FINISHED", "SUCCEEDED"), (final.get("diagnostics"), logs)
