"""`make run` (devcluster.run): a real YARN + the gateway for a newcomer; the cluster outlives the gateway."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from typing import Any

import psutil
import pytest

from devcluster import procs
from helpers.gwclient import GatewayClient
from helpers.jupyter_server import free_port
from helpers.steps import behaviour
from helpers.yarn_cluster import default_port_base

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RM_CLASS = "org.apache.hadoop.yarn.server.resourcemanager.ResourceManager"
NM_CLASS = "org.apache.hadoop.yarn.server.nodemanager.NodeManager"


async def _run(state: Any, port: int, port_base: int) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HADOOP_CONF_DIR", "SPARK_HOME", "SPARK_CONF_DIR",
                                                           "YARN_GATEWAY_TOKEN")}
    proc = subprocess.Popen([sys.executable, "-m", "devcluster.run", f"--state-dir={state}", f"--port={port}",
                             f"--port-base={port_base}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    assert proc.stdout is not None
    while not any("listening on" in ln for ln in lines):
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 240)
        assert line, "".join(lines)
        lines.append(line)
    return proc, "".join(lines)


async def _stop(proc: subprocess.Popen[str]) -> str:
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 0, out
    return out


def _daemon_pid(state: Any, name: str) -> int:
    pid = procs.Daemon(str(state / "yarn" / "run"), name).pid()
    assert pid is not None, f"{name} is not running"
    return pid


async def test_make_run_real_yarn_outlives_the_gateway(tmp_path: Any) -> None:
    port, port_base = free_port(), default_port_base("simple") + 4000
    state = tmp_path / "state"
    user = psutil.Process().username()
    try:
        proc, text = await _run(state, port, port_base)
        try:
            with behaviour('make run prints how to connect and writes a private token'):
                assert f"--gateway-url=http://127.0.0.1:{port}" in text
                assert re.search(rf"^ResourceManager: http://localhost:{port_base + 88}$", text, re.M), text
                assert f"HADOOP_CONF_DIR={state}/yarn/conf" in text
                token = (state / "token").read_text().strip()
                assert oct((state / "token").stat().st_mode & 0o777) == "0o600"
            # Real Hadoop daemons: Java processes running the RM and NM main classes, known by PID.
            with behaviour('real Hadoop daemons and the three kernelspecs'):
                rm_pid, nm_pid = _daemon_pid(state, "rm1"), _daemon_pid(state, "nm")
                assert RM_CLASS in psutil.Process(rm_pid).cmdline() and NM_CLASS in psutil.Process(nm_pid).cmdline()
                assert os.path.basename(psutil.Process(rm_pid).cmdline()[0]) == "java"
                client = GatewayClient(f"http://127.0.0.1:{port}/", token)
                specs = (await client.request("GET", "api/kernelspecs")).body
                assert specs["default"] == "spark_python_yarn_cluster"
                # (jupyter_client lowercases kernelspec names: spark_R_yarn_cluster is listed as spark_r_yarn_cluster.)
                assert {"spark_python_yarn_cluster", "spark_scala_yarn_cluster", "spark_r_yarn_cluster"} <= set(
                    specs["kernelspecs"])
            with behaviour('a Python kernel runs in YARN cluster mode'):
                kid = await client.start_kernel("spark_python_yarn_cluster")
                ws = await client.connect(kid)
                res = await ws.execute("x = 41\nprint(sc.master, sc.deployMode, sc.applicationId, sc.sparkUser())",
                                       timeout=180)
                assert res.status == "ok", res.error
                assert re.fullmatch(rf"yarn cluster application_\d+_\d+ {re.escape(user)}\n", res.stdout), res.stdout
                ws.close()
        finally:
            out = await _stop(proc)
        assert "Stopped" in out
        # Ctrl-C stopped the gateway only: the same RM still runs, and so does the kernel's application.
        with behaviour('a restarted gateway reuses the cluster and re-attaches the kernel'):
            assert _daemon_pid(state, "rm1") == rm_pid
            proc, text = await _run(state, port, port_base)
            try:
                assert "Reusing the running single-host Hadoop YARN" in text
                assert _daemon_pid(state, "rm1") == rm_pid  # no second cluster
                client = GatewayClient(f"http://127.0.0.1:{port}/", token)
                listed = [k["id"] for k in (await client.request("GET", "api/kernels")).body]
                assert kid in listed  # re-attached from its session record
                ws = await client.connect(kid)
                assert (await ws.execute("x + 1", timeout=60)).text == "42"
                ws.close()
                assert (await client.request("DELETE", f"api/kernels/{kid}")).code == 204
            finally:
                await _stop(proc)
        # `make stop-cluster`: daemons and containers stop, by PID; nothing of this cluster is left.
        with behaviour('stopping the cluster leaves nothing running'):
            stop = subprocess.run([sys.executable, "-m", "devcluster", "stop", f"--base-dir={state}/yarn",
                                   f"--port-base={port_base}"], cwd=REPO, capture_output=True, text=True, timeout=120)
            assert stop.returncode == 0, stop.stdout + stop.stderr
            assert not psutil.pid_exists(rm_pid) and not psutil.pid_exists(nm_pid)
            leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(state) in " ".join(p.info["cmdline"] or [])]
            assert not leftovers, [p.info["cmdline"] for p in leftovers]
    finally:
        # Whatever failed above, never leave this test's cluster running (its PID files are in tmp_path).
        subprocess.run([sys.executable, "-m", "devcluster", "stop", f"--base-dir={state}/yarn",
                        f"--port-base={port_base}"], cwd=REPO, capture_output=True, timeout=120, check=False)
