"""The gateway's transport-encryption settings for YARN kernels (issue 17), in seconds: the real
gateway and the real Python launcher on the stand-in spark-submit and ResourceManager."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import pytest
import zmq

from helpers.fake_rm import FakeRM
from helpers.relay_checks import relay_speaks_curve
from helpers.steps import behaviour
from helpers.stub_yarn import StubYarn
from yarn_gateway.kernels.records import kernel_connection_info
from yarn_gateway.relay.zmtp import ZmtpChannel

pytestmark = pytest.mark.fast


@pytest.fixture
def stub(tmp_path: Any, fake_rm: FakeRM) -> StubYarn:
    stub = StubYarn(tmp_path / "yarn", fake_rm)
    stub.scenario(launch=True)
    return stub


def _launcher_args(stub: StubYarn) -> list[list[str]]:
    out = []
    for path in sorted(glob.glob(os.path.join(stub.out, "argv-*.json"))):
        with open(path) as f:
            out.append(json.load(f))
    return out


def _flag(argv: list[str]) -> str:
    return argv[argv.index("--transport-encryption") + 1]


async def test_a_kernelspec_from_before_v2_still_gets_an_encrypted_kernel(make_gateway: Any, stub: StubYarn) -> None:
    # An installed kernelspec whose argv predates the flag: the gateway adds it with the kernelspec's setting.
    path = os.path.join(stub.specs, stub.spec("old"), "kernel.json")
    with open(path) as f:
        spec = json.load(f)
    at = spec["argv"].index("--transport-encryption")
    spec["argv"] = spec["argv"][:at] + spec["argv"][at + 2:]
    with open(path, "w") as f:
        json.dump(spec, f)
    gw = await make_gateway(stub.config())
    kid = await gw.client("alice").start_kernel("old")
    assert [_flag(a) for a in _launcher_args(stub)] == ["curve"]
    rec = gw.registry.kernels[kid]
    assert kernel_connection_info(rec.km)["curve_publickey"]
    assert relay_speaks_curve(rec), rec.hub.kernel_channels()
    ws = await gw.client("alice").connect(kid)
    assert (await ws.execute("6*7")).text == "42"
    ws.close()
    assert (await gw.client("alice").request("DELETE", f"api/kernels/{kid}")).code == 204


async def test_encryption_off_needs_both_the_kernelspec_and_the_gateway(make_gateway: Any, stub: StubYarn) -> None:
    stub.spec("plain", transport_encryption="none")
    strict = await make_gateway(stub.config())
    with behaviour("required (the default): refused before anything is submitted"):
        r = await strict.client("alice").request("POST", "api/kernels", {"name": "plain"})
        assert r.code == 403 and "require_transport_encryption" in r.body["message"], r.body
        assert "plain" in r.body["message"] and not _launcher_args(stub)
    lax = await make_gateway(stub.config(require_transport_encryption=False))
    with behaviour("allowed: the launcher is told 'none' and the relay uses the NULL fast path"):
        kid = await lax.client("alice").start_kernel("plain")
        assert [_flag(a) for a in _launcher_args(stub)] == ["none"]
        rec = lax.registry.kernels[kid]
        assert "curve_publickey" not in kernel_connection_info(rec.km)
        assert all(isinstance(ch, ZmtpChannel) for ch in rec.hub.kernel_channels())
        ws = await lax.client("alice").connect(kid)
        assert (await ws.execute("6*7")).text == "42"
        ws.close()
        assert (await lax.client("alice").request("DELETE", f"api/kernels/{kid}")).code == 204


async def test_an_unknown_setting_fails_the_start_naming_it(make_gateway: Any, stub: StubYarn) -> None:
    stub.spec("typo", transport_encryption="aes")
    gw = await make_gateway(stub.config())
    r = await gw.client("alice").request("POST", "api/kernels", {"name": "typo"})
    assert r.code >= 400 and "transport_encryption must be one of curve, none, not 'aes'" in r.body["message"], r.body
    assert not _launcher_args(stub) and not gw.registry.kernels


async def test_the_kernel_managers_own_control_socket_speaks_curvezmq(make_gateway: Any, stub: StubYarn) -> None:
    # jupyter_client sends shutdown requests through the manager's own control socket; a NULL one
    # would fail the handshake with a CurveZMQ kernel and then block the event loop in its next send.
    gw = await make_gateway(stub.config())
    kid = await gw.client("alice").start_kernel("stub_yarn")
    km = gw.registry.kernels[kid].km
    km._connect_control_socket()
    sock = km._control_socket
    assert sock.getsockopt(zmq.MECHANISM) == zmq.CURVE and kernel_connection_info(km)["curve_publickey"]
    msg = km.session.msg("kernel_info_request", {})
    try:
        await sock.send_multipart(km.session.serialize(msg), flags=zmq.NOBLOCK)
    except zmq.Again:
        pytest.fail("the control socket could not queue a request")
    assert await sock.poll(10_000), "no answer on the manager's control socket"  # a zmq.asyncio socket
    _, reply = km.session.feed_identities(await sock.recv_multipart())
    assert km.session.deserialize(reply)["msg_type"] == "kernel_info_reply"
    assert (await gw.client("alice").request("DELETE", f"api/kernels/{kid}")).code == 204
