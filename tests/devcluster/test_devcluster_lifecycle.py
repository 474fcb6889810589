"""The dev cluster itself: real Hadoop daemons, reuse of a running cluster, stop by PID (containers too)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import psutil
import pytest

from devcluster import Cluster, ClusterSpec, procs
from helpers.waiting import wait_until_sync
from helpers.yarn_cluster import default_port_base

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A driver that never makes a SparkContext: its container lives until the AM gives up (am.waitTime).
SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devcluster", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)


def test_devcluster_start_reuse_submit_and_stop_by_pid(tmp_path: Any) -> None:
    base = str(tmp_path / "yc")
    port_base = default_port_base("simple") + 5000
    where = [f"--base-dir={base}", f"--port-base={port_base}"]
    first = _cli("start", *where)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"ResourceManager: http://localhost:{port_base + 88}" in first.stdout
    cluster = Cluster(ClusterSpec(base_dir=base, port_base=port_base))
    try:
        rm_pid = procs.Daemon(cluster.run_dir, "rm1").pid()
        nm_pid = procs.Daemon(cluster.run_dir, "nm").pid()
        assert rm_pid and nm_pid
        assert "org.apache.hadoop.yarn.server.resourcemanager.ResourceManager" in psutil.Process(rm_pid).cmdline()
        assert os.getpgid(rm_pid) == rm_pid and os.getpgid(nm_pid) == nm_pid  # each its own process group
        again = _cli("start", *where)
        assert again.returncode == 0 and "already running" in again.stdout, again.stdout
        assert procs.Daemon(cluster.run_dir, "rm1").pid() == rm_pid  # reused, not a second cluster
        status = _cli("status", *where)
        assert status.returncode == 0 and status.stdout.startswith("running"), status.stdout

        # A real cluster-mode submit; its container runs under the NodeManager in a session of its own.
        job = tmp_path / "sleeper.py"
        job.write_text(SLEEPER)
        env = cluster.client_env()
        out = subprocess.run([os.path.join(cluster.spark_home, "bin", "spark-submit"), "--master", "yarn",
                              "--deploy-mode", "cluster", "--proxy-user", "alice", "--conf",
                              "spark.yarn.submit.waitAppCompletion=false", str(job)],
                             env=env, capture_output=True, text=True, timeout=180, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        containers: list[int] = []

        def sleeper_runs() -> bool:
            nonlocal containers
            containers = list(procs.container_pids(cluster.nm_local))
            return any("sleeper.py" in " ".join(psutil.Process(p).cmdline()) for p in containers
                       if psutil.pid_exists(p))

        wait_until_sync(sleeper_runs, 120, "the job's container process (sleeper.py) appeared", interval=0.5)
        app = cluster.apps()[0]
        assert app["user"] == "alice" and app["queue"] == "default"
        listed = cluster.yarn("application", "-list")
        assert app["id"] in listed.stdout, listed.stdout + listed.stderr
    finally:
        stop = _cli("stop", *where)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert not psutil.pid_exists(rm_pid) and not psutil.pid_exists(nm_pid)
    alive = [p for p in containers if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, alive
    assert _cli("status", *where).returncode == 1
