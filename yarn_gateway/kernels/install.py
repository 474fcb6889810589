"""`yarn-gateway install-kernelspecs`: install the YARN kernelspecs with paths filled in.

Each kernelspec is copied with the launcher files it needs, so the installed directory
is self-contained (nothing refers back into the Python package), and the cluster-side
settings an administrator chooses are written into its provisioner config.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any, Optional

from traitlets import Bool, List, Unicode
from traitlets.config import Application

YARN_SPECS = ("spark_python_yarn_cluster", "spark_scala_yarn_cluster", "spark_R_yarn_cluster")


def _template_dir() -> str:
    import yarn_gateway.kernelspecs as ks

    return os.path.dirname(os.path.abspath(str(ks.__file__)))


def _launcher_dir() -> str:
    import yarn_gateway_launchers

    return os.path.dirname(os.path.abspath(str(yarn_gateway_launchers.__file__)))


def launcher_dirs() -> list[str]:
    """Where shipped launcher files are looked up, in order: the ``yarn_gateway_launchers``
    package (the Python launchers), its ``R`` subdirectory (R files packaged as data), and
    the sibling ``launchers/R`` directory of a source checkout."""
    base = _launcher_dir()
    dirs = [base, os.path.join(base, "R"), os.path.join(os.path.dirname(base), "R")]
    return [d for d in dirs if os.path.isdir(d)]


def find_launcher_file(path: str) -> Optional[str]:
    """The shipped launcher file ``path`` (relative; its basename is tried too), or None."""
    for d in launcher_dirs():
        for cand in (os.path.join(d, path), os.path.join(d, os.path.basename(path))):
            if os.path.exists(cand):
                return cand
    return None


def install_kernelspec(name: str, dest: str, *, python: Optional[str] = None, queue: Optional[str] = None,
                       force: bool = False) -> str:
    """Install kernelspec ``name`` under ``dest``; return its directory."""
    src = os.path.join(_template_dir(), name)
    if not os.path.isfile(os.path.join(src, "kernel.json")):
        raise ValueError(f"no kernelspec template named {name!r}")
    out = os.path.join(dest, name)
    if os.path.exists(out):
        if not force:
            raise FileExistsError(f"{out} exists (use --force to replace it)")
        shutil.rmtree(out)
    shutil.copytree(src, out)
    with open(os.path.join(out, "kernel.json"), encoding="utf-8") as f:
        spec: dict[str, Any] = json.load(f)
    config = spec["metadata"]["kernel_provisioner"]["config"]
    for key in ("launcher",):
        config[key] = _copy_launcher_file(config[key], out)
    for key in ("py_files", "jars", "files"):
        config[key] = [_copy_launcher_file(p, out) for p in config.get(key, [])]
    if python:
        config.setdefault("driver_env", {})["PYSPARK_PYTHON"] = python
    if queue:
        config["queue"] = queue
    with open(os.path.join(out, "kernel.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    return out


def _copy_launcher_file(path: str, spec_dir: str) -> str:
    if os.path.isabs(path):
        return path
    src = find_launcher_file(path)
    if src is None:
        raise FileNotFoundError(f"launcher file {path!r} is missing from the yarn-gateway installation")
    shutil.copy2(src, os.path.join(spec_dir, os.path.basename(path)))
    return os.path.join(spec_dir, os.path.basename(path))


class InstallKernelspecsApp(Application):
    """yarn-gateway install-kernelspecs."""

    name = "yarn-gateway install-kernelspecs"
    description = "Install the YARN kernelspecs (with their launchers) into a directory the gateway serves."
    dest = Unicode(os.path.join(sys.prefix, "share", "yarn-gateway", "kernels"), config=True,
                   help="Directory to install into (add it to YarnGatewayApp.kernelspec_dirs).")
    python = Unicode("", config=True, help="Python on the cluster nodes for the Python kernel (PYSPARK_PYTHON).")
    queue = Unicode("", config=True, help="YARN queue the kernels are submitted to (default: the cluster's).")
    names = List(Unicode(), list(YARN_SPECS), config=True, help="Kernelspecs to install.")
    force = Bool(False, config=True, help="Replace kernelspecs that exist.")
    aliases = {"dest": "InstallKernelspecsApp.dest", "python": "InstallKernelspecsApp.python",
               "queue": "InstallKernelspecsApp.queue", "name": "InstallKernelspecsApp.names"}
    flags = {"force": ({"InstallKernelspecsApp": {"force": True}}, "Replace kernelspecs that exist.")}

    def start(self) -> None:
        os.makedirs(self.dest, exist_ok=True)
        for name in self.names:
            try:
                out = install_kernelspec(name, self.dest, python=self.python or None, queue=self.queue or None,
                                         force=self.force)
            except (OSError, ValueError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                self.exit(1)
            print(f"Installed {name} in {out}")
        print(f"Serve them with: c.YarnGatewayApp.kernelspec_dirs = [{self.dest!r}]")
