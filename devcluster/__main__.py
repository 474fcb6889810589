"""``python -m devcluster start|stop|status|env``: the dev YARN cluster from a shell.

    python -m devcluster start --base-dir .state/yarn [--port-base 20000]
    python -m devcluster env   --base-dir .state/yarn     # export lines for spark-submit / yarn CLIs
    python -m devcluster yarn  --base-dir .state/yarn application -list
    python -m devcluster stop  --base-dir .state/yarn

``start`` returns once the node is RUNNING; the cluster keeps running in its own
processes until ``stop``. Only the simple mode is offered here (the kerberos and HA
modes need a KDC and ZooKeeper that the test suite sets up).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Optional

from .cluster import Cluster, ClusterSpec


def _cluster(ns: argparse.Namespace) -> Cluster:
    return Cluster(ClusterSpec(base_dir=ns.base_dir, port_base=ns.port_base))


def main(argv: Optional[list[str]] = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--base-dir", default=".state/yarn")
    common.add_argument("--port-base", type=int, default=20000)
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "status", "env"):
        sub.add_parser(name, parents=[common])
    yarn = sub.add_parser("yarn", parents=[common], help="a Hadoop YARN CLI command")
    yarn.add_argument("args", nargs=argparse.REMAINDER, help="the CLI's arguments (application -list, ...)")
    ns = parser.parse_args(argv)
    cluster = _cluster(ns)
    if ns.command == "start":
        t0 = time.monotonic()
        reused = cluster.is_running()
        cluster.start()
        print(f"ResourceManager: {cluster.rm_url}  ({'already running' if reused else 'started'} in "
              f"{time.monotonic() - t0:.1f} s)")
        print(f"HADOOP_CONF_DIR={cluster.conf_dir}")
        return 0
    if ns.command == "stop":
        cluster.stop()
        print("stopped")
        return 0
    if ns.command == "status":
        running = cluster.is_running()
        print(f"{'running' if running else 'not running'}: ResourceManager {cluster.rm_url}")
        return 0 if running else 1
    if ns.command == "env":
        env = cluster.client_env()
        for key in ("HADOOP_CONF_DIR", "YARN_CONF_DIR", "SPARK_CONF_DIR", "SPARK_HOME", "JAVA_HOME"):
            print(f"export {key}={shlex.quote(env[key])}")
        return 0
    proc = cluster.yarn(ns.args[0], *ns.args[1:])
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
