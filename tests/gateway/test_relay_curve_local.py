"""A local kernel with CurveZMQ through the gateway (issue 17, acceptance 3).

jupyter_client's ``KernelManager.transport_encryption = "required"`` gives the kernel a CurveZMQ
key pair; an ipykernel 7 kernelspec declaring ``supported_encryption: ["curve"]`` then serves its
sockets as CurveZMQ servers. The relay connects through libzmq with the kernel's public key:
execute, a 10,000-line burst, interrupt, restart and reconnect replay work as on the NULL path,
and a client that knows only the HMAC key gets nothing from the kernel's ports."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
import zmq
from jupyter_client.session import Session

from helpers.relay_checks import (
    burst_arrives_in_order,
    burst_survives_a_stalled_loop,
    interrupt_stops_a_sleeping_cell,
    reconnect_replays,
    relay_speaks_curve,
)
from helpers.steps import behaviour

CURVE_PYTHON = os.environ.get("YARNGW_CURVE_KERNEL_PYTHON", "")
SPEC = "python_curve"

pytestmark = pytest.mark.skipif(
    not CURVE_PYTHON, reason="YARNGW_CURVE_KERNEL_PYTHON is not set (make test builds an ipykernel 7 venv for it)")


@pytest.fixture
def curve_kernelspec(tmp_path: Path) -> str:
    assert os.access(CURVE_PYTHON, os.X_OK), f"{CURVE_PYTHON} is missing: run `make curve-kernel-env`"
    specs = tmp_path / "kernelspecs"
    spec_dir = specs / SPEC
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [CURVE_PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (CurveZMQ)", "language": "python",
        "metadata": {"supported_encryption": ["curve"]}}))
    return str(specs)


async def _curve_gateway(make_gateway: Any, kernelspecs: str, relay: str = "zmtp") -> Any:
    from yarn_gateway.app import builtin_kernelspec_dir

    return await make_gateway({"YarnGatewayApp": {"kernelspec_dirs": [kernelspecs, builtin_kernelspec_dir()]},
                               "KernelManager": {"transport_encryption": "required"},
                               "KernelRegistry": {"curve_relay": relay}})


RELAYS = pytest.mark.parametrize("relay", ["zmtp", "libzmq"])


@RELAYS
async def test_a_curve_kernel_works_through_the_gateway(make_gateway: Any, curve_kernelspec: str, relay: str) -> None:
    gw = await _curve_gateway(make_gateway, curve_kernelspec, relay)
    c = gw.client()
    kid = await c.start_kernel(SPEC)
    rec = gw.registry.kernels[kid]
    with behaviour(f"the kernel has a CurveZMQ key and the relay speaks CurveZMQ to it ({relay})"):
        info = rec.km.get_connection_info()
        assert info.get("curve_publickey"), sorted(info)
        assert relay_speaks_curve(rec, relay), rec.hub.kernel_channels()
    ws = await c.connect(kid)
    with behaviour("a cell's output reaches the client"):
        res = await ws.execute('print("secret-" + "marker")')
        assert res.status == "ok" and res.stdout == "secret-marker\n", res
    with behaviour("a 10,000-line burst arrives complete and in order"):
        await burst_arrives_in_order(ws)
    with behaviour("interrupt"):
        assert (await ws.execute("x = 41")).status == "ok"
        await interrupt_stops_a_sleeping_cell(c, ws, kid)
        assert (await ws.execute("x + 1")).text == "42"
    with behaviour("reconnect replays what was missed"):
        ws = await reconnect_replays(c, ws, kid)
    with behaviour("restart keeps encryption and the websocket"):
        assert (await c.request("POST", f"api/kernels/{kid}/restart", {})).code == 200
        assert (await ws.execute("'x' in dir()")).text == "False"
        assert relay_speaks_curve(rec, relay)
    ws.close()
    assert (await c.request("DELETE", f"api/kernels/{kid}")).code == 204


async def test_the_hmac_key_alone_gets_nothing_from_a_curve_kernel(make_gateway: Any, curve_kernelspec: str) -> None:
    gw = await _curve_gateway(make_gateway, curve_kernelspec)
    c = gw.client()
    kid = await c.start_kernel(SPEC)
    info = gw.registry.kernels[kid].km.get_connection_info()
    key, server_key = info["key"], info["curve_publickey"]
    session = Session(key=key if isinstance(key, bytes) else key.encode(), signature_scheme=info["signature_scheme"])

    def ask(curve: bool) -> int:
        """A kernel_info_request on the shell port, signed with the HMAC key; whether a reply came."""
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        try:
            sock.linger = 0
            sock.sndtimeo = 3000  # a DEALER may block sending while no handshake has completed
            if curve:
                pub, sec = zmq.curve_keypair()
                sock.curve_publickey, sock.curve_secretkey = pub, sec
                sock.curve_serverkey = server_key.encode() if isinstance(server_key, str) else server_key
            sock.connect(f"tcp://{info['ip']}:{info['shell_port']}")
            try:
                session.send(sock, session.msg("kernel_info_request"))
            except zmq.Again:
                return 0
            return int(sock.poll(15000 if curve else 3000))
        finally:
            sock.close()
            ctx.term()

    # The control: with the kernel's public key, the same request is answered.
    results = {curve: await asyncio.to_thread(ask, curve) for curve in (False, True)}
    assert results == {False: 0, True: zmq.POLLIN}, results
    ws = await c.connect(kid)
    assert (await ws.execute("6 * 7")).text == "42"  # the kernel is fine
    ws.close()
    assert (await c.request("DELETE", f"api/kernels/{kid}")).code == 204


@pytest.mark.parametrize(("stall", "relay"), [(0.2, "zmtp"), (1.0, "zmtp"), (1.0, "libzmq")])
async def test_a_burst_survives_a_stalled_event_loop_on_the_encrypted_path(
        make_gateway: Any, curve_kernelspec: str, stall: float, relay: str) -> None:
    # As on the NULL path (test_gateway_relay.py).
    gw = await _curve_gateway(make_gateway, curve_kernelspec, relay)
    c = gw.client()
    kid = await c.start_kernel(SPEC)
    assert relay_speaks_curve(gw.registry.kernels[kid], relay)
    await burst_survives_a_stalled_loop(c, kid, stall)
    await c.request("DELETE", f"api/kernels/{kid}")
