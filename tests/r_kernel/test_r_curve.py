"""The R YARN kernel speaks CurveZMQ (issue 17, acceptance 1, 2 and 4 for R).

IRkernel cannot be a CurveZMQ server: the R launcher binds its sockets on 127.0.0.1 and its
Python helper puts a CurveZMQ proxy (launchers/python/curve_proxy.py) in the port range in
front of them. What the cluster network sees on the reported ports is encrypted; the plaintext
ZMQ stays on the container's loopback."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psutil
import pytest
import zmq

from helpers.curve_client import shell_answers
from helpers.relay_checks import relay_speaks_curve
from helpers.sniff import LoopbackCapture, capture_available
from helpers.steps import behaviour
from helpers.yarn_specs import PORT_RANGE
from yarn_gateway.kernels.records import kernel_connection_info
from yarn_gateway_launchers import launcher_protocol as lp

pytestmark = [pytest.mark.e2e, pytest.mark.jvm, pytest.mark.timeout(600),
              pytest.mark.skipif(not capture_available(), reason="needs root (AF_PACKET) for the tap")]

SPEC = "spark_R_yarn_cluster"
MARKER_CELL = 'print(paste0("secret-", "marker"))'


def _listening(proc: psutil.Process) -> dict[int, str]:
    return {c.laddr.port: c.laddr.ip for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}


async def test_r_yarn_kernel_is_curvezmq_end_to_end(make_gateway: Any, cluster: Any,
                                                   yarn_gateway_config: dict[str, Any]) -> None:
    gw = await make_gateway(yarn_gateway_config)
    alice = gw.client("alice")
    kid = await alice.start_kernel(SPEC)
    rec = gw.registry.kernels[kid]
    conn = kernel_connection_info(rec.km)
    ws = await alice.connect(kid)
    ports = {conn[p] for p in lp.CONNECTION_INFO_PORTS}

    with behaviour("the launcher sent the proxy's public key only, and the relay speaks CurveZMQ"):
        assert len(conn["curve_publickey"]) == 40 and "curve_secretkey" not in conn
        assert relay_speaks_curve(rec), rec.hub.kernel_channels()

    with behaviour("IRkernel listens on 127.0.0.1 only; every network-facing port is the helper's, in the range"):
        r_pid = int((await ws.execute("cat(Sys.getpid())", timeout=120)).stdout)
        r_proc = psutil.Process(r_pid)
        (helper,) = [p for p in r_proc.children() if "launch_r_helper.py" in " ".join(p.cmdline())]
        r_ports, helper_ports = _listening(r_proc), _listening(helper)
        assert len(r_ports) == 5 and set(r_ports.values()) == {"127.0.0.1"}, r_ports
        lo, hi = PORT_RANGE
        network_facing = {p for p, ip in {**r_ports, **helper_ports}.items() if not ip.startswith("127.")}
        reported = ports | {rec.km.provisioner.control_port}
        assert set(helper_ports) == reported and all(lo <= p <= hi for p in reported), (helper_ports, reported)
        assert network_facing <= reported
        assert not set(r_ports) & reported

    with behaviour("a tap on the kernel's ports sees neither code nor output in clear; the client gets both"):
        # The tap on IRkernel's own loopback ports is the control: there the same cell is plaintext.
        with LoopbackCapture(ports) as tap, LoopbackCapture(set(r_ports)) as inside:
            res = await ws.execute(MARKER_CELL)
            await asyncio.sleep(0.3)  # the last packets reach the tap
        assert res.status == "ok" and res.stdout == '[1] "secret-marker"\n', (res.stdout, res.stderr, res.error)
        assert tap.payload_bytes > 300, f"the tap saw only {tap.payload_bytes} bytes"
        for clear in (b"secret-marker", b"paste0(", json.dumps(MARKER_CELL)[1:-1].encode()):
            assert clear not in tap.payload(), clear
            assert clear in inside.payload(), clear

    with behaviour("the HMAC key alone, or a wrong server key, gets no answer on the shell port in 5 s"):
        raw_key = conn["key"]  # jupyter_client keeps it as bytes
        ip, shell, key = conn["ip"], conn["shell_port"], raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        assert not await asyncio.to_thread(shell_answers, ip, shell, key, None)
        assert not await asyncio.to_thread(shell_answers, ip, shell, key, zmq.curve_keypair()[0])
        # the control: with the kernel's public key the same request is answered (a loaded host may be slow)
        assert await asyncio.to_thread(shell_answers, ip, shell, key, conn["curve_publickey"].encode(), 30.0)

    with behaviour("a 10,000-line burst arrives complete and in order"):
        res = await ws.execute('for (i in 0:9999) cat(i, "\\n", sep = "")', timeout=180)
        assert res.status == "ok", (res.stderr, res.error)
        lines = res.stdout.split()
        assert lines == [str(i) for i in range(10000)], (len(lines), lines[:3], lines[-3:])

    with behaviour("shutdown ends the kernel, and the proxy with it"):
        ws.close()
        assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
        await asyncio.to_thread(helper.wait, 60)
        assert not r_proc.is_running() or r_proc.status() == psutil.STATUS_ZOMBIE
