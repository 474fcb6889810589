"""The dev cluster: configuration, daemons, readiness, and what tests ask of a YARN cluster.

    cluster = Cluster(ClusterSpec(base_dir="/var/tmp/yc", mode="simple", port_base=21000))
    cluster.start()           # reuses a cluster already running from the same base dir
    cluster.rm_url            # http://localhost:21088 (the active RM in HA mode)
    cluster.yarn("application", "-status", app_id)   # the Hadoop CLI class, as `yarn application`
    cluster.stop()            # RMs, NM, containers, ZooKeeper: by PID, never by name

The daemons are Apache Hadoop's own main classes (``maven.daemon_classpath``) started
with plain ``java`` and the Java 17 module flags Hadoop 3.3 needs. They live in their
own processes: the cluster outlives whatever started it until :meth:`Cluster.stop`.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from . import config, maven, procs
from .spark_env import ClusterEnv, cluster_env, write_spark_conf

RM_CLASS = "org.apache.hadoop.yarn.server.resourcemanager.ResourceManager"
NM_CLASS = "org.apache.hadoop.yarn.server.nodemanager.NodeManager"
CLI_CLASSES = {
    "application": "org.apache.hadoop.yarn.client.cli.ApplicationCLI",
    "applicationattempt": "org.apache.hadoop.yarn.client.cli.ApplicationCLI",
    "container": "org.apache.hadoop.yarn.client.cli.ApplicationCLI",
    "rmadmin": "org.apache.hadoop.yarn.client.cli.RMAdminCLI",
    "logs": "org.apache.hadoop.yarn.client.cli.LogsCLI",
    "node": "org.apache.hadoop.yarn.client.cli.NodeCLI",
    "queue": "org.apache.hadoop.yarn.client.cli.QueueCLI",
}
# Hadoop 3.3 on Java 17: without these, Guice's cglib, Jersey and Kerberos fail with
# InaccessibleObjectException (the RM dies in ExceptionInInitializerError).
JAVA17_FLAGS = [
    "-XX:+IgnoreUnrecognizedVMOptions",
    *(f"--add-opens=java.base/{p}=ALL-UNNAMED" for p in (
        "java.lang", "java.lang.invoke", "java.lang.reflect", "java.io", "java.net", "java.nio", "java.util",
        "java.util.concurrent", "java.util.concurrent.atomic", "sun.nio.ch", "sun.nio.cs", "sun.security.action",
        "sun.util.calendar")),
    "--add-opens=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    *(f"--add-exports=java.base/{p}=ALL-UNNAMED" for p in (
        "sun.net.dns", "sun.net.util", "sun.security.x509", "sun.security.util")),
]
# Small and quick to start: these JVMs idle most of the time on a 2-core box.
DAEMON_JVM = ["-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k"]


class ClusterError(RuntimeError):
    """The cluster did not start, or does not answer."""


@dataclass
class QueueSpec:
    name: str
    capacity: float
    maximum_capacity: float = 100.0
    am_resource_percent: float = 0.9
    user_limit_factor: float = 1.0


def default_queues() -> list[QueueSpec]:
    """``default``, and ``small``: its AM limit lets one application run (queue-full tests)."""
    return [QueueSpec("default", 90, 100, 0.9, 2.0),
            QueueSpec("small", 10, 10, 0.1, 1.0)]


@dataclass
class KerberosSpec:
    """What the secure mode needs from a KDC (see :mod:`devcluster.kdc`)."""

    realm: str
    krb5_conf: str
    service_keytab: str  # rm/localhost, nm/localhost and HTTP/localhost


@dataclass
class ClusterSpec:
    base_dir: str
    mode: str = "simple"  # simple | kerberos | ha
    port_base: int = 20000
    #: The account that submits (the gateway's Hadoop short name) and whom it may impersonate.
    submitter: str = field(default_factory=getpass.getuser)
    proxy_users: str = "*"
    proxy_groups: str = ""
    queues: list[QueueSpec] = field(default_factory=default_queues)
    node_memory_mb: int = 16384
    node_vcores: int = 16
    kerberos: Optional[KerberosSpec] = None
    extra_yarn_site: dict[str, str] = field(default_factory=dict)
    extra_spark_conf: dict[str, str] = field(default_factory=dict)
    cluster_env: str = ""

    def fingerprint(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class Cluster:
    """A dev cluster rooted at ``spec.base_dir`` (see the module docstring)."""

    def __init__(self, spec: ClusterSpec) -> None:
        if spec.mode not in ("simple", "kerberos", "ha"):
            raise ValueError(f"unknown mode {spec.mode!r} (simple, kerberos, ha)")
        if spec.mode == "kerberos" and spec.kerberos is None:
            raise ValueError("kerberos mode needs a KerberosSpec (devcluster.kdc.start_kdc)")
        self.spec = spec
        self.base = os.path.abspath(spec.base_dir)
        self.conf_dir = os.path.join(self.base, "conf")
        self.spark_conf_dir = os.path.join(self.base, "spark-conf")
        self.log_dir = os.path.join(self.base, "logs")
        self.run_dir = os.path.join(self.base, "run")
        self.nm_local = os.path.join(self.base, "nm-local")
        self.nm_logs = os.path.join(self.base, "nm-logs")
        self.rm_ids = list(config.RM_IDS) if spec.mode == "ha" else ["rm1"]
        self.rms = {rm_id: procs.Daemon(self.run_dir, rm_id) for rm_id in self.rm_ids}
        self.nm = procs.Daemon(self.run_dir, "nm")
        self.zk = procs.Daemon(self.run_dir, "zookeeper")
        self._env: Optional[ClusterEnv] = None
        self._classpath: Optional[list[str]] = None
        self._admin_kinit_at: Optional[float] = None

    # -- what clients need ------------------------------------------------------------
    @property
    def env(self) -> ClusterEnv:
        if self._env is None:
            self._env = cluster_env(self.spec.cluster_env)
        return self._env

    @property
    def spark_home(self) -> str:
        return self.env.spark_home

    @property
    def rm_urls(self) -> list[str]:
        return [f"http://localhost:{config.rm_port(self.spec, 'webapp.address', i)}" for i in range(len(self.rm_ids))]

    def rm_url_of(self, rm_id: str) -> str:
        return self.rm_urls[self.rm_ids.index(rm_id)]

    @property
    def rm_url(self) -> str:
        """The active RM's web address (the only one outside HA)."""
        active = self.active_rm()
        return self.rm_url_of(active) if active else self.rm_urls[0]

    @property
    def zk_address(self) -> str:
        return f"127.0.0.1:{self.spec.port_base + config.ZK_OFFSET}"

    def client_env(self) -> dict[str, str]:
        """Environment for spark-submit and the Hadoop CLIs against this cluster."""
        env = dict(os.environ)
        env.update(HADOOP_CONF_DIR=self.conf_dir, YARN_CONF_DIR=self.conf_dir, SPARK_CONF_DIR=self.spark_conf_dir,
                   SPARK_HOME=self.spark_home, JAVA_HOME=_java_home(), SPARK_LOCAL_IP="127.0.0.1")
        if self.spec.kerberos is not None:
            env["KRB5_CONFIG"] = self.spec.kerberos.krb5_conf
        return env

    # -- lifecycle --------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.nm.is_running() and any(d.is_running() for d in self.rms.values())

    def start(self, timeout: float = 180.0) -> Cluster:
        """Start the cluster, or reuse the one already running from this base dir with this spec."""
        stamp = os.path.join(self.base, "spec.json")
        if self.is_running():
            with open(stamp, encoding="utf-8") as f:
                same = f.read() == self.spec.fingerprint()
            if same:
                self.wait_ready(timeout)
                return self
            self.stop()
        for d in (self.base, self.log_dir, self.run_dir, self.nm_local, self.nm_logs, os.path.join(self.base, "tmp")):
            os.makedirs(d, exist_ok=True)
        # Containers of other accounts (a LinuxContainerExecutor elsewhere) must traverse it.
        os.chmod(self.base, 0o755)
        config.write_all(self.spec, self.conf_dir)
        write_spark_conf(self.spark_conf_dir, self.env, self.conf_dir, self.spec.extra_spark_conf)
        with open(stamp, "w", encoding="utf-8") as f:
            f.write(self.spec.fingerprint())
        self._classpath = maven.daemon_classpath()
        self._check_ports_free()
        try:
            if self.spec.mode == "ha":
                self._start_zookeeper()
            for rm_id in self.rm_ids:
                self.start_rm(rm_id)
            self._start_daemon(self.nm, NM_CLASS, [])
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def ports(self) -> dict[int, str]:
        """Every port this cluster's daemons bind, with what binds it."""
        out = {}
        for index, rm_id in enumerate(self.rm_ids):
            for key in config.RM_PORTS:
                out[config.rm_port(self.spec, key, index)] = f"{rm_id} {key}"
        for key, off in config.NM_PORTS.items():
            out[self.spec.port_base + off] = f"nm {key}"
        if self.spec.mode == "ha":
            out[self.spec.port_base + config.ZK_OFFSET] = "zookeeper"
        return out

    def _check_ports_free(self) -> None:
        """Refuse to start on a taken port: another cluster's RM would otherwise answer our readiness probe."""
        for port, what in sorted(self.ports().items()):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    raise ClusterError(f"port {port} ({what}) is already in use on localhost: another cluster or "
                                       "program listens there; stop it or choose another port base") from None

    def start_rm(self, rm_id: str) -> None:
        """(Re)start one ResourceManager (HA: after :meth:`kill_rm`)."""
        args = ["-D", f"yarn.resourcemanager.ha.id={rm_id}"] if self.spec.mode == "ha" else []
        self._start_daemon(self.rms[rm_id], RM_CLASS, args)

    def _java_argv(self, main_class: str, args: list[str], name: str) -> list[str]:
        if self._classpath is None:
            self._classpath = maven.daemon_classpath()
        props = [f"-Dhadoop.log.dir={self.log_dir}", f"-Dyarn.log.dir={self.log_dir}",
                 f"-Dhadoop.log.file={name}.log", f"-Dyarn.log.file={name}.log", "-Djava.net.preferIPv4Stack=true"]
        if self.spec.kerberos is not None:
            props.append(f"-Djava.security.krb5.conf={self.spec.kerberos.krb5_conf}")
        cp = os.pathsep.join([self.conf_dir, *self._classpath])
        return [os.path.join(_java_home(), "bin", "java"), *DAEMON_JVM, *JAVA17_FLAGS, *props, "-cp", cp, main_class,
                *args]

    def _start_daemon(self, daemon: procs.Daemon, main_class: str, args: list[str]) -> None:
        env = dict(os.environ)
        # Containers run $JAVA_HOME/bin/java: the NodeManager must have JAVA_HOME to hand down.
        env.update(JAVA_HOME=_java_home(), HADOOP_CONF_DIR=self.conf_dir, YARN_CONF_DIR=self.conf_dir)
        if self.spec.kerberos is not None:
            env["KRB5_CONFIG"] = self.spec.kerberos.krb5_conf
        for name in ("CLASSPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME", "SPARK_CONF_DIR"):
            env.pop(name, None)
        daemon.start(self._java_argv(main_class, args, daemon.name), env,
                     os.path.join(self.log_dir, f"{daemon.name}.log"), cwd=self.base)

    def _start_zookeeper(self) -> None:
        from .zookeeper import zookeeper_argv

        data = os.path.join(self.base, "zookeeper")
        argv = zookeeper_argv(data, self.spec.port_base + config.ZK_OFFSET)
        self.zk.start(argv, dict(os.environ), os.path.join(self.log_dir, "zookeeper.log"), cwd=self.base)
        deadline = time.monotonic() + 30
        from .zookeeper import ruok

        while not ruok(self.spec.port_base + config.ZK_OFFSET):
            if time.monotonic() > deadline or not self.zk.is_running():
                raise ClusterError(f"ZooKeeper did not start: see {self.log_dir}/zookeeper.log")
            time.sleep(0.1)

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until an RM is active and the NodeManager's node is RUNNING in it."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            for name, daemon in [*self.rms.items(), ("nm", self.nm)]:
                if not daemon.is_running() and (name == "nm" or self.spec.mode != "ha"):
                    raise ClusterError(f"{name} exited during start: {self._log_tail(name)}")
            try:
                nodes = self.rest("/ws/v1/cluster/nodes").get("nodes") or {}
                states = [n.get("state") for n in nodes.get("node", [])]
                if "RUNNING" in states:
                    return
                last = f"nodes {states or 'none yet'}"
            except (OSError, ClusterError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.3)
        raise ClusterError(f"the dev cluster was not ready within {timeout:g} s ({last}); logs in {self.log_dir}")

    def stop(self) -> None:
        """Stop NM, RMs and ZooKeeper by PID, then any container process left behind."""
        self.nm.stop(timeout=30)
        for daemon in self.rms.values():
            daemon.stop(timeout=20)
        self.zk.stop(timeout=10)
        procs.kill_containers(self.nm_local)

    def destroy(self) -> None:
        """Stop the cluster and remove its base directory."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- HA ---------------------------------------------------------------------------
    def rm_state(self, rm_id: str) -> Optional[str]:
        """ACTIVE, STANDBY, ... from one RM's /ws/v1/cluster/info (None if it does not answer)."""
        try:
            info = self._get_json(self.rm_url_of(rm_id) + "/ws/v1/cluster/info", redirects=False)
        except (OSError, ValueError, ClusterError):
            return None
        return str(info.get("clusterInfo", {}).get("haState") or "") or None

    def active_rm(self) -> Optional[str]:
        if len(self.rm_ids) == 1:
            return self.rm_ids[0]
        for rm_id in self.rm_ids:
            if self.rm_state(rm_id) == "ACTIVE":
                return rm_id
        return None

    def kill_rm(self, rm_id: str) -> None:
        """kill -9 one ResourceManager (a crash, for failover tests)."""
        self.rms[rm_id].kill()

    def wait_active(self, timeout: float = 60.0, not_rm: Optional[str] = None) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            active = self.active_rm()
            if active and active != not_rm:
                return active
            time.sleep(0.3)
        raise ClusterError(f"no ResourceManager became active within {timeout:g} s")

    # -- REST and CLI -----------------------------------------------------------------
    def rest(self, path: str) -> dict[str, Any]:
        """GET a path of the active RM's REST API (simple auth as the submitter)."""
        if self.spec.mode == "kerberos":
            return self._get_json_spnego(self.rm_url + path)
        sep = "&" if "?" in path else "?"
        return self._get_json(f"{self.rm_url}{path}{sep}user.name={self.spec.submitter}")

    def app(self, app_id: str) -> dict[str, Any]:
        return dict(self.rest(f"/ws/v1/cluster/apps/{app_id}")["app"])

    def apps(self, **params: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        found = self.rest("/ws/v1/cluster/apps" + (f"?{query}" if query else "")).get("apps") or {}
        return list(found.get("app", []))

    def yarn(self, command: str, *args: str, timeout: float = 120.0,
             env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
        """Run a Hadoop YARN CLI command (``yarn <command> <args>``) with the daemons' jars."""
        main = CLI_CLASSES[command]
        argv = self._java_argv(main, [command, *args] if main.endswith("ApplicationCLI") else list(args), "cli")
        argv[1:1] = ["-Xmx256m"]
        return subprocess.run(argv, env=env or self.client_env(), capture_output=True, text=True, timeout=timeout,
                              check=False)

    def container_log(self, app_id: str, name: str) -> str:
        """The concatenated ``name`` (stdout, stderr) logs of every container of ``app_id``."""
        out = []
        app_dir = os.path.join(self.nm_logs, app_id)
        for container in sorted(os.listdir(app_dir)) if os.path.isdir(app_dir) else []:
            path = os.path.join(app_dir, container, name)
            if os.path.isfile(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    out.append(f.read())
        return "".join(out)

    def _get_json(self, url: str, redirects: bool = True) -> dict[str, Any]:
        opener = urllib.request.build_opener() if redirects else urllib.request.build_opener(_NoRedirect())
        try:
            with opener.open(urllib.request.Request(url, headers={"Accept": "application/json"}), timeout=10) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as exc:
            raise ClusterError(f"{url}: HTTP {exc.code}") from None

    def admin_ccache(self) -> str:
        """A credential cache of ``rm/localhost`` (from the service keytab) for the cluster's own REST calls."""
        assert self.spec.kerberos is not None
        path = os.path.join(self.run_dir, "devcluster.ccache")
        # Never a cache of an earlier run: its KDC (and so every key) may have been replaced since.
        fresh = self._admin_kinit_at is not None and time.monotonic() - self._admin_kinit_at < 3600
        if not fresh:
            self._admin_kinit_at = time.monotonic()
            env = dict(os.environ, KRB5_CONFIG=self.spec.kerberos.krb5_conf, KRB5CCNAME=f"FILE:{path}")
            subprocess.run(["kinit", "-kt", self.spec.kerberos.service_keytab,
                            f"rm/localhost@{self.spec.kerberos.realm}"], env=env, check=True, capture_output=True,
                           timeout=30)
        return path

    def _get_json_spnego(self, url: str) -> dict[str, Any]:
        import base64

        import requests
        import spnego

        assert self.spec.kerberos is not None
        # MIT Kerberos reads KRB5_CONFIG per process: the suite's realm sets it; a lone caller gets ours.
        os.environ.setdefault("KRB5_CONFIG", self.spec.kerberos.krb5_conf)
        ctx = spnego.client(username=spnego.KerberosCCache(ccache=f"FILE:{self.admin_ccache()}"), hostname="localhost",
                            service="HTTP", protocol="negotiate")
        token = base64.b64encode(ctx.step() or b"").decode()
        r = requests.get(url, timeout=10, headers={"Accept": "application/json", "Authorization": f"Negotiate {token}"})
        if r.status_code != 200:
            raise ClusterError(f"{url}: HTTP {r.status_code}")
        return dict(r.json())

    def _log_tail(self, name: str, lines: int = 15) -> str:
        path = os.path.join(self.log_dir, f"{name}.log")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                tail = f.read().splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return "\n".join(tail)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _java_home() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return home
    java = shutil.which("java")
    if java is None:
        raise ClusterError("java is not installed (the dev cluster runs Hadoop's JVM daemons)")
    return os.path.dirname(os.path.dirname(os.path.realpath(java)))
