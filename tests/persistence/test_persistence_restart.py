"""Issue 7: kernels outlive the gateway (kill -9 and SIGTERM), corrupt records are skipped, and a
kernel whose record is gone is swept: real YARN applications of alice and bob, a real gateway process."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from persist_support import NO_EXECUTORS, app_of_kernel, states, wait_final

from helpers.gateway_fixtures import TOKENS
from helpers.gateway_process import GatewayProcess
from helpers.gwclient import GatewayClient
from helpers.jupyter_server import JupyterServer
from helpers.steps import behaviour
from helpers.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]
SPEC = "spark_python_yarn_cluster"


async def _ids(gw: GatewayProcess, user: str) -> set[str]:
    r = await GatewayClient(gw.url, TOKENS[user]).request("GET", "api/kernels")
    assert r.code == 200, r.body
    return {k["id"] for k in r.body}


async def _wait_reconnected(gw: GatewayProcess, kid: str, timeout: float = 60) -> None:
    """jupyter_server re-opens its websocket to the gateway by itself (with backoff); messages a
    desktop sends before that are dropped by jupyter_server, so wait for the reconnection."""
    client = GatewayClient(gw.url, TOKENS["alice"])

    async def reconnected() -> bool:
        return bool((await client.request("GET", f"api/kernels/{kid}")).body.get("connections", 0) >= 1)

    await wait_until(reconnected, timeout, f"jupyter_server reconnected to kernel {kid}", interval=0.2)


@pytest.mark.timeout(900)
async def test_kernels_of_two_users_survive_kill9_and_sigterm_and_an_unrecorded_one_is_swept(
        cluster: Any, yarn_config: dict[str, Any], tmp_path: Any, token_file: str) -> None:
    # The sweep at every start may take any application of ours without a record (no grace period).
    cfg = {**yarn_config, "SessionKeeper": {"sweep_grace": 0.0}}
    gw = GatewayProcess(str(tmp_path / "gw"), cfg, token_file)
    await gw.start()
    # alice works through a real jupyter_server, as a desktop would; bob talks to the gateway directly.
    js = JupyterServer(gw.url, TOKENS["alice"], str(tmp_path / "desktop"), kernel_username="alice",
                       extra_env={**NO_EXECUTORS, "KERNEL_LAUNCH_TIMEOUT": "170"})
    try:
        bob = GatewayClient(gw.url, TOKENS["bob"])
        await js.start()
        desk = GatewayClient(js.url, js.token)
        with behaviour('both kernels start as their users, with Spark'):
            started, bob_kid = await asyncio.gather(
                desk.request("POST", "api/kernels", {"name": SPEC}, timeout=200),
                bob.start_kernel(SPEC, NO_EXECUTORS))
            assert started.code == 201, started.body
            alice_kid = started.body["id"]
            alice_app, bob_app = (app_of_kernel(cluster, k) for k in (alice_kid, bob_kid))
            assert (alice_app["user"], bob_app["user"]) == ("alice", "bob")
            alice_app_id, bob_app_id = str(alice_app["id"]), str(bob_app["id"])
            # Each kernel's state, and its SparkContext up (the application RUNNING, registered with YARN).
            desk_ws = await desk.connect(alice_kid)
            assert (await desk_ws.execute("x = 42; sc.sparkUser()", timeout=120)).text == "'alice'"
            ws = await bob.connect(bob_kid)
            assert (await ws.execute("y = 'kept'; sc.sparkUser()", timeout=120)).text == "'bob'"
            ws.close()

        # kill -9: nothing is cleaned up, nothing may be lost.
        with behaviour('kill -9: both kernels are re-attached with their state'):
            await gw.kill9()
            assert await states(cluster, alice_app_id, bob_app_id) == ["RUNNING", "RUNNING"]
            await gw.start()
            assert await _ids(gw, "alice") == {alice_kid} and await _ids(gw, "bob") == {bob_kid}
            ws = await bob.connect(bob_kid)
            assert (await ws.execute("y")).text == "'kept'"
            ws.close()
            # The desktop's own websocket (jupyter_server -> gateway) reconnects by itself.
            await _wait_reconnected(gw, alice_kid)
            res = await desk_ws.execute("x", timeout=90)
            assert res.text == "42", (res, js.read_log()[-2000:])

        # A clean stop leaves the kernels running too; a corrupt record does not stop recovery.
        with behaviour('SIGTERM and planted records: recovery goes on'):
            assert await gw.terminate() == 0
            assert await states(cluster, alice_app_id, bob_app_id) == ["RUNNING", "RUNNING"]
            sessions = yarn_config["DirectoryStore"]["directory"]
            with open(os.path.join(sessions, "11111111-2222-3333-4444-555555555555.json"), "w") as f:
                f.write('{"version": 1, "kernel_id": "11111111-2222-3333-4444-5555')  # truncated
            with open(os.path.join(sessions, "garbage.json"), "wb") as f:
                f.write(b"\x00\xffnot json at all")
            await gw.start()
            assert await _ids(gw, "alice") == {alice_kid} and await _ids(gw, "bob") == {bob_kid}
            log = gw.read_log()
            assert "Ignoring session record" in log and "garbage.json: its name is not <kernel id>.json" in log
            assert "11111111-2222-3333-4444-555555555555.json" in log  # planted 0644 and truncated: refused
            await _wait_reconnected(gw, alice_kid)
            res = await desk_ws.execute("x + 1", timeout=90)
            assert res.text == "43"
            ws = await bob.connect(bob_kid)
            assert (await ws.execute("(y, sc.sparkUser())", timeout=120)).text == "('kept', 'bob')"
            ws.close()
        # The records hold secrets: owner-only files.
        with behaviour('records are private and sealed'):
            planted = {"11111111-2222-3333-4444-555555555555.json", "garbage.json"}
            records = [n for n in set(os.listdir(sessions)) - planted if n.endswith(".json")]
            assert sorted(records) == sorted(f"{k}.json" for k in (alice_kid, bob_kid))
            for name in records:
                assert os.stat(os.path.join(sessions, name)).st_mode & 0o077 == 0
                with open(os.path.join(sessions, name)) as f:  # sealed: an envelope with a MAC (record_mac)
                    assert json.load(f)["record"]["provisioner_info"]["app_id"] in (alice_app_id, bob_app_id)

        # Bob's record is lost while the gateway is down: his application is now an orphan, which
        # the sweep at the next start kills in YARN; alice's kernel is recovered as before.
        with behaviour('a kernel without a record is swept as an orphan'):
            await gw.kill9()
            os.remove(os.path.join(sessions, f"{bob_kid}.json"))
            await gw.start()
            assert (await wait_final(cluster, bob_app_id))["state"] == "KILLED"
            assert f"Killing orphaned YARN application {bob_app_id} (user bob, kernel {bob_kid})" in gw.read_log()
            assert await _ids(gw, "bob") == set() and await _ids(gw, "alice") == {alice_kid}
            assert await states(cluster, alice_app_id) == ["RUNNING"]
            await _wait_reconnected(gw, alice_kid)
            assert (await desk_ws.execute("x + 2", timeout=90)).text == "44"
            desk_ws.close()

        with behaviour('shutdown ends the application FINISHED and removes the record'):
            alice = GatewayClient(gw.url, TOKENS["alice"])
            assert (await alice.request("DELETE", f"api/kernels/{alice_kid}")).code == 204
            final = await wait_final(cluster, alice_app_id)
            assert (final["state"], final["finalStatus"]) == ("FINISHED", "SUCCEEDED")
            assert not [n for n in set(os.listdir(sessions)) - planted if n.endswith(".json")]
    finally:
        await js.stop()
        await gw.close()

