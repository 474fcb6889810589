"""`make run`: start a working gateway for a newcomer and print how to connect.

Starts the minicluster (a single-host YARN stand-in) and a gateway configured for it,
with the YARN kernelspecs, on 127.0.0.1:8888 in the foreground; creates (once) a token in
the state directory and prints the URL, the token and the `jupyter lab --gateway-url=...`
line. Ctrl-C stops both. Development and demos only (`--no-cluster`: local kernels only).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .app import YarnGatewayApp


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


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", default=".state")
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--no-cluster", action="store_true", help="local kernels only, no minicluster")
    args = parser.parse_args(argv)
    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    token = _token(state_dir)
    url = f"http://{args.ip}:{args.port}"
    user = getpass.getuser()
    print(
        "\n".join(
            [
                "",
                f"yarn-gateway is starting at {url}  (Ctrl-C stops it)",
                f"  token ({user}): stored in {os.path.join(state_dir, 'token')}",
                "",
                "Connect a desktop Jupyter to it with:",
                f"  KERNEL_USERNAME={user} jupyter lab --gateway-url={url} --GatewayClient.auth_token=$(cat "
                f"{os.path.join(state_dir, 'token')})",
                "",
            ]
        ),
        flush=True,
    )
    from .app import YarnGatewayApp

    app = YarnGatewayApp.instance()
    app.initialize([f"--ip={args.ip}", f"--port={args.port}"])
    app.config.TokenAuthenticator.token = token
    if args.no_cluster:
        app.start()
        return
    asyncio.run(_run_with_cluster(app, state_dir, user))


async def _run_with_cluster(app: YarnGatewayApp, state_dir: str, user: str) -> None:
    from .minicluster.cli import container_properties
    from .minicluster.cluster import MiniCluster
    from .minicluster.spark_home import install_fake_spark_home

    base = os.path.join(state_dir, "minicluster")
    os.makedirs(base, exist_ok=True)
    # Containers may run as other accounts: they must traverse (never list) these directories.
    os.chmod(state_dir, 0o711)  # noqa: S103
    os.chmod(base, 0o711)  # noqa: S103
    mc = MiniCluster(
        base,
        proxyusers={user: {"hosts": "*", "users": "*", "groups": "*"}},
        queues=[{"name": "default", "capacity": 100, "maximum-am-resource-percent": 1.0}],
        extra_yarn_site=container_properties(),
    )
    await mc.start()
    try:
        loop = asyncio.get_running_loop()
        home = await loop.run_in_executor(None, install_fake_spark_home, os.path.join(base, "spark-home"),
                                          mc.conf_dir)
        app.config.YarnServices.hadoop_conf_dir = mc.conf_dir
        app.config.YarnServices.spark_home = home
        app.config.YarnServices.response_ip = "127.0.0.1"
        app.config.YarnServices.response_advertise_host = "127.0.0.1"
        app.config.YarnGatewayApp.default_kernel_name = "spark_python_yarn_cluster"
        app.update_config(app.config)
        print(f"minicluster ResourceManager: {mc.active_rm_url}  (HADOOP_CONF_DIR={mc.conf_dir})", flush=True)
        await app.run_until_stopped()
    finally:
        await mc.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
