"""Python kernels in YARN cluster mode, through the gateway, on a real ResourceManager and NodeManager."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import time
from typing import Any

import psutil
import pytest

from helpers.gwclient import GatewayClient
from helpers.steps import behaviour
from helpers.yarn_cluster import container_user
from helpers.yarn_specs import NO_EXECUTORS, PORT_RANGE, make_spec
from helpers.yarn_specs import app_of as _app_of
from helpers.yarn_specs import wait_app_state as _wait_app_state
from yarn_gateway_launchers import launcher_protocol as lp

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]

SPEC = "spark_python_yarn_cluster"






async def test_python_kernel_runs_as_caller_with_spark(make_gateway: Any, cluster: Any,
                                                       yarn_gateway_config: dict[str, Any]) -> None:
    gw = await make_gateway(yarn_gateway_config)
    alice = gw.client("alice")
    with behaviour('the kernel runs in YARN as alice, with Spark'):
        kid = await alice.start_kernel(SPEC)
        app_id = _app_of(gw, kid)
        app = await asyncio.to_thread(cluster.app_json, app_id)
        # Lazy mode: the kernel is usable before its SparkContext exists, so YARN may still say ACCEPTED.
        assert app["user"] == "alice" and app["state"] in ("ACCEPTED", "RUNNING")
        tags = set(app["applicationTags"].split(","))
        assert {"yarn-gateway", "yarn-gateway-default", f"kernel-{kid}"} <= tags
        ws = await alice.connect(kid)
        res = await ws.execute("spark.range(1000).count()", timeout=120)
        assert res.status == "ok", res.error
        assert res.text == "1000"
        assert (await asyncio.to_thread(cluster.app_json, app_id))["state"] == "RUNNING"
        assert (await ws.execute("sc.sparkUser()")).text == "'alice'"
        # DefaultContainerExecutor: the container runs as the NodeManager's Unix account; YARN and Spark
        # see the proxy user (a LinuxContainerExecutor cluster would run it as alice).
        # ($USER says alice: YARN sets it for the container.)
        assert (await ws.execute("import os, pwd; pwd.getpwuid(os.geteuid()).pw_name")).text == repr(container_user())
        assert (await ws.execute("os.environ['USER']")).text == "'alice'"

    # 6: every port of the launcher and of the response listener lies inside the range.
    with behaviour('every port lies inside the range'):
        rec = gw.registry.kernels[kid]
        info = rec.km.get_connection_info()
        lo, hi = PORT_RANGE
        ports = [info[p] for p in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]
        ports += [rec.km.provisioner.control_port, (await gw.registry.yarn_services.listener()).port]
        assert all(lo <= p <= hi for p in ports), ports
        pid_res = await ws.execute("import os; os.getpid()")
        launcher = psutil.Process(int(pid_res.text))
        listening = {c.laddr.port for c in launcher.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        outside = {c.laddr for c in launcher.net_connections(kind="tcp")
                   if c.status == psutil.CONN_LISTEN and not lo <= c.laddr.port <= hi}
        # PySpark's accumulator server (opened by Spark, not the launcher) listens on loopback only;
        # nothing outside the range is reachable from the network.
        assert listening and all(a.ip in ("127.0.0.1", "::1") for a in outside), (outside, launcher.cmdline())
        assert {info[p] for p in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")} <= listening

    # 7: the launcher's control port (in the YARN container) refuses forged, stale and replayed requests.
    with behaviour('the control port refuses forged, stale and replayed requests'):
        prov = rec.km.provisioner
        key = prov.connection_key

        async def control(msg: dict[str, Any]) -> dict[str, Any]:
            r, w = await asyncio.open_connection(prov.control_host, prov.control_port)
            w.write(json.dumps(msg).encode() + b"\n")
            await w.drain()
            answer = json.loads(await asyncio.wait_for(r.readline(), 10))
            w.close()
            return dict(answer)

        assert (await control(lp.sign_control_request(kid, "wrong-key", "ping")))["status"] == "error"
        stale = lp.sign_control_request(kid, key, "ping", ts=int(time.time()) - 3600)
        assert (await control(stale))["status"] == "error"
        good = lp.sign_control_request(kid, key, "ping")
        assert (await control(good))["status"] == "ok"
        assert (await control(good))["status"] == "error"  # the same nonce again
        assert (await ws.execute("2+2")).text == "4"  # refused requests changed nothing

    # 3: shutdown ends the application FINISHED and leaves no process behind.
    with behaviour('shutdown ends the application FINISHED, nothing left behind'):
        assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
        final = await _wait_app_state(cluster, app_id, {"FINISHED", "FAILED", "KILLED"})
        assert (final["state"], final["finalStatus"]) == ("FINISHED", "SUCCEEDED")
        await asyncio.sleep(1)
        assert not psutil.pid_exists(launcher.pid)
        leftovers = [p for p in psutil.process_iter(["cmdline"]) if app_id in " ".join(p.info["cmdline"] or [])]
        assert not leftovers, leftovers


async def test_python_kernel_is_a_cluster_mode_driver_that_yarn_knows(make_gateway: Any, cluster: Any,
                                                                       yarn_gateway_config: dict[str, Any]) -> None:
    """The first Spark cell: the driver is in YARN's AM container, as the caller, and prints only its own output."""
    gw = await make_gateway(yarn_gateway_config)
    alice = gw.client("alice")
    kid = await alice.start_kernel(SPEC)
    app_id = _app_of(gw, kid)
    ws = await alice.connect(kid)
    res = await ws.execute("print(sc.master, sc.deployMode, sc.applicationId, sc.sparkUser())", timeout=180)
    assert res.status == "ok", res.error
    assert res.stdout == f"yarn cluster {app_id} alice\n"
    assert res.stderr == "", res.stderr  # no launcher log line ("Spark session ready ...") in the cell
    # The real Hadoop CLI (ApplicationCLI from the Maven jars) sees it RUNNING, as alice, with our tags.
    report = await asyncio.to_thread(cluster.application_status, app_id)
    assert (report["State"], report["User"], report["Application-Type"]) == ("RUNNING", "alice", "SPARK"), report
    for tag in ("yarn-gateway", "yarn-gateway-default", f"kernel-{kid}"):
        assert (await asyncio.to_thread(cluster.running_with_tag, tag)).get(app_id) == ("alice", "RUNNING"), tag
    # The launcher's log line went to the container's log instead (Spark's PythonRunner merges the
    # driver's stderr into the container's stdout).
    logs = "".join([await asyncio.to_thread(cluster.container_log, app_id, name) for name in ("stdout", "stderr")])
    assert "Spark session ready" in logs
    assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204


