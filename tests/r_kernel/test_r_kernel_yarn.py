"""Issue 5 (R half): the R kernel in YARN cluster mode, through the gateway, on the minicluster."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any

import psutil
import pytest

from helpers.yarn_specs import PORT_RANGE
from helpers.yarn_specs import wait_app_state as _wait_app_state

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]

SPEC = "spark_R_yarn_cluster"
KERNEL_PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")




async def _start(cluster: Any, client: Any) -> str:
    """Start the R kernel; on failure show the containers' logs (the launcher's own output)."""
    try:
        return str(await client.start_kernel(SPEC))
    except AssertionError as e:
        logs = "".join(cluster.container_log(a, n)[-3000:] for a in cluster.apps for n in ("stdout", "stderr"))
        raise AssertionError(f"{e}\n--- container logs ---\n{logs}") from None


def _app_of(gw: Any, kid: str) -> str:
    return str(gw.registry.kernels[kid].km.provisioner.app_id)


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for whoever adopted it counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _listening(proc: psutil.Process) -> set[int]:
    return {c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}


def _bad_mac_answer(host: str, port: int, kid: str) -> dict[str, Any]:
    req = {"kernel_id": kid, "request": "ping", "ts": int(__import__("time").time()), "nonce": os.urandom(16).hex(),
           "mac": "00" * 32}
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(json.dumps(req).encode() + b"\n")
        return json.loads(s.makefile().readline())


async def test_r_kernel_runs_as_caller_interrupts_and_finishes(make_gateway: Any, cluster: Any,
                                                              yarn_gateway_config: dict[str, Any]) -> None:
    gw = await make_gateway(yarn_gateway_config)
    alice = gw.client("alice")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    kid = await _start(cluster, alice)
    started = loop.time() - t0
    app_id = _app_of(gw, kid)
    ws = await alice.connect(kid)
    res = await ws.execute("1+1")
    assert res.status == "ok", res.error
    assert res.text.strip() == "[1] 2"
    assert "SparkR package is not installed" in res.stderr  # the one-line notice, once
    # The SparkContext was created through the RBackend: the AM registered, YARN says RUNNING.
    app = await _wait_app_state(cluster, app_id, {"RUNNING"}, timeout=60)
    assert app["user"] == "alice"
    user = await ws.execute('cat(jcall(sc, "sparkUser"))')
    assert user.stdout == "alice", (user.stdout, user.stderr, user.error)
    if os.geteuid() == 0:
        owner = await ws.execute('cat(Sys.info()[["effective_user"]], Sys.getenv("USER"))')
        assert owner.stdout.split()[0] == "alice", owner
    assert (await ws.execute('nzchar(Sys.getenv("KERNEL_LAUNCH_TOKEN"))')).text.strip() == "[1] FALSE"

    # Every port the launcher (R + its helper) listens on is inside the range.
    rec = gw.registry.kernels[kid]
    info = rec.km.get_connection_info()
    lo, hi = PORT_RANGE
    ports = [info[p] for p in KERNEL_PORTS] + [rec.km.provisioner.control_port]
    assert all(lo <= p <= hi for p in ports), ports
    r_pid = int((await ws.execute("cat(Sys.getpid())")).stdout)
    r_proc = psutil.Process(r_pid)
    helpers = r_proc.children()
    assert len(helpers) == 1 and "launch_r_helper.py" in " ".join(helpers[0].cmdline())
    opened = _listening(r_proc) | _listening(helpers[0])
    assert opened == set(ports), (opened, ports)

    # The control port refuses a bad MAC.
    answer = _bad_mac_answer(rec.km.provisioner.control_host, rec.km.provisioner.control_port, kid)
    assert answer["status"] == "error" and answer["reason"].startswith("bad_mac"), answer

    # Interrupting Sys.sleep(60) returns within 5 s and the kernel stays usable.
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
    assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
    final = await _wait_app_state(cluster, app_id, {"FINISHED", "FAILED", "KILLED"})
    assert (final["state"], final["finalStatus"]) == ("FINISHED", "SUCCEEDED")
    await asyncio.sleep(1)
    assert _gone(r_pid) and _gone(helpers[0].pid)
    leftovers = [p for p in psutil.process_iter(["cmdline", "status"])
                 if app_id in " ".join(p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE]
    assert not leftovers, leftovers
    assert started < 120


async def test_r_kernel_restart_gives_new_application(make_gateway: Any, cluster: Any,
                                                      yarn_gateway_config: dict[str, Any]) -> None:
    gw = await make_gateway(yarn_gateway_config)
    bob = gw.client("bob")
    kid = await _start(cluster, bob)
    first_app = _app_of(gw, kid)
    ws = await bob.connect(kid)
    assert (await ws.execute("y <- 5")).status == "ok"
    # A started kernel: its SparkContext is up (YARN says RUNNING). Stopping a driver before that
    # makes YARN fail the application, as a real cluster would.
    await _wait_app_state(cluster, first_app, {"RUNNING"}, timeout=120)
    r = await bob.request("POST", f"api/kernels/{kid}/restart", {})
    assert r.code == 200, r.body
    second_app = _app_of(gw, kid)
    assert second_app != first_app
    old = await _wait_app_state(cluster, first_app, {"FINISHED", "FAILED", "KILLED"})
    logs = cluster.container_log(first_app, "stderr")[-4000:] + cluster.container_log(first_app, "stdout")[-3000:]
    assert old["state"] in ("FINISHED", "KILLED"), logs
    ws2 = await bob.connect(kid)
    assert (await ws2.execute('exists("y")')).text.strip() == "[1] FALSE"
    assert (await ws2.execute("1+1")).text.strip() == "[1] 2"
    # As above: a clean FINISHED needs a driver whose SparkContext is up before it is stopped.
    await _wait_app_state(cluster, second_app, {"RUNNING"}, timeout=120)
    assert (await bob.request("DELETE", f"api/kernels/{kid}")).code == 204
    final = await _wait_app_state(cluster, second_app, {"FINISHED", "FAILED", "KILLED"})
    assert final["state"] == "FINISHED"
