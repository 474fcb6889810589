"""Every REST path and status code of the gateway API, including each bad input."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from helpers.gwclient import GatewayClient


async def test_api_version_requires_auth(gateway: Any) -> None:
    ok = await gateway.client("alice").request("GET", "api")
    assert ok.code == 200 and ok.body["gateway"] == "yarn-gateway" and ok.body["version"]
    anon = await GatewayClient(gateway.url).request("GET", "api")
    assert anon.code == 401
    assert set(anon.body) == {"reason", "message"} and "token" in anon.body["message"]
    bad = await GatewayClient(gateway.url, "wrong-token").request("GET", "api")
    assert bad.code == 401


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "api/kernelspecs"),
        ("GET", "api/kernelspecs/python_local"),
        ("GET", "kernelspecs/python_local/kernel.js"),
        ("GET", "api/kernels"),
        ("POST", "api/kernels"),
        ("GET", "api/kernels/00000000-0000-0000-0000-000000000000"),
        ("DELETE", "api/kernels/00000000-0000-0000-0000-000000000000"),
        ("POST", "api/kernels/00000000-0000-0000-0000-000000000000/interrupt"),
        ("POST", "api/kernels/00000000-0000-0000-0000-000000000000/restart"),
        ("GET", "api/kernels/00000000-0000-0000-0000-000000000000/channels"),
        ("GET", "no/such/path"),
    ],
)
async def test_every_endpoint_requires_auth(gateway: Any, method: str, path: str) -> None:
    r = await GatewayClient(gateway.url).request(method, path)
    assert r.code == 401, (method, path, r.code)
    assert r.body["reason"] == "Unauthorized"
    assert not gateway.registry.kernels


async def test_kernelspecs(gateway: Any, tmp_path: Any) -> None:
    c = gateway.client()
    r = await c.request("GET", "api/kernelspecs")
    assert r.code == 200
    assert r.body["default"] == "python_local"
    spec = r.body["kernelspecs"]["python_local"]
    assert spec["name"] == "python_local" and spec["spec"]["language"] == "python"
    one = await c.request("GET", "api/kernelspecs/python_local")
    assert one.code == 200 and one.body["spec"] == spec["spec"]
    missing = await c.request("GET", "api/kernelspecs/nope")
    assert missing.code == 404 and "nope" in missing.body["message"]


async def test_kernelspec_resources(make_gateway: Any, tmp_path: Any) -> None:
    spec_dir = tmp_path / "specs" / "withlogo"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps(
        {"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "L",
         "language": "python"}))
    (spec_dir / "logo-64x64.png").write_bytes(b"\x89PNG fake")
    gw = await make_gateway({"YarnGatewayApp": {"kernelspec_dirs": [str(tmp_path / "specs")],
                                                 "default_kernel_name": "withlogo"}})
    c = gw.client()
    specs = await c.request("GET", "api/kernelspecs")
    assert specs.body["kernelspecs"]["withlogo"]["resources"] == {"logo-64x64": "/kernelspecs/withlogo/logo-64x64.png"}
    req = await c.request("GET", "kernelspecs/withlogo/logo-64x64.png")
    assert req.code == 200 and req.headers["Content-Type"] == "image/png"
    assert (await c.request("HEAD", "kernelspecs/withlogo/logo-64x64.png")).code == 200
    for bad in ("kernelspecs/withlogo/kernel.json", "kernelspecs/withlogo/..%2Fwithlogo%2Fkernel.json",
                "kernelspecs/withlogo/missing.png", "kernelspecs/nope/logo-64x64.png"):
        r = await c.request("GET", bad)
        assert r.code == 404, bad


async def test_kernel_lifecycle_and_model(gateway: Any) -> None:
    c = gateway.client()
    r = await c.request("POST", "api/kernels", {"name": "python_local"})
    assert r.code == 201
    model = r.body
    assert set(model) == {"id", "name", "last_activity", "execution_state", "connections"}
    assert r.headers["Location"] == f"/api/kernels/{model['id']}"
    assert model["name"] == "python_local" and model["connections"] == 0
    # GatewayClient parses last_activity with this exact format.
    from datetime import datetime

    datetime.strptime(model["last_activity"], "%Y-%m-%dT%H:%M:%S.%fZ")
    kid = model["id"]
    listed = await c.request("GET", "api/kernels")
    assert listed.code == 200 and [k["id"] for k in listed.body] == [kid]
    got = await c.request("GET", f"api/kernels/{kid}")
    # The live state: a loaded machine may still find the kernel busy answering its first requests.
    assert got.code == 200 and got.body["id"] == kid and got.body["execution_state"] in ("idle", "starting", "busy")
    assert (await c.request("POST", f"api/kernels/{kid}/interrupt", {})).code == 204
    restarted = await c.request("POST", f"api/kernels/{kid}/restart", {})
    assert restarted.code == 200 and restarted.body["id"] == kid
    assert (await c.request("DELETE", f"api/kernels/{kid}")).code == 204
    assert (await c.request("GET", f"api/kernels/{kid}")).code == 404
    assert (await c.request("DELETE", f"api/kernels/{kid}")).code == 404
    assert (await c.request("GET", "api/kernels")).body == []


async def test_default_kernel_when_no_name(gateway: Any) -> None:
    c = gateway.client()
    r = await c.request("POST", "api/kernels", {})
    assert r.code == 201 and r.body["name"] == "python_local"
    await c.request("DELETE", f"api/kernels/{r.body['id']}")


@pytest.mark.parametrize(
    "raw,code,reason",
    [
        (b"{not json", 400, "Malformed JSON"),
        (b"[1, 2]", 400, "Malformed JSON"),
        (b'{"name": 42}', 400, "Bad request"),
        (b'{"name": "nope"}', 404, "No such kernelspec"),
        (b'{"name": "python_local", "env": ["A"]}', 400, "Bad env"),
        (b'{"name": "python_local", "env": {"KERNEL_X": 1}}', 400, "Bad env"),
        (b'{"name": "python_local", "env": {"KERNEL_X": null}}', 400, "Bad env"),
        (b'{"name": "python_local", "env": {"BAD NAME": "x"}}', 400, "Bad env"),
        (b'{"name": "python_local", "env": {"KERNEL_LAUNCH_TIMEOUT": "soon"}}', 400, "Bad env"),
        (b'{"name": "python_local", "env": {"KERNEL_LAUNCH_TIMEOUT": "-3"}}', 400, "Bad env"),
    ],
)
async def test_bad_start_requests_change_nothing(gateway: Any, raw: bytes, code: int, reason: str) -> None:
    r = await gateway.client().request("POST", "api/kernels", raw=raw)
    assert r.code == code, r.body
    assert r.body["reason"] == reason and r.body["message"]
    assert not gateway.registry.kernels


async def test_body_over_limit_is_413(make_gateway: Any) -> None:
    gw = await make_gateway({"YarnGatewayApp": {"max_request_body": 1000}})
    r = await gw.client().request("POST", "api/kernels", {"name": "python_local", "env": {"KERNEL_PAD": "x" * 2000}})
    assert r.code == 413 and "limit is 1000" in r.body["message"]
    assert not gw.registry.kernels


@pytest.mark.parametrize("path", ["api/kernels/not-a-uuid", "api/kernels/not-a-uuid/interrupt", "api/nothing"])
async def test_unknown_paths_are_json_404(gateway: Any, path: str) -> None:
    r = await gateway.client().request("GET", path)
    assert r.code == 404 and r.body["reason"]


async def test_ownership_and_impersonation(gateway: Any) -> None:
    alice, bob, admin = gateway.client("alice"), gateway.client("bob"), gateway.client("admin")
    # Alice may name herself, but not bob.
    kid = await alice.start_kernel(env={"KERNEL_USERNAME": "alice"})
    refused = await alice.request("POST", "api/kernels", {"name": "python_local", "env": {"KERNEL_USERNAME": "bob"}})
    assert refused.code == 403
    assert "'alice' may not start a kernel as 'bob'" in refused.body["message"]
    assert len(gateway.registry.kernels) == 1
    # Bob cannot see, use, or stop alice's kernel: 404, as if it did not exist.
    assert (await bob.request("GET", f"api/kernels/{kid}")).code == 404
    assert (await bob.request("POST", f"api/kernels/{kid}/interrupt", {})).code == 404
    assert (await bob.request("POST", f"api/kernels/{kid}/restart", {})).code == 404
    assert (await bob.request("DELETE", f"api/kernels/{kid}")).code == 404
    assert (await bob.request("GET", "api/kernels")).body == []
    with pytest.raises(Exception) as info:
        await bob.connect(kid)
    assert "404" in str(info.value)
    # The admin may start a kernel as bob; bob owns it and sees it; alice does not.
    bob_kid = await admin.start_kernel(env={"KERNEL_USERNAME": "bob"})
    assert [k["id"] for k in (await bob.request("GET", "api/kernels")).body] == [bob_kid]
    assert (await alice.request("GET", f"api/kernels/{bob_kid}")).code == 404
    ws = await bob.connect(bob_kid)
    res = await ws.execute("import os; print(os.environ['KERNEL_USERNAME'])")
    assert res.stdout.strip() == "bob"
    ws.close()
    # The admin sees every kernel.
    assert {k["id"] for k in (await admin.request("GET", "api/kernels")).body} == {kid, bob_kid}
    for k in (kid, bob_kid):
        assert (await admin.request("DELETE", f"api/kernels/{k}")).code == 204


async def test_kernel_env_filtering_and_no_gateway_secrets(gateway: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("YARN_GATEWAY_TOKEN", "must-not-leak")
    monkeypatch.setenv("KRB5CCNAME", "FILE:/tmp/gateway-cache")
    c = gateway.client()
    kid = await c.start_kernel(env={"KERNEL_FOO": "bar", "NOT_ALLOWED": "x"})
    ws = await c.connect(kid)
    res = await ws.execute(
        "import os; print([os.environ.get(k) for k in "
        "('KERNEL_FOO', 'NOT_ALLOWED', 'YARN_GATEWAY_TOKEN', 'KRB5CCNAME', 'KERNEL_USERNAME', 'KERNEL_ID')])"
    )
    assert res.stdout.strip() == f"['bar', None, None, None, 'alice', '{kid}']"
    ws.close()
    await c.request("DELETE", f"api/kernels/{kid}")


async def test_kernel_that_cannot_start(make_gateway: Any, tmp_path: Any) -> None:
    spec_dir = tmp_path / "specs" / "broken"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps(
        {"argv": ["python", "-c", "import sys; sys.exit(3)", "{connection_file}"], "display_name": "B",
         "language": "python"}))
    gw = await make_gateway({"YarnGatewayApp": {"kernelspec_dirs": [str(tmp_path / "specs")]},
                             "KernelRegistry": {"launch_timeout": 20.0}})
    r = await gw.client().request("POST", "api/kernels", {"name": "broken"})
    assert r.code >= 500 and "failed to start" in r.body["message"]
    assert not gw.registry.kernels


async def test_launch_timeout_from_client_is_honoured(make_gateway: Any, tmp_path: Any) -> None:
    spec_dir = tmp_path / "specs" / "slow"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps(
        {"argv": ["python", "-c", "import time; time.sleep(60)", "{connection_file}"], "display_name": "S",
         "language": "python"}))
    gw = await make_gateway({"YarnGatewayApp": {"kernelspec_dirs": [str(tmp_path / "specs")]},
                             "KernelRegistry": {"max_launch_timeout": 30.0}})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    r = await gw.client().request("POST", "api/kernels", {"name": "slow", "env": {"KERNEL_LAUNCH_TIMEOUT": "2"}})
    assert r.code == 504 and "within 2 s" in r.body["message"]
    assert loop.time() - t0 < 15
    assert not gw.registry.kernels


async def test_health_probe_is_public_but_says_only_status(gateway: Any) -> None:
    probe = await GatewayClient(gateway.url).request("GET", "healthz")
    assert probe.code == 200 and probe.body == {"status": "ok"}
    assert (await GatewayClient(gateway.url).request("GET", "api/health")).code == 401
    full = await gateway.client().request("GET", "api/health")
    assert full.code == 200 and full.body["status"] == "ok" and isinstance(full.body["checks"], list)
