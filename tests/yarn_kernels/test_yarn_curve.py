"""Python YARN kernels speak CurveZMQ (issue 17): what the cluster network sees, who can talk to the
kernel, the relay's guarantees on the encrypted path, and the settings that turn it off or require it."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
import zmq

from helpers.curve_client import shell_answers
from helpers.relay_checks import (
    burst_arrives_in_order,
    interrupt_stops_a_sleeping_cell,
    reconnect_replays,
    relay_speaks_curve,
)
from helpers.sniff import MARKER_CELL, LoopbackCapture, clear_text_of_marker_cell
from helpers.steps import behaviour
from helpers.yarn_specs import PORT_RANGE, make_spec
from helpers.yarn_specs import app_of as _app_of
from yarn_gateway.kernels.records import kernel_connection_info
from yarn_gateway_launchers import launcher_protocol as lp

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]

SPEC = "spark_python_yarn_cluster"


async def _marker_through_tap(ws: Any, conn: dict[str, Any]) -> tuple[str, LoopbackCapture]:
    """Run the marker cell while tapping the kernel's five ports; return (stdout, tap)."""
    with LoopbackCapture({conn[p] for p in lp.CONNECTION_INFO_PORTS}) as tap:
        res = await ws.execute(MARKER_CELL)
        await asyncio.sleep(0.3)  # the last packets reach the tap
    assert res.status == "ok", res.error
    return res.stdout, tap


async def test_python_yarn_kernel_is_curvezmq_end_to_end(make_gateway: Any, cluster: Any,
                                                        yarn_gateway_config: dict[str, Any]) -> None:
    gw = await make_gateway(yarn_gateway_config)
    alice = gw.client("alice")
    kid = await alice.start_kernel(SPEC)
    rec = gw.registry.kernels[kid]
    conn = kernel_connection_info(rec.km)
    ws = await alice.connect(kid)
    with behaviour("the launcher sent the kernel's public key only, and the relay speaks CurveZMQ"):
        assert len(conn["curve_publickey"]) == 40 and "curve_secretkey" not in conn
        assert relay_speaks_curve(rec), rec.hub.kernel_channels()
    with behaviour("a tap on the kernel's ports sees neither code nor output in clear; the client gets both"):
        stdout, tap = await _marker_through_tap(ws, conn)
        assert stdout == "secret-marker\n"
        assert tap.payload_bytes > 300, f"the tap saw only {tap.payload_bytes} bytes"
        assert not clear_text_of_marker_cell(tap.payload())
    with behaviour("the HMAC key alone gets no answer from the network; every kernel port is in the range"):
        raw_key = conn["key"]
        ip, shell, key = conn["ip"], conn["shell_port"], raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        assert not await asyncio.to_thread(shell_answers, ip, shell, key, None)
        assert not await asyncio.to_thread(shell_answers, ip, shell, key, zmq.curve_keypair()[0])
        assert await asyncio.to_thread(shell_answers, ip, shell, key, conn["curve_publickey"].encode())
        lo, hi = PORT_RANGE
        assert all(lo <= conn[p] <= hi for p in lp.CONNECTION_INFO_PORTS)
    with behaviour("a 10,000-line burst arrives complete and in order"):
        await burst_arrives_in_order(ws)
    with behaviour("reconnect replays what the client missed"):
        ws = await reconnect_replays(alice, ws, kid)
    with behaviour("interrupt works on the encrypted kernel"):
        await interrupt_stops_a_sleeping_cell(alice, ws, kid)
    ws.close()
    assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204


async def test_encryption_off_is_refused_while_required_and_plain_when_allowed(
        make_gateway: Any, cluster: Any, tmp_path: Any, yarn_gateway_config: dict[str, Any]) -> None:
    specs = tmp_path / "specs"
    make_spec(specs, "plain", transport_encryption="none")
    # A launcher told to offer no CurveZMQ although the kernelspec asks for it (as a container whose
    # libzmq lacks CURVE would): the kernelspec's argv names the flag, so the gateway adds none.
    downgrade = make_spec(specs, "downgrade")
    with open(os.path.join(downgrade, "kernel.json")) as f:
        spec = json.load(f)
    spec["argv"] = [("none" if a == "{transport_encryption}" else a) for a in spec["argv"]]
    with open(os.path.join(downgrade, "kernel.json"), "w") as f:
        json.dump(spec, f)
    cfg = dict(yarn_gateway_config, YarnGatewayApp={"kernelspec_dirs": [str(specs)]})
    gw = await make_gateway(cfg)
    alice = gw.client("alice")
    with behaviour("a kernelspec that turns encryption off is refused at start while the gateway requires it"):
        r = await alice.request("POST", "api/kernels", {"name": "plain"})
        assert r.code == 403 and "turns CurveZMQ transport encryption off" in r.body["message"], r.body
        assert not gw.registry.kernels
    with behaviour("a launcher that offers no CurveZMQ is refused and its application stopped"):
        r = await alice.request("POST", "api/kernels", {"name": "downgrade"})
        assert r.code == 502, r.body
        assert "offered no CurveZMQ" in r.body["message"] and "application_" in r.body["message"], r.body
        assert not cluster.live_apps("alice")

    lax = dict(cfg, YarnServices={**cfg.get("YarnServices", {}), "require_transport_encryption": False})
    gw = await make_gateway(lax)
    alice = gw.client("alice")
    with behaviour("allowed, the same kernelspec runs in plain ZMQ, and the tap sees the marker (the control)"):
        kid = await alice.start_kernel("plain")
        conn = kernel_connection_info(gw.registry.kernels[kid].km)
        assert "curve_publickey" not in conn
        ws = await alice.connect(kid)
        stdout, tap = await _marker_through_tap(ws, conn)
        assert stdout == "secret-marker\n" and clear_text_of_marker_cell(tap.payload()) == ["code", "output"]
        assert _app_of(gw, kid)
        ws.close()
        assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
