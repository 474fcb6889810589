"""Issue 8 acceptance 1: `make rpm` builds; the installed package runs a YARN kernel as yarngw on a real YARN.

The package is installed into this (throwaway CI) machine with `rpm -i --nodeps`: Debian's
rpm database knows none of the Requires (python3, shadow-utils), the files are all there.
"""

from __future__ import annotations

import asyncio
import glob
import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from deploy_support import REPO, TOKEN, free_port, run, wait_api, write_token_file

from helpers.gwclient import GatewayClient
from helpers.yarn_cluster import YarnCluster, default_port_base

pytestmark = [pytest.mark.e2e]

ROOT = "/opt/yarn-gateway"
CONFIG = "/etc/yarn-gateway/yarn_gateway_config.py"
UNIT = "/usr/lib/systemd/system/yarn-gateway.service"
SERVICE_USER = "yarngw"
#: The RPM test's cluster sits next to the session's (port base + 0; Kerberos + 1000, HA + 2000).
RPM_CLUSTER_OFFSET = 500


@pytest.fixture(scope="module")
def rpm_file() -> str:
    if not shutil.which("rpmbuild"):
        pytest.fail("rpmbuild is missing: apt-get install rpm (make apt does)")
    run(["make", "rpm"], timeout=600)
    found = sorted(glob.glob(os.path.join(REPO, "build", "rpm", "RPMS", "*", "yarn-gateway-*.rpm")))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def installed(rpm_file: str) -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("installing the RPM needs root (CI runs as root)")
    if subprocess.run(["rpm", "-q", "yarn-gateway"], capture_output=True, check=False).returncode == 0:
        run(["rpm", "-e", "--nodeps", "yarn-gateway"])
    run(["rpm", "-i", "--nodeps", rpm_file], timeout=300)
    try:
        yield rpm_file
    finally:
        run(["rpm", "-e", "--nodeps", "yarn-gateway"], check=False)


def test_deploy_rpm_config_files_marked(rpm_file: str) -> None:
    files = run(["rpm", "-qpl", rpm_file]).stdout.split()
    for path in (CONFIG, "/etc/sysconfig/yarn-gateway", UNIT, f"{ROOT}/libexec/yarn-gateway-setup",
                 "/var/log/yarn-gateway", "/var/lib/yarn-gateway"):
        assert path in files, path
    assert any(f.startswith(f"{ROOT}/wheelhouse/yarn_gateway-") and f.endswith(".whl") for f in files)
    assert any("/wheelhouse/tornado-" in f for f in files), "runtime dependencies must be in the wheelhouse"
    config = run(["rpm", "-qp", "--configfiles", rpm_file]).stdout.split()
    assert sorted(config) == sorted([CONFIG, "/etc/sysconfig/yarn-gateway"])
    # %config(noreplace): the file flags carry 'n'.
    flags = dict(line.rsplit(" ", 1) for line in run(
        ["rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", rpm_file]).stdout.splitlines())
    assert "c" in flags[CONFIG] and "n" in flags[CONFIG], flags[CONFIG]


def test_deploy_rpm_installed_layout(installed: str) -> None:
    pw = pwd.getpwnam("yarngw")
    assert grp.getgrgid(pw.pw_gid).gr_name == "yarngw"
    for d in ("/var/log/yarn-gateway", "/var/lib/yarn-gateway"):
        st = os.stat(d)
        assert stat.S_IMODE(st.st_mode) == 0o750 and st.st_uid == pw.pw_uid, d
    assert stat.S_IMODE(os.stat("/etc/yarn-gateway").st_mode) == 0o750
    assert os.access(f"{ROOT}/venv/bin/yarn-gateway", os.X_OK)
    assert os.path.realpath("/usr/bin/yarn-gateway") == os.path.realpath(f"{ROOT}/venv/bin/yarn-gateway")
    spec = f"{ROOT}/kernels/spark_python_yarn_cluster"
    assert os.path.isfile(f"{spec}/kernel.json") and os.path.isfile(f"{spec}/launch_ipykernel.py")
    # The venv came from the wheelhouse only: its yarn_gateway is the installed one.
    out = run([f"{ROOT}/venv/bin/python", "-c", "import yarn_gateway; print(yarn_gateway.__file__)"], cwd="/")
    assert out.stdout.startswith(f"{ROOT}/venv/"), out.stdout


def test_deploy_rpm_unit_verifies(installed: str) -> None:
    out = run(["systemd-analyze", "verify", "--man=no", UNIT], check=False)
    # Strict: any message (unknown key, bad value, missing binary) fails.
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


