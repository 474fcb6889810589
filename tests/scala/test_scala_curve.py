"""Issue 17, Scala half, end to end: a Toree kernel in YARN cluster mode behind the launcher's CurveZMQ
proxy (launchers/scala CurveProxy.java) on the session's real YARN. What a tap on the kernel's ports
sees, who can talk to them with the HMAC key alone, where Toree's own plaintext sockets listen, and that
shutdown still ends the application FINISHED/SUCCEEDED."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psutil
import pytest
import zmq

from helpers.curve_client import shell_answers
from helpers.relay_checks import relay_speaks_curve
from helpers.sniff import LoopbackCapture
from helpers.steps import behaviour
from helpers.waiting import wait_until
from helpers.yarn_specs import PORT_RANGE
from helpers.yarn_specs import app_of as _app_of
from helpers.yarn_specs import wait_app_state as _wait_app_state
from yarn_gateway.kernels.records import kernel_connection_info
from yarn_gateway_launchers import launcher_protocol as lp

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]

SPEC = "spark_scala_yarn_cluster"
MARKER_CELL = 'println("secret-" + "marker")'


async def _text(ws: Any, code: str, timeout: float = 120) -> str:
    res = await ws.execute_all(code, timeout=timeout, linger=1.0)  # Toree may publish its result late
    assert res.status == "ok", res
    results = [m["content"]["data"].get("text/plain", "") for m in res.messages if m["msg_type"] == "execute_result"]
    assert results, res.messages
    return str(results[-1])


@pytest.mark.timeout(600)  # a driver, an executor and CLI JVMs on a small shared machine
async def test_scala_yarn_kernel_is_curvezmq_behind_the_launchers_proxy(
        make_gateway: Any, cluster: Any, yarn_gateway_config: dict[str, Any]) -> None:
    gw = await make_gateway(yarn_gateway_config)
    alice = gw.client("alice")
    kid = await alice.start_kernel(SPEC)
    app_id = _app_of(gw, kid)
    rec = gw.registry.kernels[kid]
    conn = kernel_connection_info(rec.km)
    ws = await alice.connect(kid)
    assert await _text(ws, "1 + 1", timeout=180) == "2"  # the first cell also waits for the interpreter

    with behaviour("the launcher sent the kernel's public key only, and the relay speaks CurveZMQ"):
        assert len(conn["curve_publickey"]) == 40 and "curve_secretkey" not in conn, conn.keys()
        assert relay_speaks_curve(rec), rec.hub.kernel_channels()

    with behaviour("a tap on the kernel's ports sees neither code nor output in clear; the client gets both"):
        with LoopbackCapture({conn[p] for p in lp.CONNECTION_INFO_PORTS}) as tap:
            res = await ws.execute_all(MARKER_CELL, timeout=60, linger=1.0)
            await asyncio.sleep(0.3)  # the last packets reach the tap
        assert res.status == "ok", res
        assert (res.stdout, res.stderr) == ("secret-marker\n", ""), res.messages
        payload = tap.payload()
        assert tap.payload_bytes > 300, f"the tap saw only {tap.payload_bytes} bytes"
        assert b"secret-marker" not in payload
        for code in (MARKER_CELL.encode(), json.dumps(MARKER_CELL)[1:-1].encode()):  # as typed, as sent in JSON
            assert code not in payload, code

    with behaviour("the kernel's HMAC key is in none of the application's container logs"):
        raw_key = conn["key"]
        hmac_key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        assert len(hmac_key) == 64, "the launcher makes a 32-byte hex key"
        logs = {name: await asyncio.to_thread(cluster.container_log, app_id, name) for name in ("stdout", "stderr")}
        # Real logs: Toree's relay (another logger than the one that printed the profile) logged at INFO.
        relay_ready = "KernelMessageRelay: Relay is now fully ready to receive messages!"
        assert relay_ready in logs["stderr"], logs["stderr"][-3000:]
        leaks = [f"{name}: {line.replace(hmac_key, '<key>')[:100]}"
                 for name, text in logs.items() for line in text.splitlines() if hmac_key in line]
        assert not leaks, f"{len(leaks)} container log line(s) hold the kernel key: {leaks}"

    with behaviour("the HMAC key alone gets no answer from the network; the right server key does"):
        raw_key = conn["key"]
        ip, shell, key = conn["ip"], conn["shell_port"], raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        assert not await asyncio.to_thread(shell_answers, ip, shell, key, None)
        assert not await asyncio.to_thread(shell_answers, ip, shell, key, zmq.curve_keypair()[0])
        assert await asyncio.to_thread(shell_answers, ip, shell, key, conn["curve_publickey"].encode())

    with behaviour("Toree listens on 127.0.0.1 only; every port the launcher opened is in the range"):
        prov = rec.km.provisioner
        launcher_ports = {int(conn[p]) for p in lp.CONNECTION_INFO_PORTS} | {prov.control_port}
        lo, hi = PORT_RANGE
        assert len(launcher_ports) == 6 and all(lo <= p <= hi for p in launcher_ports), launcher_ports
        # Toree's own view of its ports (its config holds the profile the launcher wrote).
        toree_ports = {int(await _text(ws, f'kernel.config.getInt("{p}")')) for p in lp.CONNECTION_INFO_PORTS}
        assert len(toree_ports) == 5 and not toree_ports & launcher_ports, (toree_ports, launcher_ports)
        driver = psutil.Process(int(await _text(ws, "ProcessHandle.current().pid()")))
        spark_ports = {int(await _text(ws, 'sc.getConf.get("spark.driver.port")')),
                       int(await _text(ws, "org.apache.spark.SparkEnv.get.blockManager.blockManagerId.port")),
                       int(await _text(ws, "sc.uiWebUrl.get.split(':').last.toInt"))}
        listening = [c.laddr for c in driver.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
        by_port = {a.port: a.ip.removeprefix("::ffff:") for a in listening}  # JVM sockets are dual-stack
        assert {by_port.get(p) for p in toree_ports} == {"127.0.0.1"}, (toree_ports, listening)
        assert {by_port.get(p) for p in launcher_ports} == {conn["ip"]}, (launcher_ports, listening)
        assert set(by_port) - launcher_ports - toree_ports <= spark_ports, (listening, spark_ports)

    with behaviour("shutdown ends the application FINISHED; the driver JVM exits"):
        ws.close()
        assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
        final = await _wait_app_state(cluster, app_id, {"FINISHED", "FAILED", "KILLED"})
        assert (final["state"], final["finalStatus"]) == ("FINISHED", "SUCCEEDED"), final.get("diagnostics")
        await wait_until(lambda: not psutil.pid_exists(driver.pid), 30, f"the driver JVM (pid {driver.pid}) exited",
                         interval=0.5)
