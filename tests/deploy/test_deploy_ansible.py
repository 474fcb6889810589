"""Issue 8 acceptance 2: the Ansible role, run twice on localhost, makes a gateway that answers /api."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from typing import Any

import pytest
from deploy_support import REPO, TOKEN, TOKEN_USER, free_port, run, wait_api

pytestmark = [pytest.mark.e2e]

BIN = os.path.dirname(sys.executable)


def _tool(name: str) -> str:
    path = os.path.join(BIN, name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{name} is missing from the test venv: pip install ansible-core ansible-lint")
    return path


def test_deploy_ansible_lint() -> None:
    out = run([_tool("ansible-lint"), "--offline", "roles/yarn_gateway", "site.yml"],
              cwd=os.path.join(REPO, "ansible"), check=False, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr


def _playbook(tmp: str, extra: dict[str, Any]) -> tuple[str, dict[str, int]]:
    env = dict(os.environ, ANSIBLE_ROLES_PATH=os.path.join(REPO, "ansible", "roles"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=os.path.join(tmp, "ansible-tmp"), ANSIBLE_RETRY_FILES_ENABLED="0")
    vars_file = os.path.join(tmp, "vars.json")
    with open(vars_file, "w") as f:
        json.dump(extra, f)
    out = run([_tool("ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", f"@{vars_file}",
               os.path.join(tmp, "play.yml")], env=env, timeout=300)
    recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out.stdout)
    assert recap, out.stdout
    ok, changed, unreachable, failed = (int(x) for x in recap.groups())
    return out.stdout, {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}


def test_deploy_ansible_role_twice_then_gateway_answers(tmp_path: Any) -> None:
    tmp = str(tmp_path)
    wheels = os.path.join(tmp, "wheelhouse")
    # What an edge node would get: a wheelhouse (the role installs offline from it).
    run([sys.executable, "-m", "pip", "wheel", "-q", "-w", wheels, ".[kerberos]"], timeout=300)
    prefix = os.path.join(tmp, "opt")
    port = free_port()
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout.strip()
    extra = {
        "ansible_python_interpreter": sys.executable,
        "yarn_gateway_install_method": "wheel",
        "yarn_gateway_wheelhouse": wheels,
        "yarn_gateway_requirement": "yarn-gateway[kerberos]",
        "yarn_gateway_python": sys.executable,
        "yarn_gateway_prefix": prefix,
        "yarn_gateway_config_dir": os.path.join(tmp, "etc"),
        "yarn_gateway_state_dir": os.path.join(tmp, "state"),
        "yarn_gateway_log_dir": os.path.join(tmp, "log"),
        "yarn_gateway_user": user, "yarn_gateway_group": group,
        "yarn_gateway_create_user": False, "yarn_gateway_manage_service": False,
        "yarn_gateway_ip": "127.0.0.1", "yarn_gateway_port": port,
        "yarn_gateway_tokens": {TOKEN_USER: TOKEN},
        "yarn_gateway_port_range": "44000..44099",
        "yarn_gateway_rm_endpoints": ["http://rm1.example.invalid:8088"],
        "yarn_gateway_queue": "analytics",
        "yarn_gateway_kernel_python": "/opt/conda/bin/python",
        "yarn_gateway_kerberos_principal": "", "yarn_gateway_http_keytab": "",
    }
    with open(os.path.join(tmp, "play.yml"), "w") as f:
        f.write("- name: Gateway under a temporary prefix\n  hosts: localhost\n  gather_facts: false\n"
                "  roles:\n    - role: yarn_gateway\n")
    out1, first = _playbook(tmp, extra)
    assert first["failed"] == 0 and first["changed"] > 0, out1
    out2, second = _playbook(tmp, extra)
    assert second["failed"] == 0 and second["changed"] == 0, out2

    conf = os.path.join(tmp, "etc", "yarn_gateway_config.py")
    with open(conf) as f:
        text = f.read()
    assert '"http://rm1.example.invalid:8088"' in text and '"44000..44099"' in text
    assert oct(os.stat(os.path.join(tmp, "etc", "tokens")).st_mode & 0o777) == "0o600"
    with open(os.path.join(prefix, "kernels", "spark_python_yarn_cluster", "kernel.json")) as f:
        cfg = json.load(f)["metadata"]["kernel_provisioner"]["config"]
    assert cfg["queue"] == "analytics" and cfg["driver_env"]["PYSPARK_PYTHON"] == "/opt/conda/bin/python"

    log = os.path.join(tmp, "gateway.log")
    with open(log, "wb") as logf:
        proc = subprocess.Popen([os.path.join(prefix, "venv", "bin", "yarn-gateway"), f"--config={conf}"],
                                cwd=tmp, stdout=logf, stderr=subprocess.STDOUT,
                                env={"PATH": "/usr/bin:/bin", "HOME": tmp})
    try:
        body = wait_api(port, 60, proc, log)
        assert body["version"]
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    assert rc == 0
    shutil.rmtree(prefix, ignore_errors=True)
