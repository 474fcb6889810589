"""Shared setup of the YARN benchmarks (``yarn_launch.py``, ``recovery_bench.py``).

One minicluster (the test helper ``ClusterThread``: real RM/NM, fake SPARK_HOME whose
containers run the real PySpark driver), this gateway as a daemon process (the test
helper ``GatewayProcess``), the peer (Jupyter Kernel Gateway + gateway_provisioners in
``bench/.venvs/jkg``), and small helpers for timing, process accounting and tables.
Benchmarks, not tests: nothing here asserts; results are printed and written as JSON.
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
from pathlib import Path
from typing import Any, Optional

import psutil
from tornado.httpclient import AsyncHTTPClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test helpers are the reference client and fixtures

from helpers.gateway_process import GatewayProcess  # noqa: E402
from helpers.gwclient import GatewayClient, KernelWS  # noqa: E402
from helpers.jupyter_server import free_port  # noqa: E402
from helpers.minicluster import ClusterThread  # noqa: E402

# Tornado's client queues requests beyond max_clients (default 10) and fails those queued
# longer than connect_timeout: 16 or 200 concurrent starts must not be limited by the client.
AsyncHTTPClient.configure(None, max_clients=512)

#: Tokens of the gateway (GatewayProcess itself polls with the admin token).
TOKENS = {"alice": "alice-token-0123456789", "admin": "admin-token-0123456789"}
PEER_TOKEN = "peer-token-0123456789"
USER = "alice"
YARN_SPEC = "spark_python_yarn_cluster"
PEER_SPEC = "gp_yarn"
RESULTS = ROOT / "bench" / "results"
PEER_VENV = Path(os.environ.get("YARN_BENCH_PEER_VENV", ROOT / "bench" / ".venvs" / "jkg"))
#: pycryptodomex for the peer's launcher inside the containers (the cluster env has pycryptodome only).
PEER_DRIVER_LIBS = Path(os.environ.get("YARN_BENCH_PEER_DRIVER_LIBS", ROOT / "bench" / ".venvs" / "gp-driver-libs"))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_workdir(prefix: str) -> str:
    """A world-traversable work directory (containers run as other users)."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    return path


def start_cluster() -> ClusterThread:
    """A minicluster sized for many kernels: one queue taking all AMs, a big node."""
    return ClusterThread(
        proxyusers={"root": {"users": USER, "hosts": "*"}},
        queues=[{"name": "default", "capacity": 100, "maximum-am-resource-percent": 1.0}],
        node_memory_mb=262144,
        node_vcores=256,
    )


def token_file(workdir: str) -> str:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "tokens")
    with open(path, "w") as f:
        f.write("".join(f"{u} {t}\n" for u, t in TOKENS.items()))
    os.chmod(path, 0o600)
    return path


def gateway_process(cluster: ClusterThread, workdir: str, **registry: Any) -> GatewayProcess:
    """This gateway on the cluster, sessions in a directory store (product defaults otherwise)."""
    cfg: dict[str, dict[str, Any]] = cluster.gateway_config()
    cfg["KernelRegistry"] = {"launch_timeout": 600.0, "shutdown_wait_time": 20.0, **registry}
    cfg["DirectoryStore"] = {"directory": os.path.join(workdir, "sessions")}
    return GatewayProcess(os.path.join(workdir, "gw"), cfg, token_file(workdir))


# ------------------------------------------------------------------------- the peer