async def test_interrupt_cancels_spark_job_and_restart_gives_new_app(make_gateway: Any, cluster: Any,
                                                                     yarn_gateway_config: dict[str, Any]) -> None:
    gw = await make_gateway(yarn_gateway_config)
    alice = gw.client("alice")
    kid = await alice.start_kernel(SPEC)
    first_app = _app_of(gw, kid)
    ws = await alice.connect(kid)
    assert (await ws.execute("x = 7")).status == "ok"
    code = ("import time\ndef slow(v):\n    time.sleep(1)\n    return v\n"
            "sc.parallelize(range(10**9), 4).map(slow).count()")
    msg = ws.message("execute_request", {"code": code, "silent": False, "store_history": True,
                                         "user_expressions": {}, "allow_stdin": False})
    await ws.send(msg)
    await asyncio.sleep(8)  # the job is running
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert (await alice.request("POST", f"api/kernels/{kid}/interrupt", {})).code == 204
    res = await ws.collect(msg["header"]["msg_id"], timeout=30)
    assert loop.time() - t0 < 5
    assert res.status == "error" and res.error is not None
    assert res.error["ename"] in ("KeyboardInterrupt", "Py4JJavaError"), res.error
    jobs = await ws.execute("sc.statusTracker().getActiveJobsIds()")
    assert jobs.text == "[]"  # the Spark job was cancelled
    assert (await ws.execute("x * 6")).text == "42"

    r = await alice.request("POST", f"api/kernels/{kid}/restart", {})
    assert r.code == 200, r.body
    second_app = _app_of(gw, kid)
    assert second_app != first_app
    old = await _wait_app_state(cluster, first_app, {"FINISHED", "FAILED", "KILLED"})
    assert old["state"] in ("FINISHED", "KILLED")
    ws2 = await alice.connect(kid)
    assert (await ws2.execute("'x' in globals()")).text == "False"
    assert (await ws2.execute("spark.range(3).count()", timeout=120)).text == "3"
    assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204


