"""The YARN provisioner's failure paths in seconds: the real gateway, the real launcher (without
Spark), a stand-in spark-submit and a stand-in ResourceManager (helpers.stub_yarn, helpers.fake_rm).

The same paths on real YARN are covered, more slowly, by tests/yarn_kernels.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psutil
import pytest

from helpers.fake_rm import FakeRM
from helpers.stub_yarn import StubYarn
from helpers.waiting import wait_until

pytestmark = pytest.mark.fast

SPEC = "stub_yarn"
JAVA_DIAGNOSTICS = (
    "Application application_1_0001 failed 1 times due to AM Container exited with exitCode: 1\n"
    "26/12/02 21:28:39 INFO ApplicationMaster: Preparing Local resources\n"
    "26/12/02 21:28:40 ERROR ApplicationMaster: User application exited with status 3\n"
    "java.lang.RuntimeException: boom\n"
    "\tat org.apache.spark.deploy.yarn.ApplicationMaster.runDriver(ApplicationMaster.scala:512)\n"
)


@pytest.fixture
def stub(tmp_path: Any, fake_rm: FakeRM) -> StubYarn:
    return StubYarn(tmp_path / "yarn", fake_rm)


async def _start(gw: Any, spec: str = SPEC, user: str = "alice") -> Any:
    return await gw.client(user).request("POST", "api/kernels", {"name": spec}, timeout=60)


def _started(gw: Any) -> asyncio.Task[Any]:
    return asyncio.create_task(_start(gw))


def _containers(stub: StubYarn) -> list[psutil.Process]:
    """Live launcher processes the stub started (found by their working directory, never by name)."""
    found = []
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info.get("cwd") or ""
        if cwd.startswith(stub.out + os.sep):
            found.append(proc)
    return found


async def test_no_application_id_and_none_in_yarn(make_gateway: Any, stub: StubYarn, fake_rm: FakeRM) -> None:
    stub.scenario(register=False, output=["WARN Client: something odd happened"])
    gw = await make_gateway(stub.config())
    r = await _start(gw)
    assert r.code == 500, r.body
    assert "spark-submit ended without submitting an application" in r.body["message"]
    assert "something odd happened" in r.body["message"]
    assert fake_rm.apps == {} and not gw.registry.kernels


async def test_id_not_printed_is_found_by_tag(make_gateway: Any, stub: StubYarn, fake_rm: FakeRM) -> None:
    stub.scenario(print_id=False, launch=True)
    gw = await make_gateway(stub.config())
    r = await _start(gw)
    assert r.code == 201, r.body
    app = fake_rm.only_app()
    assert gw.registry.kernels[r.body["id"]].km.provisioner.app_id == app["id"]
    assert f"kernel-{r.body['id']}" in app["applicationTags"].split(",")
    ws = await gw.client("alice").connect(r.body["id"])
    assert (await ws.execute("6 * 7")).text == "42"
    ws.close()
    assert (await gw.client("alice").request("DELETE", f"api/kernels/{r.body['id']}")).code == 204
    assert app["state"] in ("FINISHED", "KILLED")
    await wait_until(lambda: not _containers(stub), 10, "the launcher outlived its application")


async def test_failed_before_the_launcher_calls_back(make_gateway: Any, stub: StubYarn, fake_rm: FakeRM) -> None:
    gw = await make_gateway(stub.config())
    start = _started(gw)
    app_id = await wait_until(lambda: next(iter(fake_rm.apps), None), 20, "nothing submitted")
    fake_rm.set_state(app_id, "FAILED", JAVA_DIAGNOSTICS)
    r = await start
    assert r.code == 500, r.body
    msg = r.body["message"]
    assert app_id in msg and "ended FAILED/FAILED before the kernel started" in msg
    assert "User application exited with status 3" in msg
    assert "\tat org.apache" not in msg and "ApplicationMaster.scala" not in msg
    assert fake_rm.apps[app_id]["state"] == "FAILED"  # already final: stays as YARN reported it


async def test_accepted_past_the_queue_timeout(make_gateway: Any, stub: StubYarn, fake_rm: FakeRM) -> None:
    spec = stub.spec("queued", accepted_timeout=1.0, queue="small")
    fake_rm.initial_diagnostics = "Queue's AM resource limit exceeded."
    gw = await make_gateway(stub.config())
    r = await _start(gw, spec)
    assert r.code == 503, r.body
    assert r.body["reason"] == "Queue full"
    app = fake_rm.only_app()
    assert "in YARN queue 'small' without getting resources; it was killed" in r.body["message"]
    assert "AM resource limit exceeded" in r.body["message"]
    assert fake_rm.kills == [app["id"]] and app["state"] == "KILLED"


async def test_silent_launcher_hits_the_launch_timeout(make_gateway: Any, stub: StubYarn, fake_rm: FakeRM) -> None:
    spec = stub.spec("silent", launch_timeout=2.0)
    fake_rm.initial_state = "RUNNING"  # the AM runs, its launcher never calls back
    gw = await make_gateway(stub.config())
    r = await _start(gw, spec)
    assert r.code == 504, r.body
    app = fake_rm.only_app()
    assert "did not call back within 2 s; the application was killed" in r.body["message"]
    assert f"yarn logs -applicationId {app['id']}" in r.body["message"]
    assert fake_rm.kills == [app["id"]] and app["state"] == "KILLED"
    assert not gw.registry.kernels


async def test_rm_down_and_back_during_a_launch(make_gateway: Any, stub: StubYarn, fake_rm: FakeRM) -> None:
    stub.scenario(launch=True, launch_delay=3.0)  # the launcher calls back after the outage
    gw = await make_gateway(stub.config())
    start = _started(gw)
    app_id = await wait_until(lambda: next(iter(fake_rm.apps), None), 20, "nothing submitted")
    kid = next(iter(gw.registry.kernels))
    prov = gw.registry.kernels[kid].km.provisioner
    await wait_until(lambda: prov.app_id == app_id, 10, "no app id yet")
    polls = fake_rm.calls
    await wait_until(lambda: fake_rm.calls > polls + 1, 10, "the gateway does not poll the RM")  # in the wait loop
    await fake_rm.down()
    await asyncio.sleep(1.5)  # several polls (every 0.2 s) fail meanwhile
    fake_rm.up()
    r = await start
    assert r.code == 201, r.body
    errors = gw.registry.metrics.rm_errors.labels("cluster_application", "connection")._value.get()
    assert errors >= 3, errors  # the outage was seen, and waited out
    ws = await gw.client("alice").connect(r.body["id"])
    assert (await ws.execute("'still here'")).text == "'still here'"
    ws.close()


async def test_rm_down_for_good_fails_the_launch_and_keeps_its_record(make_gateway: Any, stub: StubYarn,
                                                                      fake_rm: FakeRM) -> None:
    spec = stub.spec("outage", rm_outage_timeout=1.0)
    gw = await make_gateway(stub.config())
    start = asyncio.create_task(_start(gw, spec))
    app_id = await wait_until(lambda: next(iter(fake_rm.apps), None), 20, "nothing submitted")
    kid = next(iter(gw.registry.kernels))
    await fake_rm.down()
    r = await start
    assert r.code == 503, r.body
    assert r.body["reason"] == "YARN unreachable" and "unreachable for" in r.body["message"]
    assert fake_rm.apps[app_id]["state"] == "ACCEPTED"  # could not be killed: the RM was down
    record = await gw.registry.sessions.find(kid)  # so its launch record stays for a later sweep
    assert record is not None and record["state"] == "launching"
    assert record["provisioner_info"]["app_id"] == app_id


async def test_gateway_stop_mid_launch(make_gateway: Any, stub: StubYarn, fake_rm: FakeRM) -> None:
    # One launch still inside spark-submit, one waiting for its launcher.
    stub.scenario(sleep_before=30)
    gw = await make_gateway(stub.config())
    in_submit = _started(gw)
    await wait_until(lambda: os.listdir(stub.out), 20, "spark-submit never ran")
    stub.scenario()
    waiting = _started(gw)
    app_id = await wait_until(lambda: next(iter(fake_rm.apps), None), 20, "nothing submitted")
    submits = [p for p in psutil.Process().children(recursive=True) if "spark-submit" in " ".join(p.cmdline())]
    await gw.app.stop_server()
    for r in (await in_submit, await waiting):
        assert r.code == 503 and r.body["reason"] == "Gateway stopping", r.body
    assert fake_rm.kills == [app_id] and fake_rm.apps[app_id]["state"] == "KILLED"
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in submits)
    assert await gw.registry.sessions.records() == []


async def test_recovery_after_a_gateway_restart(make_gateway: Any, stub: StubYarn, fake_rm: FakeRM) -> None:
    stub.scenario(launch=True)
    first = await make_gateway(stub.config())
    r = await _start(first)
    assert r.code == 201, r.body
    kid = r.body["id"]
    ws = await first.client("alice").connect(kid)
    assert (await ws.execute("x = 'kept'; x")).text == "'kept'"
    ws.close()
    await first.app.stop_server()  # the kernel is left running in "YARN"
    assert fake_rm.only_app()["state"] == "RUNNING" and _containers(stub)
    second = await make_gateway(stub.config())
    models = (await second.client("alice").request("GET", "api/kernels")).body
    assert [m["id"] for m in models] == [kid]
    assert (await second.client("bob").request("GET", f"api/kernels/{kid}")).code == 404
    ws = await second.client("alice").connect(kid)
    assert (await ws.execute("x")).text == "'kept'"  # the same kernel, not a new one
    ws.close()
    assert (await second.client("alice").request("DELETE", f"api/kernels/{kid}")).code == 204
    await wait_until(lambda: not _containers(stub), 10, "the launcher outlived its application")
    assert fake_rm.only_app()["state"] in ("FINISHED", "KILLED")
