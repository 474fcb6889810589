"""Resolve the Hadoop daemons' classpath with Maven, once per machine.

``mvn dependency:build-classpath`` writes the classpath of ``pom.xml`` (jars in
``~/.m2``); the result is cached in ``~/.cache/yarn-gateway-devcluster/`` under the pom's
hash, so later starts cost a file read. The cache is checked (every jar still exists)
before it is trusted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile

POM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pom.xml")
# Pinned: the bare prefix resolves whatever old version Maven's super-POM names.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"


class MavenError(RuntimeError):
    """The classpath could not be resolved (no mvn, no network, a bad pom)."""


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "yarn-gateway-devcluster")


def _cache_file(pom: str) -> str:
    with open(pom, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    return os.path.join(cache_dir(), f"classpath-{digest}.txt")


def _valid(entries: list[str]) -> bool:
    return bool(entries) and all(os.path.isfile(p) for p in entries)


def daemon_classpath(pom: str = POM, timeout: float = 900) -> list[str]:
    """The jars of the Hadoop daemons and CLIs (resolving them with Maven the first time)."""
    cached = _cache_file(pom)
    if os.path.isfile(cached):
        with open(cached, encoding="utf-8") as f:
            entries = [p for p in f.read().strip().split(os.pathsep) if p]
        if _valid(entries):
            return entries
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MavenError("mvn is not installed (apt-get install maven): the dev cluster resolves Hadoop's jars with it")
    os.makedirs(cache_dir(), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="devcluster-mvn-") as work:
        shutil.copy(pom, os.path.join(work, "pom.xml"))
        out = os.path.join(work, "cp.txt")
        proc = subprocess.run(
            [mvn, "-B", "-q", f"{DEPENDENCY_PLUGIN}:build-classpath", f"-Dmdep.outputFile={out}",
             "-DincludeScope=runtime"],
            cwd=work, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if proc.returncode != 0 or not os.path.isfile(out):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise MavenError(f"mvn could not resolve the Hadoop jars (exit {proc.returncode}):\n{tail}")
        with open(out, encoding="utf-8") as f:
            entries = [p for p in f.read().strip().split(os.pathsep) if p]
    if not _valid(entries):
        raise MavenError("mvn wrote a classpath naming jars that do not exist")
    tmp = f"{cached}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(os.pathsep.join(entries))
    os.replace(tmp, cached)
    return entries