async def test_hostile_response_socket_does_not_delay_a_real_launch(make_gateway: Any, cluster: Any,
                                                                    yarn_gateway_config: dict[str, Any]) -> None:
    gw = await make_gateway(yarn_gateway_config)
    listener = await gw.registry.yarn_services.listener()
    port = listener.port
    stop = asyncio.Event()

    async def junk() -> None:
        while not stop.is_set():
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(os.urandom(64))
                await w.drain()
                w.close()
            except OSError:
                pass
            await asyncio.sleep(0.05)

    async def oversized() -> None:
        while not stop.is_set():
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.write((10 * 1024 * 1024).to_bytes(4, "big") + b"x" * 1000)
                await w.drain()
                w.close()
            except OSError:
                pass
            await asyncio.sleep(0.05)

    holders = []
    for _ in range(8):  # slow clients that hold connections open and never send
        s = socket.create_connection(("127.0.0.1", port))
        holders.append(s)
    tasks = [asyncio.ensure_future(junk()), asyncio.ensure_future(oversized())]
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        kid = await gw.client("bob").start_kernel(SPEC)
        took = loop.time() - t0
        ws = await gw.client("bob").connect(kid)
        assert (await ws.execute("1+1")).text == "2"
        assert took < 120
    finally:
        stop.set()
        for t in tasks:
            await t
        for s in holders:
            s.close()
    assert (await gw.client("bob").request("DELETE", f"api/kernels/{kid}")).code == 204


async def test_concurrent_starts_by_two_users_respect_the_submit_cap(
        make_gateway: Any, cluster: Any, yarn_gateway_config: dict[str, Any]) -> None:
    gw = await make_gateway(yarn_gateway_config)
    services = gw.registry.yarn_services
    peak = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, services.submits_running)
            await asyncio.sleep(0.01)

    sampler = asyncio.ensure_future(sample())
    # Three starts against a cap of two (a 2-core machine holds few YARN kernels at once): the third
    # waits for a slot; none of them holds an executor (dynamic allocation from zero).
    users = ["alice", "bob", "alice"]
    try:
        kids = await asyncio.gather(*(gw.client(u).start_kernel(SPEC, NO_EXECUTORS) for u in users))
    finally:
        done.set()
        await sampler
    assert peak == 2  # the cap (max_concurrent_submits=2) was reached and never exceeded
    for user, kid in zip(users, kids):
        assert gw.registry.kernels[kid].owner == user
        app = await asyncio.to_thread(cluster.app_json, _app_of(gw, kid))
        assert app["user"] == user
    listed = {u: {k["id"] for k in (await gw.client(u).request("GET", "api/kernels")).body} for u in ("alice", "bob")}
    assert listed["alice"] == {k for u, k in zip(users, kids) if u == "alice"}
    ws = await gw.client("alice").connect(kids[0])
    assert (await ws.execute("sc.sparkUser()")).text == "'alice'"
    await asyncio.gather(*(gw.client(u).request("DELETE", f"api/kernels/{k}") for u, k in zip(users, kids)))


# -- failure matrix (4) ---------------------------------------------------------------------------------------

async def _start_fails(gw: Any, user: str, spec: str) -> Any:
    r = await gw.client(user).request("POST", "api/kernels", {"name": spec})
    assert r.code >= 400, r.body
    assert not gw.registry.kernels
    return r


def _no_live_apps(cluster: Any, user: str) -> None:
    live = cluster.live_apps(user, tag="yarn-gateway")
    assert not live, [(a["id"], a["state"]) for a in live]


async def test_spark_submit_refused_impersonation(make_gateway: Any, cluster: Any,
                                                  yarn_gateway_config: dict[str, Any], token_file: str) -> None:
    with open(token_file, "a") as f:
        f.write("carol carol-token-0123456789\n")
    gw = await make_gateway(yarn_gateway_config)
    r = await GatewayClient(gw.url, "carol-token-0123456789").request("POST", "api/kernels", {"name": SPEC})
    assert r.code == 403, r.body
    assert "is not allowed to impersonate carol" in r.body["message"]
    assert "\tat " not in r.body["message"]  # no Java stack trace
    assert not gw.registry.kernels


