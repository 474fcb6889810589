"""The yarn-gateway-minicluster command: start in the foreground, fail over, spark-submit across HA."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import pytest
import requests
from conftest import ClusterThread

from yarn_gateway.minicluster.hadoop_conf import load_hadoop_conf


def test_spark_submit_cli_start_prints_exports_and_stops(tmp_path) -> None:
    base = tempfile.mkdtemp(prefix="sparksubmit-cli-", dir="/tmp")
    p = subprocess.Popen([sys.executable, "-m", "yarn_gateway.minicluster", "start", "--base-dir", base,
                          "--proxyuser", "root=users:alice"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout is not None
        exports = ""
        for _ in range(5):
            line = p.stdout.readline()
            if line.startswith("export "):
                exports = line
                break
        assert exports == f"export HADOOP_CONF_DIR={base}/conf SPARK_HOME={base}/spark-home\n"
        conf = load_hadoop_conf(f"{base}/conf")
        assert conf["hadoop.proxyuser.root.users"] == "alice"
        assert os.path.isfile(conf["minicluster.container.python"])
        assert os.access(f"{base}/spark-home/bin/spark-submit", os.X_OK)
        url = "http://" + conf["yarn.resourcemanager.webapp.address"]
        assert requests.get(f"{url}/ws/v1/cluster/info", timeout=10).json()["clusterInfo"]["haState"] == "ACTIVE"
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    assert p.returncode == 0


@pytest.mark.jvm
def test_spark_submit_cli_failover_and_submit_through_standby(tmp_path) -> None:
    mc = ClusterThread(ha=True, proxyusers={"root": {"users": "alice", "hosts": "*"}})
    try:
        r = subprocess.run([sys.executable, "-m", "yarn_gateway.minicluster", "failover", "--conf-dir", mc.conf_dir],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "active ResourceManager: rm2"
        assert mc.active_rm_url_is(1)
        job = tmp_path / "job.py"
        job.write_text("from pyspark import SparkContext\nSparkContext().stop()\n")
        # rm1 (first in yarn-site) is now the standby: its 307s lead to rm2
        r = subprocess.run([os.path.join(mc.spark_home, "bin", "spark-submit"), "--master", "yarn", "--deploy-mode",
                            "cluster", "--proxy-user", "alice", "--conf", "spark.yarn.submit.waitAppCompletion=false",
                            str(job)], env=mc.env(), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "(state: ACCEPTED)" in r.stderr
    finally:
        mc.close()
