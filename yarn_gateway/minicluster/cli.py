"""``yarn-gateway-minicluster``: run the minicluster in the foreground, or fail it over.

    yarn-gateway-minicluster start --base-dir DIR [--ha] [--secure --http-keytab K --http-principal P]
                                   [--proxyuser 'svc=users:alice,bob;groups:analysts;hosts:*']...
    yarn-gateway-minicluster failover --conf-dir DIR

``start`` writes ``DIR/conf`` (HADOOP_CONF_DIR) and a fake SPARK_HOME in ``DIR/spark-home``,
prints the ``export`` lines to use them, and runs until SIGINT/SIGTERM (then every
container is killed). ``failover`` asks the RMs of that conf dir to make the standby active.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Optional

import requests

from yarn_gateway.minicluster.hadoop_conf import load_hadoop_conf, rm_webapp_urls
from yarn_gateway.minicluster.spark_home import install_fake_spark_home


def parse_proxyuser(text: str) -> tuple[str, dict[str, str]]:
    """``svc=users:a,b;groups:g;hosts:*`` -> ("svc", {"users": "a,b", "groups": "g", "hosts": "*"}).

    ``hosts`` defaults to ``*`` (Hadoop refuses every host when it is missing).
    """
    svc, sep, rules = text.partition("=")
    if not sep or not svc.strip():
        raise argparse.ArgumentTypeError(f"--proxyuser wants svc=users:...;groups:...;hosts:..., got {text!r}")
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rules.split(";"))):
        key, sep, value = part.partition(":")
        if not sep or key not in ("users", "groups", "hosts"):
            raise argparse.ArgumentTypeError(f"--proxyuser: unknown rule {part!r} (users:, groups:, hosts:)")
        out[key] = value
    out.setdefault("hosts", "*")
    return svc.strip(), out


def cluster_env_paths(env: dict[str, str]) -> tuple[str, Optional[str]]:
    """(python, SPARK_HOME) of the cluster-side environment (YARN_GATEWAY_CLUSTER_ENV)."""
    base = env.get("YARN_GATEWAY_CLUSTER_ENV", "/opt/yarn-gateway-dev/cluster-venv")
    lib = os.path.join(base, "lib")
    homes = [os.path.join(lib, d, "site-packages", "pyspark") for d in sorted(os.listdir(lib))] if os.path.isdir(
        lib) else []
    return os.path.join(base, "bin", "python"), next((h for h in homes if os.path.isdir(h)), None)


def container_properties() -> dict[str, str]:
    """yarn-site properties telling spark-submit what the containers run."""
    python, spark_home = cluster_env_paths(dict(os.environ))
    extra = {"minicluster.container.python": python}
    if spark_home:
        extra["minicluster.container.spark-home"] = spark_home
    return extra


async def run_start(ns: argparse.Namespace, base: str, extra: dict[str, str]) -> int:
    from yarn_gateway.minicluster.cluster import MiniCluster

    loop = asyncio.get_running_loop()
    mc = MiniCluster(base, ha=ns.ha, secure=ns.secure, http_keytab=ns.http_keytab, http_principal=ns.http_principal,
                     proxyusers=dict(ns.proxyuser or []), extra_yarn_site=extra)
    await mc.start()
    try:
        home = await loop.run_in_executor(None, install_fake_spark_home, os.path.join(base, "spark-home"),
                                          mc.conf_dir)
        print(f"# minicluster up: ResourceManager {' '.join(mc.rm_urls)} (active {mc.active_rm_url})", flush=True)
        print(f"export HADOOP_CONF_DIR={mc.conf_dir} SPARK_HOME={home}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await mc.stop()
    return 0


def run_failover(ns: argparse.Namespace) -> int:
    conf = load_hadoop_conf(ns.conf_dir)
    token_file = conf.get("minicluster.admin.token.file", "")
    try:
        with open(token_file, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        print(f"failover: cannot read the admin token ({token_file or 'minicluster.admin.token.file unset'}): {e}",
              file=sys.stderr)
        return 1
    for url in rm_webapp_urls(conf):
        try:
            resp = requests.post(f"{url}/ws/v1/minicluster/failover", headers={"X-Minicluster-Admin-Token": token},
                                 timeout=30)
        except requests.ConnectionError:
            continue
        if resp.status_code == 200:
            print(f"active ResourceManager: {resp.json().get('active')}")
            return 0
        print(f"failover refused by {url}: HTTP {resp.status_code} {resp.text.strip()[:300]}", file=sys.stderr)
        return 1
    print("failover: no ResourceManager reachable", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="yarn-gateway-minicluster", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("start", help="run a minicluster in the foreground")
    s.add_argument("--base-dir", required=True, help="state, logs, HADOOP_CONF_DIR (conf/), SPARK_HOME (spark-home/)")
    s.add_argument("--ha", action="store_true", help="two ResourceManagers, rm1 active")
    s.add_argument("--secure", action="store_true", help="Kerberos: SPNEGO on the REST API, tickets for spark-submit")
    s.add_argument("--http-keytab", help="keytab with the HTTP/<host> principal (with --secure)")
    s.add_argument("--http-principal", help="HTTP service principal (default: any in the keytab)")
    s.add_argument("--proxyuser", action="append", type=parse_proxyuser, metavar="SVC=RULES",
                   help="hadoop.proxyuser rules, e.g. 'root=users:alice,bob;groups:analysts' (repeatable)")
    f = sub.add_parser("failover", help="make the standby ResourceManager active")
    f.add_argument("--conf-dir", required=True, help="the minicluster's HADOOP_CONF_DIR")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    ns = build_parser().parse_args(argv)
    if ns.command == "start":
        if ns.secure and not ns.http_keytab:
            print("--secure needs --http-keytab", file=sys.stderr)
            return 2
        base = os.path.abspath(ns.base_dir)
        os.makedirs(base, exist_ok=True)
        return asyncio.run(run_start(ns, base, container_properties()))
    return run_failover(ns)


if __name__ == "__main__":
    sys.exit(main())
