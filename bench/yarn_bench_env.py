"""Shared setup of the YARN benchmarks (``yarn_launch.py``, ``recovery_bench.py``).

A real single-host Apache Hadoop YARN (``devcluster``: one ResourceManager, one
NodeManager, simple auth) that the benchmark starts in a fresh directory of its own, on
its own port base (``--port-base``, default 35000), and stops by PID at the end; the
containers run the real PySpark 3.5 / Toree / IRkernel drivers from the cluster env.
This gateway runs as a daemon process (the test helper ``GatewayProcess``), the peer is
Jupyter Kernel Gateway + gateway_provisioners in ``bench/.venvs/jkg``; small helpers for
timing, process accounting and tables. Benchmarks, not tests: nothing here asserts;
results are printed and written as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

import psutil
from tornado.httpclient import AsyncHTTPClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test helpers are the reference client and fixtures
sys.path.insert(0, str(ROOT))  # devcluster

from devcluster import Cluster, ClusterSpec  # noqa: E402
from helpers.gateway_process import GatewayProcess  # noqa: E402
from helpers.gwclient import GatewayClient, KernelWS  # noqa: E402
from helpers.jupyter_server import free_port  # noqa: E402
from helpers.yarn_cluster import YarnCluster  # noqa: E402

# Tornado's client queues requests beyond max_clients (default 10) and fails those queued
# longer than connect_timeout: concurrent starts must not be limited by the client.
AsyncHTTPClient.configure(None, max_clients=512)

#: Tokens of the gateway (GatewayProcess itself polls with the admin token).
TOKENS = {"alice": "alice-token-0123456789", "admin": "admin-token-0123456789"}
PEER_TOKEN = "peer-token-0123456789"
USER = "alice"
#: The three languages and their kernelspecs (the ones the gateway ships).
SPECS = {"python": "spark_python_yarn_cluster", "scala": "spark_scala_yarn_cluster", "r": "spark_R_yarn_cluster"}
YARN_SPEC = SPECS["python"]
PEER_SPEC = "gp_yarn"
#: The first cell of every launch, per language.
FIRST_CELL = {"python": "1 + 1", "scala": "1 + 1", "r": "1 + 1"}
RESULTS = ROOT / "bench" / "results"
PEER_VENV = Path(os.environ.get("YARN_BENCH_PEER_VENV", ROOT / "bench" / ".venvs" / "jkg"))
#: pycryptodomex for the peer's launcher inside the containers (the cluster env has pycryptodome only).
PEER_DRIVER_LIBS = Path(os.environ.get("YARN_BENCH_PEER_DRIVER_LIBS", ROOT / "bench" / ".venvs" / "gp-driver-libs"))
DEFAULT_PORT_BASE = int(os.environ.get("YARN_BENCH_PORT_BASE", "35000"))
LIVE_STATES = "NEW,NEW_SAVING,SUBMITTED,ACCEPTED,RUNNING"


def log(msg: str) -> None:
    """Progress on stderr (stdout carries the table, or the JSON with --json)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_workdir(prefix: str) -> str:
    """A world-traversable work directory (the containers and the peer read files in it)."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    return path


# ------------------------------------------------------------------------- the cluster


def cluster_spec(base_dir: str, port_base: int) -> ClusterSpec:
    """Simple auth; the benchmark's account (the submitter) may impersonate ``alice``. The node
    offers more than the host has: YARN's memory checks are off in devcluster, and kernels
    (AM 768m + one 512m executor, as the test suite's bounds give) must not wait in ACCEPTED
    for node memory during the concurrent bursts."""
    return ClusterSpec(base_dir=base_dir, mode="simple", port_base=port_base, proxy_users=USER,
                       node_memory_mb=65536, node_vcores=64)


def cold_start(base_dir: str, port_base: int, timeout: float = 300) -> tuple[Cluster, float]:
    """Start a cluster from an empty directory: seconds from ``Cluster.start()`` until its
    NodeManager's node is RUNNING in the ResourceManager (configuration written, two JVMs
    started, the NM registered; the Maven classpath is a cached file read after the first
    start on a machine)."""
    shutil.rmtree(base_dir, ignore_errors=True)
    cluster = Cluster(cluster_spec(base_dir, port_base))
    t0 = time.perf_counter()
    cluster.start(timeout=timeout)
    return cluster, time.perf_counter() - t0


def start_cluster(workdir: str, port_base: int, starts: int = 1) -> tuple[YarnCluster, list[float]]:
    """``starts`` cold starts one after the other (each but the last is stopped again); returns
    the running cluster and the seconds of every start."""
    base = os.path.join(workdir, "cluster")
    seconds = []
    for i in range(starts):
        cluster, s = cold_start(base, port_base)
        seconds.append(s)
        log(f"dev cluster cold start {i + 1}/{starts}: {s:.2f} s ({cluster.rm_url})")
        if i < starts - 1:
            cluster.stop()
    return YarnCluster(cluster), seconds


def stop_cluster(cluster: YarnCluster, keep_dir: bool = False) -> None:
    """Stop RM, NM and every container by PID and remove the cluster's directory (unless ``keep_dir``:
    its logs, container logs included, stay)."""
    if keep_dir:
        cluster.cluster.stop()
    else:
        cluster.cluster.destroy()


def gateway_config(cluster: YarnCluster, spark_home: str) -> dict[str, dict[str, Any]]:
    """The test suite's gateway settings for this cluster (small kernels: a 768m driver, one
    512m executor), with ``spark_home``."""
    cfg: dict[str, dict[str, Any]] = cluster.gateway_config()
    cfg["YarnServices"]["spark_home"] = spark_home
    return cfg


def kernel_bounds(cluster: YarnCluster) -> dict[str, Any]:
    """The KernelParameters bounds of :func:`gateway_config` (the floor applies the same)."""
    return dict(cluster.gateway_config()["KernelParameters"]["bounds"])


def token_file(workdir: str) -> str:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "tokens")
    with open(path, "w") as f:
        f.write("".join(f"{u} {t}\n" for u, t in TOKENS.items()))
    os.chmod(path, 0o600)
    return path


def gateway_process(cluster: YarnCluster, spark_home: str, workdir: str, **registry: Any) -> GatewayProcess:
    """This gateway on the cluster, sessions in a directory store (product defaults otherwise)."""
    cfg = gateway_config(cluster, spark_home)
    cfg["KernelRegistry"] = {"launch_timeout": 600.0, "shutdown_wait_time": 20.0, **registry}
    cfg["DirectoryStore"] = {"directory": os.path.join(workdir, "sessions")}
    return GatewayProcess(os.path.join(workdir, "gw"), cfg, token_file(workdir))


# ------------------------------------------------------------------------- the peer


class PeerGateway:
    """Jupyter Kernel Gateway 3.0.1 hosting gateway_provisioners 0.5.0's YarnProvisioner.

    The kernelspec comes from ``jupyter-yarn-spec install`` (its own run.sh, launcher and
    server_listener). Settings are patched into the installed kernel.json because the
    installer cannot write them: ``yarn_endpoint`` (``--yarn-endpoint`` crashes the
    installer's finalize step in 0.5.0 and leaves an unsubstituted kernel.json),
    ``impersonation_enabled`` and the launch timeout (installer default 30 s); and the
    kernelspec's ``env`` gets HADOOP_CONF_DIR, SPARK_CONF_DIR and SPARK_LOCAL_IP (JKG hands
    run.sh no environment of its own), so its spark-submit uses the cluster's Spark conf dir,
    as this gateway's and the floor's do.
    """

    def __init__(self, cluster: YarnCluster, spark_home: str, workdir: str) -> None:
        self.cluster = cluster
        self.spark_home = spark_home
        self.workdir = os.path.join(workdir, "peer")
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.prefix = os.path.join(self.workdir, "prefix")
        self.log_path = os.path.join(self.workdir, "jkg.log")

    def available(self) -> Optional[str]:
        """None when the peer can run, else why not."""
        if not (PEER_VENV / "bin" / "jupyter-kernelgateway").exists():
            return f"no peer virtualenv at {PEER_VENV} (make bench-yarn-venv)"
        if not (PEER_DRIVER_LIBS / "Cryptodome").is_dir():
            return f"no pycryptodomex for the peer's launcher at {PEER_DRIVER_LIBS} (make bench-yarn-venv)"
        return None

    def install_spec(self) -> dict[str, Any]:
        libs = os.path.join(self.workdir, "driver-libs")
        shutil.copytree(PEER_DRIVER_LIBS, libs, dirs_exist_ok=True)
        scripts = os.path.join(self.prefix, "share", "jupyter", "kernels", PEER_SPEC, "scripts")
        # run.sh ships only launch_ipykernel.py, which imports server_listener: without
        # --py-files every launch in a real YARN container fails with ModuleNotFoundError.
        extra = (f"--conf spark.yarn.appMasterEnv.PYTHONPATH={libs} "
                 f"--py-files {os.path.join(scripts, 'server_listener.py')}")
        cmd = [str(PEER_VENV / "bin" / "jupyter-yarn-spec"), "install", "--prefix", self.prefix, "--spark",
               "--impersonation-enabled", "--spark-home", self.spark_home, "--python-root",
               os.path.dirname(os.path.dirname(cluster_python())), "--kernel-name", PEER_SPEC,
               f"--extra-spark-opts={extra}", "--spark-init-mode", "lazy"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        path = os.path.join(self.prefix, "share", "jupyter", "kernels", PEER_SPEC, "kernel.json")
        with open(path) as f:
            spec: dict[str, Any] = json.load(f)
        cfg = spec["metadata"]["kernel_provisioner"]["config"]
        cfg.update({"yarn_endpoint": self.cluster.rm_url, "launch_timeout": 600, "impersonation_enabled": True})
        # JKG starts run.sh with PATH and the request's KERNEL_* only: the cluster's client settings go in
        # the kernelspec's env, as an administrator's would (this gateway passes them to spark-submit itself).
        spec.setdefault("env", {}).update({"HADOOP_CONF_DIR": self.cluster.conf_dir,
                                           "SPARK_CONF_DIR": self.cluster.spark_conf_dir,
                                           "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")})
        with open(path, "w") as f:
            json.dump(spec, f, indent=2)
        return spec

    async def start(self, timeout: float = 90) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("YARN_GATEWAY_", "JUPYTER_"))}
        env.update({
            "JUPYTER_PATH": os.path.join(self.prefix, "share", "jupyter"),
            "JUPYTER_DATA_DIR": os.path.join(self.workdir, "data"),
            "JUPYTER_RUNTIME_DIR": os.path.join(self.workdir, "runtime"),
            "JUPYTER_CONFIG_DIR": os.path.join(self.workdir, "config"),
            "HADOOP_CONF_DIR": self.cluster.conf_dir, "SPARK_CONF_DIR": self.cluster.spark_conf_dir,
            "SPARK_HOME": self.spark_home,
            "GP_RESPONSE_IP": "127.0.0.1", "GP_RESPONSE_PORT": str(free_port()),
            "GP_YARN_ENDPOINT": self.cluster.rm_url, "KERNEL_LAUNCH_TIMEOUT": "600",
        })
        for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
            env.pop(name, None)
        argv = [str(PEER_VENV / "bin" / "jupyter-kernelgateway"), "--KernelGatewayApp.ip=127.0.0.1",
                f"--KernelGatewayApp.port={self.port}", f"--KernelGatewayApp.auth_token={PEER_TOKEN}",
                f"--KernelGatewayApp.default_kernel_name={PEER_SPEC}"]
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
                                         start_new_session=True)
        client = self.client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the peer exited: {self.tail()}")
            try:
                if (await client.request("GET", "api/kernelspecs", timeout=2)).code == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        raise TimeoutError(self.tail())

    def client(self) -> GatewayClient:
        return GatewayClient(self.url, PEER_TOKEN)

    def tail(self, n: int = 3000) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-n:]

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def cluster_python() -> str:
    env = os.environ.get("YARN_GATEWAY_CLUSTER_ENV", "/opt/yarn-gateway-dev/cluster-venv")
    return os.path.join(env, "bin", "python")


# ------------------------------------------------------------------------- kernels over REST


async def start_and_run(client: GatewayClient, spec: str, code: str = "1 + 1", timeout: float = 600,
                        env: Optional[dict[str, str]] = None) -> tuple[str, float, float, KernelWS]:
    """POST a kernel, open its websocket, execute ``code``.

    Returns (kernel id, seconds to 201, seconds to the first execute_reply, websocket).
    """
    t0 = time.perf_counter()
    r = await client.request("POST", "api/kernels", {"name": spec, "env": {"KERNEL_USERNAME": USER, **(env or {})}},
                             timeout=timeout)
    if r.code != 201:
        raise RuntimeError(f"start {spec}: {r.code} {str(r.body)[:500]}")
    t_started = time.perf_counter() - t0
    kid = str(r.body["id"])
    ws = await client.connect(kid)
    res = await ws.execute(code, timeout=timeout)
    if res.status != "ok":
        ws.close()
        raise RuntimeError(f"kernel {kid}: first cell {res.status}: {res.error}")
    return kid, t_started, time.perf_counter() - t0, ws


async def delete_all(client: GatewayClient, ids: list[str]) -> None:
    async def one(kid: str) -> None:
        try:
            await client.request("DELETE", f"api/kernels/{kid}", timeout=120)
        except Exception as exc:  # a benchmark cleans up what it can and says what failed
            log(f"delete {kid}: {exc}")

    await asyncio.gather(*(one(k) for k in ids))


async def wait_no_live_apps(cluster: YarnCluster, timeout: float = 120) -> int:
    """Wait until no application is NEW..RUNNING; returns how many still are."""
    deadline = time.monotonic() + timeout
    live = 0
    while time.monotonic() < deadline:
        apps = await asyncio.to_thread(live_apps, cluster)
        live = len(apps)
        if not live:
            return 0
        await asyncio.sleep(1)
    return live


def live_apps(cluster: YarnCluster) -> list[dict[str, Any]]:
    """Every application of the cluster that has not ended (any tag: the floor's and the peer's too)."""
    return cluster.cluster.apps(states=LIVE_STATES)


def kill_live_apps(cluster: YarnCluster) -> None:
    user = cluster.cluster.spec.submitter
    for app in live_apps(cluster):
        req = urllib.request.Request(f"{cluster.rm_url}/ws/v1/cluster/apps/{app['id']}/state?user.name={user}",
                                     data=b'{"state": "KILLED"}', method="PUT",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except OSError as exc:
            log(f"kill {app['id']}: {exc}")


async def settle(cluster: YarnCluster, timeout: float = 90) -> None:
    """Between launches: wait until the previous kernel's application ended; kill what did not."""
    if await wait_no_live_apps(cluster, timeout):
        await asyncio.to_thread(kill_live_apps, cluster)
        await wait_no_live_apps(cluster, 60)


# ------------------------------------------------------------------------- accounting


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User+system CPU of the process (``children``: plus its reaped children, e.g. spark-submit)."""
    t = psutil.Process(pid).cpu_times()
    own = t.user + t.system
    return own + (t.children_user + t.children_system if children else 0.0)


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def cluster_rss_gb(cluster: YarnCluster) -> float:
    """RSS of every process working inside the cluster's container directories (AM/driver JVM,
    executors, the Python/R kernel), in GB."""
    total = 0
    local = os.path.realpath(cluster.cluster.nm_local) + os.sep
    for p in psutil.process_iter(["pid"]):
        try:
            if os.path.realpath(p.cwd()).startswith(local):
                total += p.memory_info().rss
        except (psutil.Error, OSError):
            continue
    return total / 2**30


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def machine() -> dict[str, Any]:
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": platform.node(),
            "cpus": os.cpu_count(), "mem_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "kernel": platform.release(),
            # The machine may be shared (other test runs): the load says how quiet it was.
            "loadavg": loadavg()}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (pastes into bench/yarn_README.md as is)."""
    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(lines)


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path