@pytest.fixture(scope="module")
def rpm_cluster() -> Iterator[YarnCluster]:
    """A real YARN of its own (the session's lets root, not yarngw, impersonate): its proxyuser rule
    lets the service account submit as alice, the kernel's user."""
    cluster = YarnCluster.start("simple", port_base=default_port_base("simple") + RPM_CLUSTER_OFFSET,
                                submitter=SERVICE_USER, proxy_users="alice")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.mark.jvm
async def test_deploy_rpm_daemon_runs_yarn_kernel(installed: str, rpm_cluster: YarnCluster) -> None:
    cluster = rpm_cluster
    user = SERVICE_USER
    proc: Any = None
    work = tempfile.mkdtemp(prefix="yarngw-rpm-", dir="/tmp")
    try:
        os.chmod(work, 0o711)
        tokens = write_token_file(os.path.join(work, "tokens"), owner=user)
        port = free_port()
        log = os.path.join(work, "gateway.log")
        # What /etc/sysconfig/yarn-gateway holds on an edge node: the cluster's client configuration
        # (readable by yarngw), Spark and its conf dir. No HDFS here: spark-submit stages the kernel's
        # files under the service account's home (/var/lib/yarn-gateway), where the NodeManager reads them.
        env = {"PATH": "/usr/bin:/bin", "HOME": "/var/lib/yarn-gateway", "LANG": "C.UTF-8",
               "HADOOP_CONF_DIR": cluster.conf_dir, "SPARK_HOME": cluster.spark_home,
               "SPARK_CONF_DIR": cluster.spark_conf_dir, "SPARK_LOCAL_IP": "127.0.0.1",
               "YARN_GATEWAY_IP": "127.0.0.1", "YARN_GATEWAY_PORT": str(port), "YARN_GATEWAY_TOKEN_FILE": tokens,
               "YARN_GATEWAY_PORT_RANGE": "43500..43999", "YARN_GATEWAY_ADVERTISE_HOST": "127.0.0.1"}
        if os.environ.get("JAVA_HOME"):
            env["JAVA_HOME"] = os.environ["JAVA_HOME"]
        with open(log, "wb") as logf:
            proc = subprocess.Popen(["/usr/bin/yarn-gateway", f"--config={CONFIG}"], env=env, user=user,
                                    group=user, extra_groups=[], cwd="/var/lib/yarn-gateway",
                                    stdout=logf, stderr=subprocess.STDOUT)
        await asyncio.to_thread(wait_api, port, 60, proc, log)
        assert pwd.getpwuid(os.stat(f"/proc/{proc.pid}").st_uid).pw_name == user

        client = GatewayClient(f"http://127.0.0.1:{port}/", TOKEN)
        specs = await client.request("GET", "api/kernelspecs")
        assert specs.code == 200 and specs.body["default"] == "spark_python_yarn_cluster", specs.body
        try:
            kid = await client.start_kernel("spark_python_yarn_cluster")
        except AssertionError as exc:
            with open(log, encoding="utf-8", errors="replace") as f:
                raise AssertionError(f"{exc}\n--- gateway log ---\n{f.read()[-4000:]}") from None
        apps = await asyncio.to_thread(cluster.apps_of)
        assert len(apps) == 1, apps
        app_id = str(apps[0]["id"])
        ws = await client.connect(kid)
        res = await ws.execute("6 * 7", timeout=120)
        assert res.status == "ok" and res.text == "42", (res.status, res.error)
        # The kernel runs in a YARN container as the caller, not on the gateway as yarngw. (The
        # DefaultContainerExecutor runs containers as the NodeManager's Unix account; YARN sets USER.)
        assert (await ws.execute("import getpass; getpass.getuser()")).text == "'alice'"
        app = await asyncio.to_thread(cluster.app_json, app_id)
        # Lazy SparkContext: the kernel answers before YARN reports RUNNING.
        assert app["user"] == "alice" and app["state"] in ("ACCEPTED", "RUNNING"), app
        assert f"kernel-{kid}" in app["applicationTags"].split(","), app["applicationTags"]
        assert (await ws.execute("sc.sparkUser()", timeout=120)).text == "'alice'"
        ws.close()
        assert (await client.request("DELETE", f"api/kernels/{kid}")).code == 204
        done = await asyncio.to_thread(cluster.wait_app, app_id, {"FINISHED", "FAILED", "KILLED"}, 60)
        assert done["state"] == "FINISHED", done
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        cluster.kill_live_apps()
        shutil.rmtree(work, ignore_errors=True)