class PeerGateway:
    """Jupyter Kernel Gateway 3.0.1 hosting gateway_provisioners 0.5.0's YarnProvisioner.

    The kernelspec comes from ``jupyter-yarn-spec install`` (its own run.sh, launcher and
    server_listener). Two settings are patched into the installed kernel.json because the
    installer cannot write them: ``yarn_endpoint`` (``--yarn-endpoint`` crashes the
    installer's finalize step in 0.5.0 and leaves an unsubstituted kernel.json) and the
    launch timeout (installer default 30 s; 16 concurrent launches on 2 cores need more).
    """

    def __init__(self, cluster: ClusterThread, workdir: str) -> None:
        self.cluster = cluster
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
               "--impersonation-enabled", "--spark-home", self.cluster.spark_home, "--python-root",
               os.path.dirname(os.path.dirname(cluster_python())), "--kernel-name", PEER_SPEC,
               f"--extra-spark-opts={extra}", "--spark-init-mode", "lazy"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        path = os.path.join(self.prefix, "share", "jupyter", "kernels", PEER_SPEC, "kernel.json")
        with open(path) as f:
            spec: dict[str, Any] = json.load(f)
        cfg = spec["metadata"]["kernel_provisioner"]["config"]
        cfg.update({"yarn_endpoint": self.cluster.mc.active_rm_url, "launch_timeout": 600,
                    "impersonation_enabled": True})
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
            "HADOOP_CONF_DIR": self.cluster.conf_dir,
            "GP_RESPONSE_IP": "127.0.0.1", "GP_RESPONSE_PORT": str(free_port()),
            "GP_YARN_ENDPOINT": self.cluster.mc.active_rm_url, "KERNEL_LAUNCH_TIMEOUT": "600",
        })
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
                self.proc.kill()


def cluster_python() -> str:
    env = os.environ.get("YARN_GATEWAY_CLUSTER_ENV", "/opt/yarn-gateway-dev/cluster-venv")
    return os.path.join(env, "bin", "python")


# ------------------------------------------------------------------------- kernels over REST


async def start_and_run(client: GatewayClient, spec: str, code: str = "1 + 1",
                        timeout: float = 600) -> tuple[str, float, float, KernelWS]:
    """POST a kernel, open its websocket, execute ``code``.

    Returns (kernel id, seconds to 201, seconds to the first execute_reply, websocket).
    """
    t0 = time.perf_counter()
    r = await client.request("POST", "api/kernels", {"name": spec, "env": {"KERNEL_USERNAME": USER}},
                             timeout=timeout)
    if r.code != 201:
        raise RuntimeError(f"start {spec}: {r.code} {str(r.body)[:500]}")
    t_started = time.perf_counter() - t0
    kid = str(r.body["id"])
    ws = await client.connect(kid)
    res = await ws.execute(code, timeout=timeout)
    if res.status != "ok":
        raise RuntimeError(f"kernel {kid}: first cell {res.status}: {res.error}")
    return kid, t_started, time.perf_counter() - t0, ws


async def delete_all(client: GatewayClient, ids: list[str]) -> None:
    async def one(kid: str) -> None:
        try:
            await client.request("DELETE", f"api/kernels/{kid}", timeout=120)
        except Exception as exc:  # a benchmark cleans up what it can and says what failed
            log(f"delete {kid}: {exc}")

    await asyncio.gather(*(one(k) for k in ids))


async def wait_no_live_apps(cluster: ClusterThread, timeout: float = 120) -> int:
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


def live_apps(cluster: ClusterThread) -> list[dict[str, Any]]:
    import urllib.request

    url = f"{cluster.mc.active_rm_url}/ws/v1/cluster/apps?states=NEW,NEW_SAVING,SUBMITTED,ACCEPTED,RUNNING"
    with urllib.request.urlopen(url, timeout=10) as r:
        data = json.loads(r.read())
    return list((data.get("apps") or {}).get("app") or [])


def kill_live_apps(cluster: ClusterThread) -> None:
    import urllib.request

    for app in live_apps(cluster):
        req = urllib.request.Request(f"{cluster.mc.active_rm_url}/ws/v1/cluster/apps/{app['id']}/state",
                                     data=b'{"state": "KILLED"}', method="PUT",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except OSError as exc:
            log(f"kill {app['id']}: {exc}")


# ------------------------------------------------------------------------- accounting


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User+system CPU of the process (``children``: plus its reaped children, e.g. spark-submit)."""
    t = psutil.Process(pid).cpu_times()
    own = t.user + t.system
    return own + (t.children_user + t.children_system if children else 0.0)


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def cluster_rss_gb(cluster: ClusterThread) -> float:
    """RSS of every process working inside the minicluster's directories (the containers:
    AM, spark-submit JVM, Python driver), in GB."""
    total = 0
    for p in psutil.process_iter(["pid"]):
        try:
            if p.cwd().startswith(cluster.base):
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