async def test_app_failed_before_callback_shows_diagnostics(make_gateway: Any, cluster: Any, tmp_path: Any,
                                                            yarn_gateway_config: dict[str, Any]) -> None:
    bad = tmp_path / "exit_launcher.py"
    bad.write_text("import sys\nprint('launcher giving up', file=sys.stderr)\nsys.exit(3)\n")
    make_spec(tmp_path / "specs", "failing", launcher=str(bad), py_files=[])
    cfg = dict(yarn_gateway_config, YarnGatewayApp={"kernelspec_dirs": [str(tmp_path / "specs")]})
    gw = await make_gateway(cfg)
    r = await _start_fails(gw, "alice", "failing")
    msg = r.body["message"]
    assert "application_" in msg and "before the kernel started" in msg and "exit" in msg.lower(), msg
    _no_live_apps(cluster, "alice")


async def test_queue_full_fails_naming_the_queue(make_gateway: Any, cluster: Any, tmp_path: Any,
                                                 yarn_gateway_config: dict[str, Any]) -> None:
    make_spec(tmp_path / "specs", "small_q", queue="small", accepted_timeout=8.0)
    cfg = dict(yarn_gateway_config, YarnGatewayApp={"kernelspec_dirs": [str(tmp_path / "specs")]})
    gw = await make_gateway(cfg)
    first = await gw.client("alice").start_kernel("small_q")  # YARN lets the first AM exceed the limit
    r = await gw.client("bob").request("POST", "api/kernels", {"name": "small_q"})
    assert r.code == 503, r.body
    assert "queue 'small'" in r.body["message"] and "AM resource limit" in r.body["message"]
    assert [k for k in gw.registry.kernels] == [first]
    _no_live_apps(cluster, "bob")
    await gw.client("alice").request("DELETE", f"api/kernels/{first}")


async def test_launcher_never_calls_back_times_out_and_kills(make_gateway: Any, cluster: Any, tmp_path: Any,
                                                             yarn_gateway_config: dict[str, Any]) -> None:
    mute = tmp_path / "mute_launcher.py"
    mute.write_text("from pyspark import SparkContext\nimport time\nsc = SparkContext()\ntime.sleep(3600)\n")
    make_spec(tmp_path / "specs", "mute", launcher=str(mute), py_files=[])
    cfg = dict(yarn_gateway_config, YarnGatewayApp={"kernelspec_dirs": [str(tmp_path / "specs")]})
    gw = await make_gateway(cfg)
    r = await gw.client("alice").request("POST", "api/kernels",
                                         {"name": "mute", "env": {"KERNEL_LAUNCH_TIMEOUT": "40"}})
    assert r.code == 504, r.body
    assert "did not call back within 40 s" in r.body["message"] and "application_" in r.body["message"]
    _no_live_apps(cluster, "alice")


async def test_rm_unreachable(make_gateway: Any, cluster: Any, tmp_path: Any,
                              yarn_gateway_config: dict[str, Any]) -> None:
    """A ResourceManager nobody answers for (RPC and REST): the start fails naming it, quickly."""
    conf = tmp_path / "deadconf"
    shutil.copytree(cluster.conf_dir, conf)
    from devcluster.config import write_xml
    from helpers.jupyter_server import free_port
    from yarn_gateway.yarn.hadoop_conf import read_conf

    site = read_conf(str(conf / "yarn-site.xml"))
    for k in list(site):
        if k.startswith("yarn.resourcemanager.") and k.endswith("address"):
            site[k] = f"localhost:{free_port()}"
    # spark-submit's own give-up time (Hadoop's default is 15 minutes of retries).
    site["yarn.resourcemanager.connect.max-wait.ms"] = "4000"
    site["yarn.resourcemanager.connect.retry-interval.ms"] = "1000"
    write_xml(str(conf / "yarn-site.xml"), site)
    cfg = json.loads(json.dumps(yarn_gateway_config))
    cfg["YarnServices"]["hadoop_conf_dir"] = str(conf)
    gw = await make_gateway(cfg)
    r = await _start_fails(gw, "alice", SPEC)
    assert r.code in (500, 503)
    msg = r.body["message"]
    assert "spark-submit failed" in msg and ("Connection refused" in msg or "ConnectException" in msg), msg
    assert "\tat " not in msg
