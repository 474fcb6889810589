"""``make run``: a real single-host YARN and a gateway configured for it, for a newcomer.

Starts (or reuses, when one is already running from the same state directory) the dev
cluster in simple mode, then the gateway in the foreground on 127.0.0.1:8888 with the
three YARN kernelspecs (Python, Scala, R). Prints the URL, where the token is, the
``jupyter lab --gateway-url=...`` line, the ResourceManager's URL and the
HADOOP_CONF_DIR. Ctrl-C stops the gateway; the cluster and its kernels keep running (a
restarted gateway finds them again); ``make stop-cluster`` stops the cluster.
Development and demos only: never installed with yarn-gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys
from typing import Optional

from .cluster import Cluster, ClusterSpec, QueueSpec

PORT_BASE = 20000


def _token(state_dir: str) -> str:
    path = os.path.join(state_dir, "token")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    tok = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tok + "\n")
    return tok


def dev_cluster(state_dir: str, port_base: int = PORT_BASE) -> Cluster:
    """The cluster `make run` uses: the caller may impersonate anyone (a one-person dev box)."""
    return Cluster(ClusterSpec(base_dir=os.path.join(state_dir, "yarn"), port_base=port_base, proxy_users="*",
                               queues=[QueueSpec("default", 90, 100, 0.9, 2.0), QueueSpec("small", 10, 10, 0.1)]))


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", default=".state")
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--port-base", type=int, default=PORT_BASE, help="first of the dev cluster's ports")
    args = parser.parse_args(argv)
    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    token = _token(state_dir)
    cluster = dev_cluster(state_dir, args.port_base)
    reused = cluster.is_running()
    print(f"{'Reusing the running' if reused else 'Starting a'} single-host Hadoop YARN (ResourceManager + "
          f"NodeManager) in {cluster.base} ...", flush=True)
    cluster.start()
    url = f"http://{args.ip}:{args.port}"
    user = getpass.getuser()
    token_path = os.path.join(state_dir, "token")
    print("\n".join([
        "",
        f"yarn-gateway is starting at {url}  (Ctrl-C stops it; the YARN cluster keeps running)",
        f"  token ({user}): stored in {token_path}",
        f"ResourceManager: {cluster.rm_url}",
        f"HADOOP_CONF_DIR={cluster.conf_dir}",
        "",
        "Connect a desktop Jupyter to it with:",
        f"  jupyter lab --gateway-url={url} --GatewayClient.auth_token=$(cat {token_path})",
        "Stop the YARN cluster (and every kernel in it) with: make stop-cluster",
        "",
    ]), flush=True)
    from yarn_gateway.app import YarnGatewayApp

    app = YarnGatewayApp.instance()
    app.initialize([f"--ip={args.ip}", f"--port={args.port}"])
    c = app.config
    c.TokenAuthenticator.token = token
    c.YarnServices.hadoop_conf_dir = cluster.conf_dir
    c.YarnServices.spark_home = cluster.spark_home
    c.YarnServices.spark_conf_dir = cluster.spark_conf_dir
    c.YarnServices.response_ip = "127.0.0.1"
    c.YarnServices.response_advertise_host = "127.0.0.1"
    c.YarnGatewayApp.default_kernel_name = "spark_python_yarn_cluster"
    # Kernels survive the gateway: their records let a restarted `make run` re-attach them.
    c.DirectoryStore.directory = os.path.join(state_dir, "sessions")
    app.update_config(c)
    asyncio.run(app.run_until_stopped())


if __name__ == "__main__":
    main(sys.argv[1:])
