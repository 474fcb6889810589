"""spark-submit --master yarn --deploy-mode cluster against a real MiniCluster (real PySpark in the AM)."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
import requests
from conftest import ClusterThread

JOB = """\
import getpass, os, sys
from pyspark import SparkContext
sc = SparkContext()
sc.setLogLevel("ERROR")
print("SPARKUSER", sc.sparkUser(), "OSUSER", getpass.getuser(), "ARGS", sys.argv[1:], flush=True)
if os.path.exists("data.txt"):
    import helper
    print("FILES", open("data.txt").read().strip(), helper.VALUE, flush=True)
print("SUM", sc.parallelize(range(10)).sum(), flush=True)
sc.stop()
if sys.argv[1:2] == ["fail"]:
    print("job failed on purpose", file=sys.stderr, flush=True)
    sys.exit(3)
"""


def submit(mc: ClusterThread, args: list[str], timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.path.join(mc.spark_home, "bin", "spark-submit"), "--master", "yarn",
                           "--deploy-mode", "cluster", *args], env=mc.env(**env), capture_output=True, text=True,
                          timeout=timeout)


def app_id_of(stderr: str) -> str:
    m = re.search(r"INFO YarnClientImpl: Submitted application (application_\d+_\d+)", stderr)
    assert m, stderr
    return m.group(1)


def rm_app(mc: ClusterThread, app_id: str) -> dict:
    r = requests.get(f"{mc.rm_url}/ws/v1/cluster/apps/{app_id}", params={"user.name": "root"}, timeout=10)
    r.raise_for_status()
    return r.json()["app"]


@pytest.fixture
def job(tmp_path) -> str:
    path = tmp_path / "job.py"
    path.write_text(JOB)
    return str(path)


def test_spark_submit_unknown_queue_fails_submission(minicluster, job) -> None:
    r = submit(minicluster, ["--proxy-user", "alice", "--queue", "nosuchqueue", job])
    assert r.returncode == 1
    app_id = re.search(r"Submitting application (application_\d+_\d+) to ResourceManager", r.stderr).group(1)
    assert (f'Exception in thread "main" org.apache.hadoop.yarn.exceptions.YarnException: Failed to submit {app_id} '
            f"to YARN : Application {app_id} submitted by user alice to unknown queue: nosuchqueue") in r.stderr
    assert rm_app(minicluster, app_id)["state"] == "FAILED"


def test_spark_submit_refuses_proxy_user_outside_rules(minicluster, job) -> None:
    before = requests.get(f"{minicluster.rm_url}/ws/v1/cluster/apps", params={"user.name": "root"}, timeout=10).json()
    r = submit(minicluster, ["--proxy-user", "carol", job])
    assert r.returncode == 1
    assert ('Exception in thread "main" org.apache.hadoop.ipc.RemoteException('
            "org.apache.hadoop.security.authorize.AuthorizationException): "
            "User: root is not allowed to impersonate carol\n") in r.stderr
    assert "Submitted application" not in r.stderr
    after = requests.get(f"{minicluster.rm_url}/ws/v1/cluster/apps", params={"user.name": "root"}, timeout=10).json()
    assert after == before  # no application left behind


@pytest.mark.jvm
def test_spark_submit_cluster_mode_runs_as_proxy_user(minicluster, job, tmp_path) -> None:
    (tmp_path / "helper.py").write_text("VALUE = 'from-py-files'\n")
    (tmp_path / "data.txt").write_text("from-files\n")
    r = submit(minicluster, ["--proxy-user", "alice", "--name", "ss-ok", "--conf", "spark.yarn.tags=Gw,K1",
                             "--py-files", str(tmp_path / "helper.py"), "--files", str(tmp_path / "data.txt"),
                             job, "a", "b c"])
    assert r.returncode == 0, r.stderr
    app_id = app_id_of(r.stderr)
    lines = r.stderr.splitlines()
    assert re.match(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d INFO Client: Requesting a new application from cluster with 1 "
                    r"NodeManagers$", lines[0])
    assert any(f"/user/alice/.sparkStaging/{app_id}/job.py" in line for line in lines)
    assert f"INFO Client: Application report for {app_id} (state: ACCEPTED)" in r.stderr
    assert f"INFO Client: Application report for {app_id} (state: FINISHED)" in r.stderr
    assert "\t final status: SUCCEEDED\n" in r.stderr and "\t user: alice\n" in r.stderr
    app = rm_app(minicluster, app_id)
    assert (app["state"], app["finalStatus"], app["user"], app["name"]) == ("FINISHED", "SUCCEEDED", "alice", "ss-ok")
    assert app["applicationTags"] == "gw,k1" and app["applicationType"] == "SPARK"
    out = minicluster.container_log(app_id, "stdout")
    expected_os_user = "alice" if os.geteuid() == 0 else None
    assert "SPARKUSER alice" in out and "ARGS ['a', 'b c']" in out and "SUM 45" in out
    assert "FILES from-files from-py-files" in out
    if expected_os_user:
        assert f"OSUSER {expected_os_user}" in out


@pytest.mark.jvm
def test_spark_submit_failing_job_ends_finished_failed(minicluster, job) -> None:
    r = submit(minicluster, ["--proxy-user", "alice", "--conf", "spark.yarn.maxAppAttempts=1", job, "fail"])
    assert r.returncode == 1
    app_id = app_id_of(r.stderr)
    assert "ERROR Client: Application diagnostics message: User application exited with status 3" in r.stderr
    assert (f'Exception in thread "main" org.apache.spark.SparkException: Application {app_id} '
            "finished with failed status") in r.stderr
    assert r.stderr.rstrip().splitlines()[-2].endswith("INFO ShutdownHookManager: Shutdown hook called")
    staging = f"{minicluster.base}/dfs/user/alice/.sparkStaging/{app_id}"
    assert f"INFO Client: Deleting staging directory file:{staging}\n" in r.stderr
    assert not os.path.exists(staging)
    app = rm_app(minicluster, app_id)
    assert (app["state"], app["finalStatus"]) == ("FINISHED", "FAILED")
    # PySpark's PythonRunner merges the Python process's stderr into the driver's stdout, as on YARN
    logs = minicluster.container_log(app_id, "stdout") + minicluster.container_log(app_id, "stderr")
    assert "job failed on purpose" in logs
    assert "User application exited with status 3" in minicluster.container_log(app_id, "stderr")


@pytest.mark.jvm
def test_spark_submit_fire_and_forget(minicluster, job) -> None:
    t0 = time.monotonic()
    r = submit(minicluster, ["--proxy-user", "alice", "--conf", "spark.yarn.submit.waitAppCompletion=false", job])
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    app_id = app_id_of(r.stderr)
    assert r.stderr.count("Application report for") == 1
    assert f"Application report for {app_id} (state: ACCEPTED)" in r.stderr
    assert elapsed < 10
    # the application carries on without its client
    deadline = time.monotonic() + 120
    while rm_app(minicluster, app_id)["state"] not in ("FINISHED", "FAILED", "KILLED"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert rm_app(minicluster, app_id)["finalStatus"] == "SUCCEEDED"


def test_spark_submit_rm_session_skips_a_dead_rm(minicluster, capsys) -> None:
    import socket

    from yarn_gateway.minicluster.spark_submit_client import RmSession

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    session = RmSession([dead, minicluster.rm_url], secure=False, login_user="root", proxy_user="alice",
                        rpc_address="localhost:8032")
    metrics = session.call("GET", "/ws/v1/cluster/metrics").json()["clusterMetrics"]
    assert metrics["activeNodes"] == 1
    assert session.base_url == minicluster.rm_url
    assert "INFO ConfiguredRMFailoverProxyProvider: Failing over to rm2" in capsys.readouterr().err
