"""What `pip install .` installs: the daemon, never the dev cluster (or the old YARN simulator)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from typing import Any

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
