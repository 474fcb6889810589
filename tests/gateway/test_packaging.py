"""What `pip install .` installs: the daemon, never the dev cluster (or the old YARN simulator)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from typing import Any

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_wheel_has_no_dev_cluster_and_no_simulator(tmp_path: Any) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), REPO], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    wheels = [f for f in os.listdir(tmp_path) if f.endswith(".whl")]
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(tmp_path / wheels[0]) as whl:
        names = whl.namelist()
        entry_points = next(whl.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert any(n.startswith("yarn_gateway/provisioners/") for n in names)
    assert not [n for n in names if n.startswith("devcluster/") or "/minicluster" in n or "devrun" in n], names
    assert "minicluster" not in entry_points and "devcluster" not in entry_points, entry_points


def test_no_product_module_imports_the_dev_cluster() -> None:
    offenders = []
    for dirpath, _dirs, files in os.walk(os.path.join(REPO, "yarn_gateway")):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                        else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(m.split(".")[0] == "devcluster" or "minicluster" in m for m in mods):
                    offenders.append(os.path.relpath(path, REPO))
    assert not offenders, offenders
    assert not os.path.exists(os.path.join(REPO, "yarn_gateway", "minicluster"))


@pytest.mark.e2e
def test_desktop_client_installs_alone_and_the_renewer_loads(tmp_path: Any) -> None:
    """`pip install yarn-gateway-client` on a desktop: jupyter_server and Kerberos, none of the daemon."""
    venv = tmp_path / "desktop"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    # Offline, from the wheels `make test` prepared (`make client-wheelhouse`): no test reaches the network.
    wheelhouse = os.path.join(REPO, os.environ.get("YARNGW_CLIENT_WHEELHOUSE", "build/wheelhouse/client"))
    assert os.path.isdir(wheelhouse), f"{wheelhouse} is missing: run `make client-wheelhouse` (make test does)"
    out = subprocess.run([py, "-m", "pip", "install", "-q", "--no-index", "--find-links", wheelhouse,
                          "yarn-gateway-client"],
                         capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    listed = subprocess.run([py, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            timeout=120, check=True).stdout.lower()
    installed = {line.split("==")[0].replace("_", "-") for line in listed.splitlines() if "==" in line}
    assert {"yarn-gateway-client", "jupyter-server", "pyspnego"} <= installed, installed
    daemon_only = {"kazoo", "pycryptodome", "pycryptodomex", "pynacl", "yarn-api-client", "yarn-gateway",
                   "requests-kerberos"}
    assert not installed & daemon_only, installed & daemon_only
    # jupyter_server's GatewayClient loads the renewer by its configured class name.
    probe = (
        "from traitlets.config import Config\n"
        "from jupyter_server.gateway.gateway_client import GatewayClient\n"
        "c = Config()\n"
        "c.GatewayClient.url = 'https://edge01.example.com:8888'\n"
        "c.GatewayClient.gateway_token_renewer_class = 'yarn_gateway_client.KerberosTokenRenewer'\n"
        "gc = GatewayClient(config=c)\n"
        "r = gc.gateway_token_renewer\n"
        "print(type(r).__module__, type(r).__name__, gc.auth_scheme, r._hostname())\n"
    )
    run = subprocess.run([py, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["yarn_gateway_client", "KerberosTokenRenewer", "Negotiate", "edge01.example.com"]
