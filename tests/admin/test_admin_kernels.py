"""`yarn-gateway kernels list|show|kill` as a subprocess against an in-process gateway."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from typing import Any

from helpers.gateway_fixtures import TOKENS, RunningGateway
from yarn_gateway.kernels.records import record_detail
from yarn_gateway.kernels.session_record import new_record


async def cli(gw_url: str, *args: str, token: str | None = None, env: dict[str, str] | None = None,
              tmp: Any = None) -> tuple[int, str, str]:
    """Run `python -m yarn_gateway kernels ...` without blocking the gateway's event loop."""
    argv = [sys.executable, "-m", "yarn_gateway", "kernels", *args, f"--url={gw_url}"]
    if token is not None:
        path = os.path.join(str(tmp), f"token-{os.urandom(3).hex()}")
        with open(path, "w") as f:
            f.write(f"# my gateway token\n{token}\n")
        os.chmod(path, 0o600)
        argv.append(f"--token-file={path}")
    base = {k: v for k, v in os.environ.items() if not k.startswith("YARN_GATEWAY_")}
    proc = await asyncio.create_subprocess_exec(*argv, env={**base, **(env or {})}, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def two_kernels(gateway: RunningGateway) -> tuple[str, str]:
    alice = await gateway.client("alice").start_kernel()
    bob = await gateway.client("bob").start_kernel()
    return alice, bob


async def test_admin_list_sees_all_with_owner(gateway: RunningGateway, tmp_path: Any) -> None:
    alice, bob = await two_kernels(gateway)
    rc, out, err = await cli(gateway.url, "list", token=TOKENS["admin"], tmp=tmp_path)
    assert rc == 0, err
    header, *rows = out.strip().splitlines()
    assert header.split()[:3] == ["ID", "KERNELSPEC", "OWNER"]
    owners = {r.split()[0]: r.split()[2] for r in rows}
    assert owners == {alice: "alice", bob: "bob"}
    rc, out, err = await cli(gateway.url, "list", "--json", token=TOKENS["admin"], tmp=tmp_path)
    assert rc == 0, err
    models = {m["id"]: m for m in json.loads(out)}
    assert models[bob]["owner"] == "bob" and models[bob]["started_by"] == "bob"
    assert models[alice]["name"] == "python_local" and models[alice]["execution_state"] in ("idle", "busy")
    assert "app_id" in models[alice]


async def test_admin_list_as_user_sees_own_only(gateway: RunningGateway, tmp_path: Any) -> None:
    alice, bob = await two_kernels(gateway)
    rc, out, err = await cli(gateway.url, "list", token=TOKENS["alice"], tmp=tmp_path)
    assert rc == 0, err
    assert alice in out and bob not in out
    assert "OWNER" not in out.splitlines()[0]  # a non-admin gets no detail
    rc, out, err = await cli(gateway.url, "list", "--json", env={"YARN_GATEWAY_TOKEN": TOKENS["bob"]})
    assert rc == 0, err
    assert [m["id"] for m in json.loads(out)] == [bob]


async def test_admin_show(gateway: RunningGateway, tmp_path: Any) -> None:
    _alice, bob = await two_kernels(gateway)
    rc, out, err = await cli(gateway.url, "show", bob, token=TOKENS["admin"], tmp=tmp_path)
    assert rc == 0, err
    fields = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert fields["id"] == bob and fields["owner"] == "bob" and fields["name"] == "python_local"
    rc, out, err = await cli(gateway.url, "show", bob, "--json", token=TOKENS["bob"], tmp=tmp_path)
    assert rc == 0, err
    assert json.loads(out)["id"] == bob and "owner" not in json.loads(out)
    rc, out, err = await cli(gateway.url, "show", bob, token=TOKENS["alice"], tmp=tmp_path)
    assert rc == 1 and out == ""
    assert err.startswith("error: not found:") and bob in err


async def test_admin_kill(gateway: RunningGateway, tmp_path: Any) -> None:
    alice, bob = await two_kernels(gateway)
    rc, _out, err = await cli(gateway.url, "kill", bob, token=TOKENS["alice"], tmp=tmp_path)
    assert rc == 1 and "not found" in err and bob in err
    assert (await gateway.client("bob").request("GET", f"api/kernels/{bob}")).code == 200
    rc, out, err = await cli(gateway.url, "kill", bob, token=TOKENS["admin"], tmp=tmp_path)
    assert rc == 0, err
    assert out.strip() == f"Killed kernel {bob}"
    assert (await gateway.client("bob").request("GET", f"api/kernels/{bob}")).code == 404
    rc, out, err = await cli(gateway.url, "kill", alice, "--json", token=TOKENS["alice"], tmp=tmp_path)
    assert rc == 0 and json.loads(out) == {"id": alice, "killed": True}
    assert gateway.registry.kernels == {}


async def test_admin_detail_refused_for_non_admins(gateway: RunningGateway) -> None:
    alice = await gateway.client("alice").start_kernel()
    r = await gateway.client("alice").request("GET", "api/kernels?detail=1")
    assert r.code == 403 and "admin" in r.body["message"]
    r = await gateway.client("alice").request("GET", f"api/kernels/{alice}?detail=1")
    assert r.code == 403
    r = await gateway.client("alice").request("GET", "api/kernels?detail=0")
    assert r.code == 200 and [m["id"] for m in r.body] == [alice] and "owner" not in r.body[0]
    r = await gateway.client("admin").request("GET", f"api/kernels/{alice}?detail=1")
    assert r.code == 200
    assert (r.body["owner"], r.body["started_by"], r.body["app_id"]) == ("alice", "alice", None)


def test_admin_record_detail_from_store() -> None:
    rec = new_record(kernel_id="k1", name="spark_python_yarn_cluster", owner="bob", started_by="admin",
                      provisioner_info={"app_id": "application_1_0001"}, state="running", created=1.0e9,
                      last_activity=1.0e9 + 5)
    d = record_detail(rec)
    assert (d["id"], d["owner"], d["started_by"], d["app_id"]) == ("k1", "bob", "admin", "application_1_0001")
    assert d["created"].startswith("2001-09-09T01:46:40") and d["connections"] == 0


async def test_admin_cli_errors(gateway: RunningGateway, tmp_path: Any) -> None:
    rc, _out, err = await cli(gateway.url, "list", token="wrong-token", tmp=tmp_path)
    assert rc == 1 and err.startswith("error: authentication failed:")
    rc, _out, err = await cli(gateway.url, "list")
    assert rc == 1 and "authentication failed" in err and "no credentials given" in err
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    rc, _out, err = await cli(dead, "list", token=TOKENS["admin"], tmp=tmp_path)
    assert rc == 1 and f"no gateway at {dead}" in err and "refused" in err.lower()
    rc, _out, err = await cli(gateway.url, "show", "not-a-uuid", token=TOKENS["admin"], tmp=tmp_path)
    assert rc == 1 and "is not a kernel id" in err
    rc, _out, err = await cli(gateway.url, "explode", token=TOKENS["admin"], tmp=tmp_path)
    assert rc == 2 and "usage:" in err
    rc, _out, err = await cli(gateway.url, "list", f"--token-file={tmp_path / 'absent'}")
    assert rc == 1 and "cannot read token file" in err and "No such file" in err
