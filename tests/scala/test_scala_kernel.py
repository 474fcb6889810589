"""Issue 5, Scala half: the Toree launcher (launchers/scala) against the protocol vectors, and Scala kernels
in YARN cluster mode through the gateway on a real ResourceManager and NodeManager. At most one JVM kernel
runs at a time (two for a moment during a restart)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

from helpers.steps import behaviour
from helpers.waiting import wait_until
from helpers.yarn_specs import PORT_RANGE
from helpers.yarn_specs import app_of as _app_of
from helpers.yarn_specs import wait_app_state as _wait_app_state
from yarn_gateway.provisioners.control_client import ControlRequestError, send_control
from yarn_gateway_launchers import launcher_protocol as lp

SPEC = "spark_scala_yarn_cluster"
VECTORS = Path(__file__).resolve().parents[1] / "protocol" / "vectors_v2.json"
KERNEL_PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


@pytest.mark.jvm
def test_scala_launcher_passes_protocol_vectors(launcher_jar: Path) -> None:
    java = shutil.which("java")
    assert java, "java is not on PATH"
    r = subprocess.run([java, "-cp", str(launcher_jar), "yarngateway.toree.SelfTest", str(VECTORS)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "ALL OK"
    checked = {ln.split()[1] for ln in lines if ln.startswith("ok ")}
    # Every launcher-side vector: response bytes, the three control requests, all negative control cases.
    assert {"protocol_version", "response.curve_publickey_only", "response.frame", "response.aes_gcm",
            "response.oaep_params_match_python", "control.signal.mac",
            "negative.bad_mac", "negative.stale_ts", "negative.replayed_nonce", "negative.other_kernel"} <= checked


async def _exec(ws: Any, code: str, timeout: float = 60, want_result: bool = False) -> Any:
    """Execute and collect. Toree 0.5 sometimes publishes execute_result after its idle status and
    execute_reply, so with ``want_result`` an ok reply without an execute_result waits briefly for it."""
    msg = ws.message("execute_request", {"code": code, "silent": False, "store_history": True,
                                         "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
    await ws.send(msg)
    res = await ws.collect(msg["header"]["msg_id"], timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3
    has_result = any(m["msg_type"] == "execute_result" for m in res.messages)
    while want_result and res.status == "ok" and not has_result and loop.time() < deadline:
        try:
            m = await ws.recv(max(0.1, deadline - loop.time()))
        except asyncio.TimeoutError:
            break
        if m and m.get("parent_header", {}).get("msg_id") == msg["header"]["msg_id"] and \
                m["msg_type"] in ("execute_result", "display_data"):
            res.results.append(m["content"]["data"].get("text/plain", ""))
            has_result = m["msg_type"] == "execute_result"
    return res





async def _text(ws: Any, code: str, timeout: float = 60) -> str:
    res = await _exec(ws, code, timeout, want_result=True)
    assert res.status == "ok" and res.results, res
    return str(res.results[-1])  # after an interrupt Toree may first show "lastException = null"


async def _int(ws: Any, code: str) -> int:
    return int(await _text(ws, code))


@pytest.mark.e2e
@pytest.mark.jvm
@pytest.mark.timeout(600)  # a driver, an executor and CLI JVMs on a small shared machine
async def test_scala_kernel_runs_spark_on_yarn_as_caller_ports_in_range_bad_mac_refused_shutdown_finished(
        make_gateway: Any, cluster: Any, yarn_gateway_config: dict[str, Any]) -> None:
    gw = await make_gateway(yarn_gateway_config)
    alice = gw.client("alice")
    kid = await alice.start_kernel(SPEC)
    app_id = _app_of(gw, kid)
    ws = await alice.connect(kid)
    # The first cell, and the first to use Spark (lazy mode: the launcher creates the session in the
    # background and `sc` waits for it). Its output is what it printed and its value: none of the launcher's
    # log lines ("Spark session ready ...", which the launcher prints meanwhile) and none of Spark's. Toree
    # itself may display one notice while `sc` waits for the session (a display_data, not a stream).
    with behaviour('the first cell uses Spark, with no launcher or Spark log lines'):
        first = await ws.execute_all('println("first Spark cell")\nsc.parallelize(1 to 10).sum()', timeout=180,
                                   linger=3.0)  # Toree publishes some output late
        assert first.status == "ok", first
        assert (first.stdout, first.stderr) == ("first Spark cell\n", ""), first.messages
        shown = {t: [m["content"]["data"].get("text/plain") for m in first.messages if m["msg_type"] == t]
                 for t in ("execute_result", "display_data")}
        assert shown["execute_result"] == ["55.0"], first.messages
        assert set(shown["display_data"]) <= {"Waiting for a Spark session to start..."}, first.messages
    # What Spark in the driver says about itself: YARN cluster mode, the gateway's application, the caller.
    with behaviour('Spark runs in YARN cluster mode as alice, tagged by the gateway'):
        assert await _text(ws, "sc.deployMode") == "cluster"
        assert await _text(ws, "sc.master") == "yarn"
        assert await _text(ws, "sc.applicationId") == app_id
        assert await _text(ws, "sc.sparkUser") == "alice"
        assert await _text(ws, "sc.parallelize(1 to 10).map(_ * 2).sum()") == "110.0"  # a cell-defined closure
        # Hadoop's own CLI: RUNNING as the proxy user, with the gateway's tags (-status does not print tags).
        report = await asyncio.to_thread(cluster.application_status, app_id)
        assert (report["State"], report["User"], report["Application-Type"]) == ("RUNNING", "alice", "SPARK"), report
        for tag in ("yarn-gateway", "yarn-gateway-default", f"kernel-{kid}"):
            listed = await asyncio.to_thread(cluster.running_with_tag, tag)
            assert listed.get(app_id) == ("alice", "RUNNING"), (tag, listed)
    # The launch token left the environment and Spark's conf; the key-holding Toree profile is deleted.
    with behaviour('the launch token and the key-holding profile are gone'):
        assert await _text(ws, 'sys.env.contains("KERNEL_LAUNCH_TOKEN")') == "false"
        assert await _text(ws, 'sc.getConf.getAll.exists(_._1.contains("KERNEL_LAUNCH_TOKEN"))') == "false"
        profiles = 'new java.io.File(System.getProperty("java.io.tmpdir")).list.count(_.startsWith("toree-profile-"))'
        assert await _int(ws, profiles) == 0

    # Every port the launcher opened (five CurveZMQ proxy ports, control port) is in the range and is the
    # driver's; anything else the driver JVM listens on is Toree's (loopback) or Spark's own (driver RPC,
    # block manager, UI).
    with behaviour("every launcher port is in the range, the rest is Spark's"):
        prov = gw.registry.kernels[kid].km.provisioner
        info = gw.registry.kernels[kid].km.get_connection_info()
        launcher_ports = {int(info[p]) for p in KERNEL_PORTS} | {prov.control_port}
        lo, hi = PORT_RANGE
        assert len(launcher_ports) == 6 and all(lo <= p <= hi for p in launcher_ports), launcher_ports
        driver = psutil.Process(await _int(ws, "ProcessHandle.current().pid()"))
        spark_ports = {await _int(ws, "sc.getConf.get(\"spark.driver.port\").toInt"),
                       await _int(ws, "org.apache.spark.SparkEnv.get.blockManager.blockManagerId.port"),
                       await _int(ws, "sc.uiWebUrl.get.split(':').last.toInt")}
        # Toree's own five sockets sit behind the launcher's CurveZMQ proxy, on loopback (test_scala_curve.py).
        toree_ports = {await _int(ws, f'kernel.config.getInt("{p}")') for p in KERNEL_PORTS}
        conns = [c for c in driver.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
        listening = {c.laddr.port for c in conns}
        assert {c.laddr.ip.removeprefix("::ffff:") for c in conns if c.laddr.port in toree_ports} == {"127.0.0.1"}
        assert launcher_ports <= listening, (launcher_ports, listening)
        assert listening - launcher_ports - toree_ports <= spark_ports, (listening, spark_ports)

    # The control port: a request signed with another key is refused, a valid one passes, its replay is refused.
    with behaviour('the control port refuses another key and a replay'):
        with pytest.raises(ControlRequestError) as bad:
            await send_control(prov.control_host, prov.control_port, kid, "f" * 64, "ping")
        assert bad.value.reason.startswith("bad_mac"), bad.value.reason
        signed = lp.sign_control_request(kid, prov.connection_key, "ping")
        for expected in ("ok", "error"):
            reader, writer = await asyncio.open_connection(prov.control_host, prov.control_port)
            writer.write((json.dumps(signed) + "\n").encode())
            answer = json.loads(await reader.readline())
            writer.close()
            assert answer["status"] == expected, answer
        assert answer["reason"].startswith("replayed_nonce")
        assert await _text(ws, "1 + 1") == "2"  # refused requests did nothing to the kernel

    # Shutdown: Toree leaves with System.exit(0) on the gateway's shutdown_request; YARN still says SUCCEEDED.
    with behaviour('shutdown ends the application FINISHED'):
        assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
        final = await _wait_app_state(cluster, app_id, {"FINISHED", "FAILED", "KILLED"})
        assert (final["state"], final["finalStatus"]) == ("FINISHED", "SUCCEEDED"), final.get("diagnostics")
        # The AM unregisters before its JVM has exited.
        await wait_until(lambda: not psutil.pid_exists(driver.pid), 30, f"the driver JVM (pid {driver.pid}) exited",
                         interval=0.5)


@pytest.mark.e2e
@pytest.mark.jvm
@pytest.mark.timeout(600)  # a driver, an executor and CLI JVMs on a small shared machine
async def test_scala_eager_interrupt_sleep_and_spark_job_then_restart_gives_new_app(
        make_gateway: Any, cluster: Any, yarn_gateway_config: dict[str, Any], tmp_path: Path) -> None:
    from yarn_gateway.app import builtin_kernelspec_dir

    spec_dir = tmp_path / "specs" / SPEC
    shutil.copytree(Path(builtin_kernelspec_dir()) / SPEC, spec_dir)
    spec = json.loads((spec_dir / "kernel.json").read_text())
    spec["metadata"]["kernel_provisioner"]["config"]["spark_context_initialization_mode"] = "eager"
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    gw = await make_gateway(dict(yarn_gateway_config, YarnGatewayApp={"kernelspec_dirs": [str(tmp_path / "specs")]}))
    bob = gw.client("bob")
    kid = await bob.start_kernel(SPEC)
    first_app = _app_of(gw, kid)
    # Eager: the SparkContext (hence the AM's registration) exists before the launcher reports back.
    with behaviour('eager mode: RUNNING before the launcher reports; closures reach executors'):
        assert (await asyncio.to_thread(cluster.app_json, first_app))["state"] == "RUNNING"
        ws = await bob.connect(kid)
        assert (await _exec(ws, "val x = 7", timeout=120)).status == "ok"
        # Closures defined in cells reach the executors (the context was created after Toree's REPL setup).
        assert await _text(ws, "sc.parallelize(1 to 4).map(_ * x).collect().sum") == "70"
    loop = asyncio.get_running_loop()

    async def interrupted(code: str, settle: float) -> Any:
        msg = ws.message("execute_request", {"code": code, "silent": False, "store_history": True,
                                             "user_expressions": {}, "allow_stdin": False})
        await ws.send(msg)
        await asyncio.sleep(settle)  # the cell is running
        t0 = loop.time()
        assert (await bob.request("POST", f"api/kernels/{kid}/interrupt", {})).code == 204
        res = await ws.collect(msg["header"]["msg_id"], timeout=30)
        return res, loop.time() - t0

    with behaviour('interrupting Thread.sleep returns within 10 s'):
        res, took = await interrupted("Thread.sleep(60000)", 3)
        assert took < 10, took
        assert res.status in ("error", "abort"), res
        assert await _text(ws, "x * 6") == "42"  # the kernel and its state survived

    with behaviour('interrupting a Spark job cancels it'):
        await asyncio.sleep(3.6)  # Toree shuts down on two SIGINTs within 3 s; the launcher spaces them
        res, took = await interrupted("sc.parallelize(1 to 100000, 2).map { i => Thread.sleep(1000); i }.count()", 6)
        assert took < 10, took
        assert res.status in ("error", "abort"), res
        assert await _int(ws, "sc.statusTracker.getActiveJobIds.length") == 0  # the Spark job was cancelled
        assert await _text(ws, "sc.parallelize(1 to 10).sum()") == "55.0"

    with behaviour('restart gives a new application and a new interpreter'):
        r = await bob.request("POST", f"api/kernels/{kid}/restart", {})
        assert r.code == 200, r.body
        second_app = _app_of(gw, kid)
        assert second_app != first_app
        old = await _wait_app_state(cluster, first_app, {"FINISHED", "FAILED", "KILLED"})
        assert (old["state"], old["finalStatus"]) == ("FINISHED", "SUCCEEDED"), old.get("diagnostics")
        ws2 = await bob.connect(kid)
        fresh = await _exec(ws2, "x", timeout=120)
        assert fresh.status == "error"  # a new interpreter: x is gone
        assert await _text(ws2, "sc.sparkUser") == "bob"
    with behaviour('shutdown ends the second application FINISHED'):
        assert (await bob.request("DELETE", f"api/kernels/{kid}")).code == 204
        final = await _wait_app_state(cluster, second_app, {"FINISHED", "FAILED", "KILLED"})
        assert (final["state"], final["finalStatus"]) == ("FINISHED", "SUCCEEDED"), final.get("diagnostics")
